"""The model families a preset can be made for: SD 1.5, SDXL, Flux.

A preset's `base` says which checkpoints its sizes, sampler and CFG suit
(absent: any). What each family needs that the others do not lives here and
nowhere else: its label, and whether it takes a negative prompt at all (Flux is
guidance-distilled: it runs at CFG 1, where a negative prompt does nothing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class Base:
    code: str
    label: str
    takes_negative: bool = True


BASES: Dict[str, Base] = {base.code: base for base in (
    Base("sd15", "SD 1.5"),
    Base("sdxl", "SDXL"),
    Base("flux", "Flux", takes_negative=False),
)}
BASE_CODES = tuple(BASES)
# When the loaded model is unknown, presets for this base are preferred: NewsPicGen's own
# published pictures were made with SDXL, and presets were all SDXL before bases existed.
DEFAULT_BASE = "sdxl"
_ALIASES = {"sd1": "sd15", "sd1.5": "sd15", "sd 1.5": "sd15", "sd-1.5": "sd15", "sd_1.5": "sd15",
            "xl": "sdxl", "sd-xl": "sdxl", "sd xl": "sdxl"}


def parse_base(value: object) -> Optional[str]:
    """"sdxl", "SD 1.5", "xl" -> a code of BASES; None or "" -> None (any model)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text or text == "any":
        return None
    text = _ALIASES.get(text, text)
    if text not in BASES:
        raise ValueError(f"unknown base {value!r}; use one of {', '.join(BASE_CODES)} "
                         "(or leave it out for a preset that suits any model)")
    return text


def label(code: Optional[str]) -> str:
    """"sd15" -> "SD 1.5"; None -> "any model"."""
    return BASES[code].label if code in BASES else "any model"


def takes_negative(code: Optional[str]) -> bool:
    return BASES[code].takes_negative if code in BASES else True


def mismatch(preset_name: str, preset_base: Optional[str], loaded: Optional[str]) -> Optional[str]:
    """The warning for a preset made for another model family than the loaded one, else None."""
    if not preset_base or not loaded or preset_base == loaded:
        return None
    return (f"preset {preset_name!r} is made for {label(preset_base)}; {label(loaded)} is loaded "
            f"(its size, sampler and CFG may not suit it: pick a {label(loaded)} preset, "
            "or leave the preset empty to get one)")
