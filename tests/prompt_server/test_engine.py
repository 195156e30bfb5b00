"""The embedded engine over real HTTP on loopback, with the tiny model and real llguidance."""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from prompt_server.schema import PicturePrompt, output_json_schema, output_regex
from tests.support.local_server import start_local_server
from tests.support.loopback import stop_process

NEWS = "以下是一篇新闻，标题“城市公园开放”。新闻内容：市民在新公园里散步。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"


def chat(url, *, headers=None, timeout=60, **fields):
    body = {"model": "newspicgen", "messages": [{"role": "user", "content": NEWS}], "max_tokens": 400,
            "temperature": 0.7}
    body.update(fields)
    return requests.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def answer(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_regex_answers_match_the_regex_and_parse(local_server_url, seed):
    response = chat(local_server_url, regex=output_regex(), seed=seed)
    text = answer(response)
    assert re.fullmatch(output_regex(), text), text
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    PicturePrompt.from_json(text)


def test_tightened_regex_bounds_are_obeyed(local_server_url):
    regex = output_regex({"ch_keyword": 2, "en_keyword": 3})
    prompt = PicturePrompt.from_json(answer(chat(local_server_url, regex=regex, seed=5)))
    assert len(prompt.ch_keyword) <= 2 and len(prompt.en_keyword) <= 3


def test_json_schema_response_format(local_server_url):
    fmt = {"type": "json_schema", "json_schema": {"name": "picture_prompt", "schema": output_json_schema()}}
    for seed in (1, 2):
        text = answer(chat(local_server_url, response_format=fmt, seed=seed))
        assert list(PicturePrompt.from_json(text).to_dict()) == list(json.loads(text))


def test_bad_regex_is_400_and_server_stays_up(local_server_url):
    response = chat(local_server_url, regex="(?<=news)[a-z]+", max_tokens=5)
    assert response.status_code == 400
    error = response.json()
    assert error["object"] == "error" and error["code"] == 400 and error["type"] == "BadRequestError"
    assert error["message"].startswith("Failed to compile regex grammar:")
    assert re.fullmatch(output_regex(), answer(chat(local_server_url, regex=output_regex(), seed=1)))


def test_bad_json_schema_is_400(local_server_url):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    response = chat(local_server_url, response_format=fmt, max_tokens=5)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Failed to compile json_schema grammar:")


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"messages": []}', "messages"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "regex": "a", '
     b'"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}', "Only one"),
])
def test_bad_bodies_are_400_with_the_cause(local_server_url, body, needle):
    response = requests.post(local_server_url + "/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert needle in response.json()["message"]


def test_too_long_request_is_400_naming_the_context_length(local_server_url):
    response = chat(local_server_url, max_tokens=100_000)
    assert response.status_code == 400
    assert "maximum context length of 4096 tokens" in response.json()["message"]


def test_tiny_max_tokens_finishes_with_length(local_server_url):
    response = chat(local_server_url, regex=output_regex(), max_tokens=3, seed=1)
    payload = response.json()
    assert payload["choices"][0]["finish_reason"] == "length"
    assert payload["usage"]["completion_tokens"] == 3
    assert output_regex().startswith(r"\{") and payload["choices"][0]["message"]["content"].startswith("{")


def test_usage_counts_are_consistent(local_server_url, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat_text = tokenizer.apply_chat_template([{"role": "user", "content": NEWS}], tokenize=False,
                                              add_generation_prompt=True)
    payload = chat(local_server_url, regex=output_regex(), seed=7).json()
    usage, text = payload["usage"], payload["choices"][0]["message"]["content"]
    assert usage["prompt_tokens"] == len(tokenizer(chat_text, add_special_tokens=False)["input_ids"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # the answer re-tokenises to about as many tokens as were generated (a random model may pick
    # non-canonical pieces, which BPE then splits or merges differently)
    assert 0 < len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= usage["completion_tokens"] * 1.25 + 2
    assert usage["completion_tokens"] < 400


def test_response_shape(local_server_url):
    payload = chat(local_server_url, regex=output_regex(), seed=1, model="whatever-name").json()
    assert payload["object"] == "chat.completion" and payload["id"] and isinstance(payload["created"], int)
    assert payload["model"] == "whatever-name"  # echoed, like SGLang
    assert payload["choices"][0]["index"] == 0 and payload["choices"][0]["message"]["role"] == "assistant"


def test_n_gives_distinct_choices(local_server_url):
    payload = chat(local_server_url, regex=output_regex(), seed=11, n=2).json()
    texts = [c["message"]["content"] for c in payload["choices"]]
    assert [c["index"] for c in payload["choices"]] == [0, 1]
    assert all(re.fullmatch(output_regex(), t) for t in texts) and texts[0] != texts[1]


def test_unconstrained_request_stops_on_eos_or_length(local_server_url):
    payload = chat(local_server_url, max_tokens=20, seed=1).json()
    choice = payload["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert payload["usage"]["completion_tokens"] <= 20
    assert "<|im_end|>" not in choice["message"]["content"]


def test_same_seed_same_answer_alone_or_concurrent(local_server_url):
    seeds = list(range(100, 105))
    alone = {seed: answer(chat(local_server_url, regex=output_regex(), seed=seed)) for seed in seeds}
    assert len(set(alone.values())) == len(seeds)  # different seeds, different answers
    with ThreadPoolExecutor(len(seeds)) as pool:
        together = dict(zip(seeds, pool.map(
            lambda s: answer(chat(local_server_url, regex=output_regex(), seed=s)), seeds), strict=False))
    assert together == alone
    for text in together.values():
        PicturePrompt.from_json(text)


def test_models_endpoint(local_server_url, tiny_model_dir):
    payload = requests.get(local_server_url + "/v1/models", timeout=10).json()
    assert payload["object"] == "list"
    [model] = payload["data"]
    assert model["id"] == "newspicgen" and model["object"] == "model"
    assert model["owned_by"] == "newspicgen-local" and model["root"] == str(tiny_model_dir)


def test_unknown_route_is_404(local_server_url):
    response = requests.get(local_server_url + "/v2/nothing", timeout=10)
    assert response.status_code == 404 and response.json()["object"] == "error"


@pytest.fixture(scope="module")
def keyed_server_url(tiny_model_dir):
    process, url = start_local_server(tiny_model_dir, "--api-key", "s3cret", "--served-model-name", "npg")
    yield url
    stop_process(process)


def test_api_key_is_enforced(keyed_server_url):
    assert requests.get(keyed_server_url + "/health", timeout=10).status_code == 200  # no key needed
    assert chat(keyed_server_url, max_tokens=2).status_code == 401
    wrong = chat(keyed_server_url, max_tokens=2, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == 401
    assert requests.get(keyed_server_url + "/v1/models", timeout=10).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert chat(keyed_server_url, max_tokens=2, headers=good).status_code == 200
    models = requests.get(keyed_server_url + "/v1/models", headers=good, timeout=10).json()
    assert models["data"][0]["id"] == "npg"


def test_generator_batch_equals_single_runs(tiny_model_dir):
    """In-process: a batch of differently long prompts decodes exactly like each prompt alone."""
    import torch

    from prompt_server.engine.model_loader import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: more threads only add overhead
    try:
        _batch_equals_single_runs(load_model(str(tiny_model_dir), device="cpu"))
    finally:
        torch.set_num_threads(threads)


def _batch_equals_single_runs(loaded):
    from prompt_server.engine.generator import GenerationRequest, Generator

    generator = Generator(loaded, max_batch_size=4)
    grammar = generator.compile(regex=output_regex())
    tok = loaded.tokenizer
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": NEWS * k}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for k in (1, 2, 3)]
    requests_ = [GenerationRequest(prompt_ids=p, max_tokens=400, temperature=0.8, seed=i, grammar=grammar)
                 for i, p in enumerate(prompts)]
    requests_.append(GenerationRequest(prompt_ids=prompts[0], max_tokens=7, temperature=1.0, seed=9,
                                       ignore_eos=True))
    finished = {}
    batched = generator.generate(requests_, on_finish=lambda i, r: finished.setdefault(i, r))
    assert {i: r.token_ids for i, r in finished.items()} == {i: r.token_ids for i, r in enumerate(batched)}
    for request, result in zip(requests_, batched, strict=False):
        assert generator.generate([request])[0].token_ids == result.token_ids
    assert [r.finish_reason for r in batched] == ["stop", "stop", "stop", "length"]
    assert batched[3].completion_tokens == 7
    for result in batched[:3]:
        PicturePrompt.from_json(result.text)
