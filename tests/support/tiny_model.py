"""A tiny random-weight Qwen2 with a self-trained byte-level BPE tokenizer.

Used by the tests (no model downloads) and handy for benchmarks:
`python -m tests.support.tiny_model OUTDIR` writes one to OUTDIR.

The tokenizer follows Qwen2.5's recipe (its pre-tokenizer split, byte-level
BPE, the three special tokens, a Qwen2.5-style chat template), so the engine,
the chat template and llguidance see the same kind of vocabulary as with the
real model, only ~1000 tokens instead of 151,665.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

EXAMPLE_NEWS = Path(__file__).resolve().parents[2] / "examples" / "news.jsonl"  # shipped with the repo

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2.5), verbatim.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5's chat template without the tool-calling branches.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# English words and JSON punctuation so that the English fields and the
# JSON skeleton have multi-character tokens, like Qwen's vocabulary does.
ENGLISH = (
    "comic illustration of a person standing in a city street, graphic art, vibrant colors, "
    "a crowd of people at a festival, a landscape with mountains and rivers, a modern building, "
    "a new smartphone product launch on stage, an animal in the forest, an object on a table, "
    "news event, reporter, government, technology, science, economy, sports, weather, "
    '{"ch_keyword": "", "ch_prompt": "", "en_keyword": "", "en_prompt": "", "type": "2"} '
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant. system user assistant "
)


def training_corpus() -> list[str]:
    texts = [ENGLISH] * 3
    for line in EXAMPLE_NEWS.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            texts.append(f"{row.get('title', '')}\n{row.get('content', '')[:400]}")
    # the instruction's fixed words and the type names, so prompts tokenize compactly
    texts.append("以下是一篇新闻，标题。新闻内容：请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"
                 "人物 人群 风景 建筑 科技产品 动物 物品 其他 城市 记者 政府 经济 体育 天气")
    return texts


def build_tokenizer(vocab_size: int = 1000):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None,
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _add_quote_prior(model, tokenizer, prior: float = 2.5) -> None:
    """Make tokens holding a `"` likelier, like a trained model that closes its strings.

    A pure random model keeps every bounded JSON string open to its bound
    (hundreds of tokens per answer); with this prior answers take ~100 tokens,
    which keeps the tests fast. Hidden dimension 0 carries a constant (set in
    every token's embedding), and the LM head reads the prior off it.
    """
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 4.0
        head = model.lm_head.weight
        head[:, 0] = 0.0
        quoted = [i for t, i in tokenizer.get_vocab().items() if '"' in tokenizer.convert_tokens_to_string([t])]
        head[quoted, 0] = prior / 8.0  # the final RMSNorm scales the constant to ~8


def build_tiny_model(path, *, seed: int = 0) -> Path:
    """Write a tiny random Qwen2ForCausalLM + tokenizer to `path`; return the path."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         bos_token_id=eos_ids[1], eos_token_id=eos_ids, pad_token_id=eos_ids[1])
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    _add_quote_prior(model, tokenizer)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=eos_ids[1],
                                               bos_token_id=eos_ids[1])
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tests.support.tiny_model OUTDIR", file=sys.stderr)
        sys.exit(2)
    print(build_tiny_model(sys.argv[1]))
