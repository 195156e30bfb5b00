"""Start the embedded engine as a real subprocess on loopback (the tests' fixtures and the benchmarks)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, Optional, Tuple

from tests.support import REPO
from tests.support.loopback import free_port, stop_process

SERVER_START_TIMEOUT_S = 120.0


class ServerStartError(RuntimeError):
    """The engine exited or never answered /health; the message carries its stderr."""


def launch_local(model_dir, *extra_args: str, threads: Optional[str] = "1",
                 timeout: float = SERVER_START_TIMEOUT_S) -> Tuple[subprocess.Popen, str]:
    """`python -m prompt_server serve --engine local` on a free port, once GET /health answers 200.

    `threads`: OMP/MKL threads for torch (None: torch's default). One thread by default:
    a small model gains nothing from more, and spinning OpenMP threads slow everything
    down on a busy 2-core machine.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read after the server fails, then closed with it
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    process = subprocess.Popen(
        [sys.executable, "-m", "prompt_server", "serve", "--engine", "local", "--model", str(model_dir),
         "--host", "127.0.0.1", "--port", str(port), *extra_args],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    stop_process(process)
    log.seek(0)
    stderr = log.read().decode("utf-8", "replace")[-4000:]
    raise ServerStartError(f"local engine at {url} did not become healthy (exit code {process.returncode}); "
                           f"stderr:\n{stderr}")


@contextlib.contextmanager
def running_local(model_dir, *extra_args: str, threads: Optional[str] = "1",
                  timeout: float = SERVER_START_TIMEOUT_S) -> Iterator[str]:
    """launch_local() as a `with` block yielding the URL; the server is stopped on the way out."""
    process, url = launch_local(model_dir, *extra_args, threads=threads, timeout=timeout)
    try:
        yield url
    finally:
        stop_process(process)


def start_local_server(model_dir, *extra_args: str, timeout: float = SERVER_START_TIMEOUT_S):
    """launch_local() for a test: a server that does not start fails the test with its stderr."""
    import pytest

    try:
        return launch_local(model_dir, *extra_args, timeout=timeout)
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
