"""Which server answers at a URL, asked through that server's own endpoints.

Each engine names itself somewhere only it answers: SGLang `/server_info`
(`/get_server_info` before 0.5),
vLLM `/version`, llama.cpp's server `/props`, llama-cpp-python its OpenAPI
title, Ollama `/api/version`, LM Studio `/api/v0/models`, and this project's
engine `owned_by: "newspicgen-local"` in `/v1/models`. The kind decides which
constraint field the server enforces (`mode`); a wrong one is ignored by some
servers (vLLM drops SGLang's `regex`) and answered unconstrained.

`identify()` never raises for server trouble (a dead port, a timeout, HTML where
JSON was expected): `error` says what went wrong. Needs only requests: the WebUI
imports it.
"""
from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import requests
import urllib3

from prompt_server.defaults import DEFAULT_HOST, ENV_API_KEY
from prompt_server.errors import one_line, redact_url

KIND_NEWSPICGEN = "newspicgen"
KIND_SGLANG = "sglang"
KIND_VLLM = "vllm"
KIND_LLAMACPP = "llamacpp"                  # llama.cpp's own server (llama-server)
KIND_LLAMA_CPP_PYTHON = "llama-cpp-python"  # `python -m llama_cpp.server`
KIND_OLLAMA = "ollama"
KIND_LMSTUDIO = "lmstudio"
KIND_OPENAI = "openai"     # answers /v1/models, but names itself nowhere we know
KIND_UNKNOWN = "unknown"   # answers HTTP, but is no OpenAI-compatible server
KIND_NONE = "none"         # nothing answered (see `error`)

# The constraint each kind enforces (modes: prompt_server.defaults.MODES).
MODE_FOR_KIND: Dict[str, str] = {
    KIND_NEWSPICGEN: "regex",             # SGLang's top-level `regex`
    KIND_SGLANG: "regex",
    KIND_VLLM: "vllm_regex",              # `structured_outputs: {"regex": ...}`; it ignores `regex`
    KIND_LLAMA_CPP_PYTHON: "json_object",  # `{"type": "json_object", "schema": ...}`; json_schema -> 500
    KIND_LLAMACPP: "json_schema",         # llama.cpp, and Ollama / LM Studio that wrap it
    KIND_OLLAMA: "json_schema",
    KIND_LMSTUDIO: "json_schema",
    KIND_OPENAI: "json_schema",           # OpenAI's own form: the best guess for the unknown
    KIND_UNKNOWN: "json_schema",
    KIND_NONE: "json_schema",
}

# How people call them (status lines, the server panel).
KIND_LABELS: Dict[str, str] = {
    KIND_NEWSPICGEN: "NewsPicGen engine", KIND_SGLANG: "SGLang", KIND_VLLM: "vLLM",
    KIND_LLAMACPP: "llama.cpp server", KIND_LLAMA_CPP_PYTHON: "llama-cpp-python", KIND_OLLAMA: "Ollama",
    KIND_LMSTUDIO: "LM Studio", KIND_OPENAI: "OpenAI-compatible server", KIND_UNKNOWN: "unknown server",
    KIND_NONE: "no server",
}

# /v1/models `owned_by` values that name the engine outright.
_OWNED_BY = {"newspicgen-local": KIND_NEWSPICGEN, "sglang": KIND_SGLANG, "vllm": KIND_VLLM,
             "llamacpp": KIND_LLAMACPP, "me": KIND_LLAMA_CPP_PYTHON, "organization_owner": KIND_LMSTUDIO}

_MAX_BODY = 1 << 20

# Each engine's default port, as its docs give it.
DEFAULT_PROBE_PORTS: Tuple[int, ...] = (30000, 8000, 8080, 11434, 1234)


@dataclass
class ServerIdentity:
    url: str                     # as given, credentials hidden
    kind: str                    # one of the KIND_* values
    models: List[str] = field(default_factory=list)
    version: Optional[str] = None
    mode: str = "json_schema"    # the constraint mode this kind enforces
    error: Optional[str] = None  # why it could not be identified or used, with the fix

    @property
    def reachable(self) -> bool:
        return self.kind != KIND_NONE

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


class _Unreachable(Exception):
    """The connection failed or timed out: asking more endpoints is pointless."""


class _Probe:
    """GETs against one server, with the key, a short timeout, and JSON or None back."""

    def __init__(self, url: str, timeout: float, api_key: Optional[str]):
        self.url, self.timeout = url, timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "newspicgen-identify"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.refused: List[int] = []  # 401/403 statuses met: the key is missing or wrong

    def get(self, path: str) -> Tuple[int, Any]:
        deadline = time.monotonic() + self.timeout
        try:
            response = self.session.get(self.url + path, timeout=(self.timeout, self.timeout), stream=True)
            try:
                raw = self._body(response, deadline)
            finally:
                response.close()
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                urllib3.exceptions.ReadTimeoutError) as exc:
            raise _Unreachable(_reason(exc)) from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return 0, None
        if raw is None:
            return response.status_code, None
        if response.status_code in (401, 403):
            self.refused.append(response.status_code)
        try:
            return response.status_code, json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return response.status_code, None

    @staticmethod
    def _body(response: requests.Response, deadline: float) -> Optional[bytes]:
        """The body within the deadline (a server trickling bytes must not hold us), None past
        _MAX_BODY bytes: identity answers are small, a huge body is not one of them."""
        raw, chunks, size = response.raw, [], 0
        read = raw.read1 if hasattr(raw, "read1") else raw.read
        while piece := read(64 * 1024, decode_content=True):
            size += len(piece)
            if size > _MAX_BODY:
                return None
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout("deadline passed while reading the body")
            chunks.append(piece)
        return b"".join(chunks)

    def close(self) -> None:
        self.session.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError)):
        return "no answer in time"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__


def _text(value: Any) -> Optional[str]:
    return str(value) if isinstance(value, (str, int, float)) and str(value) else None


def _models(body: Any) -> Tuple[List[str], Optional[str]]:
    """Model ids and the first entry's owned_by from an OpenAI /v1/models list."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return [], None
    entries = [entry for entry in data if isinstance(entry, dict)]
    ids = [str(entry["id"]) for entry in entries if _text(entry.get("id"))]
    owned = _text(entries[0].get("owned_by")) if entries else None
    return ids, owned


# --- each engine's own endpoint: (status, body) -> version string or None when not this kind

def _sglang(status: int, body: Any) -> Optional[str]:
    # a dict of server args plus "version"; the router forwards it to a worker
    if status == 200 and isinstance(body, dict) and ("model_path" in body or "tokenizer_path" in body):
        return _text(body.get("version")) or ""
    return None


def _vllm(status: int, body: Any) -> Optional[str]:
    if status == 200 and isinstance(body, dict) and set(body) == {"version"}:
        return _text(body["version"]) or ""
    return None


def _llamacpp(status: int, body: Any) -> Optional[str]:
    if status == 200 and isinstance(body, dict) and ("build_info" in body or "default_generation_settings" in body):
        return _text(body.get("build_info")) or ""
    return None


def _llama_cpp_python(status: int, body: Any) -> Optional[str]:
    info = body.get("info") if isinstance(body, dict) else None
    if status == 200 and isinstance(info, dict) and "llama.cpp Python" in str(info.get("title", "")):
        return _text(info.get("version")) or ""
    return None


def _ollama(status: int, body: Any) -> Optional[str]:
    if status == 200 and isinstance(body, dict) and _text(body.get("version")):
        return _text(body["version"])
    return None


def _lmstudio(status: int, body: Any) -> Optional[str]:
    data = body.get("data") if isinstance(body, dict) else None
    if status == 200 and isinstance(data, list) and all(
            isinstance(entry, dict) and "compatibility_type" in entry for entry in data):
        return ""  # its model list has no version
    return None


# In the order they are tried when /v1/models does not name the engine.
_CHECKS: Sequence[Tuple[str, str, Callable[[int, Any], Optional[str]]]] = (
    (KIND_SGLANG, "/server_info", _sglang),      # SGLang 0.5: /get_server_info is deprecated (a warning a call)
    (KIND_SGLANG, "/get_server_info", _sglang),  # older SGLang, and SGLang's router
    (KIND_VLLM, "/version", _vllm),
    (KIND_LLAMACPP, "/props", _llamacpp),
    (KIND_OLLAMA, "/api/version", _ollama),
    (KIND_LMSTUDIO, "/api/v0/models", _lmstudio),
    (KIND_LLAMA_CPP_PYTHON, "/openapi.json", _llama_cpp_python),
)


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url  # "127.0.0.1:30000" typed into a box
    return url[:-3] if url.endswith("/v1") else url  # pasted from an OpenAI-style config


def identify(url: str, *, timeout: float = 2.0, api_key: Optional[str] = None) -> ServerIdentity:
    """What kind of server answers at `url` (one short GET per endpoint; never raises for
    server trouble). `api_key`: the server's key (default: $NEWSPICGEN_API_KEY)."""
    base = _base(url)
    shown = redact_url(base)
    key = (api_key or os.environ.get(ENV_API_KEY, "")).strip() or None
    if key and any(char.isspace() or not char.isprintable() for char in key):
        key = None  # requests would put the key in its error; the client reports the bad key itself
    probe = _Probe(base, timeout, key)
    try:
        return _identify(probe, shown)
    except _Unreachable as exc:
        return ServerIdentity(shown, KIND_NONE, error=f"nothing answers at {shown} ({exc})")
    finally:
        probe.close()


def _identify(probe: _Probe, shown: str) -> ServerIdentity:
    status, body = probe.get("/v1/models")
    models, owned_by = _models(body) if status == 200 else ([], None)
    named = _OWNED_BY.get(owned_by or "")
    checks = [check for check in _CHECKS if check[0] == named] if named else list(_CHECKS)
    kind, version = named, None
    for check_kind, path, check in checks:
        check_status, check_body = probe.get(path)
        found = check(check_status, check_body)
        if found is not None:
            kind, version = check_kind, found or None
            break
    if kind is None:
        kind = KIND_OPENAI if status == 200 and isinstance(body, dict) and "data" in body else KIND_UNKNOWN
    error = None
    if probe.refused and not models:
        error = (f"the {KIND_LABELS[kind]} at {shown} refused the request (HTTP {probe.refused[0]}); "
                 f"set its API key ({ENV_API_KEY}, --api-key or the NewsPicGen settings)")
    elif kind == KIND_UNKNOWN:
        error = (f"{shown} answers HTTP (/v1/models: {status or 'no answer'}) but is no OpenAI-compatible "
                 "server; point the URL at SGLang, vLLM, llama.cpp, Ollama, LM Studio or `newspicgen serve`")
    elif status == 200 and not models:
        error = f"the {KIND_LABELS[kind]} at {shown} serves no model yet; load one, then retry"
    return ServerIdentity(shown, kind, models=models, version=version, mode=MODE_FOR_KIND[kind],
                          error=one_line(error, 400) if error else None)


def probe_local(ports: Sequence[int] = DEFAULT_PROBE_PORTS, *, extra_urls: Sequence[str] = (),
                timeout: float = 0.5) -> List[ServerIdentity]:
    """The servers answering on this machine's default ports (and `extra_urls`), asked in
    parallel; only those that answered, in the order given."""
    urls = [f"http://{DEFAULT_HOST}:{port}" for port in ports] + [_base(url) for url in extra_urls]
    urls = list(dict.fromkeys(urls))
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="newspicgen-probe") as pool:
        found = list(pool.map(lambda url: identify(url, timeout=timeout), urls))
    return [identity for identity in found if identity.reachable]
