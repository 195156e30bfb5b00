"""Mode auto: the client asks the server what it is, once, and sends the constraint that
server enforces. The real embedded engine on loopback, and loopback stubs for the servers CI
cannot run (`..._stub_<kind>`: each answers valid JSON only when its own field is sent)."""
from __future__ import annotations

import json
import re

import pytest

from prompt_server.client import PromptClient, constraint_fields
from prompt_server.errors import InvalidOutput
from prompt_server.instruction import News, build_instruction
from prompt_server.schema import JSON_CHAR, output_json_schema, output_regex
from tests.support.engine_stubs import stub_server

NEWS = {"title": "动物园迎来两只大熊猫幼崽", "content": "本月初，市动物园的大熊猫顺利产下一对双胞胎幼崽。"}
REGEX, SCHEMA = output_regex(), output_json_schema()


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("NEWSPICGEN_API_KEY", raising=False)


@pytest.mark.parametrize("mode, fields", [
    ("regex", {"regex": REGEX}),
    ("vllm_regex", {"structured_outputs": {"regex": REGEX}}),
    ("json_schema", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "picture_prompt", "schema": SCHEMA, "strict": True}}}),
])
def test_constraint_fields_per_mode(mode, fields):
    assert constraint_fields(mode, REGEX, SCHEMA, "picture_prompt") == fields


def test_json_object_mode_bounds_each_string_to_json_string_characters():
    """llama-cpp-python's converter lets a raw newline into a string (json.loads refuses it);
    the pattern it writes into the grammar as is keeps to JSON's own string characters."""
    fields = constraint_fields("json_object", REGEX, SCHEMA, "picture_prompt")["response_format"]
    assert fields["type"] == "json_object"
    properties = fields["schema"]["properties"]
    assert properties["ch_keyword"]["pattern"] == "^" + JSON_CHAR + "{1,32}$"
    assert "pattern" not in properties["type"] and properties["type"]["enum"] == SCHEMA["properties"]["type"]["enum"]
    assert "pattern" not in SCHEMA["properties"]["ch_keyword"], "the shared schema is left alone"
    pattern = re.compile(properties["en_prompt"]["pattern"])
    assert pattern.match(json.dumps("a comic \"panda\"\n")[1:-1]) and not pattern.match("a\nraw newline")


def test_constraint_fields_refuse_an_unresolved_auto():
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        constraint_fields("auto", REGEX, SCHEMA, "picture_prompt")


def test_auto_is_the_default_and_sends_regex_to_the_real_embedded_engine(local_server_url):
    with PromptClient(local_server_url) as client:
        assert client.mode == "auto"
        body = client.request_body(build_instruction(News(**NEWS)))
        assert body["regex"] == REGEX and "response_format" not in body
        assert client.generate(NEWS, seed=1).en_prompt
        info = client.health()
    assert (info.kind, info.mode) == ("newspicgen", "regex")


@pytest.mark.parametrize("kind, field", [
    ("sglang", "regex"),
    ("vllm", "structured_outputs"),
    ("llamacpp", "response_format"),
    ("llama-cpp-python", "response_format"),
    ("ollama", "response_format"),
    ("lmstudio", "response_format"),
])
def test_auto_sends_each_kind_its_own_constraint_and_gets_valid_json_stub(kind, field):
    with stub_server(kind) as server, PromptClient(server.url, retries=0) as client:
        prompts = [client.generate(NEWS) for _ in range(3)]
        gets = list(server.gets)
        sent = server.requests
    assert all(prompt.type == "1" for prompt in prompts)
    assert all(field in body for body in sent)
    assert gets.count("/v1/models") == 1, "identified once, then kept"


def test_a_pinned_mode_the_server_ignores_says_which_mode_to_set_stub_vllm():
    with stub_server("vllm") as server, PromptClient(server.url, mode="regex", retries=0) as client:
        client.identity()
        with pytest.raises(InvalidOutput) as info:
            client.generate(NEWS)
    assert "this server is vLLM, which ignores mode regex: set mode vllm_regex or auto" in info.value.hint
    assert "\n" not in str(info.value)


def test_an_unnamed_server_answering_unconstrained_lists_the_modes_to_try_stub_openai():
    with stub_server("openai") as server, PromptClient(server.url, mode="regex", retries=0) as client, \
            pytest.raises(InvalidOutput) as info:
        client.generate(NEWS)
    assert "this server did not enforce mode regex" in info.value.hint
    assert "vllm_regex (vLLM)" in info.value.hint and "json_object (llama-cpp-python)" in info.value.hint


def test_health_names_the_kind_and_its_mode_stub_llama_cpp_python():
    with stub_server("llama-cpp-python") as server, PromptClient(server.url) as client:
        info = client.health()  # llama-cpp-python has no /health: its model list is enough
    assert info.ok and (info.kind, info.mode, info.model) == ("llama-cpp-python", "json_object", "newspicgen")


def test_auto_with_the_api_key_identifies_a_guarded_server_stub_vllm():
    with stub_server("vllm", api_key="k") as server, PromptClient(server.url, api_key="k") as client:
        assert client.generate(NEWS).type == "1"
        assert server.requests[-1]["structured_outputs"] == {"regex": REGEX}
