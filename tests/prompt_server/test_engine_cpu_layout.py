"""Where the embedded engine's CPU work and memory go: every torch call in one thread, large tensors on
huge pages, a gated MLP's gate and up read as one matrix.

Their speed is measured by benchmarks/engines.py (docs/performance.md); these tests check the
behaviour the speed rests on.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prompt_server.schema import PicturePrompt, output_regex
from tests.support import REPO

NEWS = "以下是一篇新闻，标题“城市公园开放”。新闻内容：市民在新公园里散步。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"


def test_the_scheduler_thread_loads_the_model_and_runs_every_forward_pass(tiny_model_dir):
    from prompt_server.engine.generator import GenerationRequest, Generator
    from prompt_server.engine.model_loader import load_model
    from prompt_server.engine.scheduler import Scheduler

    threads = {"load": set(), "forward": set()}

    def load():
        threads["load"].add(threading.current_thread().name)
        generator = Generator(load_model(str(tiny_model_dir), device="cpu"), max_batch_size=2)
        model = generator.loaded.weights()
        forward = model.forward

        def recorded(*args, **kwargs):
            threads["forward"].add(threading.current_thread().name)
            return forward(*args, **kwargs)

        model.forward = recorded
        return generator

    scheduler = Scheduler(load)
    try:
        generator = scheduler.generator
        tok = generator.loaded.tokenizer
        prompt = tok.apply_chat_template([{"role": "user", "content": NEWS}], tokenize=False,
                                         add_generation_prompt=True)
        finished = threading.Event()
        seq = scheduler.submit(GenerationRequest(prompt_ids=tok(prompt, add_special_tokens=False)["input_ids"],
                                                 max_tokens=300, seed=3, grammar=generator.compile(regex=output_regex())),
                               on_finish=lambda s: finished.set())
        assert finished.wait(120)
        assert seq.result is not None and seq.result.finish_reason == "stop"
        PicturePrompt.from_json(seq.result.text)
    finally:
        scheduler.close()
    assert threads["load"] == threads["forward"] == {"batch-scheduler"}
    assert threading.current_thread().name not in threads["load"]


def test_a_model_that_fails_to_load_is_reported_by_the_constructor_in_the_callers_thread(tmp_path):
    from prompt_server.engine.http_server import build_service
    from prompt_server.engine.model_loader import ModelLoadError

    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no config.json"):
        build_service(str(tmp_path), device="cpu")
    assert not [t for t in threading.enumerate() if t.name == "batch-scheduler"]


HUGE_PAGES = """
import json, sys, torch
from prompt_server.engine.model_loader import load_model
load_model(sys.argv[1], device="cpu")
block = torch.ones(64 << 18)  # 64 MiB, allocated after the load
with open("/proc/self/smaps_rollup") as f:
    huge = [int(line.split()[1]) for line in f if line.startswith("AnonHugePages:")][0]
print(json.dumps({"huge_kib": huge, "sum": float(block.sum())}))
"""


def _thp_mode() -> str:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not sys.platform.startswith("linux") or not path.exists():
        return "absent"
    return path.read_text().split("[", 1)[1].split("]", 1)[0]


@pytest.mark.parametrize("opt_out", [False, True], ids=["default", "THP_MEM_ALLOC_ENABLE=0"])
def test_after_load_model_large_cpu_tensors_sit_on_huge_pages_unless_opted_out(tiny_model_dir, opt_out):
    import json
    import os

    if _thp_mode() not in ("madvise", "always"):
        pytest.skip(f"the kernel offers no transparent huge pages here ({_thp_mode()})")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    if opt_out:
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    done = subprocess.run([sys.executable, "-c", HUGE_PAGES, str(tiny_model_dir)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["sum"] == 64 << 18
    if opt_out:
        if _thp_mode() == "madvise":  # "always" gives huge pages to everyone, opted out or not
            assert found["huge_kib"] == 0
    else:
        assert found["huge_kib"] >= 32 << 10  # most of the 64 MiB block


def test_a_gated_mlp_packed_as_one_matrix_computes_what_the_original_does(tiny_model_dir):
    import torch
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    from prompt_server.engine import prepack
    from prompt_server.engine.model_loader import load_model

    if not prepack.supported():
        pytest.skip("this torch has no oneDNN linear prepacking")
    torch.manual_seed(0)
    mlp = Qwen2MLP(Qwen2Config(hidden_size=64, intermediate_size=96)).to(torch.bfloat16).eval()
    packed = prepack.PackedGatedMLP(mlp)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        expected, got = mlp(x).float(), packed(x).float()
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=0.03, rtol=0.03), (got - expected).abs().max()
    assert not torch.allclose(got, prepack.PackedGatedMLP(Qwen2MLP(Qwen2Config(hidden_size=64, intermediate_size=96))
                                                          .to(torch.bfloat16))(x).float(), atol=0.03)

    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", quantize="bf16-packed")
    layers = loaded.weights().model.layers
    assert all(isinstance(layer.mlp, prepack.PackedGatedMLP) for layer in layers)
    assert all(isinstance(layer.self_attn.q_proj, prepack.PackedLinear) for layer in layers)
