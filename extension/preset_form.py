"""The preset editor's form: a preset's JSON object <-> the values of the form's fields.

The JSON text stays the one thing that is saved; the form writes into it. Both
directions are lenient: a field holding something invalid ("abc" steps) goes
into the JSON as typed, so validation names it and nothing typed is lost.
Nothing here imports gradio.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from style_presets.preset import format_number

from .tab_logic import type_code, type_label

# Form component name -> the preset field it shows (settings are "settings.<key>").
FIELDS: Dict[str, str] = {
    "form_name": "name", "form_family": "family", "form_base": "base", "form_description": "description",
    "form_types": "types", "form_template": "prompt", "form_negative": "negative_prompt",
    "form_loras": "loras", "form_embeddings": "embeddings", "form_negative_embeddings": "negative_embeddings",
    "form_steps": "settings.steps", "form_sampler": "settings.sampler_name", "form_scheduler": "settings.scheduler",
    "form_cfg_scale": "settings.cfg_scale", "form_distilled_cfg_scale": "settings.distilled_cfg_scale",
    "form_width": "settings.width", "form_height": "settings.height",
    "form_seed": "settings.seed",
}
NAMES = list(FIELDS)
LIST_FIELDS = ("form_types", "form_embeddings", "form_negative_embeddings")
NUMBER_SETTINGS = ("steps", "cfg_scale", "distilled_cfg_scale", "width", "height", "seed")


def _text(value: Any) -> str:
    """A JSON value as the text a textbox shows."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return json.dumps(value, ensure_ascii=False)


def _texts(value: Any) -> List[str]:
    return [_text(item) for item in value] if isinstance(value, list) else ([] if value is None else [_text(value)])


def lora_lines(loras: Any) -> str:
    """[{"name": "add_detail", "weight": 0.5}] -> "add_detail:0.5" (one LoRA per line)."""
    if not isinstance(loras, list):
        return _text(loras)
    lines = []
    for item in loras:
        if isinstance(item, dict) and set(item) <= {"name", "weight"} and "name" in item:
            lines.append(f"{_text(item['name'])}:{_text(item.get('weight', 1.0))}")
        else:
            lines.append(_text(item))
    return "\n".join(lines)


def _number(text: str) -> Any:
    """ "20" -> 20, "7.5" -> 7.5; anything else stays text for validation to name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_lora_lines(text: str) -> List[Dict[str, Any]]:
    """ "add_detail:0.5" lines -> [{"name": "add_detail", "weight": 0.5}]; no weight means 1.
    LoRA names cannot hold ":" (A1111 splits its tag on it), so the last ":" starts the weight."""
    loras = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, weight = line.rpartition(":")
        if not sep:
            loras.append({"name": line, "weight": 1.0})
        else:
            loras.append({"name": name.strip(), "weight": _number(weight.strip())})
    return loras


def set_lora(text: str, name: str, weight: float) -> str:
    """The LoRA lines with `name` at `weight`: its line replaced, or a new one at the end."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    new = f"{name}:{format_number(weight)}"
    for i, line in enumerate(lines):
        if line.strip().rpartition(":")[0].strip() == name or line.strip() == name:
            lines[i] = new
            return "\n".join(lines)
    return "\n".join([*lines, new])


def form_values(data: Dict[str, Any]) -> Dict[str, Any]:
    """The form's values for a preset's JSON object (valid or not)."""
    settings = data.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    values: Dict[str, Any] = {}
    for component, key in FIELDS.items():
        value = settings.get(key[9:]) if key.startswith("settings.") else data.get(key)
        if component == "form_types":
            values[component] = [_type_label(item) for item in _texts(value)]
        elif component == "form_loras":
            values[component] = lora_lines(value)
        elif component in LIST_FIELDS:
            values[component] = _texts(value)
        else:
            values[component] = _text(value)
    return values


def _type_label(text: str) -> str:
    try:
        return type_label(text)
    except ValueError:
        return text  # shown as is; validation names it


def form_data(values: Dict[str, Any], base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The preset's JSON object from the form's values, over `base` (keys the form lacks stay)."""
    data = dict(base or {})
    given = data.get("settings")
    settings: Dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    for component, key in FIELDS.items():
        value = values.get(component)
        if key.startswith("settings."):
            key = key[9:]
            text = (value or "").strip() if isinstance(value, str) else value
            if text in ("", None):
                settings[key] = None  # the WebUI's value
            else:
                settings[key] = _number(text) if key in NUMBER_SETTINGS else text
        elif component == "form_types":
            data[key] = [_type_code(label) for label in value or []]
        elif component == "form_loras":
            data[key] = parse_lora_lines(value or "")
        elif component in LIST_FIELDS:
            data[key] = [str(item).strip() for item in value or [] if str(item).strip()]
        elif component == "form_family" and not (value or "").strip():
            data.pop(key, None)  # the preset's default family
        else:
            data[key] = value if isinstance(value, str) else _text(value)
    data["settings"] = settings
    return data


def _type_code(label: str) -> str:
    try:
        return type_code(label)
    except ValueError:
        return label
