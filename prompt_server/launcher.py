"""`python -m prompt_server serve`: NewsPicGen behind SGLang (GPU) or the embedded engine.

The sglang engine runs `python -m sglang.launch_server` as a child process
tuned to share one GPU with Stable Diffusion; the local engine is our own
transformers + llguidance server speaking the same protocol subset. Nothing
heavy is imported here: the local engine is imported inside run().
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, List, Optional

HELP = "start the prompt server (SGLang on a GPU, else the embedded engine)"

DEFAULT_MODEL = "blacker521/NewsPicGen"
DEFAULT_SERVED_NAME = "newspicgen"
MODELSCOPE_PREFIX = "modelscope:"
READY_TIMEOUT_S = 900.0  # first start downloads ~3 GB and captures CUDA graphs


class LaunchError(Exception):
    """A one-line reason the server cannot start, with what to do instead."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=("auto", "sglang", "local"), default="auto",
                        help="sglang (Linux + CUDA GPU), local (embedded, CPU or GPU), "
                             "or auto: sglang when installed and a CUDA GPU is present, else local")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="local folder, Hugging Face id, or modelscope:ID (default %(default)s)")
    parser.add_argument("--source", choices=("auto", "huggingface", "modelscope"), default="auto",
                        help="where a model id is downloaded from (modelscope when Hugging Face is unreachable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' from clients")
    parser.add_argument("--served-model-name", default=DEFAULT_SERVED_NAME)
    parser.add_argument("--context-length", type=int, default=4096)
    sgl = parser.add_argument_group("sglang engine")
    sgl.add_argument("--mem-fraction", type=float, default=0.3,
                     help="SGLang --mem-fraction-static: share of GPU memory for weights + KV cache; "
                          "the rest stays free for Stable Diffusion (default %(default)s)")
    local = parser.add_argument_group("local engine")
    local.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    local.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                       help="auto: bfloat16 on CUDA and on CPUs with bf16 kernels (AVX-512/AMX), else float32")
    local.add_argument("--quantize", choices=("none", "int8"), default="none",
                       help="int8: int8 weight-only linears, faster decoding on a CPU, slightly different output")
    local.add_argument("--max-batch-size", type=int, default=8,
                       help="concurrent requests decoded together (default %(default)s)")
    local.add_argument("--api-key-file", default=None,
                       help="file holding the API key (or set NEWSPICGEN_API_KEY); "
                            "safer than --api-key, which other users can read in the process list")
    local.add_argument("--max-body-bytes", type=int, default=1 << 20,
                       help="larger request bodies get HTTP 413 (default %(default)s)")
    local.add_argument("--client-timeout", type=float, default=10.0,
                       help="seconds a client may take to send a request's headers, or each part of "
                            "its body, before the connection is closed (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        check_arguments(args)
        engine = choose_engine(args.engine)
        if engine == "sglang":
            return run_sglang(args)
        return run_local(args)
    except LaunchError as exc:
        print(f"newspicgen serve: {exc}", file=sys.stderr)
        return 2


def check_arguments(args: argparse.Namespace) -> None:
    if not 0 < args.mem_fraction < 1:
        raise LaunchError(f"--mem-fraction {args.mem_fraction} must be between 0 and 1 (e.g. 0.3)")
    if args.max_batch_size < 1:
        raise LaunchError(f"--max-batch-size {args.max_batch_size} must be at least 1")
    if not 0 <= args.port <= 65535:
        raise LaunchError(f"--port {args.port} must be between 0 and 65535")
    if args.context_length < 256:
        raise LaunchError(f"--context-length {args.context_length} is too small for a news article; use 4096")


# ---- engine choice ---------------------------------------------------------

def sglang_installed() -> bool:
    return importlib.util.find_spec("sglang") is not None


def cuda_gpu_present() -> bool:
    """Ask torch when it is installed (without importing it here otherwise), else nvidia-smi."""
    if importlib.util.find_spec("torch") is not None:
        import torch
        return bool(torch.cuda.is_available())
    if shutil.which("nvidia-smi"):
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    return False


def choose_engine(requested: str, *, has_sglang: Callable[[], bool] = sglang_installed,
                  has_gpu: Callable[[], bool] = cuda_gpu_present) -> str:
    if requested == "local":
        return "local"
    if requested == "sglang":
        if not has_sglang():
            raise LaunchError("SGLang is not installed in this Python environment "
                              "(pip install 'sglang[all]' on Linux with a CUDA GPU); "
                              "or use --engine local")
        if not has_gpu():
            raise LaunchError("SGLang needs a CUDA GPU and none is visible; use --engine local")
        return "sglang"
    return "sglang" if has_sglang() and has_gpu() else "local"


def split_model_source(model: str, source: str = "auto") -> tuple:
    """`modelscope:ID` -> (ID, "modelscope"); a local folder or a plain id keeps `source`."""
    if model.startswith(MODELSCOPE_PREFIX):
        return model[len(MODELSCOPE_PREFIX):], "modelscope"
    return model, source


# ---- sglang ----------------------------------------------------------------

def sglang_command(*, model: str, host: str, port: int, mem_fraction: float, context_length: int,
                   served_model_name: str = DEFAULT_SERVED_NAME, api_key: Optional[str] = None,
                   python: str = sys.executable) -> List[str]:
    """The launch_server command line: bf16, llguidance grammars, a GPU share left for SD."""
    command = [python, "-m", "sglang.launch_server",
               "--model-path", model, "--host", host, "--port", str(port),
               "--dtype", "bfloat16", "--mem-fraction-static", str(mem_fraction),
               "--grammar-backend", "llguidance", "--served-model-name", served_model_name,
               "--context-length", str(context_length)]
    if api_key:
        command += ["--api-key", api_key]
    return command


def sglang_environment(source: str, base: Optional[dict] = None) -> dict:
    env = dict(os.environ if base is None else base)
    if source == "modelscope":
        env["SGLANG_USE_MODELSCOPE"] = "true"
    return env


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll GET /health until it answers 200; LaunchError if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise LaunchError(f"SGLang exited with code {code} before it was ready; see its log above")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise LaunchError(f"SGLang did not answer {url}/health within {timeout:.0f} s")


def run_sglang(args: argparse.Namespace) -> int:
    model, source = split_model_source(args.model, args.source)
    command = sglang_command(model=model, host=args.host, port=args.port,
                             mem_fraction=args.mem_fraction, context_length=args.context_length,
                             served_model_name=args.served_model_name, api_key=args.api_key)
    shown = [("***" if i and command[i - 1] == "--api-key" else part) for i, part in enumerate(command)]
    print("starting: " + " ".join(shown), file=sys.stderr, flush=True)
    # its own session: a terminal's Ctrl-C reaches the child once, through us
    process = subprocess.Popen(command, env=sglang_environment(source), start_new_session=True)
    stopping = []

    def forward(signum, frame):
        stopping.append(signum)
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = base_url(args.host, args.port)
        try:
            wait_until_healthy(url, process)
        except LaunchError:
            if stopping:  # the user stopped it while it was starting
                return _stop(process)
            raise
        print(f"NewsPicGen prompt server (sglang) ready at {url}", flush=True)
        return process.wait()
    except LaunchError:
        _stop(process)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# ---- local -----------------------------------------------------------------

def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise LaunchError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None


def local_api_key(args: argparse.Namespace, environ=None) -> Optional[str]:
    """--api-key-file, else NEWSPICGEN_API_KEY, else --api-key (argv: visible to every local user)."""
    environ = os.environ if environ is None else environ
    path = getattr(args, "api_key_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise LaunchError(f"cannot read --api-key-file {path} ({exc.strerror}); "
                              f"point it at a file holding the key") from None
        if not key:
            raise LaunchError(f"--api-key-file {path} is empty; write the key into it")
        return key
    if environ.get("NEWSPICGEN_API_KEY"):
        return environ["NEWSPICGEN_API_KEY"]
    if args.api_key:
        print("newspicgen serve: warning: --api-key is visible to other users in the process list; "
              "prefer NEWSPICGEN_API_KEY or --api-key-file", file=sys.stderr)
    return args.api_key or None


def run_local(args: argparse.Namespace) -> int:
    for name in ("torch", "transformers", "llguidance", "fastapi", "uvicorn"):
        if importlib.util.find_spec(name) is None:
            raise LaunchError(f"the local engine needs {name}: pip install 'newspicgen-sdwebui[server]' "
                              f"(install torch for your platform first)")
    if args.max_body_bytes < 1024:
        raise LaunchError(f"--max-body-bytes {args.max_body_bytes} is too small for a news article; use 1048576")
    if not 0 < args.client_timeout <= 3600:
        raise LaunchError(f"--client-timeout {args.client_timeout} must be between 0 and 3600 seconds")
    api_key = local_api_key(args)
    _check_port_free(args.host, args.port)  # fail in a second, not after loading the model
    model, source = split_model_source(args.model, args.source)
    from .engine.http_server import ServerLimits, build_service, listen, make_server
    from .engine.model_loader import ModelLoadError

    limits = ServerLimits(max_body_bytes=args.max_body_bytes, body_timeout=args.client_timeout,
                          header_timeout=args.client_timeout)
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        service = build_service(model, source=source, device=args.device, dtype=args.dtype,
                                quantize=None if args.quantize == "none" else args.quantize,
                                max_batch_size=args.max_batch_size, context_length=args.context_length,
                                served_model_name=args.served_model_name, api_key=api_key, limits=limits)
    except ModelLoadError as exc:
        raise LaunchError(str(exc)) from None
    try:
        sock = listen(args.host, args.port, limits.backlog)
    except OSError as exc:
        service.scheduler.close()
        raise LaunchError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                          f"pick another --port") from None
    loaded = service.generator.loaded
    dtype = str(next(loaded.model.parameters()).dtype).replace("torch.", "")
    print(f"NewsPicGen prompt server (local engine, {loaded.device}, {dtype}"
          f"{', int8 weights' if args.quantize == 'int8' else ''}) ready at "
          f"{base_url(args.host, sock.getsockname()[1])}", flush=True)
    try:  # uvicorn handles SIGINT / SIGTERM: it stops accepting, lets requests finish, then returns
        make_server(service, limits).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        service.scheduler.close()
    return 0
