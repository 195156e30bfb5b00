"""Real llama.cpp end to end: `newspicgen gguf` makes a GGUF of a tiny Qwen2 (Qwen's real
tokenizer: the converter knows it), and `newspicgen serve --engine llamacpp` serves it with
llama-cpp-python's OpenAI server.

Skipped unless NEWSPICGEN_LLAMACPP_PYTHON names a python with llama-cpp-python[server]
and the GGUF converter is there (tests/harness/llamacpp builds both; CI has neither).
One server serves the module; the last test stops it with Ctrl-C.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from prompt_server.client import PromptClient
from prompt_server.errors import AuthenticationError, OutputError
from prompt_server.schema import PicturePrompt
from prompt_server.server_kind import identify
from tests.support import REPO
from tests.support.peers import LaunchedServe, leftovers, make_gguf, skip_without
from tests.support.qwen_tokenizer_model import build_qwen_tokenizer_model
from tests.support.sglang import alive

pytestmark = skip_without("llamacpp")

API_KEY = "llamacpp-test-key"
NEWS = {"title": "雪豹现身祁连山保护区红外相机",
        "content": "祁连山国家公园近日公布一组红外相机画面，一只成年雪豹在岩壁间缓步巡视领地，随后跃上山脊消失在雪线之上。"}


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    folder = build_qwen_tokenizer_model(tmp_path_factory.mktemp("qwen-tiny"))
    return make_gguf(folder, tmp_path_factory.mktemp("gguf") / "newspicgen-q8_0.gguf")


@pytest.fixture(scope="module")
def llamacpp(gguf):
    server = LaunchedServe("llamacpp", gguf, api_key=API_KEY)
    server.wait_ready()
    yield server
    server.stop()


def cli(*argv, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO), NEWSPICGEN_API_KEY=API_KEY)
    return subprocess.run([sys.executable, "-m", "newspicgen", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_the_gguf_carries_qwens_chat_template_and_a_modelfile_lies_beside_it(gguf):
    head = gguf.read_bytes()[:16 * 2 ** 20]
    assert head[:4] == b"GGUF" and b"qwen2" in head and b"<|im_start|>" in head
    text = (gguf.parent / "Modelfile").read_text(encoding="utf-8")
    assert text.splitlines()[1] == f"FROM ./{gguf.name}" and 'PARAMETER stop "<|im_end|>"' in text


def test_identified_as_llama_cpp_python_with_its_json_object_mode(llamacpp):
    found = identify(llamacpp.url, api_key=API_KEY)
    assert (found.kind, found.mode, found.models) == ("llama-cpp-python", "json_object", ["newspicgen"])
    assert found.version == "0.3.36"


def test_prompt_without_a_mode_gives_valid_json(llamacpp):
    result = cli("prompt", "--server", llamacpp.url, "--title", NEWS["title"], "--content", NEWS["content"])
    assert result.returncode == 0, result.stderr
    PicturePrompt.from_dict(json.loads(result.stdout))


def test_a_batch_of_the_24_examples_is_all_valid(llamacpp, tmp_path):
    out = tmp_path / "batch"
    result = cli("batch", str(REPO / "examples" / "news.jsonl"), "--out", str(out), "--server", llamacpp.url,
                 "--concurrency", "2", "--seed", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 24 == len({r["id"] for r in records})
    for record in records:
        PicturePrompt.from_dict(record["picture_prompt"])


def test_a_bad_schema_is_answered_unconstrained_and_caught_as_a_typed_error(llamacpp):
    # llama-cpp-python gives no error for a schema its converter cannot read: it falls back to
    # any JSON (its llama_chat_format catches the exception); validation catches the answer
    with PromptClient(llamacpp.url, api_key=API_KEY, retries=0, mode="json_object") as client:
        response = client._request("POST", "/v1/chat/completions", json={
            "model": "newspicgen", "messages": [{"role": "user", "content": "x"}], "max_tokens": 48, "seed": 1,
            "response_format": {"type": "json_object", "schema": {"type": "nonsense"}}})
        assert response.status_code == 200
        with pytest.raises(OutputError) as info:
            client._parse(response)
        assert client.health().ok, "the server stays up"
    assert "\n" not in str(info.value)


def test_the_api_key_is_enforced_and_never_printed(llamacpp):
    with pytest.raises(AuthenticationError):
        PromptClient(llamacpp.url, api_key="wrong", retries=0).generate(NEWS)
    assert PromptClient(llamacpp.url, api_key=API_KEY).generate(NEWS).en_prompt
    assert API_KEY not in llamacpp.text()


def test_ctrl_c_stops_llamacpp_and_leaves_no_process_behind(llamacpp):
    family = llamacpp.descendants() + [llamacpp.started_pids()[0]]
    assert llamacpp.interrupt() == 0
    deadline = time.monotonic() + 30
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive(family) == [], f"left behind: {leftovers(family)}"
