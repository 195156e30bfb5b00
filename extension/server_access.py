"""Whether this WebUI may install packages and start processes for the prompt server.

Exactly the rule of the WebUI's own extension installer (modules/shared_cmd_options.py,
AUTOMATIC1111 1.10 and Forge): when the WebUI listens beyond this machine
(--share, --listen, --ngrok, --server-name), extension access is disabled unless
it was started with --enable-insecure-extension-access.
"""
from __future__ import annotations

from typing import Any, Optional

NON_LOCAL_FLAGS = ("share", "listen", "ngrok", "server_name")


def refusal(cmd_opts: Any) -> Optional[str]:
    """None when allowed; else one line: why, and what to do."""
    if cmd_opts is None:
        return None
    disabled = getattr(cmd_opts, "disable_extension_access", None)
    if disabled is None:  # a WebUI that does not compute it: the same rule
        non_local = any(getattr(cmd_opts, flag, None) for flag in NON_LOCAL_FLAGS)
        disabled = non_local and not getattr(cmd_opts, "enable_insecure_extension_access", False)
    if not disabled:
        return None
    return ("setting up, starting and stopping the prompt server is disabled because the WebUI listens beyond "
            "this machine (--listen, --share, --ngrok or --server-name), as its extension installer is; "
            "restart the WebUI with --enable-insecure-extension-access to allow it, or set the server up in a "
            "terminal: python -m prompt_server.setup")
