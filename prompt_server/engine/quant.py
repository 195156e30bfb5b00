"""Opt-in int8 weight-only linears: half the bytes of bf16 read per decode step.

Per output channel, w ≈ scale * q with q in [-127, 127]; the product runs in
torch's `_weight_int8pack_mm` (int8 weights, bf16/fp32 activations), so the
weights are never expanded back to bf16 in memory. Activations keep their
dtype; only the weights lose precision (see benchmarks/engine_speed.py for
the effect on the output).
"""
from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    qweight: torch.Tensor  # buffers, registered in __init__
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("qweight", torch.round(weight / scale[:, None]).clamp(-127, 127)
                             .to(torch.int8).contiguous())
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        scale = self.scale if self.scale.dtype == flat.dtype else self.scale.to(flat.dtype)
        out = torch._weight_int8pack_mm(flat.contiguous(), self.qweight, scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def supported() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


def quantize_int8(model: nn.Module) -> int:
    """Replace every nn.Linear (the LM head included) by an Int8Linear, in place; return how many."""
    if not supported():
        raise RuntimeError("this torch has no _weight_int8pack_mm; int8 needs torch >= 2.3")
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(module))
    return len(targets)
