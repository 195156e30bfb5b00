"""The prompt server panel's actions, without gradio: the tab and the /newspicgen/v1/server routes
both call this one object (one per WebUI process).

It adds to prompt_server.setup's ServerManager what only the WebUI knows: whether
these actions are allowed here (server_access), the servers found on this machine,
and "use this one" (the WebUI's settings).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests

from prompt_server.errors import redact_url
from prompt_server.setup.manager import ServerManager

log = logging.getLogger("newspicgen")

# (url, model or None, constraint mode) -> None; raises ConfigError when the setting cannot change
UseServer = Callable[[str, Optional[str], str], None]


class Forbidden(RuntimeError):
    """Not allowed in this WebUI (it listens beyond loopback); the message says why and what to do."""


class ServerControl:
    def __init__(self, manager: ServerManager, *, refusal: Callable[[], Optional[str]], use_server: UseServer,
                 configured: Callable[[], Tuple[str, Optional[str]]],
                 probe: Optional[Callable[..., List[Any]]] = None):
        self.manager = manager
        self.refusal = refusal
        self._use_server = use_server
        self.configured = configured  # (the URL requests go to now, its API key)
        self._probe = probe
        self._found: List[Dict[str, Any]] = []
        self._probing = threading.Lock()

    # ---- reading ------------------------------------------------------------------------
    def status(self, *, probe: bool = False) -> Dict[str, Any]:
        status = self.manager.status()
        status["found"] = self.find() if probe else list(self._found)
        status["refused"] = self.refusal()
        return status

    def find(self) -> List[Dict[str, Any]]:
        """Probe the configured URL and the usual local ports (short timeouts, in parallel)."""
        probe = self._probe or _probe_local
        url, _ = self.configured()
        with self._probing:
            try:
                identities = probe(extra_urls=(url,))
            except Exception as exc:  # finding servers is a help; never fail the page for it
                log.warning("NewsPicGen: probing for servers failed: %s", exc)
                identities = []
            self._found = [found_entry(i) for i in identities if getattr(i, "kind", "none") != "none"]
            return list(self._found)

    # ---- actions that install or start things (refused where the WebUI forbids extension access) ---
    def _allowed(self) -> None:
        reason = self.refusal()
        if reason:
            raise Forbidden(reason)

    def setup(self, model: Optional[str] = None, keep_alive: Optional[str] = None) -> Dict[str, Any]:
        self._allowed()
        return self.manager.setup((model or "").strip() or None, keep_alive=keep_alive)

    def start(self, keep_alive: Optional[str] = None) -> Dict[str, Any]:
        self._allowed()
        if keep_alive is not None:
            self.manager.set_options(keep_alive=keep_alive)
        return self.manager.start()

    def stop(self) -> Dict[str, Any]:
        self._allowed()
        return self.manager.stop()

    def restart(self, keep_alive: Optional[str] = None) -> Dict[str, Any]:
        self._allowed()
        self.manager.stop()
        return self.start(keep_alive)

    def set_autostart(self, on: bool) -> Dict[str, Any]:
        self._allowed()
        return self.manager.set_options(autostart=on)

    # ---- actions on the WebUI's settings and the server in use ---------------------------
    def use(self, url: str, model: Optional[str] = None) -> Dict[str, Any]:
        """Point the WebUI at a found server: its URL, model and the constraint mode its kind needs."""
        entry = next((e for e in self._found if e["url"] == url), None)
        if entry is None:
            from prompt_server.server_kind import identify
            entry = found_entry(identify(url))
            if entry["kind"] == "none":
                raise ValueError(f"nothing answers at {redact_url(url)}: {entry['error'] or 'no answer'}")
        self._use_server(entry["url"], model or (entry["models"][0] if entry["models"] else None), entry["mode"])
        return entry

    def use_own(self, url: str) -> None:
        """The server this WebUI just started: use it (the engine's own model and mode)."""
        from prompt_server.defaults import SERVED_MODEL_NAME
        self._use_server(url, SERVED_MODEL_NAME, "regex")

    def free_memory(self) -> str:
        """Ask the server in use to free its model's memory now (the embedded engine's POST /unload)."""
        url, key = self.configured()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        shown = redact_url(url)
        try:
            response = requests.post(url.rstrip("/") + "/unload", headers=headers, timeout=30)
        except requests.RequestException as exc:
            raise ValueError(f"cannot reach the prompt server at {shown} ({type(exc).__name__}); "
                             "start it first") from None
        if response.status_code == 404:
            raise ValueError(f"the server at {shown} cannot free its memory on request (no /unload: only "
                             "NewsPicGen's own engine has it); stop it instead")
        if response.status_code >= 400:
            raise ValueError(f"the server at {shown} refused to free its memory (HTTP {response.status_code})")
        return f"the server at {shown} freed the model's memory; the next request loads it again"


def _probe_local(**kwargs: Any) -> List[Any]:
    from prompt_server.server_kind import probe_local  # requests only; imported when the panel first probes
    return probe_local(**kwargs)


def found_entry(identity: Any) -> Dict[str, Any]:
    from prompt_server.server_kind import KIND_LABELS
    kind = getattr(identity, "kind", "none")
    return {"url": identity.url, "kind": kind, "label": KIND_LABELS.get(kind, kind),
            "models": list(getattr(identity, "models", []) or []), "mode": getattr(identity, "mode", "json_schema"),
            "version": getattr(identity, "version", None), "error": getattr(identity, "error", None)}
