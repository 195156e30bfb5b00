"""Session fixtures: a tiny random Qwen2 model and a real local-engine server on loopback."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from loopback import free_port, stop_process

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2 + self-trained BPE tokenizer, built once per session."""
    try:
        from tests.tiny_model import build_tiny_model
    except ImportError:  # pytest run from elsewhere: tests/ itself is on sys.path
        from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


def start_local_server(model_dir, *extra_args: str, timeout: float = SERVER_START_TIMEOUT_S):
    """Start `python -m prompt_server serve --engine local` on a free port; return (process, url).

    Waits until GET /health answers 200; on failure kills the process and fails
    with its stderr, so a broken server explains itself in the test report.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
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


@pytest.fixture(scope="session")
def local_server_url(tiny_model_dir):
    """Base URL of a real `serve --engine local` subprocess running the tiny model."""
    process, url = start_local_server(tiny_model_dir)
    yield url
    stop_process(process)
