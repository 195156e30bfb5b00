"""Every default the project shares, in one place: where the prompt server is,
how to reach it, and how a user starts it. Stdlib only; all layers read it."""
from __future__ import annotations

import os
from typing import Optional

DEFAULT_MODEL = "blacker521/NewsPicGen"
SERVED_MODEL_NAME = "newspicgen"  # the `model` id the server reports and clients send
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 30000  # SGLang's own default port
DEFAULT_SERVER_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"

# How the output shape is enforced: "auto" asks the server what it is (prompt_server.server_kind)
# and sends its own field; the others pin one: regex (SGLang, our engine), vllm_regex (vLLM's
# structured_outputs), json_schema (llama.cpp, Ollama, LM Studio), json_object (llama-cpp-python).
MODES = ("auto", "regex", "vllm_regex", "json_schema", "json_object")
DEFAULT_MODE = "auto"
MODE_HELP = ("output constraint: auto (default) asks the server what it is and sends what it enforces; "
             "or pin one: regex (SGLang, newspicgen serve), vllm_regex (vLLM), json_schema (llama.cpp, "
             "Ollama, LM Studio), json_object (llama-cpp-python)")
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_TOKENS = 768  # SGLang's native default (128) would cut the JSON: clients always send this
DEFAULT_TEMPERATURE = 0.7
# A chat completion is a few KiB; a body past this is a wrong or hostile server, not an answer.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024

ENV_SERVER_URL = "NEWSPICGEN_SERVER_URL"
ENV_API_KEY = "NEWSPICGEN_API_KEY"
ENV_TIMEOUT = "NEWSPICGEN_TIMEOUT"
ENV_MODE = "NEWSPICGEN_MODE"
ENV_FAMILY = "NEWSPICGEN_FAMILY"
ENV_PRESET_DIR = "NEWSPICGEN_PRESET_DIR"
ENV_DEBUG = "NEWSPICGEN_DEBUG"
# the server setup takes torch from here instead of download.pytorch.org ("" = pip's own index configuration)
ENV_TORCH_INDEX = "NEWSPICGEN_TORCH_INDEX_URL"


def default_server_url() -> str:
    return os.environ.get(ENV_SERVER_URL, "").strip() or DEFAULT_SERVER_URL


def start_command(port: Optional[int] = None) -> str:
    """README's command, for hints: in the NewsPicGen folder `make serve` builds the server's
    own venv and starts it (the WebUI's python has no torch, so `python -m ...` there fails)."""
    return "make serve" + (f" PORT={port}" if port and port != DEFAULT_PORT else "")


def start_hint(port: Optional[int] = None) -> str:
    shown = f" --port {port}" if port and port != DEFAULT_PORT else ""
    # plain text: hints end up in toasts, terminals and JSON, where Markdown shows as typed
    return (f'start it with "{start_command(port)}" in the NewsPicGen folder '
            f'("newspicgen serve{shown}" where the package is pip-installed)')
