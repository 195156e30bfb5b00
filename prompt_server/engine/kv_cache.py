"""Row surgery on a running batch's KV cache: keep some rows, or merge a new batch in.

Rows are left-padded to a common width (attention 0 on the padding), so two
batches merge by left-padding the narrower one; columns that are padding in
every row (left behind by long rows that finished) are trimmed away.
"""
from __future__ import annotations

from typing import List

import torch


def layers_of(cache):
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(f"unsupported KV cache {type(cache).__name__}: needs transformers >= 4.56")
    return layers


def select(batch, rows: List[int]) -> None:
    """Keep only `rows` (in this order) of `batch`, in place."""
    batch.seqs = [batch.seqs[r] for r in rows]
    if not rows:
        batch.cache, batch.attention, batch.last_pos = None, None, None
        return
    index = torch.tensor(rows, device=batch.attention.device)
    batch.cache.batch_select_indices(index)
    batch.attention, batch.last_pos = batch.attention[index], batch.last_pos[index]
    _trim(batch)


def merge(batch, new) -> None:
    """Append the rows of `new` to `batch`, in place (`new`'s cache is consumed)."""
    if not batch.seqs:
        batch.seqs, batch.cache, batch.attention, batch.last_pos = new.seqs, new.cache, new.attention, new.last_pos
        return
    width = max(batch.attention.shape[1], new.attention.shape[1])
    for old_layer, new_layer in zip(layers_of(batch.cache), layers_of(new.cache), strict=False):
        old_layer.keys = torch.cat([_pad_left(old_layer.keys, width, 2), _pad_left(new_layer.keys, width, 2)])
        old_layer.values = torch.cat([_pad_left(old_layer.values, width, 2),
                                      _pad_left(new_layer.values, width, 2)])
    batch.attention = torch.cat([_pad_left(batch.attention, width, 1), _pad_left(new.attention, width, 1)])
    batch.last_pos = torch.cat([batch.last_pos, new.last_pos])
    batch.seqs = batch.seqs + new.seqs


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _trim(batch) -> None:
    """Drop leading columns that no row attends to."""
    first_real = int(batch.attention.argmax(dim=1).min())  # left padding: first 1 of each row
    if first_real == 0:
        return
    for layer in layers_of(batch.cache):
        layer.keys = layer.keys[:, :, first_real:]
        layer.values = layer.values[:, :, first_real:]
    batch.attention = batch.attention[:, first_real:]
