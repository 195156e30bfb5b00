"""server_kind: the real embedded engine on loopback, and loopback stubs for the servers
CI cannot run (named `..._stub_<kind>`; the real vLLM and llama.cpp servers are identified
in test_vllm_integration.py / test_llamacpp_integration.py)."""
from __future__ import annotations

import socket

import pytest

from prompt_server.server_kind import (
    KIND_NEWSPICGEN,
    KIND_NONE,
    KIND_OPENAI,
    KIND_UNKNOWN,
    MODE_FOR_KIND,
    identify,
    probe_local,
)
from tests.support.engine_stubs import stub_server
from tests.support.loopback import LoopbackServer, QuietHandler, free_port


def test_identify_the_real_embedded_engine(local_server_url):
    found = identify(local_server_url)
    assert found.kind == KIND_NEWSPICGEN
    assert found.mode == "regex"
    assert found.models == ["newspicgen"]
    assert found.error is None and found.reachable


def test_identify_accepts_a_typed_host_port_and_an_openai_style_v1_url(local_server_url):
    host_port = local_server_url.split("://", 1)[1]
    assert identify(host_port).kind == KIND_NEWSPICGEN
    assert identify(local_server_url + "/v1/").kind == KIND_NEWSPICGEN


@pytest.mark.parametrize("kind, mode, version", [
    ("sglang", "regex", "0.5.18"),
    ("vllm", "vllm_regex", "0.32.0"),
    ("llamacpp", "json_schema", "b7400-8a6e8b1"),
    ("llama-cpp-python", "json_object", "0.3.36"),
    ("ollama", "json_schema", "0.12.6"),
    ("lmstudio", "json_schema", None),
    ("openai", "json_schema", None),
])
def test_identify_each_kind_by_its_own_endpoints_stub(kind, mode, version):
    with stub_server(kind) as server:
        found = identify(server.url)
    assert (found.kind, found.mode, found.version) == (kind, mode, version)
    assert found.models and found.error is None
    assert MODE_FOR_KIND[kind] == mode


def test_identify_vllm_behind_an_api_key_by_its_open_version_endpoint_stub_vllm():
    with stub_server("vllm", api_key="s3cret") as server:
        without = identify(server.url, api_key=None)
        with_key = identify(server.url, api_key="s3cret")
    assert without.kind == "vllm" and without.models == []
    assert "HTTP 401" in without.error and "API key" in without.error
    assert with_key.kind == "vllm" and with_key.models == ["newspicgen"] and with_key.error is None


def test_identify_takes_the_api_key_from_the_environment_stub_vllm(monkeypatch):
    monkeypatch.setenv("NEWSPICGEN_API_KEY", "s3cret")
    with stub_server("vllm", api_key="s3cret") as server:
        found = identify(server.url)
    assert found.models == ["newspicgen"] and found.error is None


def test_identify_a_dead_port_returns_kind_none_without_raising():
    found = identify(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    assert found.kind == KIND_NONE and not found.reachable
    assert "nothing answers" in found.error and "refused" in found.error.lower()


def test_identify_a_server_that_never_answers_gives_up_after_the_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        found = identify(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3)
    finally:
        listener.close()
    assert found.kind == KIND_NONE and "no answer in time" in found.error


def test_identify_an_http_server_that_is_no_llm_server_says_so():
    class Html(QuietHandler):
        def do_GET(self):
            self.send(404, b"<html>not here</html>", "text/html")

    with LoopbackServer(Html) as server:
        found = identify(server.url)
    assert found.kind == KIND_UNKNOWN and found.reachable
    assert "no OpenAI-compatible server" in found.error


def test_identify_hides_the_urls_password():
    with stub_server("vllm") as server:
        found = identify(server.url.replace("http://", "http://user:hunter2@"))
    assert found.kind == "vllm"
    assert "hunter2" not in found.url and "user:***@" in found.url


def test_probe_local_lists_only_the_ports_and_urls_that_answer_stub_ollama_stub_lmstudio():
    dead = free_port()
    with stub_server("ollama", delay=0.4) as ollama, stub_server("lmstudio", delay=0.4) as lmstudio:
        ports = [int(ollama.url.rsplit(":", 1)[1]), dead]
        found = probe_local(ports, extra_urls=[lmstudio.url], timeout=2.0)
    assert [identity.kind for identity in found] == ["ollama", "lmstudio"]
    assert all(identity.url.startswith("http://127.0.0.1:") for identity in found)


def test_probe_local_with_nothing_listening_is_empty():
    assert probe_local([free_port(), free_port()], timeout=0.3) == []


def test_an_unnamed_openai_server_gets_the_json_schema_mode_stub_openai():
    with stub_server("openai") as server:
        found = identify(server.url)
    assert found.kind == KIND_OPENAI and found.mode == "json_schema"
