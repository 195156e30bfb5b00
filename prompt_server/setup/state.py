"""The setup's state, persisted in its folder (state.json) so a WebUI restart, the routes and the
command line all see the same thing, and its logs (setup.log, server.log).

    none ──setup──► installing ──► installed ──start──► starting ──► running ──stop──► stopped
                        │                                  │            │
                        └──────────────► failed ◄──────────┴────────────┘ (crashed)

`failed` keeps the step, the cause and the fix; `done` keeps the finished steps,
so a retry resumes where it stopped.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from prompt_server.files import atomic_write

STATES = ("none", "installing", "installed", "starting", "running", "stopped", "failed")
STEPS = ("venv", "packages", "model", "start")
LOG_TAIL_LINES = 30


@dataclass
class SetupState:
    state: str = "none"
    step: Optional[str] = None                 # the step running (or that failed)
    model: Optional[str] = None                # as the user gave it: id, modelscope:id, or a folder
    model_path: Optional[str] = None           # the folder the server loads
    done: Dict[str, str] = field(default_factory=dict)  # finished step -> what it did (its fingerprint)
    engine: str = "embedded"
    url: Optional[str] = None
    port: Optional[int] = None
    pid: Optional[int] = None                  # the server's process
    owner_pid: Optional[int] = None            # the process running the setup / start now
    progress: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, str]] = None     # {"step", "cause", "fix"}
    note: Optional[str] = None                 # e.g. "Hugging Face unreachable: downloaded from ModelScope"
    autostart: bool = False                    # start with the WebUI
    keep_alive: Optional[str] = None           # the engine's --keep-alive
    torch: Optional[str] = None                # why this torch was installed
    updated: float = 0.0

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SetupState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if state.state not in STATES:
            state.state = "none"
        return state


class StateFile:
    """state.json + the logs of one setup folder; every change is written at once (atomically)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "state.json"
        self.setup_log = self.folder / "setup.log"
        self.server_log = self.folder / "server.log"
        self._lock = threading.RLock()

    def load(self) -> SetupState:
        with self._lock:
            try:
                return SetupState.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                return SetupState()
            except (OSError, ValueError, TypeError):  # a damaged file: start over, the finished work is on disk
                return SetupState(note=f"{self.path} could not be read; starting from the beginning")

    def save(self, state: SetupState) -> SetupState:
        with self._lock:
            state.updated = time.time()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(asdict(state), indent=2, ensure_ascii=False).encode("utf-8"))
            return state

    def update(self, **changes: Any) -> SetupState:
        with self._lock:
            state = self.load()
            for key, value in changes.items():
                setattr(state, key, value)
            return self.save(state)

    def log(self, line: str) -> None:
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self.setup_log.open("a", encoding="utf-8") as handle:
                handle.write(line.rstrip("\n") + "\n")


def tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> List[str]:
    """The last `lines` lines of a log (reading at most its last `max_bytes`)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    # pip and the engine redraw progress lines with \r: keep what a terminal would show
    shown = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in shown if line.strip()][-lines:]
