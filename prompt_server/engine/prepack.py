"""Opt-in for CPUs: bf16 linears through oneDNN with weights reordered once into its blocked layout.

torch's plain bf16 F.linear reorders or reads the weight in a layout that is
not the kernel's own on every call; prepacking does that once at load time
(what inductor's CPU freezing does). Same numbers up to rounding, same bytes.
"""
from __future__ import annotations

import torch
from torch import nn


class PackedLinear(nn.Module):
    packed: torch.Tensor  # buffer, registered in __init__

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def supported() -> bool:
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def prepack_linears(model: nn.Module) -> int:
    """Replace every bf16 nn.Linear of a CPU model by a PackedLinear, in place; return how many."""
    if not supported():
        raise RuntimeError("this torch has no oneDNN linear prepacking")
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.weight.dtype == torch.bfloat16 and m.weight.device.type == "cpu"]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, PackedLinear(module))
    return len(targets)
