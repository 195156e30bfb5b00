"""Every error the prompt client raises, in one tree, and the one retry policy.

    PromptServerError            root: .message (what happened), .hint (what to do), .url
    ├── ServerUnreachable        no connection                            retryable
    ├── ServerTimeout            connected, no answer in time             not retried: the server still
    │                                                                     works on it, a retry queues a duplicate
    ├── AuthenticationError      401/403                                  not retryable
    ├── GrammarRejected          the server cannot compile the constraint not retryable
    ├── ServerError              any other bad answer (.status)           retryable for 5xx
    └── OutputError              a 200 whose text is not a PicturePrompt  retryable: a new sample may pass
        ├── IncompleteOutput     cut at max_tokens
        └── InvalidOutput        not valid against the schema

`error.retryable` is the single answer to "may this be tried again?"; the
client and the batch both ask it through `RetryPolicy`. str(error) is one line:
"what happened; what to do". No error ever shows a URL's password: messages,
hints and `.url` go through `redact_url`.
"""
from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar
from urllib.parse import urlparse

from prompt_server.defaults import DEFAULT_PORT, ENV_API_KEY, start_hint

_EXCERPT_CHARS = 300
T = TypeVar("T")
# the userinfo of a URL: "//" up to the last "@" before the path ("user:pass@", "token@")
_USERINFO = re.compile(r"(?<=//)[^/?#\s]*@")


def redact_url(text: str) -> str:
    """`text` with every URL's credentials hidden: http://user:***@host, http://***@host.

    Works on whole messages too, so an error can never echo a password typed
    into a server URL (CLI errors, failed.jsonl, the WebUI's 503 detail)."""
    def hide(found: re.Match[str]) -> str:
        user, colon, _ = found.group(0)[:-1].partition(":")
        return f"{user}:***@" if colon else "***@"  # a lone userinfo may be a token

    return _USERINFO.sub(hide, text)


def one_line(text: object, limit: int = _EXCERPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def excerpt(raw: str, limit: int = _EXCERPT_CHARS) -> str:
    """repr() keeps the excerpt on one line and shows control characters."""
    shown = raw if len(raw) <= limit else raw[:limit]
    return repr(shown) + (f" … ({len(raw)} characters in all)" if len(raw) > limit else "")


class PromptServerError(Exception):
    """Base of every client error; str() is one line: what happened, then what to do."""

    retryable = False

    def __init__(self, message: str, hint: str = "", url: Optional[str] = None):
        message, hint = redact_url(message), redact_url(hint)
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.url = redact_url(url) if url else url

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ServerUnreachable(PromptServerError):
    retryable = True

    def __init__(self, url: str, reason: str = ""):
        super().__init__(
            f"cannot reach the prompt server at {url}" + (f" ({reason})" if reason else ""),
            f"{start_hint(urlparse(url).port or DEFAULT_PORT)}, or fix the server URL", url)
        self.reason = redact_url(reason)


class ServerTimeout(PromptServerError):
    def __init__(self, url: str, timeout: float):
        super().__init__(
            f"the prompt server at {url} did not answer within {timeout:g} s",
            "it may still be loading the model or be busy; retry, or raise the timeout "
            "(--timeout or the NewsPicGen settings)", url)
        self.timeout = timeout


class AuthenticationError(PromptServerError):
    def __init__(self, url: str, status: int, has_key: bool):
        what = "refused the API key" if has_key else "requires an API key"
        super().__init__(
            f"the prompt server at {url} {what} (HTTP {status})",
            f"set the server's API key: the {ENV_API_KEY} environment variable or --api-key", url)
        self.status = status
        self.has_key = has_key


class GrammarRejected(PromptServerError):
    def __init__(self, server_message: str, mode: str, url: Optional[str] = None):
        hint = ("if this server is not SGLang, use mode auto (--mode auto) or pin the one it enforces "
                "(vllm_regex, json_schema, json_object); "
                "for SGLang, start it with --grammar-backend llguidance"
                if mode == "regex" else
                f"the server cannot enforce it in mode {mode}; use mode auto (--mode auto), SGLang or "
                '"newspicgen serve" with mode regex')
        super().__init__(f"the server rejected the output constraint: {one_line(server_message)}", hint, url)
        self.server_message = server_message


class ServerError(PromptServerError):
    def __init__(self, message: str, hint: str = "", status: Optional[int] = None, url: Optional[str] = None):
        super().__init__(message, hint or "check the prompt server's log", url)
        self.status = status

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """A 5xx (or a request that broke on the way) may pass next time; a 4xx or an
        answer that is not a chat completion will be the same again."""
        return self.status is None or self.status >= 500


class OutputError(PromptServerError):
    """The server answered, but not with a usable PicturePrompt."""

    retryable = True


class IncompleteOutput(OutputError):
    def __init__(self, max_tokens: int, raw: str):
        super().__init__(
            f"the model did not finish within {max_tokens} tokens (partial output: {excerpt(raw, 120)})",
            "raise --max-tokens (PromptClient(max_tokens=...)) or shorten the news")
        self.max_tokens = max_tokens
        self.raw = raw


class InvalidOutput(OutputError):
    def __init__(self, raw: str, reason: str, hint: Optional[str] = None):
        super().__init__(
            f"the model's answer is not a valid NewsPicGen prompt ({one_line(reason, 200)}): {excerpt(raw)}",
            hint or "the server did not enforce the output constraint; use SGLang or "
            '"python -m prompt_server serve" (mode regex), or a server that supports '
            "response_format json_schema (mode json_schema)")
        self.raw = raw
        self.reason = reason


@dataclass
class RetryPolicy:
    """How often and how patiently to retry a `retryable` error.

    Attempt k (from 0) waits `backoff * 2**k`, capped at `max_delay`, with
    jitter so that many clients do not retry in step. Setting `cancel` stops
    the waiting at once (the batch sets it on Ctrl-C).
    """

    retries: int = 2
    backoff: float = 0.5
    max_delay: float = 10.0
    cancel: threading.Event = field(default_factory=threading.Event)

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)

    def call(self, action: Callable[[], T]) -> T:
        """Run `action`, retrying retryable PromptServerErrors; the last error is raised."""
        attempt = 0
        while True:
            try:
                return action()
            except PromptServerError as exc:
                if not exc.retryable or attempt >= self.retries or self.cancel.wait(self.delay(attempt)):
                    raise
            attempt += 1
