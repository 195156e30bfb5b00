"""Ad copy (prompt_server.ad_task.AdCopy) + the `ad` preset family -> one txt2img request.

The `ad` family's presets add the detail LoRA and negative embeddings of the
Ad_content_generation project; with `available`, compose() leaves out the ones
the WebUI lacks and names each in `warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from prompt_server.ad_task import AdCopy
from prompt_server.schema import PicturePrompt
from prompt_server.shape import dump
from style_presets.availability import Availability
from style_presets.compose import ComposedRequest, compose
from style_presets.store import PresetStore

AD_FAMILY = "ad"


@dataclass
class ComposedAd:
    ad: AdCopy
    request: ComposedRequest

    def to_dict(self) -> Dict[str, Any]:
        """The shape `newspicgen ad` prints and the ad route answers."""
        return {**dump(self.ad), "prompt": self.request.prompt, "negative_prompt": self.request.negative_prompt,
                "settings": dict(self.request.settings), "infotext": self.request.infotext,
                "preset": self.request.preset, "warnings": list(self.request.warnings)}


def ad_prompt(ad: AdCopy) -> PicturePrompt:
    """The ad as a PicturePrompt for compose(); the keyword is the prompt's first phrase."""
    keyword = ad.en_prompt.split(",")[0].strip()[:64] or "product"
    return PicturePrompt.construct_unchecked(ch_keyword=ad.headline, ch_prompt=ad.body_copy, en_keyword=keyword,
                                             en_prompt=ad.en_prompt, type=ad.type)


def compose_ad(ad: AdCopy, store: PresetStore, *, family: Optional[str] = AD_FAMILY,
               preset: Optional[str] = None, seed: Optional[int] = None,
               overrides: Optional[Mapping[str, Any]] = None,
               available: Optional[Availability] = None) -> ComposedAd:
    """Raises PresetNotFound or OverrideError (messages name the fix)."""
    settings = dict(overrides or {})
    if seed is not None and seed >= 0:
        settings["seed"] = int(seed)
    picture = ad_prompt(ad)
    request = compose(picture, store.resolve(preset or None, ad.type, family or AD_FAMILY), settings,
                      available=available)
    return ComposedAd(ad, request)
