"""Decode speed of the embedded engine beside a plain `model.generate`, against the memory floor.

    python benchmarks/engine_speed.py [--new-tokens 24] [--reps 2] [--gguf model.gguf]

One run, one process, the same Qwen2.5-1.5B-shaped random model (hidden
1536, 28 layers, vocab 151,936; Qwen's real tokenizer) and the same ~64-token
NewsPicGen prompt, single request, runs interleaved so machine drift hits
every mode alike:

- generate  : the seed recipe, `model.generate(..., do_sample=True)` in bf16
- engine    : our Generator (continuous-batching path), bf16
- engine-i8 : our Generator with --quantize int8 (int8 weight-only linears)
- llama.cpp : `llama-server` with --gguf, only where it is installed (else skipped)

Each mode decodes exactly --new-tokens tokens (EOS ignored); ms/token is the
decode time after the prefill. The floor is the bytes one decode step must
read (every linear weight and the LM head, in each mode's format) divided by
the machine's measured read bandwidth; the ratio says how far from that
floor a mode runs. Finally int8's effect on the output: bf16's greedy answer
is fed to both models (teacher forcing) and their next-token choices compared.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.constraint_overhead import QWEN_VOCAB, news_prompt_ids, qwen_tokenizer, random_qwen_1_5b  # noqa: E402
from prompt_server.engine.generator import GenerationRequest, Generator  # noqa: E402
from prompt_server.engine.model_loader import LoadedModel  # noqa: E402
from prompt_server.engine.quant import Int8Linear, quantize_int8  # noqa: E402


def read_bandwidth_gbs(size_bytes: int = 1 << 30, reps: int = 5) -> float:
    """Best of `reps` full reads of a 1 GiB tensor (a sum touches every byte once)."""
    data = torch.ones(size_bytes // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(reps):
        begin = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - begin)
    return size_bytes / best / 1e9


def step_bytes(model) -> int:
    """Bytes read per decode step: every linear (the LM head too); embeddings read one row only."""
    total = 0
    for module in model.modules():
        if isinstance(module, Int8Linear):
            total += module.qweight.numel() + module.scale.numel() * module.scale.element_size()
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
    return total


def engine_ms(generator: Generator, prompt, new_tokens: int, seed: int) -> float:
    request = GenerationRequest(prompt_ids=prompt, max_tokens=new_tokens, temperature=0.7, seed=seed,
                                ignore_eos=True)
    [result] = generator.generate([request])
    return 1000 * result.decode_seconds / (result.completion_tokens - 1)  # the first token comes from prefill


def generate_ms(model, prompt, new_tokens: int) -> float:
    """The plain recipe; its prefill (a 1-token generate) is subtracted."""
    ids = torch.tensor([prompt])
    kwargs = dict(do_sample=True, temperature=0.7, top_p=1.0, pad_token_id=0)
    begin = time.perf_counter()
    model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
    prefill = time.perf_counter() - begin
    begin = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    return 1000 * (time.perf_counter() - begin - prefill) / (new_tokens - 1)


def llama_cpp_ms(gguf: str, prompt_text: str, new_tokens: int):
    """ms/token from llama-server's own timings, or None with the reason."""
    binary = shutil.which("llama-server")
    if binary is None:
        return None, "llama-server is not installed"
    if not gguf:
        return None, "no --gguf model given"
    import requests

    from tests.support.loopback import free_port, stop_process

    port = free_port()
    proc = subprocess.Popen([binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-c", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        body = {"prompt": prompt_text, "n_predict": new_tokens, "ignore_eos": True, "temperature": 0.7}
        reply = requests.post(f"http://127.0.0.1:{port}/completion", json=body, timeout=600).json()
        return reply["timings"]["predicted_per_token_ms"], ""
    finally:
        stop_process(proc)


def int8_effect(bf16_model, int8_model, prompt, new_tokens: int) -> str:
    ids = torch.tensor([prompt])
    greedy = bf16_model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=0)
    with torch.inference_mode():
        a = bf16_model(greedy).logits[0, len(prompt) - 1:-1].float()
        b = int8_model(greedy).logits[0, len(prompt) - 1:-1].float()
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True,
                                    reduction="batchmean").item()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
    free = int8_model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               pad_token_id=0)[0, len(prompt):]
    same = (free == greedy[0, len(prompt):]).tolist()
    first_diff = same.index(False) if False in same else len(same)
    return (f"int8 vs bf16 over bf16's {new_tokens}-token greedy answer: next-token agreement {100 * agree:.1f} %, "
            f"KL(bf16||int8) {kl:.4f} nats, logits cosine {cos:.4f}; int8's own greedy answer "
            f"equals bf16's for the first {first_diff}/{new_tokens} tokens")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--gguf", default=os.environ.get("NEWSPICGEN_GGUF"),
                        help="a GGUF of the same model for llama.cpp's server (skipped without one)")
    args = parser.parse_args()

    bandwidth = read_bandwidth_gbs()
    tokenizer = qwen_tokenizer()
    model = random_qwen_1_5b(torch.bfloat16, torch.device("cpu"))
    int8_model = copy.deepcopy(model)
    quantize_int8(int8_model)  # the tied LM head becomes an int8 copy; the embedding stays bf16
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]

    def generator_for(lm):
        loaded = LoadedModel(model=lm, tokenizer=tokenizer, path="random Qwen2.5-1.5B shape",
                             device=torch.device("cpu"), eos_ids=eos, pad_id=eos[1], vocab_size=QWEN_VOCAB,
                             context_length=4096)
        return Generator(loaded, max_batch_size=1)

    engines = {"engine": generator_for(model), "engine-i8": generator_for(int8_model)}
    prompt = news_prompt_ids(tokenizer, args.prompt_tokens)
    print(f"{torch.get_num_threads()} torch threads, read bandwidth {bandwidth:.1f} GB/s, prompt {len(prompt)} tokens, "
          f"{args.new_tokens} new tokens, load average {os.getloadavg()[0]:.1f}", flush=True)

    modes = {"generate": lambda seed: generate_ms(model, prompt, args.new_tokens),
             "engine": lambda seed: engine_ms(engines["engine"], prompt, args.new_tokens, seed),
             "engine-i8": lambda seed: engine_ms(engines["engine-i8"], prompt, args.new_tokens, seed)}
    generate_ms(model, prompt, 3)  # warm-up: allocator, kernels, llguidance
    engine_ms(engines["engine"], prompt, 4, 0), engine_ms(engines["engine-i8"], prompt, 4, 0)
    times = {name: [] for name in modes}
    names = list(modes)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(modes[name](rep))
            print(f"rep {rep} {name:<10} {times[name][-1]:7.1f} ms/token", flush=True)

    bytes_bf16, bytes_i8 = step_bytes(model), step_bytes(int8_model)
    floors = {"generate": bytes_bf16, "engine": bytes_bf16, "engine-i8": bytes_i8}
    rows = [(name, statistics.median(times[name]), floors[name]) for name in modes]
    llama, why = llama_cpp_ms(args.gguf, tokenizer.decode(prompt), args.new_tokens)
    print(f"\n{'mode':<10} | {'ms/token':>8} | {'GB/step':>7} | {'floor ms':>8} | ratio to floor | vs generate")
    base = rows[0][1]
    for name, ms, nbytes in rows:
        floor = 1000 * nbytes / 1e9 / bandwidth
        print(f"{name:<10} | {ms:8.1f} | {nbytes / 1e9:7.2f} | {floor:8.1f} | {ms / floor:14.2f} | {ms / base:.2f}")
    if llama is None:
        print(f"llama.cpp  | skipped: {why}")
    else:
        print(f"llama.cpp  | {llama:8.1f} | {'':>7} | {'':>8} | {'':>14} | {llama / base:.2f}")
    print("\n" + int8_effect(model, int8_model, prompt, args.new_tokens))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
