"""Where a bf16 decode step's time goes on this CPU, and what the known remedies buy.

    python benchmarks/decode_step.py [--reps 5] [--context 200] [--compile]

One process, the Qwen2.5-1.5B-shaped random model in bf16, one sequence
with a `--context`-token KV cache, one new token per step. Variants run
interleaved (every repetition runs each once, in a rotating order) so the
machine's drift hits all alike; medians are printed with the floor (bytes
read per step / measured read bandwidth):

- step            : the engine's forward pass (transformers' Qwen2 + DynamicCache)
- linears         : only the step's linear layers (F.linear, M=1): the part bound by weight bytes
- linears packed  : the same through oneDNN with weights prepacked in its blocked layout
- linears fused   : q/k/v as one GEMV and gate/up as one (fewer, larger calls)
- step packed     : the whole step as the engine ships it on a CPU (`--quantize auto`: every linear
                    prepacked, gate/up as one matrix)
- step compiled   : torch.compile(mode="max-autotune-no-cudagraphs") of the step (--compile; slow to build)
- int8 / int4     : the step with the engine's --quantize linears

Then int8's and int4's effect on the output: the same 96 random tokens fed to
bf16 and to each quantized copy, next-token choices and logits compared.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# as the engine's load_model does: tensors of 2 MiB and more on transparent huge pages (before torch allocates)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.constraint_overhead import random_qwen_1_5b  # noqa: E402
from benchmarks.engines import read_bandwidth_gbs  # noqa: E402
from prompt_server.engine.prepack import prepack_linears  # noqa: E402
from prompt_server.engine.quant import Int4Linear, Int8Linear, quantize_int4, quantize_int8  # noqa: E402


def step_bytes(model: nn.Module) -> int:
    total = 0
    for module in model.modules():
        if isinstance(module, Int8Linear):
            total += module.qweight.numel() + module.scale.numel() * module.scale.element_size()
        elif isinstance(module, Int4Linear):
            total += module.packed.numel() + module.scales_and_zeros.numel() * 2
        elif isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
    return total


def decode_step(model: nn.Module, context: int) -> Callable[[], None]:
    """A closure running one decode step over a `context`-token cache (rebuilt to the same length each call)."""
    from transformers import DynamicCache

    ids = torch.randint(0, 1000, (1, context))
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    token = torch.tensor([[42]])
    position = torch.tensor([[context]])
    mask = torch.ones(1, context + 1, dtype=torch.long)

    def run() -> None:
        with torch.inference_mode():
            model(input_ids=token, attention_mask=mask, position_ids=position, cache=cache, use_cache=True,
                  logits_to_keep=1)
            for layer in cache.layers:  # drop the new column: every call sees the same cache length
                layer.keys, layer.values = layer.keys[:, :, :context], layer.values[:, :, :context]
    return run


def linears_only(model: nn.Module, fuse: bool = False) -> Callable[[], None]:
    x = torch.randn(1, model.config.hidden_size, dtype=torch.bfloat16)
    xi = torch.randn(1, model.config.intermediate_size, dtype=torch.bfloat16)
    weights: List[tuple] = []
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        if fuse:
            weights.append((x, torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])))
            weights.append((x, a.o_proj.weight))
            weights.append((x, torch.cat([m.gate_proj.weight, m.up_proj.weight])))
        else:
            weights += [(x, a.q_proj.weight), (x, a.k_proj.weight), (x, a.v_proj.weight), (x, a.o_proj.weight),
                        (x, m.gate_proj.weight), (x, m.up_proj.weight)]
        weights.append((xi, m.down_proj.weight))
    weights.append((x, model.lm_head.weight))

    def run() -> None:
        with torch.inference_mode():
            for inp, w in weights:
                torch.nn.functional.linear(inp, w)
    return run


def packed_linears_only(model: nn.Module) -> Callable[[], None]:
    x = torch.randn(1, model.config.hidden_size, dtype=torch.bfloat16)
    xi = torch.randn(1, model.config.intermediate_size, dtype=torch.bfloat16)
    calls = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 1)
            calls.append((xi if module.in_features == model.config.intermediate_size else x, packed, module.bias))

    def run() -> None:
        with torch.inference_mode():
            for inp, w, b in calls:
                torch.ops.mkldnn._linear_pointwise(inp, w, b, "none", [], "")
    return run


def effect(reference: nn.Module, quantized: nn.Module, kind: str, tokens: int = 96) -> str:
    """Teacher-forced on the same random sequence: how often the quantized model's next token is bf16's."""
    torch.manual_seed(1)
    ids = torch.randint(0, reference.config.vocab_size, (1, tokens))
    with torch.inference_mode():
        a = reference(ids).logits[0].float()
        b = quantized(ids).logits[0].float()
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True,
                                    reduction="batchmean").item()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
    return f"| {kind} | {100 * agree:.1f} % of {tokens} | {kl:.4f} | {cos:.4f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--context", type=int, default=200)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the step (minutes to build)")
    args = parser.parse_args()
    bandwidth = read_bandwidth_gbs()
    model = random_qwen_1_5b(torch.bfloat16, torch.device("cpu"))
    bf16_bytes = step_bytes(model)
    variants: Dict[str, Callable[[], None]] = {
        "step": decode_step(model, args.context),
        "linears": linears_only(model),
        "linears packed": packed_linears_only(model),
        "linears fused": linears_only(model, fuse=True),
    }
    floors = {name: bf16_bytes for name in variants}
    packed = copy.deepcopy(model)
    prepack_linears(packed)
    variants["step packed"], floors["step packed"] = decode_step(packed, args.context), bf16_bytes
    if args.compile:
        compiled = torch.compile(model, mode="max-autotune-no-cudagraphs", dynamic=False)
        begin = time.perf_counter()
        run = decode_step(compiled, args.context)
        run()
        print(f"compile: {time.perf_counter() - begin:.0f} s", flush=True)
        variants["step compiled"], floors["step compiled"] = run, bf16_bytes
    quantized_models = {}
    for kind, quantize in (("int8", quantize_int8), ("int4", quantize_int4)):
        quantized = quantized_models[kind] = copy.deepcopy(model)
        quantize(quantized)
        variants[f"step {kind}"], floors[f"step {kind}"] = decode_step(quantized, args.context), step_bytes(quantized)
    print(f"{torch.get_num_threads()} torch threads, read bandwidth {bandwidth:.1f} GB/s, context {args.context}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for run in variants.values():  # warm-up
        run()
    times: Dict[str, List[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            begin = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - begin) * 1000)
    step = statistics.median(times["step"])
    print("\n| variant | ms | GB read | floor ms | ratio to floor | vs step |\n|---|---|---|---|---|---|")
    for name in names:
        ms = statistics.median(times[name])
        floor = floors[name] / bandwidth / 1e6
        print(f"| {name} | {ms:.1f} | {floors[name] / 1e9:.2f} | {floor:.1f} | {ms / floor:.2f} | {ms / step:.2f} |")
    print("\n| weights | next-token agreement with bf16 | KL(bf16 || q) nats | logits cosine |\n|---|---|---|---|")
    for kind in ("int8", "int4"):
        print(effect(model, quantized_models[kind], kind))
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
