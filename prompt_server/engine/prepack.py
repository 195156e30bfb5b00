"""bf16 linears on a CPU through oneDNN, weights reordered once into its blocked layout (`--quantize auto`).

torch's plain bf16 F.linear reorders or reads the weight in a layout that is
not the kernel's own on every call; prepacking does that once at load time
(what inductor's CPU freezing does). Same numbers up to rounding, same bytes.

A gated MLP (Qwen2, Llama: down(act(gate(x)) * up(x))) gets gate and up as one
packed matrix: one call reading one longer stream instead of two (measured on
a 2-core CPU: 61 against 66 ms for the 28 layers' gate, up, q, k, v linears).
"""
from __future__ import annotations

from typing import Callable, TypeGuard

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


class PackedGatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up stacked into one packed weight."""
    gate_up: torch.Tensor  # buffer, registered in __init__

    def __init__(self, mlp: nn.Module):
        super().__init__()
        gate, up, down = (mlp.get_submodule(name) for name in ("gate_proj", "up_proj", "down_proj"))
        assert isinstance(gate, nn.Linear) and isinstance(up, nn.Linear) and isinstance(down, nn.Linear)  # fits()
        self.width = gate.out_features
        self.register_buffer("gate_up", torch.ops.mkldnn._reorder_linear_weight(
            torch.cat([gate.weight.detach(), up.weight.detach()]), 1))
        self.act_fn: Callable[[torch.Tensor], torch.Tensor] = mlp.act_fn  # type: ignore[assignment]
        self.down_proj = PackedLinear(down)

    @staticmethod
    def fits(module: nn.Module) -> bool:
        parts = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
        return (hasattr(module, "act_fn") and all(_packable(p) and p.bias is None for p in parts)
                and parts[0].weight.shape == parts[1].weight.shape)  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = torch.ops.mkldnn._linear_pointwise(x, self.gate_up, None, "none", [], "").split(self.width, -1)
        return self.down_proj(self.act_fn(gate) * up)


def _packable(module: object) -> TypeGuard[nn.Linear]:
    return (isinstance(module, nn.Linear) and module.weight.dtype == torch.bfloat16
            and module.weight.device.type == "cpu")


def supported() -> bool:
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def prepack_linears(model: nn.Module) -> int:
    """Replace every gated MLP by a PackedGatedMLP and every other bf16 nn.Linear of a CPU model by a
    PackedLinear, in place; return how many modules were replaced."""
    if not supported():
        raise RuntimeError("this torch has no oneDNN linear prepacking")
    # by name, one at a time: each original is freed as its packed copy takes its place
    mlps = [name for name, m in model.named_modules() if PackedGatedMLP.fits(m)]
    for name in mlps:
        _replace(model, name, PackedGatedMLP(model.get_submodule(name)))
    linears = [name for name, m in model.named_modules() if _packable(m)]
    for name in linears:
        _replace(model, name, PackedLinear(model.get_submodule(name)))  # type: ignore[arg-type]  # _packable
    return len(mlps) + len(linears)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
