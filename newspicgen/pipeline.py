"""News in, composed txt2img request out: the one path every front end takes.

    news ─► PromptClient (prompt_server) ─► PicturePrompt ─► preset (style_presets) ─► compose() ─► ComposedRequest

The WebUI routes, the always-on script, the tab and `newspicgen batch` all hold
a `Pipeline`; the tab calls its two halves separately because the user edits
the PicturePrompt in between.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple, Union

from newspicgen.relevance import rank_by_relevance, relevance_scorer
from prompt_server.client import PromptClient
from prompt_server.instruction import News
from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability
from style_presets.compose import ComposedRequest, compose
from style_presets.preset import StylePreset
from style_presets.store import PresetStore

NewsLike = Union[News, Mapping[str, Any]]


@dataclass
class Pipeline:
    client: PromptClient
    store: PresetStore
    family: Optional[str] = None  # per-type default presets come from this family first

    def picture_prompt(self, news: NewsLike, *, seed: Optional[int] = None) -> PicturePrompt:
        """Raises EmptyNewsError before any HTTP call, or a PromptServerError."""
        return self.client.generate(news, seed=seed)

    def candidates(self, news: NewsLike, n: int, *, seed: Optional[int] = None) -> List[PicturePrompt]:
        return self.client.candidates(news, n, seed=seed)

    def best_of(self, news: NewsLike, n: int, *, seed: Optional[int] = None) -> List[Tuple[float, PicturePrompt]]:
        """n seeded samples as (relevance to the article, prompt), the most relevant first.

        The scorer is the optional `eval` extra: without it this raises
        ScorerUnavailable naming the install command, before any sample is made.
        """
        scorer = relevance_scorer()  # first: a missing extra fails before any sampling
        return rank_by_relevance(news, self.candidates(news, n, seed=seed), scorer)

    def preset_for(self, picture_type: str, preset: Optional[str] = None, base: Optional[str] = None) -> StylePreset:
        """The named preset, or (None / "") the default for the type within the family,
        made for `base` (the loaded model's family, style_presets.bases) where there is one."""
        return self.store.resolve(preset or None, picture_type, self.family, base)

    def compose(self, picture_prompt: PicturePrompt, preset: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None,
                available: Optional[Availability] = None, base: Optional[str] = None) -> ComposedRequest:
        """`base`: the loaded model's family, or None when unknown; a preset picked by name
        that was made for another one is kept and named in the warnings."""
        return compose(picture_prompt, self.preset_for(picture_prompt.type, preset, base), overrides,
                       available=available, base=base)

    def run(self, news: NewsLike, *, preset: Optional[str] = None, seed: Optional[int] = None,
            overrides: Optional[Mapping[str, Any]] = None,
            available: Optional[Availability] = None, base: Optional[str] = None) -> ComposedRequest:
        """Both halves. Raises EmptyNewsError, a PromptServerError, PresetNotFound or
        OverrideError, each with a message that names the fix."""
        if preset:
            self.store.get(preset)  # an unknown name fails now, not after the slow model call
        return self.compose(self.picture_prompt(news, seed=seed), preset, overrides, available, base)
