"""News in, composed txt2img request out: the one path the routes, the
always-on script and the tab share (generate with the prompt server, pick the
preset, compose)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

try:  # inside the WebUI the repo is loaded under a namespace package of our own
    from ..prompt_server.instruction import News
    from ..style_presets.compose import compose
except ImportError:  # top-level import (CLI, tests)
    from prompt_server.instruction import News
    from style_presets.compose import compose

from .config import NewsPicGenConfig


def compose_news(config: NewsPicGenConfig, title: str, content: str, *, preset: Optional[str] = None,
                 seed: Optional[int] = None, overrides: Optional[Mapping[str, Any]] = None,
                 available: Any = None):
    """Generate a PicturePrompt for the news and compose it with a preset.

    `preset` None or "" = the default for the generated type (within the
    configured family). Raises EmptyNewsError, PromptServerError subclasses,
    the store's PresetNotFound, or compose's OverrideError — each with a message
    that names the fix.
    """
    store = config.store()
    if preset:
        store.get(preset)  # an unknown name fails now, not after the slow model call
    picture_prompt = config.client().generate(News(title=title or "", content=content or ""), seed=seed)
    chosen = store.resolve(preset or None, picture_prompt.type, config.family)
    return compose(picture_prompt, chosen, overrides, available=available)
