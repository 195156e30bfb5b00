"""Real SGLang behind `newspicgen serve --engine sglang`: finding it, its command line, running it.

SGLang pins its own torch / transformers, so it lives in a virtual environment
of its own: `--sglang-python PATH` or $NEWSPICGEN_SGLANG_PYTHON names that
environment's python (default: this one). On a CUDA GPU it gets a share of the
GPU and leaves the rest to Stable Diffusion; with `--device cpu` it runs
SGLang's CPU engine (Xeon with AMX), which needs SGLang's CPU kernel package.
With `--workers N` the launcher starts N SGLang servers and SGLang's own router
in front of them, so clients see one URL and a dead worker costs retries only.
"""
from __future__ import annotations

import json
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
    free_port,
    restore_signal_handlers,
    serve_until_stopped,
    wait_until_healthy,
    wait_until_serving,
)
from prompt_server.defaults import DEFAULT_HOST, SERVED_MODEL_NAME

ENV_SGLANG_PYTHON = "NEWSPICGEN_SGLANG_PYTHON"
READY_TIMEOUT_S = 900.0  # a first start downloads ~3 GB and captures CUDA graphs
CPU_MAX_TOTAL_TOKENS = 16384  # the CPU engine's KV cache in tokens: bounds the server's RAM
AMX_HEAD_DIM_MULTIPLE = 32  # SGLang's intel_amx attention kernel refuses other head sizes

# Run inside SGLang's python: what is installed there, without importing torch.
_PROBE = """
import importlib.metadata as m, importlib.util as u, json
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"sglang": version("sglang") if u.find_spec("sglang") else None,
                  "cpu_kernel": any(version(n) for n in ("sglang-kernel-cpu", "sgl-kernel-cpu")),
                  "router": u.find_spec("sglang_router") is not None}))
"""


@dataclass(frozen=True)
class SGLangInstall:
    python: str
    version: Optional[str]   # None: SGLang is not installed there
    cpu_kernel: bool         # SGLang's CPU kernel package is there (`--device cpu` works)
    router: bool             # sglang-router is there (`--workers N` works)


def sglang_python(cli_value: Optional[str] = None, environ: Optional[Dict[str, str]] = None) -> str:
    return engine_python(cli_value, ENV_SGLANG_PYTHON, environ)


def probe(python: str) -> SGLangInstall:
    """Ask `python` what it has; a python that does not run counts as 'no SGLang'."""
    found = ask_python(python, _PROBE)
    return SGLangInstall(python, found.get("sglang"), bool(found.get("cpu_kernel")), bool(found.get("router")))


def cpu_attention_backend(model: str) -> Optional[str]:
    """`torch_native` for a local model whose head size the AMX kernel refuses, else SGLang's default."""
    config_path = Path(model) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None  # a hub id or an odd config: SGLang's default (intel_amx) fits real Qwen2.5 shapes
    return None if head_dim % AMX_HEAD_DIM_MULTIPLE == 0 else "torch_native"


def sglang_command(*, model: str, host: str, port: int, device: str, context_length: int,
                   mem_fraction: float = 0.3, served_model_name: str = SERVED_MODEL_NAME,
                   api_key: Optional[str] = None, python: str = sys.executable,
                   max_total_tokens: int = CPU_MAX_TOTAL_TOKENS, extra: Sequence[str] = ()) -> List[str]:
    """launch_server's command line: bf16, llguidance grammars, and per device:
    cuda: a GPU share left for Stable Diffusion; cpu: the CPU engine's settings."""
    command = [python, "-m", "sglang.launch_server",
               "--model-path", model, "--host", host, "--port", str(port),
               "--dtype", "bfloat16", "--grammar-backend", "llguidance",
               "--served-model-name", served_model_name, "--context-length", str(context_length)]
    if device == "cpu":
        command += ["--device", "cpu", "--disable-overlap-schedule",  # SGLang's CPU docs
                    "--max-total-tokens", str(max_total_tokens),
                    # JSON-schema mode: no free whitespace a weak sample could loop on
                    "--constrained-json-disable-any-whitespace"]
        backend = cpu_attention_backend(model)
        if backend:
            command += ["--attention-backend", backend]
    else:
        command += ["--mem-fraction-static", str(mem_fraction),
                    # per-request seeds only count in this mode (a fixed seed repeats the prompt,
                    # and with the always-on script the whole picture)
                    "--enable-deterministic-inference"]
    if api_key:
        command += ["--api-key", api_key]
    return command + list(extra)


def sglang_environment(source: str, device: str, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ if base is None else base)
    if source == "modelscope":
        env["SGLANG_USE_MODELSCOPE"] = "true"
    if device == "cpu":
        env["SGLANG_USE_CPU_ENGINE"] = "1"  # without it SGLang looks for CUDA
    return env


def router_command(*, python: str, host: str, port: int, worker_urls: Sequence[str],
                   api_key: Optional[str] = None) -> List[str]:
    """SGLang's router: the one front door (it checks the key); round robin spreads short,
    independent requests evenly, where the default cache-aware policy may pin them to one worker."""
    command = [python, "-m", "sglang_router.launch_router", "--host", host, "--port", str(port),
               "--policy", "round_robin", "--worker-urls", *worker_urls]
    return command + (["--api-key", api_key] if api_key else [])


def run(*, install: SGLangInstall, model: str, source: str, host: str, port: int, device: str,
        context_length: int, mem_fraction: float, served_model_name: str, api_key: Optional[str],
        workers: int = 1, extra: Sequence[str] = ()) -> int:
    """Start SGLang (N workers + router when workers > 1), wait until it serves, serve until stopped."""
    if workers > 1 and not install.router:
        raise LaunchError(f"--workers {workers} needs SGLang's router in {install.python}: "
                          "pip install sglang-router there, or use --workers 1")
    children = Children(secret=api_key)
    previous = children.install_signal_handlers()
    env = sglang_environment(source, device)
    try:
        # behind the router, workers listen on loopback only and the router checks the key
        worker_host = host if workers == 1 else DEFAULT_HOST
        worker_ports = [port] if workers == 1 else [free_port(worker_host) for _ in range(workers)]
        for number, worker_port in enumerate(worker_ports, start=1):
            worker = children.start(sglang_command(
                model=model, host=worker_host, port=worker_port, device=device, context_length=context_length,
                mem_fraction=mem_fraction, served_model_name=served_model_name,
                api_key=api_key if workers == 1 else None, python=install.python, extra=extra), env)
            if workers > 1:
                print(f"worker {number}: {base_url(worker_host, worker_port)} (pid {worker.pid})", file=sys.stderr,
                      flush=True)
        worker_urls = [base_url(worker_host, p) for p in worker_ports]
        for url in worker_urls:
            wait_until_healthy(url, children.processes, timeout=READY_TIMEOUT_S, stop=lambda: children.stopping)
        router = None
        if workers > 1:
            router = children.start(router_command(python=install.python, host=host, port=port,
                                                   worker_urls=worker_urls, api_key=api_key), env)
            # the router's /health answers before it has registered a worker (/v1/models is then
            # 503 no_available_workers): ready once it lists every worker and serves the model
            wait_until_serving(base_url(host, port), children.processes, "SGLang's router", api_key=api_key,
                               stop=lambda: children.stopping, expect_in_workers=worker_urls)
        if device == "cpu":
            print("note: SGLang's CPU engine ignores per-request seeds (its deterministic mode needs a GPU "
                  "attention backend); use --engine local where the same seed must give the same prompt",
                  file=sys.stderr, flush=True)
        print(f"NewsPicGen prompt server (sglang {install.version}, {device}"
              + (f", {workers} workers behind the router" if workers > 1 else "")
              + f") ready at {base_url(host, port)}", flush=True)
        workers_alive = children.processes[:workers]
        # behind the router a dead worker only costs retries: serve while the router and one worker live
        return serve_until_stopped(children, lambda: (router is None or router.poll() is None)
                                   and any(p.poll() is None for p in workers_alive))
    except LaunchError:
        if children.stopping:  # Ctrl-C while it was starting: not an error
            return 0
        raise
    finally:
        children.stop_all()
        restore_signal_handlers(previous)
