"""Serving through another program (SGLang, vLLM, llama-cpp-python): start it, wait until it
serves, relay its output with the API key masked, and stop it leaving nothing behind.

Every child leads its own process group (a terminal's Ctrl-C reaches only us),
and is stopped the way these servers expect: SIGTERM to the server itself, so it
shuts its own workers down; after a grace period SIGTERM, then SIGKILL, to
whatever is left of its group. Signalling the whole group at once makes
SGLang's scheduler and detokenizer die mid-work with KeyboardInterrupt
tracebacks before the server's own graceful exit.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence

from prompt_server.defaults import DEFAULT_HOST

STOP_GRACE_S = 20.0  # what a server gets to stop its own workers before its group is signalled


def engine_python(cli_value: Optional[str], env_name: str, environ: Optional[Dict[str, str]] = None) -> str:
    """The python of the environment a server lives in: the flag, else its variable, else ours."""
    env = os.environ if environ is None else environ
    return cli_value or env.get(env_name, "").strip() or sys.executable


def ask_python(python: str, script: str) -> Dict[str, Any]:
    """What `script` prints as JSON on its last line when `python` runs it; {} for a python
    that does not run (or does not answer), so a missing install reads as 'not there'."""
    try:
        result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60)
        found = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {}
    return found if isinstance(found, dict) else {}


class LaunchError(Exception):
    """A one-line reason the server cannot start, with what to do instead."""


def base_url(host: str, port: int) -> str:
    shown = DEFAULT_HOST if host in ("0.0.0.0", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def masked(command: Sequence[str], secret: Optional[str] = None) -> str:
    """The command line for people: the value after --api-key / --api_key, and the secret anywhere, as ***."""
    shown = ["***" if i and command[i - 1] in ("--api-key", "--api_key") else part
             for i, part in enumerate(command)]
    text = " ".join(shown)
    return text.replace(secret, "***") if secret else text


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _get(url: str, api_key: Optional[str] = None, timeout: float = 5.0) -> Optional[bytes]:
    """The body of a 200 answer, else None."""
    status, body = _get_status(url, api_key, timeout)
    return body if status == 200 else None


def _get_status(url: str, api_key: Optional[str] = None, timeout: float = 5.0) -> tuple:
    """(HTTP status or 0 for no answer, body)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def _wait(ready: Callable[[], bool], processes: Sequence[subprocess.Popen], what: str, timeout: float,
          failure: str, stop: Optional[Callable[[], bool]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop():
            raise LaunchError(f"stopped while {what} was starting")
        for process in processes:
            code = process.poll()
            if code is not None:
                raise LaunchError(f"{what} exited with code {code} before it was ready; see its log above")
        if ready():
            return
        time.sleep(1.0)
    raise LaunchError(failure)


def wait_until_healthy(url: str, processes: Sequence[subprocess.Popen], what: str = "SGLang",
                       timeout: float = 900.0, stop: Optional[Callable[[], bool]] = None) -> None:
    """Poll GET /health until it answers 200; LaunchError if a child exits, `stop()` says so,
    or time runs out."""
    _wait(lambda: _get(url + "/health") is not None, processes, what, timeout,
          f"{what} did not answer {url}/health within {timeout:.0f} s", stop)


def wait_until_serving(url: str, processes: Sequence[subprocess.Popen], what: str, *, api_key: Optional[str],
                       timeout: float = 120.0, stop: Optional[Callable[[], bool]] = None,
                       expect_in_workers: Sequence[str] = ()) -> None:
    """Poll until GET /v1/models lists a model, and (a router) GET /workers names every one of
    `expect_in_workers`: /health answers before a server or a router can take requests."""
    def ready() -> bool:
        if expect_in_workers:
            status, listed = _get_status(url + "/workers", api_key)
            # a router without the list (404) is judged by its model list alone
            if status != 404 and (status != 200 or not all(w.encode() in listed for w in expect_in_workers)):
                return False
        body = _get(url + "/v1/models", api_key)
        try:
            return body is not None and bool(json.loads(body).get("data"))
        except (ValueError, AttributeError):
            return False

    _wait(ready, processes, what, timeout, f"{what} did not list its model at {url}/v1/models within "
                                           f"{timeout:.0f} s", stop)


class Children:
    """The processes we started, each leading its own process group.

    A terminal's Ctrl-C (SIGINT) or a SIGTERM reaches only us (`forward` marks the stop);
    the serving loop sees `stopping` and `stop_all` stops the children in order.
    """

    def __init__(self, secret: Optional[str] = None) -> None:
        self.processes: List[subprocess.Popen] = []
        self.stopping = False
        self.secret = secret

    def start(self, command: List[str], env: Dict[str, str]) -> subprocess.Popen:
        # servers log their arguments, API key included: with a key, their output
        # passes through us and the key is masked on the way
        relay = bool(self.secret)
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdout=subprocess.PIPE if relay else None,
                                   stderr=subprocess.STDOUT if relay else None,
                                   text=relay, errors="replace" if relay else None)
        self.processes.append(process)
        if relay:
            threading.Thread(target=self._relay, args=(process,), daemon=True).start()
        print(f"started (pid {process.pid}): {masked(command, self.secret)}", file=sys.stderr, flush=True)
        return process

    def _relay(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None and self.secret
        for line in process.stdout:
            sys.stderr.write(line.replace(self.secret, "***"))
            sys.stderr.flush()

    def forward(self, signum: int, frame: object) -> None:
        if not self.stopping:
            print("stopping the prompt server ...", file=sys.stderr, flush=True)
        self.stopping = True

    def stop_all(self, grace: float = STOP_GRACE_S) -> int:
        """SIGTERM to each server (the last started, a router, first); after `grace` seconds
        SIGTERM, then SIGKILL, to what is left of each group. The exit code to report."""
        for process in reversed(self.processes):
            if process.poll() is None:
                _signal(process.pid, signal.SIGTERM, group=False)
        self._wait_groups_gone(grace)
        for signum in (signal.SIGTERM, signal.SIGKILL):  # what did not stop by itself
            for process in self.processes:
                _signal(process.pid, signum, group=True)
            self._wait_groups_gone(5.0)
        for process in self.processes:
            process.wait()
        return max((abs(p.returncode or 0) for p in self.processes), default=0)

    def _wait_groups_gone(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                process.poll()  # reaped: a zombie leader would keep its group "alive"
            if not any(_group_alive(p.pid) for p in self.processes):
                return
            time.sleep(0.1)

    def install_signal_handlers(self) -> Dict[int, object]:
        """Route SIGINT / SIGTERM to `forward`; returns what to restore."""
        return {sig: signal.signal(sig, self.forward) for sig in (signal.SIGINT, signal.SIGTERM)}


def _signal(pid: int, signum: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_signal_handlers(previous: Dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def serve_until_stopped(children: Children, alive: Callable[[], bool]) -> int:
    """Wait while `alive()` and no stop was asked; 0 for a stop, 1 when the server died."""
    while not children.stopping and alive():
        time.sleep(0.5)
    return 0 if children.stopping else 1
