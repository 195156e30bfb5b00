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
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

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


class LaunchError(Exception):
    """A one-line reason the server cannot start, with what to do instead."""


@dataclass(frozen=True)
class SGLangInstall:
    python: str
    version: Optional[str]   # None: SGLang is not installed there
    cpu_kernel: bool         # SGLang's CPU kernel package is there (`--device cpu` works)
    router: bool             # sglang-router is there (`--workers N` works)


def sglang_python(cli_value: Optional[str] = None, environ: Optional[Dict[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    return cli_value or env.get(ENV_SGLANG_PYTHON, "").strip() or sys.executable


def probe(python: str) -> SGLangInstall:
    """Ask `python` what it has; a python that does not run counts as 'no SGLang'."""
    try:
        result = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
        found = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        found = {}
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


def base_url(host: str, port: int) -> str:
    shown = DEFAULT_HOST if host in ("0.0.0.0", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def masked(command: Sequence[str]) -> str:
    return " ".join("***" if i and command[i - 1] == "--api-key" else part for i, part in enumerate(command))


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, processes: Sequence[subprocess.Popen], what: str = "SGLang",
                       timeout: float = READY_TIMEOUT_S) -> None:
    """Poll GET /health until it answers 200; LaunchError if a child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            code = process.poll()
            if code is not None:
                raise LaunchError(f"{what} exited with code {code} before it was ready; see its log above")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise LaunchError(f"{what} did not answer {url}/health within {timeout:.0f} s")


class Children:
    """The processes we started, each leading its own process group.

    SGLang forks a scheduler and a detokenizer; stopping the group, not just
    the pid, is what leaves nothing behind. A terminal's Ctrl-C reaches them
    once, through us (forward()).
    """

    def __init__(self, secret: Optional[str] = None) -> None:
        self.processes: List[subprocess.Popen] = []
        self.stopping = False
        self.secret = secret

    def start(self, command: List[str], env: Dict[str, str]) -> subprocess.Popen:
        # SGLang logs its whole ServerArgs, API key included: with a key, its output
        # passes through us and the key is masked on the way
        relay = bool(self.secret)
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdout=subprocess.PIPE if relay else None,
                                   stderr=subprocess.STDOUT if relay else None,
                                   text=relay, errors="replace" if relay else None)
        self.processes.append(process)
        if relay:
            threading.Thread(target=self._relay, args=(process,), daemon=True).start()
        print(f"started (pid {process.pid}): {masked(command)}", file=sys.stderr, flush=True)
        return process

    def _relay(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None and self.secret
        for line in process.stdout:
            sys.stderr.write(line.replace(self.secret, "***"))
            sys.stderr.flush()

    def forward(self, signum: int, frame: object) -> None:
        self.stopping = True
        for process in self.processes:
            _signal_group(process, signum)

    def stop_all(self, timeout: float = 30.0) -> int:
        for process in reversed(self.processes):  # the router first, then the workers
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes:  # the group too: SGLang's own children may outlive their parent
            _signal_group(process, signal.SIGKILL)
            process.wait()
        return max((abs(p.returncode or 0) for p in self.processes), default=0)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run(*, install: SGLangInstall, model: str, source: str, host: str, port: int, device: str,
        context_length: int, mem_fraction: float, served_model_name: str, api_key: Optional[str],
        workers: int = 1, extra: Sequence[str] = ()) -> int:
    """Start SGLang (N workers + router when workers > 1), wait until ready, serve until stopped."""
    if workers > 1 and not install.router:
        raise LaunchError(f"--workers {workers} needs SGLang's router in {install.python}: "
                          "pip install sglang-router there, or use --workers 1")
    children = Children(secret=api_key)
    previous = {sig: signal.signal(sig, children.forward) for sig in (signal.SIGINT, signal.SIGTERM)}
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
            wait_until_healthy(url, children.processes)
        router = None
        if workers > 1:
            router = children.start(router_command(python=install.python, host=host, port=port,
                                                   worker_urls=worker_urls, api_key=api_key), env)
            wait_until_healthy(base_url(host, port), children.processes, what="SGLang's router", timeout=120)
        if device == "cpu":
            print("note: SGLang's CPU engine ignores per-request seeds (its deterministic mode needs a GPU "
                  "attention backend); use --engine local where the same seed must give the same prompt",
                  file=sys.stderr, flush=True)
        print(f"NewsPicGen prompt server (sglang {install.version}, {device}"
              + (f", {workers} workers behind the router" if workers > 1 else "")
              + f") ready at {base_url(host, port)}", flush=True)
        workers_alive = children.processes[:workers]
        # behind the router a dead worker only costs retries: serve while the router and one worker live
        while not children.stopping and (router is None or router.poll() is None) \
                and any(p.poll() is None for p in workers_alive):
            time.sleep(0.5)
        return 0 if children.stopping else 1
    except LaunchError:
        if children.stopping:  # Ctrl-C while it was starting: not an error
            return 0
        raise
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
