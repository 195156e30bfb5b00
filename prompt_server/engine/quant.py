"""Opt-in weight-only linears: int8 reads half the bytes of bf16 per decode step, int4 a quarter.

int8: per output channel, w ≈ scale * q with q in [-127, 127]; the product
runs in torch's `_weight_int8pack_mm` (int8 weights, bf16/fp32 activations).
int4: per group of GROUP input channels, w ≈ lo + scale * q with q in
[0, 15] (asymmetric), packed two to a byte for torch's CPU kernel
`_weight_int4pack_mm_for_cpu` (torch >= 2.6; bf16 activations).
Either way the weights are never expanded back in memory; activations keep
their dtype and only the weights lose precision (docs/performance.md has
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


class Int4Linear(nn.Module):
    packed: torch.Tensor  # buffers, registered in __init__
    scales_and_zeros: torch.Tensor

    def __init__(self, linear: nn.Linear, group: int):
        super().__init__()
        out_features, in_features = linear.weight.shape
        rows = -(-out_features // 16) * 16  # the kernel packs 16 output channels at a time: pad with zeros
        weight = torch.zeros(rows, in_features)
        weight[:out_features] = linear.weight.detach().float()
        groups = weight.reshape(rows, in_features // group, group)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = torch.round((groups - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(
            q.reshape(rows, in_features).contiguous(), 2))
        # the kernel computes (q - 8) * scale + zero, so zero = lo + 8 * scale; layout groups x out x 2
        zero = lo + 8 * scale
        self.register_buffer("scales_and_zeros", torch.stack([scale, zero], dim=-1).transpose(0, 1)
                             .contiguous().to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.in_features, self.out_features, self.group = in_features, out_features, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch._weight_int4pack_mm_for_cpu(flat.to(torch.bfloat16).contiguous(), self.packed, self.group,
                                                self.scales_and_zeros)[:, :self.out_features].to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


INT4_GROUPS = (128, 64, 32)  # the largest that divides a layer's input width


def supported(kind: str = "int8") -> bool:
    if kind == "int4":
        return hasattr(torch, "_weight_int4pack_mm_for_cpu")
    return hasattr(torch, "_weight_int8pack_mm")


def _replace_linears(model: nn.Module, make) -> int:
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(module))
    return len(targets)


def quantize_int8(model: nn.Module) -> int:
    """Replace every nn.Linear (the LM head included) by an Int8Linear, in place; return how many."""
    if not supported("int8"):
        raise RuntimeError("this torch has no _weight_int8pack_mm; int8 needs torch >= 2.3")
    return _replace_linears(model, Int8Linear)


def quantize_int4(model: nn.Module) -> int:
    """Replace every nn.Linear (the LM head included) by an Int4Linear, in place (CPU only); return how many."""
    if not supported("int4"):
        raise RuntimeError("this torch has no _weight_int4pack_mm_for_cpu; int4 needs torch >= 2.6")

    def make(linear: nn.Linear) -> nn.Module:
        group = next((g for g in INT4_GROUPS if linear.in_features % g == 0), None)
        if group is None:
            raise RuntimeError(f"int4 needs layer widths divisible by 32; this model has {linear.in_features}")
        return Int4Linear(linear, group)

    return _replace_linears(model, make)
