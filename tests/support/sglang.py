"""Real SGLang started through `newspicgen serve --engine sglang`, for the integration tests.

They run only where NEWSPICGEN_SGLANG_PYTHON names the python of an SGLang
install (../shared/harness/sglang-cpu builds one with SGLang's CPU engine);
CI has none, so they skip with that reason.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from prompt_server.sglang_launch import ENV_SGLANG_PYTHON, probe
from tests.support import REPO
from tests.support.loopback import free_port

SGLANG_PYTHON = os.environ.get(ENV_SGLANG_PYTHON, "").strip()
START_TIMEOUT_S = 900.0  # SGLang's CPU start on a busy 2-core machine: 1-5 minutes


def sglang_install():
    return probe(SGLANG_PYTHON) if SGLANG_PYTHON else None


def skip_without_sglang(need_router: bool = False):
    """A skipif mark saying what is missing: SGLang, its CPU kernel, or its router."""
    install = sglang_install()
    reason = ""
    if install is None or install.version is None:
        reason = (f"{ENV_SGLANG_PYTHON} does not name a python with SGLang "
                  "(build ../shared/harness/sglang-cpu); CI has none")
    elif not install.cpu_kernel:
        reason = f"SGLang in {SGLANG_PYTHON} has no CPU kernel and these tests run it on the CPU"
    elif need_router and not install.router:
        reason = f"sglang-router is not installed for {SGLANG_PYTHON}"
    return pytest.mark.skipif(bool(reason), reason=reason or "SGLang is available")


class LaunchedSGLang:
    """`python -m newspicgen serve --engine sglang --device cpu ...` in its own session."""

    def __init__(self, model: Path, *args: str, api_key: Optional[str] = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log = tempfile.NamedTemporaryFile(prefix="sglang-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   **{ENV_SGLANG_PYTHON: SGLANG_PYTHON})
        env.pop("NEWSPICGEN_API_KEY", None)
        if api_key:
            env["NEWSPICGEN_API_KEY"] = api_key  # the way README says to pass it: never in argv
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newspicgen", "serve", "--engine", "sglang", "--device", "cpu",
             "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve --engine sglang exited with {self.process.returncode}:\n{self.text()[-6000:]}")
            if "ready at " + self.url in self.text():
                return
            time.sleep(1.0)
        self.stop()
        pytest.fail(f"SGLang did not get ready in {timeout:.0f} s:\n{self.text()[-6000:]}")

    def started_pids(self) -> List[int]:
        return [int(pid) for pid in re.findall(r"started \(pid (\d+)\)", self.text())]

    def workers(self) -> Dict[str, int]:
        """worker URL -> pid, from the launcher's `worker N: URL (pid P)` lines."""
        return {url: int(pid) for url, pid in re.findall(r"worker \d+: (\S+) \(pid (\d+)\)", self.text())}

    def descendants(self) -> List[int]:
        return descendants_of(self.process.pid)

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it to the launcher; its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=120)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        for pid in self.started_pids():  # whatever the launcher failed to stop, so no test leaks it
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()


def descendants_of(root: int) -> List[int]:
    """Every live process whose parent chain reaches `root` (read from /proc)."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def alive(pids: List[int]) -> List[int]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(pid)
        except OSError:
            pass
    return out


def get_json(url: str, api_key: Optional[str] = None, timeout: float = 30.0):
    import json
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
