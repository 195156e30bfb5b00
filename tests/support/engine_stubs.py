"""Loopback stand-ins for the servers CI cannot run (vLLM, llama.cpp, Ollama, LM Studio, ...).

Each answers its identity endpoints the way the real server does (bodies
copied in shape from their sources), and `/v1/chat/completions` like a server
that enforces only its own constraint field: a request carrying that field
gets a valid NewsPicGen answer, any other gets unconstrained prose, the way
vLLM answers SGLang's ignored `regex`. Every request body is recorded in
`server.requests`, every GET path in `server.gets`. Tests that use them say so in their names (`..._stub_<kind>`).
The real vLLM and llama.cpp servers are tested in test_vllm_integration.py /
test_llamacpp_integration.py when their harnesses are installed.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tests.support.loopback import LoopbackServer, QuietHandler

VALID_ANSWER = json.dumps({"ch_keyword": "大熊猫", "ch_prompt": "两只大熊猫幼崽在竹林里玩耍",
                           "en_keyword": "panda cubs", "en_prompt": "two giant panda cubs playing in bamboo",
                           "type": "1"}, ensure_ascii=False)
UNCONSTRAINED_ANSWER = "Sure! Here is a drawing prompt for the news: two pandas playing."

Route = Tuple[int, Any]


def _has_regex(body: Dict[str, Any]) -> bool:
    return isinstance(body.get("regex"), str)


def _has_vllm_regex(body: Dict[str, Any]) -> bool:
    outputs = body.get("structured_outputs")
    return isinstance(outputs, dict) and isinstance(outputs.get("regex"), str)


def _has_json_schema(body: Dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return (isinstance(fmt, dict) and fmt.get("type") == "json_schema"
            and isinstance((fmt.get("json_schema") or {}).get("schema"), dict))


def _has_json_object_schema(body: Dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict)


def _models(owned_by: str, model_id: str = "newspicgen", **extra: Any) -> Dict[str, Any]:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 1764633600,
                                         "owned_by": owned_by, **extra}]}


# kind -> (identity routes, the constraint check its chat endpoint honours, paths open without the key)
STUBS: Dict[str, Tuple[Dict[str, Route], Callable[[Dict[str, Any]], bool], Tuple[str, ...]]] = {
    "sglang": ({
        "/health": (200, b""),
        "/v1/models": (200, _models("sglang", root="/models/newspicgen", max_model_len=32768)),
        "/server_info": (200, {"model_path": "/models/newspicgen", "tokenizer_path": "/models/newspicgen",
                                   "grammar_backend": "llguidance", "version": "0.5.18"}),
    }, _has_regex, ("/health",)),
    "vllm": ({
        "/health": (200, b""),
        "/version": (200, {"version": "0.32.0"}),
        "/v1/models": (200, _models("vllm", root="/models/newspicgen", parent=None, max_model_len=2048,
                                    permission=[])),
    }, _has_vllm_regex, ("/health", "/version")),
    "llamacpp": ({
        "/health": (200, {"status": "ok"}),
        "/v1/models": (200, {"models": [{"name": "newspicgen", "model": "newspicgen"}],
                             **_models("llamacpp", meta={"vocab_type": 2, "n_ctx_train": 32768})}),
        "/props": (200, {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1,
                         "model_path": "/models/newspicgen-q8_0.gguf", "chat_template": "",
                         "build_info": "b7400-8a6e8b1"}),
    }, _has_json_schema, ("/health", "/v1/health")),
    "llama-cpp-python": ({
        "/v1/models": (200, _models("me", permissions=[])),
        "/openapi.json": (200, {"openapi": "3.1.0", "info": {"title": "🦙 llama.cpp Python API",
                                                             "version": "0.3.36"}, "paths": {}}),
    }, _has_json_object_schema, ("/openapi.json",)),
    "ollama": ({
        "/": (200, b"Ollama is running"),
        "/api/version": (200, {"version": "0.12.6"}),
        "/v1/models": (200, _models("library", model_id="newspicgen:latest")),
    }, _has_json_schema, ("/", "/api/version", "/v1/models")),
    "lmstudio": ({
        "/v1/models": (200, _models("organization_owner")),
        "/api/v0/models": (200, {"object": "list", "data": [{
            "id": "newspicgen", "object": "model", "type": "llm", "publisher": "local", "arch": "qwen2",
            "compatibility_type": "gguf", "quantization": "Q8_0", "state": "loaded",
            "max_context_length": 32768}]}),
    }, _has_json_schema, ("/v1/models", "/api/v0/models")),
    "openai": ({
        "/v1/models": (200, _models("system")),
    }, _has_json_schema, ("/v1/models",)),
}


def completion(content: str, finish_reason: str = "stop") -> Dict[str, Any]:
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "newspicgen",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 60, "total_tokens": 140}}


def stub_server(kind: str, *, api_key: Optional[str] = None, delay: float = 0.0) -> LoopbackServer:
    """A LoopbackServer answering like `kind` (use it in `with`); `api_key` makes the paths
    the real server guards answer 401 without it; `delay` seconds before every answer."""
    routes, honours, open_paths = STUBS[kind]
    requests: List[Dict[str, Any]] = []
    gets: List[str] = []

    class Handler(QuietHandler):
        def _refused(self) -> bool:
            path = self.path.split("?")[0]
            if not api_key or path in open_paths or self.headers.get("Authorization") == f"Bearer {api_key}":
                return False
            self.send(401, {"error": {"message": "Unauthorized", "type": "invalid_request_error", "code": 401}})
            return True

        def do_GET(self):
            gets.append(self.path)
            time.sleep(delay)
            if self._refused():
                return
            status, body = routes.get(self.path.split("?")[0], (404, {"detail": "Not Found"}))
            self.send(status, body, "text/plain" if isinstance(body, bytes) else "application/json")

        def do_POST(self):
            time.sleep(delay)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            requests.append(body)
            if self._refused():
                return
            if self.path != "/v1/chat/completions":
                self.send(404, {"detail": "Not Found"})
                return
            self.send(200, completion(VALID_ANSWER if honours(body) else UNCONSTRAINED_ANSWER))

    server = LoopbackServer(Handler)
    server.requests = requests  # type: ignore[attr-defined]
    server.gets = gets  # type: ignore[attr-defined]
    return server
