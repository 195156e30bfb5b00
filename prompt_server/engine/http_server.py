"""SGLang's OpenAI-compatible HTTP subset, served by the embedded engine.

GET /health, GET /v1/models, POST /v1/chat/completions (with SGLang's
top-level `regex` or OpenAI's `response_format` json_schema). Each request is
parsed and its grammar compiled in its own HTTP thread (bad input -> 400 at
once); decoding goes through the BatchScheduler, which batches concurrent
requests.
"""
from __future__ import annotations

import json
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

from .constraint import GrammarError
from .generator import BatchScheduler, GenerationRequest, Generator

ENGINE_NAME = "newspicgen-local"
DEFAULT_MAX_TOKENS = 1024


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.kind = status, kind


class EngineService:
    """What the HTTP layer needs: the generator, its scheduler and the names to report."""

    def __init__(self, generator: Generator, scheduler: BatchScheduler, *,
                 served_model_name: str, api_key: Optional[str] = None):
        self.generator = generator
        self.scheduler = scheduler
        self.served_model_name = served_model_name
        self.api_key = api_key

    @property
    def tokenizer(self):
        return self.generator.loaded.tokenizer

    def models(self) -> Dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.served_model_name, "object": "model", "created": int(time.time()),
            "owned_by": ENGINE_NAME, "root": self.generator.loaded.path,
            "max_model_len": self.generator.loaded.context_length}]}

    def chat_completion(self, body: Any) -> Dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        prompt_ids = self._prompt_ids(body.get("messages"))
        grammar = self._grammar(body)
        max_tokens = _number(body, "max_tokens", int, body.get("max_completion_tokens", DEFAULT_MAX_TOKENS),
                             low=1)
        context = self.generator.loaded.context_length
        if len(prompt_ids) + max_tokens > context:
            raise BadRequest(
                f"Requested token count exceeds the model's maximum context length of {context} tokens. "
                f"You requested a total of {len(prompt_ids) + max_tokens} tokens: {len(prompt_ids)} tokens "
                f"from the input messages and {max_tokens} tokens for the completion. "
                f"Please reduce the number of tokens in the input messages or the completion to fit "
                f"within the limit.")
        temperature = _number(body, "temperature", float, 1.0, low=0.0)
        top_p = _number(body, "top_p", float, 1.0, low=0.0, high=1.0)
        if top_p == 0.0:
            top_p = 1e-9
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise BadRequest(f"seed must be an integer, got {seed!r}")
        n = _number(body, "n", int, 1, low=1, high=self.generator.max_batch_size)
        futures = [self.scheduler.submit(GenerationRequest(
            prompt_ids=prompt_ids, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            seed=None if seed is None else seed + i, grammar=grammar)) for i in range(n)]
        results = [f.result() for f in futures]
        completion = sum(r.completion_tokens for r in results)
        return {
            "id": uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or self.served_model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": r.text},
                         "logprobs": None, "finish_reason": r.finish_reason}
                        for i, r in enumerate(results)],
            "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": completion,
                      "total_tokens": len(prompt_ids) + completion},
        }

    def _prompt_ids(self, messages: Any) -> List[int]:
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list of {role, content} objects")
        chat = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(f"messages[{i}] must be an object with a string role and content")
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts: keep the text ones
                content = "".join(part.get("text", "") for part in content
                                  if isinstance(part, dict) and part.get("type") == "text")
            if not isinstance(content, str):
                raise BadRequest(f"messages[{i}].content must be a string or a list of text parts")
            chat.append({"role": message["role"], "content": content})
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _grammar(self, body: Dict[str, Any]) -> Optional[str]:
        regex = body.get("regex")
        response_format = body.get("response_format")
        schema = None
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or "schema" not in spec:
                raise BadRequest('response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}')
            schema = spec.get("schema")
        elif isinstance(response_format, dict) and response_format.get("type") == "json_object":
            schema = {"type": "object"}
        elif response_format not in (None, {}) and not (
                isinstance(response_format, dict) and response_format.get("type") == "text"):
            raise BadRequest(f"unsupported response_format {response_format!r}; use json_schema, json_object or text")
        if regex is not None and schema is not None:
            raise BadRequest("Only one of regex or response_format can be set; "
                             "this engine applies one constraint per request")
        if regex is not None and not isinstance(regex, str):
            raise BadRequest("regex must be a string")
        if regex is None and schema is None:
            return None
        try:
            return self.generator.compile(regex=regex, json_schema=schema)
        except GrammarError as exc:
            raise BadRequest(str(exc)) from None


def _number(body: Dict[str, Any], key: str, kind: type, default: Any, *,
            low: Optional[float] = None, high: Optional[float] = None):
    value = body.get(key)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadRequest(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"{key}={value} is out of range [{low}, {high if high is not None else 'inf'}]")
    return kind(value)


def make_handler(service: EngineService):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "newspicgen-local"

        def log_message(self, fmt: str, *args: Any) -> None:  # keep the console for errors
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, {"status": "ok"})
            elif path == "/v1/models":
                if self._authorized():
                    self._send(200, service.models())
            else:
                self._error(BadRequest(f"no route GET {path}", 404, "NotFoundError"))

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path != "/v1/chat/completions":
                self._error(BadRequest(f"no route POST {path}", 404, "NotFoundError"))
                return
            if not self._authorized():
                return
            try:
                body = json.loads(body_bytes or b"null")
            except (ValueError, UnicodeDecodeError) as exc:
                self._error(BadRequest(f"request body is not valid JSON: {exc}"))
                return
            try:
                self._send(200, service.chat_completion(body))
            except BadRequest as exc:
                self._error(exc)
            except Exception as exc:  # engine failure: report it, keep serving
                self._error(BadRequest(f"internal error: {type(exc).__name__}: {exc}", 500,
                                       "InternalServerError"))

        def _authorized(self) -> bool:
            if not service.api_key or self.headers.get("Authorization") == f"Bearer {service.api_key}":
                return True
            self._error(BadRequest("Unauthorized: send the server's API key as 'Authorization: Bearer KEY'",
                                   401, "AuthenticationError"))
            return False

        def _error(self, exc: BadRequest) -> None:
            self._send(exc.status, {"object": "error", "message": str(exc), "type": exc.kind,
                                    "param": None, "code": exc.status})

        def _send(self, status: int, payload: Dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def make_server(service: EngineService, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    return server


def build_service(model: str, *, source: str = "auto", device: str = "auto", dtype: str = "auto",
                  max_batch_size: int = 8, context_length: Optional[int] = None,
                  served_model_name: str = "newspicgen", api_key: Optional[str] = None) -> EngineService:
    """Load the model and start the scheduler thread (the slow part of `serve --engine local`)."""
    from .model_loader import load_model

    loaded = load_model(model, source=source, device=device, dtype=dtype, context_length=context_length)
    generator = Generator(loaded, max_batch_size=max_batch_size)
    return EngineService(generator, BatchScheduler(generator), served_model_name=served_model_name,
                         api_key=api_key)
