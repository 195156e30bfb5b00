"""The server's process on Linux, macOS and Windows: where its python is, how it is started and stopped.

The platform-specific parts are pure functions of `system` (platform.system()),
so the Windows command lines and flags are unit-tested on Linux too.
"""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# subprocess's Windows-only constants, spelled out so Linux can test the Windows flags
CREATE_NEW_PROCESS_GROUP = 0x00000200
_STILL_ACTIVE = 259
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


def venv_python(venv: Path, system: Optional[str] = None) -> Path:
    """The venv's interpreter: Scripts\\python.exe on Windows, bin/python elsewhere."""
    if (system or platform.system()) == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def serve_command(python: Path, model_path: str, port: int, *, host: str = "127.0.0.1",
                  keep_alive: Optional[str] = None, owned: bool = True) -> List[str]:
    """The server's command line: the embedded engine on `model_path`.

    `owned`: through prompt_server.setup.owned, which stops the server when the
    process that started it (the WebUI) is gone, however it ended.
    """
    entry = "prompt_server.setup.owned" if owned else "prompt_server"
    command = [str(python), "-m", entry, "serve", "--engine", "local", "--model", model_path,
               "--host", host, "--port", str(port)]
    if keep_alive:
        command += ["--keep-alive", keep_alive]
    return command


def popen_options(system: Optional[str] = None, *, detach: bool = True) -> Dict[str, Any]:
    """Keyword arguments for subprocess.Popen that give the server a process group of its own
    (Ctrl-C in the WebUI's console is not sent to it; Stop reaches all of it).

    POSIX: a new session (setsid). Windows has no setsid: CREATE_NEW_PROCESS_GROUP,
    the group Stop's CTRL_BREAK_EVENT goes to. It keeps the WebUI's console
    (CREATE_NO_WINDOW would leave it none, and console events reach only processes
    attached to the sender's console); its output goes to server.log anyway.
    """
    if not detach:
        return {}
    if (system or platform.system()) == "Windows":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


@dataclass(frozen=True)
class StopStep:
    """One way of asking a process to end, and how long to wait for it before the next."""
    kind: str                       # "signal" | "group-signal" | "command"
    signal: Optional[int] = None
    command: Sequence[str] = ()
    wait_s: float = 15.0


def stop_plan(pid: int, system: Optional[str] = None) -> List[StopStep]:
    """How to stop the server `pid` (started with popen_options): politely first, then for sure.

    POSIX: SIGTERM to its process group (uvicorn finishes the requests in flight),
    then SIGKILL. Windows: CTRL_BREAK_EVENT to its process group (there is no
    SIGTERM to send), then `taskkill /T /F` for it and its children.
    """
    if (system or platform.system()) == "Windows":
        ctrl_break = getattr(signal, "CTRL_BREAK_EVENT", 1)
        return [StopStep("signal", signal=ctrl_break),
                StopStep("command", command=("taskkill", "/PID", str(pid), "/T", "/F"), wait_s=10.0)]
    return [StopStep("group-signal", signal=int(signal.SIGTERM)),
            StopStep("group-signal", signal=int(getattr(signal, "SIGKILL", signal.SIGTERM)), wait_s=10.0)]


def pid_alive(pid: Optional[int], system: Optional[str] = None) -> bool:
    """Whether process `pid` exists (and, on Linux, is not a zombie)."""
    if not pid or pid <= 0:
        return False
    if (system or platform.system()) == "Windows":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill(0) said it exists


def _windows_pid_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def stop_process(pid: int, process: Optional[subprocess.Popen] = None, system: Optional[str] = None) -> bool:
    """Stop the server `pid` (and its process group) by stop_plan; True once it is gone.

    `process`: our Popen of it, when we have one (it reaps the child, so no zombie stays).
    """
    system = system or platform.system()

    def gone() -> bool:
        if process is not None:
            return process.poll() is not None
        return not pid_alive(pid, system)

    if process is not None and process.stdin is not None:  # an owned server stops when its pipe closes
        try:
            process.stdin.close()
            process.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for step in stop_plan(pid, system):
        if gone():
            return True
        try:
            if step.kind == "group-signal":
                os.killpg(pid, step.signal or int(signal.SIGTERM))  # POSIX only: stop_plan says so
            elif step.kind == "signal":
                os.kill(pid, step.signal or 0)
            else:
                subprocess.run(list(step.command), capture_output=True, timeout=step.wait_s)
        except ProcessLookupError:
            return True
        except OSError:
            if step.kind == "group-signal":  # not a group leader (started by someone else): the process alone
                try:
                    os.kill(pid, step.signal or 0)
                except OSError:
                    pass
        except subprocess.SubprocessError:
            pass
        deadline = time.monotonic() + step.wait_s
        while time.monotonic() < deadline:
            if gone():
                return True
            time.sleep(0.1)
    return gone()
