"""The "NewsPicGen" section of the WebUI's Settings, and the config read from it.

`register_settings()` runs in `script_callbacks.on_ui_settings`;
`config_from_opts()` turns `shared.opts` into a NewsPicGenConfig on every use, so
a changed setting applies to the next request without a restart.
NEWSPICGEN_SERVER_URL wins over the settings page, so a launcher script can
point the WebUI at its server. The API key is never a setting: the WebUI lists
every setting to its API callers (and Forge lets them change any), so the key
comes only from NEWSPICGEN_API_KEY and goes only to the server it was given for
(`config.key_for`).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Optional

from prompt_server.defaults import (
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_SERVER_URL,
    MODE_HELP,
    MODES,
)
from prompt_server.errors import redact_url

from .config import NewsPicGenConfig, approved_url, key_for, optional_text, parse_timeout
from .messages import language_of, tr

SECTION = ("newspicgen", "NewsPicGen")
CATEGORY = "sd"  # the page is listed under "Stable Diffusion" instead of "Uncategorized"

KEY_SERVER_URL = "newspicgen_server_url"
LEGACY_KEY_API_KEY = "newspicgen_api_key"  # a setting before the key moved to the environment
KEY_TIMEOUT = "newspicgen_timeout"
KEY_MODE = "newspicgen_mode"
KEY_FAMILY = "newspicgen_family"
KEY_PRESET_DIR = "newspicgen_preset_dir"
KEY_TASK_SERVER_URL = "newspicgen_task_server_url"  # comic strips and posters (docs/comic-and-ad.md)
KEY_TASK_MODEL = "newspicgen_task_model"
KEY_MODEL = "newspicgen_model"  # set by the server panel's "Use" (Ollama and LM Studio need their model's name)


def default_preset_dir(data_path: str) -> str:
    """User presets live in the WebUI's data folder, so updating the extension never touches them."""
    return os.path.join(data_path, "newspicgen", "presets")


def env_notes(environ: Optional[Mapping[str, str]] = None, language: str = "en") -> dict[str, str]:
    """Settings the environment overrides -> what the page says instead (never the key itself)."""
    env = os.environ if environ is None else environ
    notes = {}
    url = optional_text(env.get(ENV_SERVER_URL))
    if url:
        notes[KEY_SERVER_URL] = tr(language, "in use: {url}, from the {env} environment variable, which overrides this",
                                   url=redact_url(url), env=ENV_SERVER_URL)
    return notes


def key_note(environ: Optional[Mapping[str, str]] = None, language: str = "en") -> str:
    """What the page says about the API key (never the key itself)."""
    env = os.environ if environ is None else environ
    if optional_text(env.get(ENV_API_KEY)):
        return tr(language, "API key: from {env}, sent only to {url}", env=ENV_API_KEY,
                  url=redact_url(approved_url(env)))
    return tr(language, "API key: none; start the WebUI with {env} (and {env_url}) if the server needs one",
              env=ENV_API_KEY, env_url=ENV_SERVER_URL)


def option_specs(data_path: str, environ: Optional[Mapping[str, str]] = None,
                 language: str = "en") -> list[dict[str, Any]]:
    """What to register, as plain data (the unit tests check it without a WebUI).

    A setting the environment overrides is shown read-only with the value in use:
    the page must not show one URL while requests go to another.
    """
    notes = env_notes(environ, language)
    key = key_note(environ, language)
    specs: list[dict[str, Any]] = [
        dict(key=KEY_SERVER_URL, default=DEFAULT_SERVER_URL, label="Prompt server URL",
             info=tr(language, "SGLang or python -m prompt_server serve; the {env} environment variable "
                               "overrides this", env=ENV_SERVER_URL) + ("。" if language == "zh" else ". ") + key),
        dict(key=KEY_TIMEOUT, default=int(DEFAULT_TIMEOUT_S), label="Prompt server timeout (seconds)", kind="number"),
        dict(key=KEY_MODE, default=DEFAULT_MODE, label="Output constraint", kind="dropdown", choices=list(MODES),
             info=MODE_HELP),
        dict(key=KEY_MODEL, default="", label="Model name sent to the prompt server",
             info="empty = newspicgen (this project's engine, SGLang); Ollama and LM Studio need theirs, "
                  "e.g. qwen2.5:1.5b (the tab's Prompt server → Use sets it)"),
        dict(key=KEY_FAMILY, default="", label="Default preset family", kind="family",
             info="empty = the built-in defaults for each picture type"),
        dict(key=KEY_PRESET_DIR, default=default_preset_dir(data_path), label="User preset folder",
             info="your own presets; built-in presets are read-only"),
        dict(key=KEY_TASK_SERVER_URL, default="", label="Comic strip / product poster server URL",
             info="any OpenAI-compatible server with a general instruct model; empty = the prompt server above; "
                  "NEWSPICGEN_COMIC_SERVER_URL / NEWSPICGEN_AD_SERVER_URL override this"),
        dict(key=KEY_TASK_MODEL, default="", label="Comic strip / product poster model id",
             info="the `model` sent to that server; empty = newspicgen"),
    ]
    for spec in specs:
        if spec["key"] in notes:
            spec.update(info=f"{notes[spec['key']]}. {key}", overridden=True)
    return specs


def config_from_opts(opts: Any, environ: Optional[Mapping[str, str]] = None) -> NewsPicGenConfig:
    """NewsPicGenConfig from `shared.opts` (anything with attributes), env vars first; the key from env only."""
    env = os.environ if environ is None else environ

    def get(key: str, default: Any = None) -> Any:
        return getattr(opts, key, default)

    timeout = get(KEY_TIMEOUT, DEFAULT_TIMEOUT_S)
    url = optional_text(env.get(ENV_SERVER_URL)) or optional_text(get(KEY_SERVER_URL)) or DEFAULT_SERVER_URL
    return NewsPicGenConfig(
        server_url=url,
        api_key=key_for(url, env),
        timeout=(parse_timeout(timeout, "Settings > NewsPicGen > timeout") if timeout not in (None, "")
                 else DEFAULT_TIMEOUT_S),
        mode=optional_text(get(KEY_MODE)) or DEFAULT_MODE,
        model=optional_text(get(KEY_MODEL)),
        family=optional_text(get(KEY_FAMILY)),
        preset_dir=optional_text(get(KEY_PRESET_DIR)),
        task_server_url=optional_text(get(KEY_TASK_SERVER_URL)),
        task_model=optional_text(get(KEY_TASK_MODEL)),
    )


def _family_choices() -> dict[str, Any]:
    # Only keys every gradio's Dropdown.update() takes: the WebUI passes these into
    # gr.update() on each Settings load (allow_custom_value there breaks gradio 3.41).
    """Families of the presets on disk, read when the Settings page is built."""
    from modules import shared  # only inside the WebUI
    try:
        store = config_from_opts(shared.opts).store()
        families = list(store.families())
    except Exception:  # a broken preset folder must not break the Settings page
        families = []
    return {"choices": [""] + families}


def register_settings() -> None:
    """on_ui_settings callback: add the NewsPicGen section."""
    import gradio as gr
    from modules import paths_internal, shared  # only inside the WebUI

    language = language_of(getattr(shared.opts, "localization", None))  # a new language needs a restart anyway
    for spec in option_specs(paths_internal.data_path, language=language):
        kind = spec.get("kind")
        component: Any = None
        args: Any = None
        if kind == "number":
            component, args = gr.Number, {"precision": 0}
        elif kind == "dropdown":
            component, args = gr.Dropdown, {"choices": spec["choices"]}
        elif kind == "family":  # a family not on disk yet stays usable: custom values allowed
            component, args = functools.partial(gr.Dropdown, allow_custom_value=True), _family_choices
        if spec.get("overridden"):
            args = dict(args or {}, interactive=False)
        info = shared.OptionInfo(spec["default"], spec["label"], component, args, section=SECTION,
                                 category_id=CATEGORY)
        if spec.get("info"):
            info = info.info(spec["info"])
        shared.opts.add_option(spec["key"], info)
    drop_legacy_key(shared.opts)


def drop_legacy_key(opts: Any) -> bool:
    """Forget a key an older version kept in Settings (the WebUI lists settings to API callers).

    It is dropped from the options in memory, so GET /sdapi/v1/options no longer
    shows it and the WebUI's next settings save removes it from config.json.
    """
    data = getattr(opts, "data", None)
    if not isinstance(data, dict) or LEGACY_KEY_API_KEY not in data:
        return False
    had_key = bool(optional_text(data.pop(LEGACY_KEY_API_KEY)))
    if had_key:
        print(f"NewsPicGen: the API key in Settings is no longer used or shown; start the WebUI with "
              f"{ENV_API_KEY}=... and {ENV_SERVER_URL}=<the server it belongs to>")
    return had_key
