"""Continuous batching in-process: joining mid-decode, leaving early, one row failing alone."""
from __future__ import annotations

import pytest

from prompt_server.schema import PicturePrompt, output_regex

NEWS = "以下是一篇新闻，标题“城市公园开放”。新闻内容：市民在新公园里散步。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    import torch

    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: more threads only add overhead
    yield Generator(load_model(str(tiny_model_dir), device="cpu"), max_batch_size=4)
    torch.set_num_threads(threads)


def prompt(generator, repeat=1):
    tok = generator.loaded.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": NEWS * repeat}], tokenize=False,
                                   add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def request(generator, seed, repeat=1, **fields):
    from prompt_server.engine.generator import GenerationRequest

    fields.setdefault("grammar", generator.compile(regex=output_regex()))
    fields.setdefault("temperature", 0.8)
    return GenerationRequest(prompt_ids=prompt(generator, repeat), max_tokens=300, seed=seed, **fields)


def run_to_end(generator, batch, schedule):
    """schedule: {step number: [sequences admitted at that step]}; steps until the batch is empty."""
    step = 0
    while batch.seqs or any(k >= step for k in schedule):
        generator.step(batch, schedule.get(step, []))
        step += 1


def test_late_joiners_get_the_same_answer_as_alone_and_a_bad_row_fails_alone(generator):
    from prompt_server.engine.generator import Batch, GenerationError

    alone = {seed: generator.generate([request(generator, seed, repeat)])[0].token_ids
             for seed, repeat in ((1, 1), (2, 3), (3, 2))}
    first = generator.new_sequence(request(generator, 1))
    late = generator.new_sequence(request(generator, 2, repeat=3))      # a longer prompt joins at step 5
    later = generator.new_sequence(request(generator, 3, repeat=2))     # and one more at step 9
    broken = generator.new_sequence(request(generator, 4, temperature=float("nan")))  # bypasses HTTP checks
    cancelled = generator.new_sequence(request(generator, 5, grammar=None, ignore_eos=True))
    batch = Batch()
    run_to_end(generator, batch, {0: [first, cancelled], 5: [late, broken], 9: [later]})
    assert isinstance(broken.error, GenerationError) and "not finite" in str(broken.error)
    assert [first.result.token_ids, late.result.token_ids, later.result.token_ids] == [alone[1], alone[2], alone[3]]
    for seq in (first, late, later):
        assert seq.result.finish_reason == "stop"
        PicturePrompt.from_json(seq.result.text)
    assert cancelled.result.finish_reason == "length"


def test_a_cancelled_row_leaves_and_the_rest_are_unchanged(generator):
    from prompt_server.engine.generator import Batch

    alone = generator.generate([request(generator, 7)])[0].token_ids
    keep = generator.new_sequence(request(generator, 7))
    drop = generator.new_sequence(request(generator, 8, grammar=None, ignore_eos=True))
    batch = Batch()
    generator.step(batch, [keep, drop])
    generator.step(batch, [])
    drop.cancelled = True
    run_to_end(generator, batch, {})
    assert drop.result.finish_reason == "abort" and drop.result.completion_tokens == 3  # prefill + 2 decode steps
    assert keep.result.token_ids == alone


def test_min_tokens_and_ignore_eos(generator):
    out = generator.generate([request(generator, 9, grammar=None, min_tokens=20, ignore_eos=False),
                              request(generator, 9, grammar=None, ignore_eos=True)])
    assert out[0].completion_tokens >= 20
    assert out[1].completion_tokens == 300 and out[1].finish_reason == "length"


def test_int8_weights_still_give_valid_constrained_answers(tiny_model_dir):
    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model
    from prompt_server.engine.quant import Int8Linear

    loaded = load_model(str(tiny_model_dir), device="cpu", quantize="int8")
    assert isinstance(loaded.model.lm_head, Int8Linear)
    assert isinstance(loaded.model.model.layers[0].mlp.down_proj, Int8Linear)
    gen = Generator(loaded, max_batch_size=2)
    for result in gen.generate([request(gen, 1), request(gen, 2)]):
        assert result.finish_reason == "stop"
        PicturePrompt.from_json(result.text)


def test_int8_linear_is_close_to_the_original():
    import torch

    from prompt_server.engine.quant import Int8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128, bias=True).to(torch.bfloat16)
    x = torch.randn(3, 5, 256, dtype=torch.bfloat16)
    exact, approx = linear(x).float(), Int8Linear(linear)(x).float()
    assert approx.shape == exact.shape
    assert (approx - exact).norm() / exact.norm() < 0.02  # per-channel int8: ~0.5 % error


@pytest.mark.parametrize("fast_bf16, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_on_cpu_follows_bf16_support(monkeypatch, fast_bf16, expected):
    import torch

    from prompt_server.engine import model_loader

    monkeypatch.setattr(model_loader, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert model_loader.pick_dtype("auto", torch.device("cpu")) == getattr(torch, expected)
    assert model_loader.pick_dtype("float32", torch.device("cpu")) == torch.float32
