"""Which model family (style_presets.bases: sd15, sdxl, flux) a WebUI has loaded.

Three ways to ask, from most to least certain:

- in the WebUI's process, the loaded model's own flags: AUTOMATIC1111 1.10 sets
  `is_sd1` / `is_sd2` / `is_sdxl` (also for SSD-1B) / `is_sd3` on the model it
  loads (modules/sd_models.set_model_type); Forge's engines set the same flags,
  and its Flux engine is the class `Flux` (backend/diffusion_engine/flux.py);
- Forge's UI preset (`opts.forge_preset`: 'sd', 'xl', 'flux', or 'all'), which
  is what the user set the page up for; it comes first, since Forge loads a
  checkpoint only when a picture is made;
- over the API (`batch --webui`), where A1111 says nothing about the model
  itself: Forge's UI preset from /sdapi/v1/options, else the loaded
  checkpoint's name and config file from /sdapi/v1/options + /sdapi/v1/sd-models
  ("juggernautXL_v9", "flux1-dev", "v1-5-pruned-emaonly").

None means unknown (no model loaded yet, SD 2.x or SD 3, a name that says
nothing): callers then keep the old default (style_presets.bases.DEFAULT_BASE).
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Tuple

FORGE_UI_PRESETS = {"sd": "sd15", "xl": "sdxl", "flux": "flux"}  # 'all': the model decides
# Checkpoint names, lower-cased, checked in this order (an SDXL fine-tune named after SD 1.5's
# "v1-5" is rarer than a Flux one with "xl" in it). Community checkpoints say "XL" in their name
# ("RealVisXL", "ponyDiffusionV6XL"); Pony, Illustrious and NoobAI are SDXL fine-tunes.
_NAME_RULES = (
    ("flux", re.compile(r"flux")),
    ("sdxl", re.compile(r"xl|pony|illustrious|noobai")),
    ("sd15", re.compile(r"sd[-_ ]?1[-_.]?[45]|v1[-_.][45]|v1-inference|sd1(?!\d)")),
)


def base_of_model(model: Any) -> Optional[str]:
    """From a loaded model object's own flags; None when not loaded or not one of ours."""
    if model is None:
        return None
    if getattr(model, "is_sdxl", False) is True:
        return "sdxl"
    if getattr(model, "is_sd1", False) is True:
        return "sd15"
    if type(model).__name__.lower() == "flux":
        return "flux"
    return None


def base_of_webui(forge_preset: Any, model: Any) -> Optional[str]:
    """Inside the WebUI: Forge's UI preset when it names one family, else the model's flags."""
    return FORGE_UI_PRESETS.get(str(forge_preset)) if forge_preset in FORGE_UI_PRESETS else base_of_model(model)


def base_of_name(*names: Optional[str]) -> Optional[str]:
    """From checkpoint names or config paths; None when none of them says."""
    text = " ".join(n for n in names if n).lower()
    for base, rule in _NAME_RULES:
        if rule.search(text):
            return base
    return None


def base_from_api(options: Mapping[str, Any], models: Iterable[Any]) -> Tuple[Optional[str], str]:
    """(base or None, how it was found) from the bodies of GET /sdapi/v1/options and /sdapi/v1/sd-models."""
    forge_preset = options.get("forge_preset")
    if forge_preset in FORGE_UI_PRESETS:
        return FORGE_UI_PRESETS[forge_preset], f"Forge's UI preset {forge_preset!r}"
    title = str(options.get("sd_model_checkpoint") or "")
    if not title:
        return None, "no checkpoint is selected"
    entry: Mapping[str, Any] = next((m for m in models if isinstance(m, Mapping)
                                     and title in (m.get("title"), m.get("model_name"))), {})
    config = str(entry.get("config") or "").replace("\\", "/").rsplit("/", 1)[-1]  # not the folders above it
    base = base_of_name(title, config)
    if base is None:
        return None, f"the checkpoint name {title!r} does not say"
    return base, f"the checkpoint name {title!r}"
