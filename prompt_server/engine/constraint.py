"""Grammar-constrained decoding with llguidance: one LLMatcher per sequence.

Masks for all constrained rows of a batch are computed together by an
LLExecutor (in Rust, GIL released) into one int32 bitmask, which is turned
into a boolean mask with a few vectorised torch ops and applied in place.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence

import llguidance
import llguidance.hf
import llguidance.torch
import torch

# NewsPicGen's own layout ({"a": "x", "b": "y"}); a schema's "x-guidance" may override it.
JSON_STYLE: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    """The request's regex or JSON schema cannot be compiled (HTTP 400)."""


def make_ll_tokenizer(hf_tokenizer, vocab_size: int, eos_ids: Sequence[int]) -> llguidance.LLTokenizer:
    # n_vocab = logits width: Qwen pads its embedding past the tokenizer's size.
    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=list(eos_ids))


def compile_grammar(ll_tokenizer, *, regex: Optional[str] = None,
                    json_schema: Optional[Any] = None) -> str:
    """Turn a regex or a JSON schema into a checked llguidance grammar; GrammarError otherwise."""
    if regex is not None:
        kind, grammar = "regex", llguidance.LLMatcher.grammar_from_regex(regex)
    else:
        kind = "json_schema"
        try:
            schema: Any = json.loads(json_schema) if isinstance(json_schema, str) else json_schema
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_STYLE)
        except (ValueError, TypeError) as exc:
            raise GrammarError(f"Failed to compile json_schema grammar: {exc}") from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, ll_tokenizer)
    if is_error:
        raise GrammarError(f"Failed to compile {kind} grammar: {messages[0]}")
    return grammar


class MaskBuilder:
    """Computes and applies token masks for the constrained rows of a batch."""

    def __init__(self, vocab_size: int, max_batch_size: int, device: torch.device):
        self.vocab_size = vocab_size
        self.device = device
        self.executor = llguidance.LLExecutor()
        self.bitmask = llguidance.torch.allocate_token_bitmask(max_batch_size, vocab_size)
        self._bits = torch.tensor([1 << i for i in range(32)], dtype=torch.int64).to(torch.int32).to(device)

    def fill(self, matchers: List[Optional[llguidance.LLMatcher]]) -> None:
        """Compute row i's mask for matchers[i] (None = unconstrained row, left untouched)."""
        pairs = [(m, i) for i, m in enumerate(matchers) if m is not None]
        if pairs:
            llguidance.torch.fill_next_token_bitmask_par(self.executor, pairs, self.bitmask)

    def apply(self, logits: torch.Tensor, rows: List[int]) -> None:
        """Set disallowed logits of `rows` to -inf, in place (logits: batch x vocab)."""
        if not rows:
            return
        words = self.bitmask[rows].to(self.device, non_blocking=True)
        allowed = (words.unsqueeze(-1) & self._bits).ne(0).flatten(1)[:, :logits.shape[1]]
        index = torch.tensor(rows, device=logits.device)
        logits[index] = logits[index].masked_fill(~allowed, float("-inf"))
