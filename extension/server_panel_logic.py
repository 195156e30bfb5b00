"""What the prompt server panel does, without gradio (the unit tests drive it directly).

Handlers take the values on screen and return an `Outcome`; the long ones
(Set up, Start, Restart, a page load during a setup) are generators that yield
one Outcome per second until the setup or start is done, so the page follows the
progress on gradio 3.41 and 4.40 alike, without timers.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from prompt_server.defaults import DEFAULT_MODEL
from prompt_server.errors import redact_url
from prompt_server.setup.manager import Refused

from .server_control import Forbidden, ServerControl
from .ui_events import Choices, Outcome

POLL_S = 1.0
WATCH_LIMIT_S = 4 * 3600.0  # a 3 GB download on a slow line; the page may be reloaded any time
BAR_WIDTH = 24
STATE_WORDS = {"none": "not set up", "installing": "setting up", "installed": "set up, not running",
               "starting": "starting", "running": "running", "stopped": "stopped", "failed": "failed"}


def bar(fraction: Optional[float]) -> str:
    if fraction is None:
        return ""
    filled = int(round(max(0.0, min(1.0, fraction)) * BAR_WIDTH))
    return "`" + "█" * filled + "░" * (BAR_WIDTH - filled) + f"` {100 * fraction:.0f} %"


def state_markdown(status: Dict[str, Any]) -> str:
    """The panel's summary: state, URL, engine, model, progress, the error with its fix."""
    state = status.get("state", "none")
    lines = [f"**Local prompt server: {STATE_WORDS.get(state, state)}**"]
    details = []
    if status.get("url"):
        details.append(f"`{status['url']}`")
    if state in ("starting", "running") and status.get("engine"):
        details.append(f"{status['engine']} engine")
    if status.get("model"):
        details.append(f"model `{status['model']}`")
    if status.get("pid"):
        details.append(f"process {status['pid']}")
    if details:
        lines[0] += " · " + " · ".join(details)
    progress = status.get("progress") or {}
    if progress.get("text") and state in ("installing", "starting"):
        lines.append(f"{bar(progress.get('fraction'))} {progress['text']}".strip())
    error = status.get("error")
    if state == "failed" and error:
        lines.append(f"🔴 failed at **{error.get('step')}**: {error.get('cause')} — {error.get('fix')}")
    if status.get("note"):
        lines.append(f"ℹ️ {status['note']}")
    if status.get("refused"):
        lines.append(f"🔒 {status['refused']}")
    return "\n\n".join(lines)


def found_choices(found: List[Dict[str, Any]]) -> List[str]:
    """One line per (server, model): "Ollama · http://127.0.0.1:11434 · qwen2.5:1.5b"."""
    labels = []
    for entry in found:
        for model in entry["models"] or [""]:
            labels.append(" · ".join(x for x in (entry["label"], redact_url(entry["url"]), model) if x))
    return labels


def found_pick(label: str, found: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    for entry in found:
        for model in entry["models"] or [""]:
            if " · ".join(x for x in (entry["label"], redact_url(entry["url"]), model) if x) == label:
                return {**entry, "model": model or None}
    return None


class ServerPanelLogic:
    def __init__(self, control: ServerControl, status_line: Callable[[], str],
                 sleep: Callable[[float], None] = time.sleep):
        self.control = control
        self.status_line = status_line  # the tab's status line, asked again after "Use" or a start
        self.sleep = sleep

    def _view(self, status: Dict[str, Any], with_found: bool = False) -> Dict[str, Any]:
        values: Dict[str, Any] = {"server_state": state_markdown(status),
                                  "server_log": "\n".join(status.get("log_tail") or []),
                                  "server_autostart": bool(status.get("autostart"))}
        if with_found:
            found = status.get("found") or []
            values["server_found"] = Choices(found_choices(found), None)
            values["server_found_data"] = found
        return values

    def _watch(self, first: Dict[str, Any], with_found: bool = False, warning: Optional[str] = None
               ) -> Iterator[Outcome]:
        """Yield the panel now, then every POLL_S while a setup or start runs, then once more."""
        yield Outcome(self._view(first, with_found), warning=warning)
        began = time.monotonic()
        status = first
        while status.get("busy") and time.monotonic() - began < WATCH_LIMIT_S:
            self.sleep(POLL_S)
            status = self.control.status()
            yield Outcome(self._view(status))
        values = self._view(status)
        values["status"] = self.status_line()
        yield Outcome(values)

    def _act(self, action: Callable[[], Dict[str, Any]]) -> Iterator[Outcome]:
        try:
            status = action()
        except (Forbidden, Refused, ValueError) as exc:
            status = self.control.status()
            yield Outcome(self._view(status), warning=str(exc))
            return
        note = "that was already running: following it" if status.get("joined") else None
        yield from self._watch(status, warning=note)

    # ---- events ---------------------------------------------------------------------------
    def load(self) -> Iterator[Outcome]:
        """Page load: find servers, show the state, and follow a setup another tab started."""
        status = self.control.status(probe=True)
        outcomes = self._watch(status, with_found=True)
        first = next(outcomes)
        first.values["server_keep_alive"] = status.get("keep_alive") or ""
        yield first
        yield from outcomes

    def refresh(self) -> Iterator[Outcome]:
        yield from self._watch(self.control.status())

    def find(self) -> Outcome:
        status = self.control.status(probe=True)
        values = self._view(status, with_found=True)
        if not status["found"]:
            values["server_state"] += ("\n\nNo server answers on this machine's usual ports; press "
                                       "**Set up a server here** to install one.")
        return Outcome(values)

    def use(self, label: str, found: List[Dict[str, Any]]) -> Outcome:
        picked = found_pick(label or "", found or [])
        if picked is None:
            return Outcome(warning="pick a found server first (press Find servers if the list is empty)")
        try:
            entry = self.control.use(picked["url"], picked["model"])
        except Exception as exc:  # ConfigError (an environment variable sets the URL), nothing answering
            return Outcome(warning=str(exc))
        values = self._view(self.control.status())
        values["status"] = self.status_line()
        values["server_state"] += (f"\n\n✅ Using {entry['label']} at `{redact_url(entry['url'])}`"
                                   f"{' with model `' + picked['model'] + '`' if picked['model'] else ''} "
                                   f"(constraint `{entry['mode']}`); saved in Settings → NewsPicGen.")
        return Outcome(values)

    def setup(self, model: str, keep_alive: str = "") -> Iterator[Outcome]:
        yield from self._act(lambda: self.control.setup((model or "").strip() or DEFAULT_MODEL,
                                                        (keep_alive or "").strip()))

    def start(self, keep_alive: str = "") -> Iterator[Outcome]:
        yield from self._act(lambda: self.control.start((keep_alive or "").strip()))

    def stop(self) -> Iterator[Outcome]:
        yield from self._act(self.control.stop)

    def restart(self, keep_alive: str = "") -> Iterator[Outcome]:
        yield from self._act(lambda: self.control.restart((keep_alive or "").strip()))

    def autostart(self, on: bool) -> Outcome:
        try:
            status = self.control.set_autostart(bool(on))
        except Forbidden as exc:
            return Outcome({"server_autostart": not on}, warning=str(exc))
        return Outcome(self._view(status))

    def free_memory(self) -> Outcome:
        try:
            message = self.control.free_memory()
        except ValueError as exc:
            return Outcome(warning=str(exc))
        return Outcome({"server_state": state_markdown(self.control.status()) + f"\n\n✅ {message}"})
