"""Start the embedded engine as a real subprocess on loopback, for the tests."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from tests.support import REPO
from tests.support.loopback import free_port, stop_process

SERVER_START_TIMEOUT_S = 120.0


def start_local_server(model_dir, *extra_args: str, timeout: float = SERVER_START_TIMEOUT_S):
    """Start `python -m prompt_server serve --engine local` on a free port; return (process, url).

    Waits until GET /health answers 200; on failure kills the process and fails
    with its stderr, so a broken server explains itself in the test report.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read after the server fails, then closed with it
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               # one thread: a 64-wide model gains nothing from more, and spinning
               # OpenMP threads slow everything down on a busy 2-core machine
               OMP_NUM_THREADS="1")
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
    pytest.fail(f"local engine at {url} did not become healthy (exit code {process.returncode}); "
                f"stderr:\n{stderr}", pytrace=False)
