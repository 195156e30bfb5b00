"""The KV of recent prompts, so a new prompt that starts the same way skips computing that start.

Every NewsPicGen request begins with the same chat template and instruction
head (and best-of-N candidates repeat a whole prompt): its keys and values do
not depend on what follows (attention is causal), so they are copied from a
stored prompt instead of being recomputed. Entries are whole prompts, matched
by their longest common token prefix; the least recently used ones leave
once the stored tokens pass `max_tokens` (the memory bound: about 28 KB per
token for a 1.5B bf16 model).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

Layers = List[Tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values): kv_heads x tokens x head_dim


@dataclass(eq=False)
class Prefix:
    tokens: Tuple[int, ...]
    layers: Layers


class PrefixCache:
    def __init__(self, max_tokens: int = 4096, min_match: int = 8):
        self.max_tokens = max_tokens
        self.min_match = min_match  # shorter matches are not worth a separate prefill call
        self._entries: collections.OrderedDict[Tuple[int, ...], Prefix] = collections.OrderedDict()
        self._stored = 0

    @property
    def stored_tokens(self) -> int:
        return self._stored

    def lookup(self, prompt: Sequence[int]) -> Tuple[Optional[Prefix], int]:
        """The entry sharing the longest prefix with `prompt` and that length (at most all but one token)."""
        best: Optional[Prefix] = None
        best_len = 0
        limit = len(prompt) - 1  # the last prompt token is always computed: its logits pick the first token
        for entry in self._entries.values():
            n = _common_prefix(entry.tokens, prompt, limit)
            if n > best_len:
                best, best_len = entry, n
        if best is None or best_len < self.min_match:
            return None, 0
        self._entries.move_to_end(best.tokens)
        return best, best_len

    def wants(self, prompt: Sequence[int]) -> bool:
        """Whether store() would keep a new entry for `prompt` (saves copying KV it would drop)."""
        return 0 < len(prompt) <= self.max_tokens and tuple(prompt) not in self._entries

    def store(self, prompt: Sequence[int], layers: Layers) -> None:
        """Keep `prompt`'s KV (tensors this cache may own); evict the oldest past the bound."""
        key = tuple(prompt)
        if self.max_tokens <= 0 or len(key) > self.max_tokens:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = Prefix(key, layers)
        self._stored += len(key)
        while self._stored > self.max_tokens:
            _, old = self._entries.popitem(last=False)
            self._stored -= len(old.tokens)

    def clear(self) -> None:
        self._entries.clear()
        self._stored = 0


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
