"""HTTP client for any server speaking SGLang's OpenAI-compatible protocol.

Mode "regex" sends SGLang's top-level `regex` (SGLang and our embedded engine);
mode "json_schema" sends `response_format` (vLLM, llama.cpp, Ollama, LM Studio).
Every answer is validated against `PicturePrompt`, whatever the server claims
to have enforced, and every failure is a typed error that says what to do.
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
from urllib.parse import urlparse

import requests

from .instruction import DEFAULT_MAX_CONTENT_CHARS, Instruction, News, build_instruction
from .schema import PicturePrompt, ValidationError, output_json_schema, output_regex

DEFAULT_SERVER_URL = "http://127.0.0.1:30000"
SERVER_URL_ENV = "NEWSPICGEN_SERVER_URL"
API_KEY_ENV = "NEWSPICGEN_API_KEY"
MODES = ("regex", "json_schema")
_EXCERPT_CHARS = 300
_RETRY_STATUS = (500, 502, 503, 504)


def default_server_url() -> str:
    return os.environ.get(SERVER_URL_ENV, "").strip() or DEFAULT_SERVER_URL


def _one_line(text: str, limit: int = _EXCERPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _excerpt(raw: str, limit: int = _EXCERPT_CHARS) -> str:
    """repr() keeps the excerpt on one line and shows control characters."""
    shown = raw if len(raw) <= limit else raw[:limit]
    return repr(shown) + (f" … ({len(raw)} characters in all)" if len(raw) > limit else "")


# --- errors -------------------------------------------------------------------

class PromptServerError(Exception):
    """Base of every client error; str() is one line: what happened, then what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ServerUnreachable(PromptServerError):
    def __init__(self, url: str, reason: str = ""):
        port = urlparse(url).port or 30000
        super().__init__(
            f"cannot reach the prompt server at {url}" + (f" ({reason})" if reason else ""),
            "start it with `python -m prompt_server serve --model blacker521/NewsPicGen "
            f"--port {port}` or fix the server URL")
        self.url = url


class AuthenticationError(PromptServerError):
    def __init__(self, url: str, status: int, has_key: bool):
        what = "refused the API key" if has_key else "requires an API key"
        super().__init__(
            f"the prompt server at {url} {what} (HTTP {status})",
            f"set the server's API key: the {API_KEY_ENV} environment variable, --api-key, "
            "or the NewsPicGen settings in the WebUI")
        self.url = url
        self.status = status


class GrammarRejected(PromptServerError):
    def __init__(self, server_message: str, mode: str):
        hint = ("if this server is not SGLang (vLLM, llama.cpp, Ollama, LM Studio), use mode "
                "json_schema (--mode json_schema); for SGLang, start it with --grammar-backend llguidance"
                if mode == "regex" else
                "the server cannot enforce the JSON schema; use SGLang or "
                "`python -m prompt_server serve` with mode regex")
        super().__init__(f"the server rejected the output constraint: {_one_line(server_message)}", hint)
        self.server_message = server_message


class ServerTimeout(PromptServerError):
    def __init__(self, url: str, timeout: float):
        super().__init__(
            f"the prompt server at {url} did not answer within {timeout:g} s",
            "it may still be loading the model or be busy; retry, or raise the timeout "
            "(--timeout or the NewsPicGen settings)")
        self.url = url
        self.timeout = timeout


class IncompleteOutput(PromptServerError):
    def __init__(self, max_tokens: int, raw: str):
        super().__init__(
            f"the model did not finish within {max_tokens} tokens (partial output: {_excerpt(raw, 120)})",
            "raise max_tokens (PromptClient(max_tokens=...)) or shorten the news")
        self.max_tokens = max_tokens
        self.raw = raw


class InvalidOutput(PromptServerError):
    def __init__(self, raw: str, reason: str):
        super().__init__(
            f"the model's answer is not a valid NewsPicGen prompt ({_one_line(reason, 200)}): {_excerpt(raw)}",
            "the server did not enforce the output constraint; use SGLang or "
            "`python -m prompt_server serve` (mode regex), or a server that supports "
            "response_format json_schema (mode json_schema)")
        self.raw = raw
        self.reason = reason


class ServerError(PromptServerError):
    def __init__(self, message: str, hint: str = "", status: Optional[int] = None):
        super().__init__(message, hint or "check the prompt server's log")
        self.status = status


# --- client ---------------------------------------------------------------------

@dataclass
class ServerInfo:
    url: str
    ok: bool
    model: Optional[str] = None
    engine: Optional[str] = None  # "sglang", "newspicgen-local", or whatever owned_by says
    latency_ms: float = 0.0
    error: Optional[str] = None   # one line with the fix, when not ok


@functools.lru_cache(maxsize=None)
def _regex() -> str:
    return output_regex()


def _normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url  # "127.0.0.1:30000" typed into a settings box
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"server URL {url!r} is not an http(s) URL; use e.g. {DEFAULT_SERVER_URL}")
    if url.endswith("/v1"):  # pasted from an OpenAI-style config
        url = url[:-3]
    return url


def _connection_reason(exc: Exception) -> str:
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _server_message(response: requests.Response) -> str:
    """The error text of SGLang's / OpenAI's / FastAPI's error bodies, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason or ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return response.text


class PromptClient:
    """Turns news into a validated PicturePrompt through a prompt server.

    Safe to share between threads: each thread gets its own requests.Session
    (see `_session`), so calls from the WebUI's worker threads and from
    generate_many() run in parallel without sharing one.
    """

    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 120.0, retries: int = 2, mode: str = "regex",
                 max_tokens: int = 768, model: str = "newspicgen",
                 max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS, backoff: float = 0.5):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if not float(timeout) > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.base_url = _normalize_url(base_url or default_server_url())
        self.api_key = api_key or os.environ.get(API_KEY_ENV, "").strip() or None
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.mode = mode
        self.max_tokens = int(max_tokens)
        self.model = model
        self.max_content_chars = int(max_content_chars)
        self.backoff = float(backoff)
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

    def __enter__(self) -> "PromptClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, *, json: Any = None,
                 timeout: Optional[float] = None) -> requests.Response:
        """One HTTP call; retried with backoff on connection errors and 5xx only.

        A read timeout is not retried: the server has the request and is busy
        with it, so a retry would only queue a duplicate behind it.
        """
        url = self.base_url + path
        timeout = self.timeout if timeout is None else timeout
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._session().request(
                    method, url, json=json, timeout=(min(10.0, timeout), timeout))
            except requests.exceptions.Timeout as exc:
                # ConnectTimeout is a ConnectionError too: a host that drops packets
                # is unreachable, not slow.
                error: PromptServerError = (
                    ServerUnreachable(self.base_url, "connection timed out")
                    if isinstance(exc, requests.exceptions.ConnectTimeout)
                    else ServerTimeout(self.base_url, timeout))
                if isinstance(error, ServerTimeout):
                    raise error from exc
            except requests.exceptions.ConnectionError as exc:
                error = ServerUnreachable(self.base_url, _connection_reason(exc))
            except requests.exceptions.RequestException as exc:
                raise ServerError(f"request to {url} failed: {_one_line(exc)}") from exc
            else:
                if response.status_code not in _RETRY_STATUS:
                    return response
                error = ServerError(
                    f"the prompt server at {self.base_url} failed (HTTP {response.status_code}: "
                    f"{_one_line(_server_message(response), 200)})", status=response.status_code)
            if last:
                raise error
            time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the API

    def request_body(self, instruction: Instruction, *, seed: Optional[int] = None,
                     temperature: float = 0.7) -> Dict[str, Any]:
        """The /v1/chat/completions body; public so benchmarks and tests can see what is sent."""
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
        if self.mode == "regex":
            body["regex"] = _regex()
        else:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "picture_prompt", "schema": output_json_schema(), "strict": True}}
        return body

    def generate(self, news: Union[News, Mapping[str, Any]], *, seed: Optional[int] = None,
                 temperature: float = 0.7) -> PicturePrompt:
        """One PicturePrompt for one news. EmptyNewsError before any HTTP call if it is empty."""
        if not isinstance(news, News):
            news = News.from_dict(news)
        instruction = build_instruction(news, max_content_chars=self.max_content_chars)
        body = self.request_body(instruction, seed=seed, temperature=temperature)
        started = time.perf_counter()
        response = self._request("POST", "/v1/chat/completions", json=body)
        self.last_latency_ms = (time.perf_counter() - started) * 1000.0
        return self._parse(response)

    def _parse(self, response: requests.Response) -> PicturePrompt:
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationError(self.base_url, status, bool(self.api_key))
        if status in (400, 422):
            message = _server_message(response)
            if re.search(r"regex|grammar|schema|json|response_format|constrain", message, re.IGNORECASE):
                raise GrammarRejected(message, self.mode)
            raise ServerError(f"the prompt server rejected the request (HTTP {status}: {_one_line(message, 200)})",
                              "check the server URL and that it speaks the OpenAI chat API", status=status)
        if status == 404:
            raise ServerError(f"{self.base_url} has no /v1/chat/completions (HTTP 404)",
                              "check the server URL: it should point at SGLang or "
                              "`python -m prompt_server serve`", status=status)
        if status != 200:
            raise ServerError(f"the prompt server at {self.base_url} answered HTTP {status}: "
                              f"{_one_line(_server_message(response), 200)}", status=status)
        try:
            body = response.json()
            choice = body["choices"][0]
            content = choice["message"]["content"]
            finish_reason = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError):
            raise ServerError(
                f"the server at {self.base_url} answered 200 but not with a chat completion: "
                f"{_excerpt(response.text, 200)}",
                "check that the URL points at an OpenAI-compatible server (SGLang, "
                "`python -m prompt_server serve`, vLLM, ...)", status=status) from None
        if not isinstance(content, str):
            raise InvalidOutput(repr(content), "the answer has no text content")
        if finish_reason == "length":
            raise IncompleteOutput(self.max_tokens, content)
        if finish_reason == "abort":
            raise ServerError(f"the prompt server aborted the generation: {_excerpt(content, 120)}")
        try:
            return PicturePrompt.from_json(content)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidOutput(content, f"{where}: {first.get('msg', exc)}" if where else str(exc)) from None
        except ValueError as exc:  # json.JSONDecodeError or "expected a JSON object"
            raise InvalidOutput(content, str(exc)) from None

    def generate_many(self, news_list: Iterable[Union[News, Mapping[str, Any]]], *, concurrency: int = 4,
                      seed: Optional[int] = None, temperature: float = 0.7
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
                   temperature: float = 0.7, concurrency: int = 4) -> List[PicturePrompt]:
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
        """GET /health and /v1/models; never raises for server trouble, `error` says what is wrong."""
        timeout = min(self.timeout, 10.0)
        started = time.perf_counter()
        try:
            health = self._request("GET", "/health", timeout=timeout)
            latency = (time.perf_counter() - started) * 1000.0
            models = self._request("GET", "/v1/models", timeout=timeout)
        except PromptServerError as exc:
            return ServerInfo(self.base_url, False, latency_ms=(time.perf_counter() - started) * 1000.0,
                              error=str(exc))
        model = engine = None
        error = None
        if models.status_code in (401, 403):
            error = str(AuthenticationError(self.base_url, models.status_code, bool(self.api_key)))
        elif models.status_code == 200:
            try:
                entry = models.json()["data"][0]
                model, engine = entry.get("id"), entry.get("owned_by")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                pass
        # Ollama and LM Studio have no /health: a working /v1/models is enough.
        ok = error is None and (health.status_code == 200 or (health.status_code == 404 and model is not None))
        if not ok and error is None:
            error = str(ServerError(f"the prompt server at {self.base_url} is not ready "
                                    f"(/health answered HTTP {health.status_code})",
                                    "it may still be loading the model; wait and retry"))
        return ServerInfo(self.base_url, ok, model=model, engine=engine, latency_ms=latency, error=error)
