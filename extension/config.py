"""The extension's settings as one value, and the client/store built from them.

Inside the WebUI `extension.settings.config_from_opts()` fills it from
`shared.opts`; outside (tests, demos) `config_from_env()` reads environment
variables. Both give the same object, so the tab, the routes and the always-on
script never read settings themselves.
"""
from __future__ import annotations

import functools
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from newspicgen.pipeline import Pipeline
from prompt_server.client import PromptClient
from prompt_server.defaults import (
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_FAMILY,
    ENV_MODE,
    ENV_PRESET_DIR,
    ENV_SERVER_URL,
    ENV_TIMEOUT,
    MODES,
    SERVED_MODEL_NAME,
)
from prompt_server.errors import redact_url
from style_presets.store import PresetStore


class ConfigError(ValueError):
    """A setting has a value the extension cannot use; the message names the fix."""


@dataclass(frozen=True)
class NewsPicGenConfig:
    server_url: str = DEFAULT_SERVER_URL
    api_key: Optional[str] = field(default=None, repr=False)  # a secret: never in repr or logs
    timeout: float = DEFAULT_TIMEOUT_S
    mode: str = DEFAULT_MODE
    family: Optional[str] = None
    preset_dir: Optional[str] = None
    task_server_url: Optional[str] = None  # comic / ad tasks; None = server_url
    task_model: Optional[str] = None
    model: Optional[str] = None  # the model name sent; None = SERVED_MODEL_NAME

    def __repr__(self) -> str:  # the URL may carry a password, and the key is a secret
        return (f"NewsPicGenConfig(server_url={redact_url(self.server_url)!r}, timeout={self.timeout!r}, "
                f"mode={self.mode!r}, family={self.family!r}, preset_dir={self.preset_dir!r})")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"constraint mode {self.mode!r} is not supported; use one of {', '.join(MODES)}")
        if not self.timeout or self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not self.server_url.strip():
            raise ConfigError(f"the prompt server URL is empty; set it, e.g. {DEFAULT_SERVER_URL}")

    def client(self) -> PromptClient:
        """A PromptClient for these settings (one per distinct URL/key/timeout/mode)."""
        return _client(self.server_url.strip().rstrip("/"), self.api_key or None, float(self.timeout), self.mode,
                       self.model or SERVED_MODEL_NAME)

    def store(self) -> PresetStore:
        """The PresetStore reading built-ins plus the user folder (one per folder, re-read when it changes)."""
        store = _store(self.preset_dir or None)
        store.refresh()
        return store

    def pipeline(self) -> Pipeline:
        """The news -> composed request path with these settings."""
        return Pipeline(self.client(), self.store(), self.family)


@functools.lru_cache(maxsize=8)
def _client(url: str, api_key: Optional[str], timeout: float, mode: str, model: str) -> PromptClient:
    return PromptClient(base_url=url, api_key=api_key, timeout=timeout, mode=mode, model=model)


@functools.lru_cache(maxsize=4)
def _store(preset_dir: Optional[str]) -> PresetStore:
    return PresetStore(preset_dir)


def optional_text(value) -> Optional[str]:
    """'' and whitespace mean "not set" for free-text settings."""
    text = str(value).strip() if value is not None else ""
    return text or None


def parse_timeout(value, source: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source} must be a number of seconds, got {value!r}") from None


def origin(url: str) -> tuple:
    """(scheme, host, port) of a URL, credentials and path left out; ports filled in."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: matches nothing
        return (scheme, parts.netloc.lower(), None)
    return (scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme))


def approved_url(environ=None) -> str:
    """The server NEWSPICGEN_API_KEY belongs to: NEWSPICGEN_SERVER_URL, else the default (loopback) URL."""
    env = os.environ if environ is None else environ
    return optional_text(env.get(ENV_SERVER_URL)) or DEFAULT_SERVER_URL


def key_for(server_url: str, environ=None) -> Optional[str]:
    """NEWSPICGEN_API_KEY if `server_url` is the server it was given for, else None.

    The key only ever comes from the environment (the WebUI lists its settings to
    API callers, and Forge lets them change any setting), and a URL changed on the
    Settings page or through the options API never receives it.
    """
    env = os.environ if environ is None else environ
    key = optional_text(env.get(ENV_API_KEY))
    if key and origin(server_url) == origin(approved_url(env)):
        return key
    return None


def key_withheld(server_url: str, environ=None) -> Optional[str]:
    """One line when a key is set but not sent to `server_url` (cause and fix), else None."""
    env = os.environ if environ is None else environ
    if not optional_text(env.get(ENV_API_KEY)) or key_for(server_url, env):
        return None
    return (f"{ENV_API_KEY} is not sent to {redact_url(server_url)}: the key is only sent to "
            f"{redact_url(approved_url(env))}; to use it with this server, start the WebUI with "
            f"{ENV_SERVER_URL}={redact_url(server_url)}")


def config_from_env(environ=None) -> NewsPicGenConfig:
    """Settings from NEWSPICGEN_* environment variables, defaults otherwise."""
    env = os.environ if environ is None else environ
    timeout = env.get(ENV_TIMEOUT)
    url = approved_url(env)
    return NewsPicGenConfig(
        server_url=url,
        api_key=key_for(url, env),
        timeout=parse_timeout(timeout, ENV_TIMEOUT) if optional_text(timeout) else DEFAULT_TIMEOUT_S,
        mode=optional_text(env.get(ENV_MODE)) or DEFAULT_MODE,
        family=optional_text(env.get(ENV_FAMILY)),
        preset_dir=optional_text(env.get(ENV_PRESET_DIR)),
    )
