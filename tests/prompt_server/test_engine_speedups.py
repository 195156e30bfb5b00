"""Jump-forward over forced tokens and the prefix cache change the work, never the answer.

The reference is the same engine stepping through the grammar's forced tokens
one forward pass each, with no prefix cache: for the same seed, the jumping and
caching engine must give exactly the same token ids and text, alone and in a
batch whose rows join at different steps, in fewer forward passes and with
fewer prompt tokens computed.
"""
from __future__ import annotations

import json

import pytest

from prompt_server.instruction import News, build_instruction
from prompt_server.schema import PicturePrompt, output_json_schema, output_regex
from tests.support import REPO

SEEDS = range(8)


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    import torch

    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: more threads only add overhead
    loaded = load_model(str(tiny_model_dir), device="cpu")
    yield {
        "step": Generator(loaded, max_batch_size=4, jump_forward=False, prefix_cache_tokens=0),
        "jump": Generator(loaded, max_batch_size=4, jump_forward=True, prefix_cache_tokens=0),
        "cached": Generator(loaded, max_batch_size=4, jump_forward=True, prefix_cache_tokens=4096),
    }
    torch.set_num_threads(threads)


def articles():
    rows = [json.loads(line) for line in (REPO / "examples" / "news.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [News(r["title"], r["content"]) for r in rows[:3]]


def request(generator, news, seed, *, schema=False, **fields):
    from prompt_server.engine.generator import GenerationRequest

    tok = generator.loaded.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": build_instruction(news).text}], tokenize=False,
                                   add_generation_prompt=True)
    if "grammar" not in fields:
        fields["grammar"] = (generator.compile(json_schema=output_json_schema()) if schema
                             else generator.compile(regex=output_regex()))
    fields.setdefault("max_tokens", 300)
    return GenerationRequest(prompt_ids=tok(text, add_special_tokens=False)["input_ids"], seed=seed,
                             temperature=0.8, **fields)


def answer(result):
    return result.token_ids, result.text, result.finish_reason


@pytest.mark.parametrize("schema", [False, True], ids=["regex", "json_schema"])
def test_jumping_over_forced_tokens_gives_the_step_by_step_answer_in_fewer_passes(engines, schema):
    step, jump = engines["step"], engines["jump"]
    passes = {"step": 0, "jump": 0}
    for news in articles():
        for seed in SEEDS:
            reference = step.generate([request(step, news, seed, schema=schema)])[0]
            jumped = jump.generate([request(jump, news, seed, schema=schema)])[0]
            assert answer(jumped) == answer(reference), (news.title, seed)
            # one pass per token (prefill included), but for forced tokens that close the answer
            assert reference.forward_passes <= reference.completion_tokens
            assert jumped.forced_tokens > 0
            assert jumped.forward_passes == jumped.completion_tokens - jumped.forced_tokens  # one per sampled token
            assert jumped.forward_passes < reference.forward_passes
            if reference.finish_reason == "stop":
                PicturePrompt.from_json(jumped.text)
            passes["step"] += reference.forward_passes
            passes["jump"] += jumped.forward_passes
    assert passes["jump"] < passes["step"]


def test_a_limit_inside_forced_tokens_ends_both_the_same_way(engines):
    step, jump = engines["step"], engines["jump"]
    news = articles()[0]
    for limit in (1, 2, 3, 5, 8, 13):  # json_schema forces the first tokens: some limits fall inside them
        reference = step.generate([request(step, news, 1, schema=True, max_tokens=limit)])[0]
        jumped = jump.generate([request(jump, news, 1, schema=True, max_tokens=limit)])[0]
        assert answer(jumped) == answer(reference)
        assert jumped.finish_reason == "length" and jumped.completion_tokens == limit


def run_schedule(generator, schedule):
    """schedule: {step number: [requests admitted then]}; steps until every sequence is done."""
    from prompt_server.engine.generator import Batch

    batch, seqs, step = Batch(), [], 0
    while batch.seqs or any(k >= step for k in schedule):
        new = [generator.new_sequence(r) for r in schedule.get(step, [])]
        seqs.extend(new)
        generator.step(batch, new)
        step += 1
    assert all(s.error is None for s in seqs)
    return [s.result for s in seqs]


@pytest.mark.parametrize("seed", [0, 10, 20])
def test_batched_rows_that_jump_by_different_amounts_match_step_by_step_alone(engines, seed):
    step, jump, cached = engines["step"], engines["jump"], engines["cached"]
    a, b, c = articles()

    def schedule(gen):
        return {0: [request(gen, a, seed), request(gen, b, seed + 1, schema=True)],
                3: [request(gen, c, seed + 2), request(gen, a, seed + 3, schema=True)],
                7: [request(gen, b, seed + 4, grammar=None, ignore_eos=True, max_tokens=40)]}

    alone = [step.generate([r])[0] for k in sorted(schedule(step)) for r in schedule(step)[k]]
    for generator in (jump, cached):
        batched = run_schedule(generator, schedule(generator))
        assert [answer(r) for r in batched] == [answer(r) for r in alone]
        assert sum(r.forward_passes for r in batched) < sum(r.forward_passes for r in alone)


def test_the_prefix_cache_gives_the_same_answers_from_fewer_prompt_tokens(engines):
    jump, cached = engines["jump"], engines["cached"]
    cached.prefix_cache.clear()
    before_jump, before_cached = _computed_prompt_tokens(jump), _computed_prompt_tokens(cached)
    hits = []
    for news in articles():
        for seed in (1, 2):  # the second time, the whole prompt but its last token is cached
            plain = jump.generate([request(jump, news, seed)])[0]
            reused = cached.generate([request(cached, news, seed)])[0]
            assert answer(reused) == answer(plain)
            hits.append(reused.cached_tokens)
    assert hits[0] == 0                                  # nothing stored yet
    assert hits[1] == len(request(cached, articles()[0], 1).prompt_ids) - 1
    assert 0 < hits[2] < hits[1]                         # another article: the shared template and head
    computed_plain = _computed_prompt_tokens(jump) - before_jump
    computed_cached = _computed_prompt_tokens(cached) - before_cached
    assert computed_cached < computed_plain / 2


def _computed_prompt_tokens(generator) -> int:
    return generator.stats.prompt_tokens - generator.stats.cached_prompt_tokens


def test_the_prefix_cache_keeps_its_bound_and_the_longest_match():
    import torch

    from prompt_server.engine.prefix_cache import PrefixCache

    def kv(n):
        return [(torch.zeros(2, n, 4), torch.zeros(2, n, 4))]

    cache = PrefixCache(max_tokens=30, min_match=3)
    cache.store(list(range(10)), kv(10))
    cache.store(list(range(200, 212)), kv(12))
    entry, length = cache.lookup(list(range(8)) + [7, 7])
    assert length == 8 and entry is not None and entry.tokens == tuple(range(10))
    entry, length = cache.lookup(list(range(10)))
    assert length == 9  # never the whole prompt: its last token's logits are needed
    assert cache.lookup([1, 2, 3, 4])[0] is None  # below min_match
    cache.store(list(range(100, 112)), kv(12))    # 34 tokens > 30: the least recently used goes
    assert cache.stored_tokens <= 30
    assert cache.lookup(list(range(200, 212)))[1] == 0
    assert cache.lookup(list(range(10)))[1] == 9


def test_int4_linear_is_close_to_the_original():
    import torch

    from prompt_server.engine import quant

    if not quant.supported("int4"):
        pytest.skip("this torch has no CPU int4 kernel (_weight_int4pack_mm_for_cpu, torch >= 2.6)")
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96, bias=True).to(torch.bfloat16)
    x = torch.randn(3, 5, 256, dtype=torch.bfloat16)
    exact, approx = linear(x).float(), quant.Int4Linear(linear, group=128)(x).float()
    assert approx.shape == exact.shape
    assert (approx - exact).norm() / exact.norm() < 0.15  # 16 levels per group of 128: ~7 % error


def test_int4_weights_still_give_valid_constrained_answers(tiny_model_dir):
    from prompt_server.engine import quant
    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model

    if not quant.supported("int4"):
        pytest.skip("this torch has no CPU int4 kernel (_weight_int4pack_mm_for_cpu, torch >= 2.6)")
    loaded = load_model(str(tiny_model_dir), device="cpu", quantize="int4")
    assert isinstance(loaded.weights().lm_head, quant.Int4Linear)
    generator = Generator(loaded, max_batch_size=2)
    for result in generator.generate([request(generator, news, seed) for seed, news in enumerate(articles()[:2])]):
        assert result.finish_reason == "stop"
        PicturePrompt.from_json(result.text)


def test_prepacked_bf16_linears_give_valid_answers_close_to_plain_ones(tiny_model_dir):
    import torch

    from prompt_server.engine import prepack
    from prompt_server.engine.generator import Generator
    from prompt_server.engine.model_loader import load_model

    if not prepack.supported():
        pytest.skip("this torch has no oneDNN linear prepacking")
    linear = torch.nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert torch.allclose(prepack.PackedLinear(linear)(x).float(), linear(x).float(), atol=0.02, rtol=0.02)
    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", quantize="bf16-packed")
    assert isinstance(loaded.weights().lm_head, prepack.PackedLinear)
    generator = Generator(loaded, max_batch_size=2)
    for result in generator.generate([request(generator, news, seed) for seed, news in enumerate(articles()[:2])]):
        assert result.finish_reason == "stop"
        PicturePrompt.from_json(result.text)


def test_the_default_weight_format_prepacks_bf16_on_a_cpu_only():
    import torch

    from prompt_server.engine import prepack
    from prompt_server.engine.model_loader import ModelLoadError, pick_weight_format

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    expected = "bf16-packed" if prepack.supported() else None
    assert pick_weight_format(None, cpu, torch.bfloat16) == pick_weight_format("auto", cpu, torch.bfloat16) == expected
    assert pick_weight_format("auto", cpu, torch.float32) is None
    assert pick_weight_format("auto", gpu, torch.bfloat16) is None
    assert pick_weight_format("none", cpu, torch.bfloat16) is None
    assert pick_weight_format("int4", cpu, torch.bfloat16) == "int4"
    with pytest.raises(ModelLoadError, match="auto, none"):
        pick_weight_format("int3", cpu, torch.bfloat16)
