"""HTTP client for any server speaking SGLang's OpenAI-compatible protocol.

Mode "auto" (the default) asks the server what it is once (`server_kind`) and
sends the constraint field that server enforces; the other modes pin one (see
`constraint_fields`).
Every answer is validated against `PicturePrompt`, whatever the server claims
to have enforced, and every failure is a typed error that says what to do.
Every request is bounded: one wall-clock deadline, a cap on the body's size,
and parsing that survives hostile JSON. The server URL's password and the API
key never reach a message (`base_url` is the redacted URL, for people).
Needs only requests + pydantic: the WebUI imports it.
"""
from __future__ import annotations

import functools
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union
from urllib.parse import unquote, urlparse

import requests
import urllib3

from prompt_server import server_kind
from prompt_server.compat import ValidationError, first_error
from prompt_server.defaults import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    MAX_RESPONSE_BYTES,
    MODES,
    SERVED_MODEL_NAME,
    default_server_url,
)
from prompt_server.errors import (
    AuthenticationError,
    GrammarRejected,
    IncompleteOutput,
    InvalidOutput,
    PromptServerError,
    RetryPolicy,
    ServerError,
    ServerTimeout,
    ServerUnreachable,
    excerpt,
    one_line,
    redact_url,
)
from prompt_server.instruction import DEFAULT_MAX_CONTENT_CHARS, Instruction, News
from prompt_server.schema import JSON_CHAR, PicturePrompt, output_regex
from prompt_server.task import NEWS, Task

_RETRY_STATUS = (500, 502, 503, 504)
_READ_CHUNK = 64 * 1024


# --- client ---------------------------------------------------------------------

@dataclass
class ServerInfo:
    url: str
    ok: bool
    model: Optional[str] = None
    engine: Optional[str] = None  # "sglang", "newspicgen-local", or whatever owned_by says
    kind: Optional[str] = None    # what server_kind.identify() found: "vllm", "ollama", ...
    mode: Optional[str] = None    # the constraint mode requests to it carry
    latency_ms: float = 0.0
    error: Optional[PromptServerError] = None  # what is wrong (with its fix), when not ok


@functools.cache
def _regex() -> str:
    return output_regex()


def constraint_fields(mode: str, regex: str, schema: Dict[str, Any], name: str) -> Dict[str, Any]:
    """The request fields that make a server enforce the output shape, per (resolved) mode:
    regex: SGLang's top-level `regex` (SGLang, our engine); vllm_regex: vLLM's
    `structured_outputs` (vLLM ignores `regex`); json_schema: OpenAI's `response_format`
    (llama.cpp's server, Ollama, LM Studio); json_object: llama-cpp-python's form (its
    server answers OpenAI's json_schema type with HTTP 500)."""
    if mode == "regex":
        return {"regex": regex}
    if mode == "vllm_regex":
        return {"structured_outputs": {"regex": regex}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": _with_json_char_patterns(schema)}}
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                                            "strict": True}}}
    raise ValueError(f"no constraint fields for mode {mode!r}; resolve 'auto' first (PromptClient.constraint_mode)")


def _with_json_char_patterns(schema: Dict[str, Any]) -> Dict[str, Any]:
    """`schema` with a pattern on each bounded string property: llama-cpp-python's schema
    converter lets raw control characters (a newline) into strings, which no JSON parser takes;
    a pattern is written into its grammar as is, one JSON string character at a time."""
    properties = {}
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and prop.get("type") == "string" and "maxLength" in prop \
                and "pattern" not in prop and "enum" not in prop:
            prop = dict(prop, pattern=f"^{JSON_CHAR}{{{prop.get('minLength', 0)},{prop['maxLength']}}}$")
        properties[name] = prop
    return dict(schema, properties=properties) if properties else schema


def _normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url  # "127.0.0.1:30000" typed into a settings box
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"server URL {redact_url(url)!r} is not an http(s) URL; use e.g. {DEFAULT_SERVER_URL}")
    if url.endswith("/v1"):  # pasted from an OpenAI-style config
        url = url[:-3]
    return url


def _checked_api_key(api_key: Optional[str]) -> Optional[str]:
    key = (api_key or os.environ.get(ENV_API_KEY, "")).strip()
    if any(char.isspace() or not char.isprintable() for char in key):
        # requests would refuse the header with the key inside its message: never show it
        raise ValueError("the API key contains spaces or control characters; copy it again without them")
    return key or None


def _json(response: requests.Response) -> Any:
    """response.json(), with too-deep nesting (`[[[[...`, a RecursionError) as a ValueError."""
    try:
        return response.json()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _read_body(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The body, a piece at a time: requests' read timeout is per read, so a server
    trickling a byte a second would never time out, and `.content` has no size cap."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    raw = response.raw

    def read_once() -> bytes:
        # one socket read at most (urllib3 2's read1), and never past the deadline
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
        return raw.read1(_READ_CHUNK, decode_content=True)

    # older urllib3 has no read1: its reads block until a whole chunk is there
    pieces = iter(read_once, b"") if hasattr(raw, "read1") else response.iter_content(1024)
    chunks, size = [], 0
    try:
        for piece in pieces:
            size += len(piece)
            if size > limit:
                raise _TooLarge()
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout("deadline passed while reading the body")
            chunks.append(piece)
    # raw reads raise urllib3's errors; turn them into the requests errors _request handles
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.HTTPError as exc:  # ProtocolError: the connection broke mid-body
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    return b"".join(chunks)


class _TooLarge(Exception):
    """The body is over MAX_RESPONSE_BYTES."""


def _connection_reason(exc: Exception) -> str:
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def error_text(response: requests.Response) -> str:
    """The error of an HTTP answer, from any of the bodies we meet: SGLang / OpenAI
    (`{"error": {"message"}}` or `{"message"}`), FastAPI (`{"detail"}`) and the WebUI
    (`{"error": "OutOfMemoryError", "errors": "CUDA out of memory"}`); else the raw text."""
    try:
        body = _json(response)
    except ValueError:
        return response.text or response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        parts = [str(body[key]) for key in ("error", "message", "detail", "errors") if body.get(key)]
        if parts:
            return ": ".join(parts)
    return response.text


class PromptClient:
    """Turns news into a validated PicturePrompt through a prompt server.

    Safe to share between threads: each thread gets its own requests.Session
    (see `_session`), so calls from the WebUI's worker threads and from
    generate_many() run in parallel without sharing one.
    """

    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = DEFAULT_TIMEOUT_S, retries: int = 2, mode: str = DEFAULT_MODE,
                 max_tokens: int = DEFAULT_MAX_TOKENS, model: str = SERVED_MODEL_NAME,
                 max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS, backoff: float = 0.5,
                 retry: Optional[RetryPolicy] = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self._url = _normalize_url(base_url or default_server_url())  # with credentials: requests only
        self.base_url = redact_url(self._url)  # for people: messages, ServerInfo.url, the tab
        self.api_key = _checked_api_key(api_key)
        self.timeout = float(timeout)
        # `retry` lets a caller share its policy (the batch's cancels on Ctrl-C)
        self.retry = retry or RetryPolicy(retries=max(0, int(retries)), backoff=float(backoff))
        self.mode = mode
        self._identity: Optional[server_kind.ServerIdentity] = None  # auto mode: asked once, then kept
        self._identity_lock = threading.Lock()
        self.max_tokens = int(max_tokens)
        self.model = model
        self.max_content_chars = int(max_content_chars)
        self.last_latency_ms: Optional[float] = None
        # requests.Session is not documented as thread-safe (its cookie jar and
        # adapter state are shared mutable objects), and one lock around it would
        # serialise generate_many. One Session per thread keeps connections
        # reused within a thread and nothing shared between threads. Sessions of
        # threads that have ended are closed, so their sockets do not pile up.
        self._local = threading.local()
        self._sessions: Dict[threading.Thread, requests.Session] = {}
        self._sessions_lock = threading.Lock()
        self._generation = 0  # bumped by close(): threads then open fresh sessions

    def __repr__(self) -> str:
        return f"PromptClient({self.base_url!r}, mode={self.mode!r})"

    # -- plumbing

    def _scrub(self, text: str) -> str:
        """Foreign text (an exception, a server's error body) without our secrets in it."""
        password = urlparse(self._url).password or ""
        for secret in (self.api_key, password, unquote(password)):
            if secret:
                text = text.replace(secret, "***")
        return redact_url(text)

    def _server_text(self, response: requests.Response, limit: int = 200) -> str:
        return one_line(self._scrub(error_text(response)), limit)

    def _session(self) -> requests.Session:
        cached = getattr(self._local, "session", None)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        session = requests.Session()
        session.headers["User-Agent"] = "newspicgen-client"
        if self.api_key:
            session.headers["Authorization"] = f"Bearer {self.api_key}"
        with self._sessions_lock:
            self._local.session = (self._generation, session)
            self._sessions[threading.current_thread()] = session
        self._close_ended_threads_sessions()
        return session

    def _close_ended_threads_sessions(self) -> None:
        with self._sessions_lock:
            ended = [thread for thread in self._sessions if not thread.is_alive()]
            sessions = [self._sessions.pop(thread) for thread in ended]
        for session in sessions:
            session.close()

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            self._generation += 1
        for session in sessions:
            session.close()

    def __enter__(self) -> PromptClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, *, json: Any = None,
                 timeout: Optional[float] = None) -> requests.Response:
        """One HTTP call within `timeout` seconds in all, its body read in full (at most
        MAX_RESPONSE_BYTES). A connection failure or a 5xx raises; any other answer is returned."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            response = self._session().request(method, self._url + path, json=json, stream=True,
                                               timeout=(min(10.0, timeout), timeout))
            try:
                # what `.content` would hold; set so .json() and .text read it as usual
                response._content = _read_body(response, deadline, MAX_RESPONSE_BYTES)
            finally:
                response.close()
        except _TooLarge:
            raise ServerError(f"the server at {self.base_url} sent a body over {MAX_RESPONSE_BYTES // 2 ** 20} MiB "
                              f"for {path}", "check that the server URL points at a prompt server",
                              status=response.status_code, url=self.base_url) from None
        except requests.exceptions.ConnectTimeout as exc:
            # a host that drops packets is unreachable, not slow
            self.last_latency_ms = None  # it timed a server that is gone (a restarted one starts afresh)
            raise ServerUnreachable(self.base_url, "connection timed out") from exc
        except requests.exceptions.Timeout as exc:
            raise ServerTimeout(self.base_url, timeout) from exc
        except requests.exceptions.ConnectionError as exc:
            self.last_latency_ms = None
            raise ServerUnreachable(self.base_url, _connection_reason(exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise ServerError(f"request to {self.base_url}{path} failed: {self._scrub(one_line(exc))}",
                              url=self.base_url) from exc
        if response.status_code in _RETRY_STATUS:
            raise ServerError(
                f"the prompt server at {self.base_url} failed (HTTP {response.status_code}: "
                f"{self._server_text(response)})", status=response.status_code, url=self.base_url)
        return response

    # -- which server, which constraint

    def identity(self, *, refresh: bool = False) -> server_kind.ServerIdentity:
        """What server_kind.identify() says about this server; kept once it named a server
        (a server that did not answer is asked again next time)."""
        with self._identity_lock:
            if self._identity is None or refresh:
                found = server_kind.identify(self._url, timeout=min(self.timeout, 10.0), api_key=self.api_key)
                if found.kind in (server_kind.KIND_NONE, server_kind.KIND_UNKNOWN):
                    return found
                self._identity = found
            return self._identity

    def constraint_mode(self) -> str:
        """The mode requests carry: the pinned one, or in auto mode the one this server enforces."""
        return self.identity().mode if self.mode == "auto" else self.mode

    def _forget_identity(self) -> None:
        """Another server may come up on this URL (SGLang stopped, vLLM started): ask again."""
        with self._identity_lock:
            self._identity = None

    # -- the API

    def request_body(self, instruction: Instruction, *, seed: Optional[int] = None,
                     temperature: float = DEFAULT_TEMPERATURE, task: Task = NEWS,
                     task_input: Any = None) -> Dict[str, Any]:
        """The /v1/chat/completions body; public so benchmarks and tests can see what is sent.
        The constraint is `task`'s, narrowed for `task_input` (e.g. a comic's panel count)."""
        body: Dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": instruction.text}],
            # SGLang's native default (128 tokens) would cut the JSON: always send it.
            "max_tokens": self.max_tokens,
            "temperature": float(temperature),
            "stream": False,
        }
        if seed is not None:
            body["seed"] = int(seed)
        regex = _regex() if task is NEWS else task.regex(task_input)
        body.update(constraint_fields(self.constraint_mode(), regex, task.json_schema(task_input), task.schema_name))
        return body

    def generate(self, news: Union[News, Mapping[str, Any]], *, seed: Optional[int] = None,
                 temperature: float = DEFAULT_TEMPERATURE) -> PicturePrompt:
        """One PicturePrompt for one news. EmptyNewsError before any HTTP call if it is empty."""
        result: PicturePrompt = self.generate_task(NEWS, news, seed=seed, temperature=temperature)
        return result

    def generate_task(self, task: Task, data: Any, *, seed: Optional[int] = None,
                      temperature: float = DEFAULT_TEMPERATURE, family: Optional[str] = None) -> Any:
        """`task`'s validated answer for `data` (its input, or a dict of it). Bad input
        (EmptyNewsError, ValueError) fails before any HTTP call."""
        task_input = task.parse_input(data)
        instruction = task.instruction(task_input, family, max_content_chars=self.max_content_chars)

        def attempt() -> Any:
            # in the attempt: auto mode's identification is retried with it, and a server that
            # went away is asked again (its successor may be another kind)
            body = self.request_body(instruction, seed=seed, temperature=temperature, task=task,
                                     task_input=task_input)
            started = time.perf_counter()
            try:
                response = self._request("POST", "/v1/chat/completions", json=body)
            except ServerUnreachable:
                self._forget_identity()
                raise
            self.last_latency_ms = (time.perf_counter() - started) * 1000.0
            return self._parse(response, task)

        return self.retry.call(attempt)

    def _parse(self, response: requests.Response, task: Task = NEWS) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationError(self.base_url, status, bool(self.api_key))
        if status in (400, 422):
            message = self._scrub(error_text(response))
            if re.search(r"regex|grammar|schema|json|response_format|constrain", message, re.IGNORECASE):
                raise GrammarRejected(message, self.constraint_mode(), self.base_url)
            raise ServerError(f"the prompt server rejected the request (HTTP {status}: {one_line(message, 200)})",
                              "check the server URL and that it speaks the OpenAI chat API", status=status,
                              url=self.base_url)
        if status == 404:
            raise ServerError(f"{self.base_url} has no /v1/chat/completions (HTTP 404)",
                              "check the server URL: it should point at SGLang or "
                              '"python -m prompt_server serve"', status=status)
        if status != 200:
            raise ServerError(f"the prompt server at {self.base_url} answered HTTP {status}: "
                              f"{self._server_text(response)}", status=status)
        try:
            body = _json(response)
            choice = body["choices"][0]
            content = choice["message"]["content"]
            finish_reason = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError):
            raise ServerError(
                f"the server at {self.base_url} answered 200 but not with a chat completion: "
                f"{self._scrub(excerpt(response.text, 200))}",
                "check that the URL points at an OpenAI-compatible server (SGLang, "
                '"python -m prompt_server serve", vLLM, ...)', status=status) from None
        if not isinstance(content, str):
            raise InvalidOutput(repr(content), "the answer has no text content", self._unconstrained_hint())
        if finish_reason == "length":
            raise IncompleteOutput(self.max_tokens, content)
        if finish_reason == "abort":
            raise ServerError(f"the prompt server aborted the generation: {excerpt(content, 120)}")
        try:
            return task.parse(content)
        except ValidationError as exc:
            raise InvalidOutput(content, first_error(exc), self._unconstrained_hint()) from None
        except ValueError as exc:  # json.JSONDecodeError or "expected a JSON object"
            raise InvalidOutput(content, str(exc), self._unconstrained_hint()) from None
        except RecursionError:  # json.loads on `[[[[...`
            raise InvalidOutput(content, "JSON nested too deeply", self._unconstrained_hint()) from None

    def _unconstrained_hint(self) -> str:
        """What to set when an answer came back unconstrained: the mode this server enforces."""
        mode = self.constraint_mode()
        identity = self._identity
        where = "(--mode, NEWSPICGEN_MODE, or Output constraint in the NewsPicGen settings)"
        if identity is None or identity.kind in (server_kind.KIND_OPENAI, server_kind.KIND_UNKNOWN):
            return (f"this server did not enforce mode {mode}; set the mode it enforces {where}: "
                    "regex (SGLang, newspicgen serve), vllm_regex (vLLM), json_schema (llama.cpp, Ollama, "
                    "LM Studio) or json_object (llama-cpp-python)")
        if identity.mode != mode:
            return (f"this server is {identity.label}, which ignores mode {mode}: set mode {identity.mode} "
                    f"or auto {where}")
        return (f"the {identity.label} answered without enforcing its constraint ({mode}); check its log "
                "(a grammar it could not build is answered unconstrained), or use SGLang or \"newspicgen serve\"")

    def generate_many(self, news_list: Iterable[Union[News, Mapping[str, Any]]], *, concurrency: int = 4,
                      seed: Optional[int] = None, temperature: float = DEFAULT_TEMPERATURE
                      ) -> List[Union[PicturePrompt, Exception]]:
        """Results in input order; a failed item holds its error (a PromptServerError, or
        EmptyNewsError / ValueError for a bad news item) instead of stopping the batch."""
        items = list(news_list)

        def one(news: Union[News, Mapping[str, Any]]) -> Union[PicturePrompt, Exception]:
            try:
                return self.generate(news, seed=seed, temperature=temperature)
            except (PromptServerError, ValueError) as exc:
                return exc

        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(int(concurrency), len(items))),
                                thread_name_prefix="newspicgen") as pool:
            results = list(pool.map(one, items))
        self._close_ended_threads_sessions()  # the pool's threads are gone now
        return results

    def candidates(self, news: Union[News, Mapping[str, Any]], n: int, *, seed: Optional[int] = None,
                   temperature: float = DEFAULT_TEMPERATURE, concurrency: int = 4) -> List[PicturePrompt]:
        """n samples with seeds seed..seed+n-1 (a random base seed when None); raises the first error."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not isinstance(news, News):
            news = News.from_dict(news)
        base = random.randrange(2 ** 31) if seed is None else int(seed)
        with ThreadPoolExecutor(max_workers=max(1, min(int(concurrency), n)),
                                thread_name_prefix="newspicgen") as pool:
            futures = [pool.submit(self.generate, news, seed=base + i, temperature=temperature)
                       for i in range(n)]
        self._close_ended_threads_sessions()
        return [future.result() for future in futures]

    def health(self) -> ServerInfo:
        """GET /health and /v1/models, one try each (the caller decides whether to ask again);
        never raises for server trouble, `error` says what is wrong."""
        timeout = min(self.timeout, 10.0)
        started = time.perf_counter()
        try:
            health = self._request("GET", "/health", timeout=timeout)
            latency = (time.perf_counter() - started) * 1000.0
            models = self._request("GET", "/v1/models", timeout=timeout)
        except PromptServerError as exc:
            return ServerInfo(self.base_url, False, latency_ms=(time.perf_counter() - started) * 1000.0, error=exc)
        model = engine = None
        error: Optional[PromptServerError] = None
        if models.status_code in (401, 403):
            error = AuthenticationError(self.base_url, models.status_code, bool(self.api_key))
        elif models.status_code == 200:
            try:
                entry = _json(models)["data"][0]
                model, engine = entry.get("id"), entry.get("owned_by")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                pass
        # Ollama and LM Studio have no /health: a working /v1/models is enough.
        ok = error is None and (health.status_code == 200 or (health.status_code == 404 and model is not None))
        if not ok and error is None:
            error = ServerError(f"the prompt server at {self.base_url} is not ready "
                                f"(/health answered HTTP {health.status_code})",
                                "it may still be loading the model; wait and retry", url=self.base_url)
        kind = mode = None
        if ok:  # asked afresh: "Check server" is how a user says the server changed
            identity = self.identity(refresh=True)
            kind, mode = identity.kind, self.constraint_mode()
        return ServerInfo(self.base_url, ok, model=model, engine=engine, kind=kind, mode=mode, latency_ms=latency,
                          error=error)
