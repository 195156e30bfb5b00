"""The prompt server panel inside the WebUI: one ServerControl per WebUI process, on
<data dir>/newspicgen/server, with the WebUI's extension-access rule and its settings.

Imported only inside AUTOMATIC1111 / Forge (by webui.py).
"""
from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Optional, Tuple

from prompt_server.defaults import ENV_SERVER_URL
from prompt_server.errors import redact_url
from prompt_server.setup.manager import ServerManager

from .config import ConfigError, key_for, optional_text, origin
from .server_access import refusal
from .server_control import ServerControl
from .settings import KEY_MODE, KEY_MODEL, KEY_SERVER_URL, config_from_opts

_CONTROL: Optional[ServerControl] = None
_LOCK = threading.Lock()


def server_folder(data_path: str) -> Path:
    return Path(data_path) / "newspicgen" / "server"


def access_refusal() -> Optional[str]:
    from modules import shared
    return refusal(getattr(shared, "cmd_opts", None))


def configured() -> Tuple[str, Optional[str]]:
    from modules import shared
    config = config_from_opts(shared.opts)
    return config.server_url, key_for(config.server_url)


def use_server(url: str, model: Optional[str], mode: str) -> None:
    """Save the server's URL, model and constraint mode in the WebUI's settings."""
    from modules import shared
    from_env = optional_text(os.environ.get(ENV_SERVER_URL))
    if from_env and origin(from_env) != origin(url):
        raise ConfigError(f"the {ENV_SERVER_URL} environment variable sets the server URL "
                          f"({redact_url(from_env)}); restart the WebUI without it (or with "
                          f"{ENV_SERVER_URL}={redact_url(url)}) to use {redact_url(url)}")
    for key, value in ((KEY_SERVER_URL, url), (KEY_MODEL, model or ""), (KEY_MODE, mode)):
        shared.opts.set(key, value)
    shared.opts.save(shared.config_filename)
    print(f"NewsPicGen: using the prompt server at {redact_url(url)} (model {model or 'newspicgen'}, {mode})")


def server_control() -> ServerControl:
    global _CONTROL
    with _LOCK:
        if _CONTROL is None:
            from modules import paths_internal
            manager = ServerManager(server_folder(paths_internal.data_path))
            control = ServerControl(manager, refusal=access_refusal, use_server=use_server, configured=configured)
            manager.on_running = _point_at(control)
            atexit.register(manager.shutdown)  # a normal exit; the server also stops when this process ends
            _CONTROL = control
        return _CONTROL


def panel_control() -> Optional[ServerControl]:
    """server_control(), or None (the tab then shows only the status line) when it cannot be made."""
    try:
        return server_control()
    except Exception as exc:
        print(f"NewsPicGen: the prompt server panel is not available: {type(exc).__name__}: {exc}")
        return None


def _point_at(control: ServerControl):
    def on_running(url: str) -> None:
        try:
            control.use_own(url)
        except ConfigError as exc:
            print(f"NewsPicGen: the prompt server runs at {url}, but {exc}")
    return on_running


def start_with_webui() -> None:
    """on_app_started: start the server when "Start with the WebUI" is on (in the background)."""
    control = server_control()
    if not control.manager.files.load().autostart:
        return
    reason = control.refusal()
    if reason:
        print(f"NewsPicGen: not starting the prompt server with the WebUI: {reason}")
        return

    def start() -> None:
        try:
            status = control.manager.start_if_wanted()
            if status is not None:
                print(f"NewsPicGen: starting the prompt server ({control.manager.folder}) with the WebUI")
        except Exception as exc:
            print(f"NewsPicGen: could not start the prompt server with the WebUI: {exc}")

    threading.Thread(target=start, name="newspicgen-server-autostart", daemon=True).start()
