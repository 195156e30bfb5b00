"""A family file: one style written once, expanded into a preset per base (SD 1.5, SDXL, Flux).

The built-in families would otherwise be 24 hand-copied preset files each,
three copies of every template and negative prompt that drift apart. A family
file `NAME.family.json` holds the style once and the settings once per base:

    {"family": "ink-wash",
     "bases": {"sdxl": {"name_suffix": "", "settings": {...}},
               "sd15": {"name_suffix": "-sd15", "settings": {...}},
               "flux": {"name_suffix": "-flux", "note": "...", "settings": {...}}},
     "presets": [{"name": "ink-wash-nature", "description": "...", "types": ["1", "4"],
                  "prompt": "... {prompt} ...", "negative_prompt": "...", "settings": {optional overrides}}]}

Each entry becomes one ordinary StylePreset per base: named NAME + the base's
suffix, with `family` and `base` set, the base's settings (under the entry's
own overrides), and no negative prompt for a base that takes none (Flux). So
the store, the editor, compose() and the styles.csv export only ever see plain
presets. Family files are read from the built-in folder only; a user
customises one preset by duplicating it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pydantic

from prompt_server.compat import describe_validation_error
from style_presets.bases import BASES, label, parse_base
from style_presets.preset import Settings, StylePreset, format_number
from style_presets.reading import MAX_PRESET_BYTES, ReadError, parse_json, read_text

FAMILY_SUFFIX = ".family.json"
_TOP_KEYS = {"family", "bases", "presets"}
_BASE_KEYS = {"name_suffix", "note", "settings"}
_ENTRY_KEYS = {"name", "description", "types", "prompt", "negative_prompt", "loras", "embeddings",
               "negative_embeddings", "settings"}

Problem = Tuple[str, str]  # (where in the file, why)


def is_family_file(path: Path) -> bool:
    return path.name.endswith(FAMILY_SUFFIX)


def read_family(path: Path) -> Tuple[List[StylePreset], List[Problem]]:
    """The presets a family file expands to, and what is wrong with it (a broken entry
    or base is reported and skipped; the rest still load)."""
    try:
        data = parse_json(read_text(path, MAX_PRESET_BYTES))
    except ReadError as exc:
        return [], [("(file)", str(exc))]
    problem = _shape_problem(data)
    if problem:
        return [], [problem]
    presets: List[StylePreset] = []
    problems: List[Problem] = []
    bases: List[Tuple[str, Dict[str, Any]]] = []
    for code, spec in data["bases"].items():
        try:
            bases.append((str(parse_base(code)), spec))
        except ValueError as exc:
            problems.append((f"bases.{code}", str(exc)))
    for index, entry in enumerate(data["presets"]):
        where = f"presets[{index}]"
        if not isinstance(entry, dict):
            problems.append((where, "must be an object with name, types, prompt, ..."))
            continue
        unknown = sorted(set(entry) - _ENTRY_KEYS)
        if unknown:
            problems.append((where, f"unknown keys {', '.join(unknown)}; an entry takes "
                                    f"{', '.join(sorted(_ENTRY_KEYS))}"))
            continue
        for code, spec in bases:
            try:
                presets.append(expand(data["family"], code, spec, entry))
            except pydantic.ValidationError as exc:
                problems.extend((f"{where} ({code}).{field}", why)
                                for field, why in describe_validation_error(exc))
    return presets, problems


def _shape_problem(data: Any) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get("family"), str):
        return ("(file)", 'a family file is an object with "family", "bases" and "presets"')
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        return ("(file)", f"unknown keys {', '.join(unknown)}; a family file has family, bases and presets")
    if not isinstance(data.get("bases"), dict) or not data["bases"]:
        return ("bases", f"must map at least one of {', '.join(BASES)} to its settings")
    for code, spec in data["bases"].items():
        if not isinstance(spec, dict) or set(spec) - _BASE_KEYS:
            return (f"bases.{code}", f"must be an object with {', '.join(sorted(_BASE_KEYS))}")
    if not isinstance(data.get("presets"), list) or not data["presets"]:
        return ("presets", "must list at least one preset")
    return None


def expand(family: str, code: str, spec: Dict[str, Any], entry: Dict[str, Any]) -> StylePreset:
    """One entry of a family file as the preset for base `code`."""
    settings = Settings.from_dict({**spec.get("settings", {}), **entry.get("settings", {})})
    data = {key: value for key, value in entry.items() if key != "settings"}
    data.update(name=f"{entry.get('name', '')}{spec.get('name_suffix', '-' + code)}", family=family, base=code,
                settings=settings.to_dict())
    if not BASES[code].takes_negative:
        data.update(negative_prompt="", negative_embeddings=[])
    data["description"] = " ".join(part for part in (entry.get("description", ""),
                                                     base_note(code, settings, spec.get("note"))) if part)
    return StylePreset.from_dict(data)


def base_note(code: str, settings: Settings, note: Any = None) -> str:
    """"SD 1.5: Steps 25, DPM++ 2M Karras, CFG 7, 768x448." — what the preset's settings are for."""
    s = settings
    parts = [f"Steps {s.steps}" if s.steps else "",
             " ".join(x for x in (s.sampler_name, s.scheduler) if x),
             f"CFG {format_number(s.cfg_scale)}" if s.cfg_scale is not None else "",
             f"Distilled CFG {format_number(s.distilled_cfg_scale)}" if s.distilled_cfg_scale is not None else "",
             f"{s.width}x{s.height}" if s.width and s.height else "",
             str(note) if note else "",
             "" if BASES[code].takes_negative else f"no negative prompt ({label(code)} ignores it)"]
    return f"{label(code)}: {', '.join(p for p in parts if p)}."
