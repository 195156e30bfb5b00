"""Session fixtures: a tiny random Qwen2 model and a real local-engine server on loopback."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.local_server import start_local_server
from tests.support.loopback import stop_process
from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2 + self-trained BPE tokenizer, built once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def local_server_url(tiny_model_dir):
    """Base URL of a real `serve --engine local` subprocess running the tiny model."""
    process, url = start_local_server(tiny_model_dir)
    yield url
    stop_process(process)
