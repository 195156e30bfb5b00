"""The extension's settings as one value, and the client/store built from them.

Inside the WebUI `extension.settings.config_from_opts()` fills it from
`shared.opts`; outside (tests, demos) `config_from_env()` reads environment
variables. Both give the same object, so the tab, the routes and the always-on
script never read settings themselves.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Optional

DEFAULT_SERVER_URL = "http://127.0.0.1:30000"  # == prompt_server.client.DEFAULT_SERVER_URL
DEFAULT_TIMEOUT = 120.0
MODES = ("regex", "json_schema")

ENV_SERVER_URL = "NEWSPICGEN_SERVER_URL"
ENV_API_KEY = "NEWSPICGEN_API_KEY"
ENV_TIMEOUT = "NEWSPICGEN_TIMEOUT"
ENV_MODE = "NEWSPICGEN_MODE"
ENV_FAMILY = "NEWSPICGEN_FAMILY"
ENV_PRESET_DIR = "NEWSPICGEN_PRESET_DIR"


class ConfigError(ValueError):
    """A setting has a value the extension cannot use; the message names the fix."""


@dataclass(frozen=True)
class NewsPicGenConfig:
    server_url: str = DEFAULT_SERVER_URL
    api_key: Optional[str] = field(default=None, repr=False)  # a secret: never in repr or logs
    timeout: float = DEFAULT_TIMEOUT
    mode: str = "regex"
    family: Optional[str] = None
    preset_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"constraint mode {self.mode!r} is not supported; use one of {', '.join(MODES)}")
        if not self.timeout or self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not self.server_url.strip():
            raise ConfigError(f"the prompt server URL is empty; set it, e.g. {DEFAULT_SERVER_URL}")

    def client(self):
        """A PromptClient for these settings (one per distinct URL/key/timeout/mode)."""
        return _client(self.server_url.strip().rstrip("/"), self.api_key or None, float(self.timeout), self.mode)

    def store(self):
        """The PresetStore reading built-ins plus the user folder (one per folder)."""
        return _store(self.preset_dir or None)


@functools.lru_cache(maxsize=8)
def _client(url: str, api_key: Optional[str], timeout: float, mode: str):
    try:  # inside the WebUI the repo is loaded under a namespace package of our own
        from ..prompt_server.client import PromptClient
    except ImportError:  # top-level import (CLI, tests)
        from prompt_server.client import PromptClient
    return PromptClient(base_url=url, api_key=api_key, timeout=timeout, mode=mode)


@functools.lru_cache(maxsize=4)
def _store(preset_dir: Optional[str]):
    try:
        from ..style_presets.store import PresetStore
    except ImportError:
        from style_presets.store import PresetStore
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


def config_from_env(environ=None) -> NewsPicGenConfig:
    """Settings from NEWSPICGEN_* environment variables, defaults otherwise."""
    env = os.environ if environ is None else environ
    timeout = env.get(ENV_TIMEOUT)
    return NewsPicGenConfig(
        server_url=optional_text(env.get(ENV_SERVER_URL)) or DEFAULT_SERVER_URL,
        api_key=optional_text(env.get(ENV_API_KEY)),
        timeout=parse_timeout(timeout, ENV_TIMEOUT) if optional_text(timeout) else DEFAULT_TIMEOUT,
        mode=optional_text(env.get(ENV_MODE)) or "regex",
        family=optional_text(env.get(ENV_FAMILY)),
        preset_dir=optional_text(env.get(ENV_PRESET_DIR)),
    )
