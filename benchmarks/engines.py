"""Every engine present on this machine, one run, same model shape, same constrained NewsPicGen requests.

    python benchmarks/engines.py [--articles 4] [--levels 1,4] [--model DIR]
        [--engines local-bf16,local-int8,local-int4,sglang,vllm,llamacpp]
        [--sglang-python PATH] [--vllm-python PATH] [--llamacpp-python PATH] [--llamacpp-sdist PATH]

A Qwen2.5-1.5B-shaped random model (bf16, Qwen's real tokenizer; built once
into --model unless it exists, about 3 GB) is served by each engine in turn,
alone on the machine, the way its users start it:

- local-bf16 (the default, prepacked bf16 linears on this CPU), local-bf16-plain (`--quantize none`: torch's
  own bf16 linears), local-int8, local-int4: `python -m prompt_server serve --engine local --device cpu`
- sglang:   `python -m prompt_server serve --engine sglang --device cpu` (SGLang's CPU engine)
- vllm:     `python -m vllm.entrypoints.openai.api_server` from its own venv (llguidance backend)
- llamacpp: `python -m llama_cpp.server` on a bf16 GGUF converted from the same folder (the converter comes
  from llama-cpp-python's sdist), with `--n_threads` = the CPU count like torch (its default is half)

Each request is a NewsPicGen instruction from examples/news.jsonl with our
output constraint, string bounds tightened so that a random model's answer
stays short (the constrained path is what is measured, not the model): the
regex for the local engine and SGLang (`regex`) and vLLM (`structured_outputs`),
the equivalent bounded JSON schema for llama.cpp (its `json_object` + schema, with
the JSON-string patterns NewsPicGen's client adds for it).

Columns: prefill = time to the first streamed token of one request;
decode = (last token - first token) / (tokens - 1) of that request (tokens: the
stream's usage; llama-cpp-python sends none, so its content chunks, one per token);
passes/article and tokens/article over the concurrency-1 run (the local
engine counts its forward passes in /metrics; the others run one pass per
token); ms/pass = decode time / decode passes; floor = bytes of weights one
pass reads / read bandwidth (the faster of two probes, one before the engines and one after; the
load drifts); articles/min at each concurrency.
Engines that are not installed are listed with the reason and skipped.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from prompt_server.client import constraint_fields  # noqa: E402
from prompt_server.instruction import News, build_instruction  # noqa: E402
from prompt_server.schema import FIELD_ORDER, output_json_schema, output_regex  # noqa: E402
from prompt_server.sglang_launch import probe, sglang_python  # noqa: E402
from tests.support.loopback import free_port, stop_process  # noqa: E402

# Short fields: a random-weight model fills every field to its bound.
BOUNDS = {"ch_keyword": 4, "ch_prompt": 12, "en_keyword": 6, "en_prompt": 24}
HARNESS = Path("/work/harness")
QWEN_1_5B_PARAMS = {"hidden": 1536, "intermediate": 8960, "layers": 28, "heads": 12, "kv_heads": 2,
                    "vocab": 151936}


def build_model(folder: Path) -> None:
    if (folder / "config.json").exists():
        return
    import torch

    from benchmarks.constraint_overhead import qwen_tokenizer, random_qwen_1_5b
    print(f"building a Qwen2.5-1.5B-shaped random model in {folder} ...", file=sys.stderr, flush=True)
    model = random_qwen_1_5b(torch.bfloat16, torch.device("cpu"))
    tokenizer = qwen_tokenizer()
    # Qwen2.5's own ids: SGLang's grammar backend needs the model's end-of-turn tokens
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    model.config.eos_token_id = im_end
    model.generation_config.eos_token_id = [im_end, endoftext]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def bytes_per_pass(bits: float) -> float:
    """Weight bytes one decode pass reads: every linear and the (tied) LM head; int formats add their scales."""
    p = QWEN_1_5B_PARAMS
    kv = p["hidden"] // p["heads"] * p["kv_heads"]
    per_layer = p["hidden"] * (p["hidden"] * 2 + kv * 2) + 3 * p["hidden"] * p["intermediate"]
    weights = p["layers"] * per_layer + p["vocab"] * p["hidden"]
    scales = {16: 0, 8: 2 / p["hidden"], 4: 4 / 128}[int(bits)]  # int8: a bf16 scale per row; int4: 2 per group
    return weights * (bits / 8 + scales)


def read_bandwidth_gbs(size_bytes: int = 1 << 30, reps: int = 5) -> float:
    """The faster of two readers, best of `reps`: a float32 sum of 1 GiB, and oneDNN's bf16
    matrix-vector product over 1 GiB of prepacked weights (the sum alone reads slower than the
    best kernels here, which would put the floor too low)."""
    import torch

    def best_seconds(run) -> float:
        best = float("inf")
        for _ in range(reps):
            begin = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - begin)
        return best

    data = torch.ones(size_bytes // 4, dtype=torch.float32)
    rates = [size_bytes / best_seconds(data.sum)]
    del data
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        weight = torch.ops.mkldnn._reorder_linear_weight(
            torch.ones(size_bytes // 2 // 1536, 1536, dtype=torch.bfloat16), 1)
        x = torch.ones(1, 1536, dtype=torch.bfloat16)
        rates.append(size_bytes / best_seconds(lambda: torch.ops.mkldnn._linear_pointwise(
            x, weight, None, "none", [], "")))
    return max(rates) / 1e9


def messages(limit: int) -> List[List[dict]]:
    rows = [json.loads(line) for line in (REPO / "examples" / "news.jsonl").read_text(encoding="utf-8").split("\n")
            if line.strip()]
    return [[{"role": "user", "content": build_instruction(News(r["title"], r["content"])).text}]
            for r in rows[:limit]]


def bounded_schema() -> dict:
    schema = output_json_schema()
    for name, high in BOUNDS.items():
        schema["properties"][name]["maxLength"] = high
    return schema


@dataclass
class Engine:
    name: str
    command: List[str]
    bits: int = 16
    env: Dict[str, str] = field(default_factory=dict)
    constraint: Callable[[], dict] = lambda: {"regex": output_regex(BOUNDS)}
    counts_passes: bool = False      # serves /metrics with newspicgen_forward_passes_total
    ready_line: Optional[str] = None  # wait for this in the log (our launcher), else GET /health
    files: List[Path] = field(default_factory=list)  # made for this run, removed after


def converter_from_sdist(sdist: str) -> Optional[Path]:
    """convert_hf_to_gguf.py with the `conversion` and gguf-py packages it imports, from llama.cpp's sources
    inside llama-cpp-python's sdist (PyPI's gguf has no converter), unpacked into a temporary folder."""
    import tarfile

    found = [Path(p) for p in sorted(glob.glob(sdist))]
    if not found or not found[-1].is_file():
        return None
    folder = Path(tempfile.mkdtemp(prefix="llama-convert-"))
    with tarfile.open(found[-1]) as tar:
        wanted = [m for m in tar.getmembers() if re.match(
            r"[^/]+/vendor/llama\.cpp/(convert_hf_to_gguf\.py|conversion/|gguf-py/)", m.name)]
        for member in wanted:
            member.name = member.name.split("/vendor/llama.cpp/", 1)[1]
        tar.extractall(folder, members=wanted, filter="data")
    converter = folder / "convert_hf_to_gguf.py"
    return converter if converter.exists() else None


# local engines: extra serve arguments, bits per weight
LOCAL = {"local-bf16": ([], 16),                          # --quantize auto: prepacked bf16 on this CPU
         "local-bf16-plain": (["--quantize", "none"], 16),  # torch's own bf16 linears
         "local-int8": (["--quantize", "int8"], 8),
         "local-int4": (["--quantize", "int4"], 4)}


def plan(args, model: Path, port: int) -> List[object]:
    """Engines to run (Engine) or to skip (a 'name: reason' string), in the order asked."""
    out: List[object] = []
    common = ["--device", "cpu", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
              "--context-length", "2048"]
    for name in args.engines.split(","):
        if name in LOCAL:
            extra, bits = LOCAL[name]
            out.append(Engine(name, [sys.executable, "-m", "prompt_server", "serve", "--engine", "local", *common,
                                     *extra], bits=bits, counts_passes=True, ready_line="ready at"))
        elif name == "sglang":
            python = sglang_python(args.sglang_python)
            install = probe(python)
            if install.version is None or not install.cpu_kernel:
                out.append(f"sglang: skipped (no SGLang with its CPU kernel for {python}: "
                           f"{'not installed' if install.version is None else 'no CPU kernel'})")
                continue
            out.append(Engine(name, [sys.executable, "-m", "prompt_server", "serve", "--engine", "sglang", *common,
                                     "--sglang-python", python], ready_line="ready at"))
        elif name == "vllm":
            python = args.vllm_python
            if not python or not Path(python).exists():
                out.append(f"vllm: skipped (no vLLM venv at {python or '--vllm-python'})")
                continue
            out.append(Engine(name, [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                                     "--served-model-name", "newspicgen", "--dtype", "bfloat16",
                                     "--max-model-len", "2048", "--host", "127.0.0.1", "--port", str(port),
                                     "--structured-outputs-config.backend", "guidance"],
                              env={"VLLM_CPU_KVCACHE_SPACE": "1"},
                              constraint=lambda: {"structured_outputs": {"regex": output_regex(BOUNDS)}}))
        elif name == "llamacpp":
            python, converter = args.llamacpp_python, converter_from_sdist(args.llamacpp_sdist)
            if not python or not Path(python).exists():
                out.append(f"llamacpp: skipped (no llama-cpp-python venv at {python or '--llamacpp-python'})")
                continue
            if converter is None:
                out.append(f"llamacpp: skipped (no llama-cpp-python sdist at {args.llamacpp_sdist} to take "
                           "convert_hf_to_gguf.py from)")
                continue
            gguf = model / "model.bf16.gguf"
            if not gguf.exists():
                env = dict(os.environ, PYTHONPATH=str(Path(converter).parent / "gguf-py"))
                done = subprocess.run([sys.executable, converter, str(model), "--outtype", "bf16",
                                       "--outfile", str(gguf)], env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    out.append(f"llamacpp: skipped (GGUF conversion failed: {done.stderr.strip()[-300:]})")
                    continue
            out.append(Engine(name, [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
                                     "newspicgen", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                                     # its default decode threads are cpu_count // 2 (it assumes two
                                     # hyperthreads a core); torch decodes on every core
                                     "--n_threads", str(os.cpu_count() or 1)],
                              # what NewsPicGen's client sends it: json_object + the schema with a JSON-string
                              # pattern per string (its schema converter lets raw control characters in)
                              constraint=lambda: constraint_fields("json_object", "", bounded_schema(),
                                                                   "newspicgen")))
        else:
            out.append(f"{name}: unknown engine")
    return out


def start(engine: Engine, url: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **engine.env)
    log = tempfile.NamedTemporaryFile(prefix=f"engines-{engine.name}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(engine.command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{engine.name} exited:\n{Path(log.name).read_text(errors='replace')[-3000:]}")
        try:
            if engine.ready_line is not None:
                if engine.ready_line in Path(log.name).read_text(errors="replace"):
                    return process
            elif any(requests.get(url + path, timeout=2).status_code == 200
                     for path in ("/health", "/v1/models")):  # llama-cpp-python has no /health
                return process
        except requests.RequestException:
            pass
        time.sleep(2)
    stop_process(process)
    raise RuntimeError(f"{engine.name} did not start within 20 minutes (log: {log.name})")


def body(engine: Engine, chat: List[dict], stream: bool) -> dict:
    return {"model": "newspicgen", "messages": chat, "max_tokens": 256, "temperature": 0.7, "seed": 1,
            "stream": stream, **engine.constraint(),
            **({"stream_options": {"include_usage": True}} if stream else {})}


def forward_passes(url: str) -> Optional[float]:
    text = requests.get(url + "/metrics", timeout=10).text
    found = re.search(r"^newspicgen_forward_passes_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def check_answer(text: str) -> None:
    data = json.loads(text)
    assert list(data) == list(FIELD_ORDER), f"not NewsPicGen's JSON: {text[:200]}"


def one_streamed(engine: Engine, url: str, chat: List[dict]) -> Dict[str, float]:
    passes_before = forward_passes(url) if engine.counts_passes else None
    begin = time.perf_counter()
    first = last = None
    tokens, chunks, text = 0, 0, ""
    with requests.post(url + "/v1/chat/completions", json=body(engine, chat, True), stream=True,
                       timeout=1800) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0].get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
                text += chunk["choices"][0]["delta"]["content"]
    # llama-cpp-python ignores stream_options (no usage chunk) but streams one chunk per generated token
    # (it joins tokens only to complete a UTF-8 character or to hold back a stop-sequence prefix)
    tokens = tokens or chunks
    assert first and last and tokens > 1, "no streamed tokens"
    check_answer(text)
    passes = tokens if passes_before is None else forward_passes(url) - passes_before  # type: ignore[operator]
    return {"prefill_ms": (first - begin) * 1000, "decode_ms_per_token": (last - first) * 1000 / (tokens - 1),
            "decode_ms_per_pass": (last - first) * 1000 / max(1, passes - 1), "tokens": tokens, "passes": passes}


def articles_per_minute(engine: Engine, url: str, chats: List[List[dict]], concurrency: int) -> Dict[str, float]:
    def one(chat) -> int:
        r = requests.post(url + "/v1/chat/completions", json=body(engine, chat, False), timeout=3600)
        r.raise_for_status()
        reply = r.json()
        assert reply["choices"][0]["finish_reason"] == "stop", reply["choices"][0]["finish_reason"]
        check_answer(reply["choices"][0]["message"]["content"])
        return int(reply["usage"]["completion_tokens"])

    passes_before = forward_passes(url) if engine.counts_passes else None
    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, chats))
    minutes = (time.perf_counter() - begin) / 60
    passes = tokens if passes_before is None else forward_passes(url) - passes_before  # type: ignore[operator]
    return {"per_min": len(chats) / minutes, "tokens": tokens / len(chats), "passes": passes / len(chats)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(Path(tempfile.gettempdir()) / "newspicgen-qwen1.5b-random"))
    parser.add_argument("--articles", type=int, default=4)
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--engines", default="local-bf16,local-bf16-plain,local-int8,local-int4,sglang,vllm,llamacpp")
    parser.add_argument("--sglang-python", default=os.environ.get("NEWSPICGEN_SGLANG_PYTHON")
                        or str(HARNESS / "sglang-cpu/venv/bin/python"))
    parser.add_argument("--vllm-python", default=os.environ.get("NEWSPICGEN_VLLM_PYTHON")
                        or str(HARNESS / "vllm/venv/bin/python"))
    parser.add_argument("--llamacpp-python", default=os.environ.get("NEWSPICGEN_LLAMACPP_PYTHON")
                        or str(HARNESS / "llamacpp/venv/bin/python"))
    parser.add_argument("--llamacpp-sdist", default=str(HARNESS / "llamacpp/src/llama_cpp_python-*.tar.gz"),
                        help="llama-cpp-python's sdist: its llama.cpp sources carry the HF -> GGUF converter")
    args = parser.parse_args()
    model = Path(args.model)
    build_model(model)
    bandwidth = read_bandwidth_gbs()
    chats = messages(args.articles)
    levels = [int(x) for x in args.levels.split(",")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"read bandwidth {bandwidth:.1f} GB/s; load average {os.getloadavg()}", flush=True)
    results: List[object] = []  # per engine: its figures (dict), or a 'name: why' line
    for engine in plan(args, model, port):
        if isinstance(engine, str):
            print(engine, flush=True)
            results.append(engine)
            continue
        assert isinstance(engine, Engine)
        try:
            process = start(engine, url)
        except RuntimeError as exc:
            print(f"{engine.name}: failed to start: {exc}", flush=True)
            results.append(f"{engine.name}: failed to start (see the run's output)")
            continue
        try:
            one_streamed(engine, url, chats[0])  # warm-up: grammar compile, first allocations
            timing = [one_streamed(engine, url, chat) for chat in chats[:2]]
            row = {key: statistics.median(t[key] for t in timing) for key in timing[0]}
            runs = {level: articles_per_minute(engine, url, chats, level) for level in levels}
            results.append({"engine": engine, "row": row, "runs": runs})
            print(table_row(engine, row, runs, levels, bandwidth), f"load {os.getloadavg()[0]:.1f}", flush=True)
        except Exception as exc:  # one engine's failure is a row, not the end of the run
            print(f"{engine.name}: failed: {type(exc).__name__}: {exc}", flush=True)
            results.append(f"{engine.name}: failed: {type(exc).__name__}: {str(exc)[:120]}")
        finally:
            process.send_signal(2)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                stop_process(process)
    # the floor takes the fastest read seen, before or after the engines: the machine's load drifts
    bandwidth_end = read_bandwidth_gbs()
    best = max(bandwidth, bandwidth_end)
    print(f"\nread bandwidth {bandwidth:.1f} GB/s at the start, {bandwidth_end:.1f} GB/s at the end: floor at "
          f"{best:.1f} GB/s; load average at the end {os.getloadavg()}")
    print("| engine | prefill ms | decode ms/token | passes / tokens per article | ms/pass | floor ms | "
          "ratio to floor | " + " | ".join(f"articles/min c{level}" for level in levels) + " |")
    print("|---" * (7 + len(levels)) + "|")
    for result in results:
        if isinstance(result, str):
            print(f"| {result.split(':')[0]} | {result.split(': ', 1)[1]} |")
        else:
            assert isinstance(result, dict)
            print(table_row(result["engine"], result["row"], result["runs"], levels, best))
    return 0


def table_row(engine: Engine, row: Dict[str, float], runs: Dict[int, Dict[str, float]], levels: List[int],
              bandwidth: float) -> str:
    floor_ms = bytes_per_pass(engine.bits) / bandwidth / 1e6
    c1 = runs[levels[0]]
    return (f"| {engine.name} | {row['prefill_ms']:.0f} | {row['decode_ms_per_token']:.0f} | "
            f"{c1['passes']:.1f} / {c1['tokens']:.1f} | {row['decode_ms_per_pass']:.0f} | {floor_ms:.0f} | "
            f"{row['decode_ms_per_pass'] / floor_ms:.2f} | "
            + " | ".join(f"{runs[level]['per_min']:.2f}" for level in levels) + " |")


if __name__ == "__main__":
    sys.exit(main())
