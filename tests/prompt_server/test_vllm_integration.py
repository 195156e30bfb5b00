"""Real vLLM end to end: `newspicgen serve --engine vllm --device cpu` with the tiny model.

Skipped unless NEWSPICGEN_VLLM_PYTHON names a python with vLLM's CPU build
(tests/harness/vllm builds one; CI has none). One server serves the whole
module, behind an API key; the last test stops it with Ctrl-C and checks that
nothing is left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from prompt_server.client import PromptClient
from prompt_server.errors import AuthenticationError, GrammarRejected
from prompt_server.schema import PicturePrompt, matches
from prompt_server.server_kind import identify
from tests.support import REPO
from tests.support.peers import LaunchedServe, leftovers, skip_without
from tests.support.qwen_tokenizer_model import build_qwen_tokenizer_model
from tests.support.sglang import alive

pytestmark = skip_without("vllm")

API_KEY = "vllm-test-key"
NEWS = {"title": "雪豹现身祁连山保护区红外相机",
        "content": "祁连山国家公园近日公布一组红外相机画面，一只成年雪豹在岩壁间缓步巡视领地，随后跃上山脊消失在雪线之上。"}


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    # vLLM's CPU attention refuses head size 16 (tests/support/tiny_model.py's): head size 32
    model = build_qwen_tokenizer_model(tmp_path_factory.mktemp("qwen-tiny32"), hidden_size=128)
    server = LaunchedServe("vllm", model, api_key=API_KEY)
    server.wait_ready()
    yield server
    server.stop()


def cli(*argv, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO), NEWSPICGEN_API_KEY=API_KEY)
    return subprocess.run([sys.executable, "-m", "newspicgen", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_identified_as_vllm_with_its_own_regex_mode(vllm):
    found = identify(vllm.url, api_key=API_KEY)
    assert (found.kind, found.mode, found.models) == ("vllm", "vllm_regex", ["newspicgen"])
    assert found.version and found.error is None


def test_prompt_without_a_mode_gives_valid_json(vllm):
    result = cli("prompt", "--server", vllm.url, "--title", NEWS["title"], "--content", NEWS["content"])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    PicturePrompt.from_dict(data)


def test_the_request_carries_structured_outputs_and_the_answer_matches_the_regex(vllm):
    with PromptClient(vllm.url, api_key=API_KEY) as client:
        from prompt_server.instruction import News, build_instruction
        body = client.request_body(build_instruction(News(**NEWS)))
        assert "structured_outputs" in body and "regex" not in body
        response = client._request("POST", "/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert matches(response.json()["choices"][0]["message"]["content"])


def test_a_batch_of_the_24_examples_is_all_valid(vllm, tmp_path):
    out = tmp_path / "batch"
    result = cli("batch", str(REPO / "examples" / "news.jsonl"), "--out", str(out), "--server", vllm.url,
                 "--concurrency", "4", "--seed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 24 == len({r["id"] for r in records})
    for record in records:
        PicturePrompt.from_dict(record["picture_prompt"])


def test_a_bad_regex_is_a_typed_error_with_vllms_message(vllm):
    with PromptClient(vllm.url, api_key=API_KEY, retries=0) as client:
        response = client._request("POST", "/v1/chat/completions", json={
            "model": "newspicgen", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8,
            "structured_outputs": {"regex": "("}})
        with pytest.raises(GrammarRejected) as info:
            client._parse(response)
        assert PromptClient(vllm.url, api_key=API_KEY).health().ok, "the server stays up"
    assert "regex" in info.value.server_message.lower() or "grammar" in info.value.server_message.lower()


def test_the_api_key_is_enforced_and_never_printed(vllm):
    with pytest.raises(AuthenticationError):
        PromptClient(vllm.url, api_key=None, retries=0).generate(NEWS)
    with pytest.raises(AuthenticationError):
        PromptClient(vllm.url, api_key="wrong", retries=0).generate(NEWS)
    assert PromptClient(vllm.url, api_key=API_KEY).generate(NEWS).en_prompt
    assert API_KEY not in vllm.text()


def test_ctrl_c_stops_vllm_and_leaves_no_process_behind(vllm):
    family = vllm.descendants()
    assert family, "vLLM runs as children of the launcher"
    assert vllm.interrupt() == 0
    deadline = time.monotonic() + 30
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive(family) == [], f"left behind: {leftovers(family)}"
    text = vllm.text()
    assert "KeyboardInterrupt" not in text and "EngineDeadError" not in text, "a graceful SIGTERM shutdown"
    assert "all workers exited gracefully" in text
