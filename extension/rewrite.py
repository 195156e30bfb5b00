"""Put a composed NewsPicGen request into a WebUI processing object.

Pure: works on anything with the attributes of A1111's
StableDiffusionProcessing, so the unit tests drive it without a WebUI.

Which settings a preset may change: a preset's steps/sampler/scheduler/CFG/
size/seed apply only where the caller left the value A1111 uses when nobody
chose one. "Untouched" means equal to the StableDiffusionProcessing default
(steps 50, CFG 7, 512x512, seed -1, no sampler/scheduler), the API request's
fallback (sampler "Euler" from `sampler_index`) or the stock txt2img UI's
default (steps 20, sampler "DPM++ 2M", scheduler "Automatic"). A value equal
to one of these cannot be told apart from "not chosen"; a caller who wants
exactly that value with a preset that sets another one picks a preset
without that setting (or a user copy of it).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

UNTOUCHED: Mapping[str, Tuple[Any, ...]] = {
    "steps": (50, 20),
    "sampler_name": (None, "", "Euler", "DPM++ 2M"),
    "scheduler": (None, "", "Automatic"),
    "cfg_scale": (7.0,),
    "width": (512,),
    "height": (512,),
    "seed": (-1, None, ""),
}

def _untouched(current: Any, defaults: Tuple[Any, ...]) -> bool:
    return not isinstance(current, bool) and any(current == d for d in defaults)


def apply_settings(p: Any, settings: Mapping[str, Any],
                   untouched: Mapping[str, Tuple[Any, ...]] = UNTOUCHED) -> Dict[str, Any]:
    """Set each preset setting the caller left untouched; return what was applied."""
    applied = {}
    for key, value in settings.items():
        if value is None or key not in untouched or not hasattr(p, key):
            continue
        if _untouched(getattr(p, key), untouched[key]):
            setattr(p, key, value)
            applied[key] = value
    return applied


def replace_prompts(p: Any, prompt: str, negative_prompt: str) -> None:
    """Every prompt of every batch becomes the composed one.

    Before `setup_prompts()` (our before_process hook) setting p.prompt is
    enough; the per-image lists are replaced too when they already exist, so a
    later hook would not leave the old prompt in a batch.
    """
    p.prompt = prompt
    p.negative_prompt = negative_prompt
    for name, text in (("all_prompts", prompt), ("all_negative_prompts", negative_prompt),
                       ("prompts", prompt), ("negative_prompts", negative_prompt)):
        current = getattr(p, name, None)
        if isinstance(current, list):
            setattr(p, name, [text] * len(current))
    if getattr(p, "main_prompt", None) is not None:
        p.main_prompt = prompt
    if getattr(p, "main_negative_prompt", None) is not None:
        p.main_negative_prompt = negative_prompt


def apply_to_processing(p: Any, composed: Any, untouched: Mapping[str, Tuple[Any, ...]] = UNTOUCHED) -> Dict[str, Any]:
    """Prompts, untouched settings and infotext fields from `composed` into `p`."""
    replace_prompts(p, composed.prompt, composed.negative_prompt)
    applied = apply_settings(p, composed.settings or {}, untouched)
    if getattr(p, "extra_generation_params", None) is None:
        p.extra_generation_params = {}
    p.extra_generation_params.update(composed.provenance)
    return applied
