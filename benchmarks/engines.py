"""The embedded engine beside real SGLang on this machine's CPU, same model, same constrained requests.

    python benchmarks/engines.py [--sglang-python PATH] [--articles 4] [--levels 1,4] [--model DIR]

Both engines are started the way users start them (`newspicgen serve --engine
local|sglang --device cpu`) on a Qwen2.5-1.5B-shaped random model (built once
into --model unless it exists; about 3 GB). Each request is a NewsPicGen
instruction from examples/news.jsonl with our output regex, string bounds
tightened so that a random model's answer stays short (the constrained path is
what is measured, not the model). Per engine:

- prefill: time to the first streamed token of one request (ms)
- decode: (time to the last token - time to the first) / (tokens - 1), one request (ms/token)
- articles/min at each concurrency level (N articles, constrained, wall clock)

Engines run one after the other, each alone on the machine; ratios are taken
within one run. SGLang is skipped when --sglang-python / NEWSPICGEN_SGLANG_PYTHON has none.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from prompt_server.instruction import News, build_instruction  # noqa: E402
from prompt_server.schema import output_regex  # noqa: E402
from prompt_server.sglang_launch import probe, sglang_python  # noqa: E402
from tests.support.loopback import free_port, stop_process  # noqa: E402

# Short fields: a random-weight model fills every field to its bound.
BOUNDS = {"ch_keyword": 4, "ch_prompt": 12, "en_keyword": 6, "en_prompt": 24}


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


def messages(limit: int) -> List[List[dict]]:
    rows = [json.loads(line) for line in (REPO / "examples" / "news.jsonl").read_text(encoding="utf-8").split("\n")
            if line.strip()]
    return [[{"role": "user", "content": build_instruction(News(r["title"], r["content"])).text}]
            for r in rows[:limit]]


def start(engine: str, model: Path, python: str) -> tuple:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               NEWSPICGEN_SGLANG_PYTHON=python)
    log = tempfile.NamedTemporaryFile(prefix=f"engines-{engine}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "newspicgen", "serve", "--engine", engine, "--device", "cpu",
                                "--model", str(model), "--port", str(port), "--context-length", "2048"],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{engine} exited:\n{Path(log.name).read_text()[-3000:]}")
        if f"ready at {url}" in Path(log.name).read_text(errors="replace"):
            return process, url
        time.sleep(2)
    stop_process(process)
    raise SystemExit(f"{engine} did not start in time")


def body(chat: List[dict], regex: str, stream: bool) -> dict:
    return {"model": "newspicgen", "messages": chat, "max_tokens": 256, "temperature": 0.7, "seed": 1,
            "regex": regex, "stream": stream, **({"stream_options": {"include_usage": True}} if stream else {})}


def one_streamed(url: str, chat: List[dict], regex: str) -> Dict[str, float]:
    begin = time.perf_counter()
    first = last = None
    tokens = 0
    with requests.post(url + "/v1/chat/completions", json=body(chat, regex, True), stream=True, timeout=1800) as r:
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
    assert first and last and tokens > 1, "no streamed tokens"
    return {"prefill_ms": (first - begin) * 1000, "decode_ms_per_token": (last - first) * 1000 / (tokens - 1)}


def articles_per_minute(url: str, chats: List[List[dict]], regex: str, concurrency: int) -> float:
    def one(chat):
        r = requests.post(url + "/v1/chat/completions", json=body(chat, regex, False), timeout=3600)
        r.raise_for_status()
        assert r.json()["choices"][0]["finish_reason"] == "stop"

    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, chats))
    return len(chats) / ((time.perf_counter() - begin) / 60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sglang-python", default=None)
    parser.add_argument("--model", default=str(Path(tempfile.gettempdir()) / "newspicgen-qwen1.5b-random"))
    parser.add_argument("--articles", type=int, default=4)
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--engines", default="local,sglang")
    args = parser.parse_args()
    model = Path(args.model)
    build_model(model)
    python = sglang_python(args.sglang_python)
    regex = output_regex(BOUNDS)
    chats = messages(args.articles)
    levels = [int(x) for x in args.levels.split(",")]
    results: Dict[str, Dict[str, float]] = {}
    for engine in args.engines.split(","):
        if engine == "sglang" and probe(python).version is None:
            print(f"sglang: skipped (no SGLang for {python})")
            continue
        process, url = start(engine, model, python)
        try:
            one_streamed(url, chats[0], regex)  # warm-up: grammar compile, first allocation
            timing = [one_streamed(url, chat, regex) for chat in chats[:2]]
            row = {key: statistics.median(t[key] for t in timing) for key in timing[0]}
            for level in levels:
                row[f"articles_per_min_c{level}"] = articles_per_minute(url, chats, regex, level)
            results[engine] = row
            print(engine, json.dumps({k: round(v, 1) for k, v in row.items()}), flush=True)
        finally:
            process.send_signal(2)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                stop_process(process)
    if len(results) == 2:
        local, sgl = results["local"], results["sglang"]
        print("ratio sglang/local (below 1: SGLang faster for times, above 1: more articles/min):")
        print(json.dumps({k: round(sgl[k] / local[k], 2) for k in local}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
