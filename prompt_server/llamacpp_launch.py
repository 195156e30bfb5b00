"""llama.cpp behind `newspicgen serve --engine llamacpp`: llama-cpp-python's OpenAI server on a GGUF.

The CPU route many Windows and Mac users know (the engine under Ollama and LM
Studio). It runs from the environment `--llamacpp-python PATH` or
$NEWSPICGEN_LLAMACPP_PYTHON names (`pip install 'llama-cpp-python[server]'`
there). The model is a GGUF file (`newspicgen gguf MODEL_DIR` makes one).
Clients send llama-cpp-python's own constraint form,
`response_format: {"type": "json_object", "schema": ...}`: its server answers
OpenAI's `json_schema` type with HTTP 500, ignores `regex`, and a GBNF grammar
it cannot parse takes the whole server down.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from prompt_server.child_processes import (
    Children,
    LaunchError,
    ask_python,
    base_url,
    engine_python,
    restore_signal_handlers,
    serve_until_stopped,
    wait_until_serving,
)
from prompt_server.defaults import SERVED_MODEL_NAME

ENV_LLAMACPP_PYTHON = "NEWSPICGEN_LLAMACPP_PYTHON"
READY_TIMEOUT_S = 300.0  # loading a GGUF is a memory map: seconds, unless the disk is slow

_PROBE = """
import importlib.metadata as m, importlib.util as u, json
try:
    version = m.version("llama-cpp-python") if u.find_spec("llama_cpp") else None
except m.PackageNotFoundError:
    version = None
server = all(u.find_spec(n) for n in ("fastapi", "uvicorn", "sse_starlette", "pydantic_settings", "starlette_context"))
print(json.dumps({"version": version, "server": server}))
"""


@dataclass(frozen=True)
class LlamaCppInstall:
    python: str
    version: Optional[str]  # None: llama-cpp-python is not installed there
    server: bool            # its [server] extra is there


def llamacpp_python(cli_value: Optional[str] = None, environ: Optional[Dict[str, str]] = None) -> str:
    return engine_python(cli_value, ENV_LLAMACPP_PYTHON, environ)


def probe(python: str) -> LlamaCppInstall:
    found = ask_python(python, _PROBE)
    return LlamaCppInstall(python, found.get("version"), bool(found.get("server")))


def gguf_file(model: str) -> str:
    """The GGUF to serve: `model` itself, or the one .gguf in the folder `model`."""
    path = Path(os.path.expanduser(model))
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(path)
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(found) == 1:
        return str(found[0])
    if len(found) > 1:
        raise LaunchError(f"{model} holds {len(found)} GGUF files; pass one of them as --model")
    raise LaunchError(f"--engine llamacpp serves a GGUF file, and {model!r} is none; make one with "
                      f"`newspicgen gguf MODEL_FOLDER` (see docs/engines.md) and pass it as --model")


def check_install(install: LlamaCppInstall) -> None:
    if install.version is None:
        raise LaunchError(f"llama-cpp-python is not installed for {install.python}; pip install "
                          f"'llama-cpp-python[server]' in a venv and pass --llamacpp-python PATH "
                          f"(or set {ENV_LLAMACPP_PYTHON})")
    if not install.server:
        raise LaunchError(f"llama-cpp-python {install.version} in {install.python} lacks its server; "
                          "pip install 'llama-cpp-python[server]' there")


def llamacpp_command(*, model: str, host: str, port: int, device: str, context_length: int,
                     served_model_name: str = SERVED_MODEL_NAME, python: str = sys.executable,
                     extra: Sequence[str] = ()) -> List[str]:
    """llama_cpp.server's command line: the GGUF's own chat template (no --chat_format), every
    layer on the GPU when there is one."""
    return [python, "-m", "llama_cpp.server", "--model", model, "--model_alias", served_model_name,
            "--host", host, "--port", str(port), "--n_ctx", str(context_length),
            "--n_gpu_layers", "-1" if device == "cuda" else "0", *extra]


def llamacpp_environment(api_key: Optional[str], base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Its settings are pydantic settings: the key goes in API_KEY, off the command line."""
    env = dict(os.environ if base is None else base)
    if api_key:
        env["API_KEY"] = api_key
    else:
        env.pop("API_KEY", None)
    return env


def run(*, install: LlamaCppInstall, model: str, host: str, port: int, device: str, context_length: int,
        served_model_name: str, api_key: Optional[str], extra: Sequence[str] = ()) -> int:
    """Start llama-cpp-python's server, wait until it lists the model, serve until stopped."""
    check_install(install)
    gguf = gguf_file(model)
    children = Children(secret=api_key)
    previous = children.install_signal_handlers()
    url = base_url(host, port)
    try:
        server = children.start(llamacpp_command(model=gguf, host=host, port=port, device=device,
                                                 context_length=context_length,
                                                 served_model_name=served_model_name, python=install.python,
                                                 extra=extra),
                                llamacpp_environment(api_key))
        # it has no /health: its model list answers once the GGUF is loaded
        wait_until_serving(url, children.processes, "llama-cpp-python", api_key=api_key,
                           timeout=READY_TIMEOUT_S, stop=lambda: children.stopping)
        print(f"NewsPicGen prompt server (llama-cpp-python {install.version}, {device}, {Path(gguf).name}) "
              f"ready at {url}", flush=True)
        return serve_until_stopped(children, lambda: server.poll() is None)
    except LaunchError:
        if children.stopping:
            return 0
        raise
    finally:
        children.stop_all()
        restore_signal_handlers(previous)
