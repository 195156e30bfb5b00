"""Put a composed NewsPicGen request into a WebUI processing object.

Pure: works on anything with the attributes of A1111's
StableDiffusionProcessing, so the unit tests drive it without a WebUI.

Which settings a preset may change: a preset's steps/sampler/scheduler/CFG/
size/seed apply only where the caller left the value A1111 uses when nobody
chose one. "Untouched" means equal to the StableDiffusionProcessing default
(steps 50, CFG 7, 512x512, seed -1, no sampler/scheduler), the API request's
fallback (sampler "Euler" from `sampler_index`) or the stock txt2img UI's
default (steps 20, sampler "DPM++ 2M", scheduler "Automatic"), plus the defaults
the running WebUI's page actually starts with (`ui_defaults`: ui-config.json, and
Forge's per-UI-preset sd/xl/flux settings). A value equal
to one of these cannot be told apart from "not chosen"; a caller who wants
exactly that value with a preset that sets another one picks a preset
without that setting (or a user copy of it).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

from style_presets.compose import INFOTEXT_KEYWORD, INFOTEXT_PRESET, INFOTEXT_TYPE

PROVENANCE_KEYS = (INFOTEXT_TYPE, INFOTEXT_KEYWORD, INFOTEXT_PRESET)

UNTOUCHED: Mapping[str, Tuple[Any, ...]] = {
    "steps": (50, 20),
    "sampler_name": (None, "", "Euler", "DPM++ 2M"),
    "scheduler": (None, "", "Automatic"),
    "cfg_scale": (7.0,),
    "distilled_cfg_scale": (3.5,),  # Forge's StableDiffusionProcessing default; A1111 has no such field
    "width": (512,),
    "height": (512,),
    "seed": (-1, None, ""),
}

# ui-config.json labels of the txt2img/img2img controls whose UI default counts as untouched
UI_CONFIG_LABELS = {"steps": "Sampling steps", "sampler_name": "Sampling method", "scheduler": "Schedule type",
                    "cfg_scale": "CFG Scale", "distilled_cfg_scale": "Distilled CFG Scale", "width": "Width",
                    "height": "Height"}
# Forge's per-UI-preset defaults (Settings > UI defaults 'sd'/'xl'/'flux'): opts "<preset>_t2i_<name>"
FORGE_OPTS = {"sampler_name": "sampler", "scheduler": "scheduler", "cfg_scale": "cfg",
              "distilled_cfg_scale": "d_cfg", "width": "width", "height": "height"}


def ui_defaults(ui_config: Mapping[str, Any], opts: Any, tab: str = "txt2img") -> Dict[str, list]:
    """The defaults the WebUI's own page starts with, where it says: its ui-config.json
    (A1111 and Forge; users edit it) and, in Forge, the current UI preset's settings."""
    found: Dict[str, list] = {key: [] for key in UI_CONFIG_LABELS}
    for key, label in UI_CONFIG_LABELS.items():
        value = ui_config.get(f"{tab}/{label}/value")
        if value is not None:
            found[key].append(value)
    preset = getattr(opts, "forge_preset", None)
    short = "t2i" if tab == "txt2img" else "i2i"
    for name in ((preset,) if preset in ("sd", "xl", "flux") else ("sd", "xl", "flux") if preset else ()):
        for key, opt in FORGE_OPTS.items():
            value = getattr(opts, f"{name}_{short}_{opt}", None)
            if value is not None:
                found[key].append(value)
    return {k: v for k, v in found.items() if v}


def untouched_with(extra: Mapping[str, Any]) -> Dict[str, Tuple[Any, ...]]:
    """UNTOUCHED plus the WebUI's actual UI defaults."""
    return {key: (*values, *extra.get(key, ())) for key, values in UNTOUCHED.items()}


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


# The always-on script's positional args (API: "alwayson_scripts": {"newspicgen": {"args": [...]}}).
# The last four are hidden in the UI: "Send to txt2img" pastes them from the infotext (the
# script's infotext_fields), the /newspicgen/v1/txt2img route passes them, so a picture made
# from a composed prompt carries its provenance even with the script disabled.
SCRIPT_ARGS = ("enabled", "title", "content", "preset", "from_type", "from_keyword", "from_preset", "from_prompt")
PROVENANCE_PROMPT = "Prompt"  # the infotext key of the prompt (what the WebUI's paste fills the prompt box from)


def provenance_args(provenance: Mapping[str, str], prompt: str) -> list:
    """Script args that only record `provenance` (the script stays disabled)."""
    return [False, "", "", "", *(provenance.get(key, "") for key in PROVENANCE_KEYS), prompt]


def apply_provenance(p: Any, values: Tuple[Any, ...], prompt: Any) -> bool:
    """Add pasted/passed provenance to `p` when its prompt is still the composed one.

    A user who rewrote the prompt after pasting made a different picture: no NewsPicGen fields then.
    """
    if not values or not all(isinstance(v, str) and v for v in values) or not isinstance(prompt, str):
        return False
    if not isinstance(p.prompt, str) or p.prompt.strip() != prompt.strip():
        return False
    if getattr(p, "extra_generation_params", None) is None:
        p.extra_generation_params = {}
    p.extra_generation_params.update(zip(PROVENANCE_KEYS, values, strict=True))
    return True


def refuse_processing(p: Any, error: Exception) -> None:
    """Make this generation fail with `error` instead of using the caller's own prompt.

    A1111 1.10 and Forge catch and only log exceptions from every script hook
    (before_process, process, ...), then generate anyway. `p.setup_prompts()` is the
    first step of process_images_inner that nothing catches and that runs before any
    sampling, so the error surfaces there: the API answers error.status_code, the UI
    shows the message where the picture would be.
    """
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise error

    p.setup_prompts = refuse
