"""The one source of truth for NewsPicGen's output shape.

`PicturePrompt` is the pydantic model; the decoding regex and the JSON schema
are both derived from its JSON schema, so the three cannot drift apart.
Works under pydantic 1.10 (AUTOMATIC1111) and 2.x (Forge, the server).
"""
from __future__ import annotations

import enum
import json
import re
from typing import Any, Dict, Literal, Mapping, Optional

from pydantic import Field

from prompt_server.compat import StrictModel, json_schema

FIELD_ORDER = ("ch_keyword", "ch_prompt", "en_keyword", "en_prompt", "type")


class PictureType(str, enum.Enum):
    """NewsPicGen's eight picture types; the value is what the model writes."""

    ANIMAL = "1"
    PERSON = "2"
    CROWD = "3"
    LANDSCAPE = "4"
    BUILDING = "5"
    TECH_PRODUCT = "6"
    OBJECT = "7"
    OTHER = "8"

    @property
    def en(self) -> str:
        return _LABELS[self.value][0]

    @property
    def zh(self) -> str:
        return _LABELS[self.value][1]

    @classmethod
    def parse(cls, value: Any) -> PictureType:
        """Accept "2", 2, "person", "人物" or a PictureType; say what is allowed otherwise."""
        text = str(value.value if isinstance(value, cls) else value).strip()
        for member in cls:
            if text in (member.value, member.en, member.zh) or text.lower() == member.name.lower():
                return member
        allowed = ", ".join(f'"{m.value}" ({m.en})' for m in cls)
        raise ValueError(f"unknown picture type {value!r}; use one of {allowed}")


_LABELS = {
    "1": ("animal", "动物"),
    "2": ("person", "人物"),
    "3": ("crowd", "人群"),
    "4": ("landscape", "风景"),
    "5": ("building", "建筑"),
    "6": ("tech product", "科技产品"),
    "7": ("object", "物品"),
    "8": ("other", "其他"),
}

TypeCode = Literal["1", "2", "3", "4", "5", "6", "7", "8"]


class PicturePrompt(StrictModel):
    """NewsPicGen's answer. String bounds are in characters after JSON decoding."""

    ch_keyword: str = Field(..., min_length=1, max_length=32, description="Chinese keyword")
    ch_prompt: str = Field(..., min_length=1, max_length=200, description="Chinese drawing prompt")
    en_keyword: str = Field(..., min_length=1, max_length=64, description="English keyword")
    en_prompt: str = Field(..., min_length=1, max_length=400, description="English drawing prompt")
    type: TypeCode = Field(..., description="1 animal, 2 person, 3 crowd, 4 landscape, "
                                            "5 building, 6 tech product, 7 object, 8 other")

    @property
    def picture_type(self) -> PictureType:
        return PictureType(self.type)

    def to_dict(self) -> Dict[str, str]:
        """Fields in NewsPicGen's order."""
        return {name: getattr(self, name) for name in FIELD_ORDER}

    def to_json(self) -> str:
        """The exact text NewsPicGen writes (key order fixed, CJK unescaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PicturePrompt:
        """Parse and validate model output. Raises ValueError (json) or ValidationError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


def _model_json_schema() -> Dict[str, Any]:
    return json_schema(PicturePrompt)


def field_bounds() -> Dict[str, tuple]:
    """(min_length, max_length) of every string field, read off the model."""
    props = _model_json_schema()["properties"]
    return {name: (props[name].get("minLength", 0), props[name]["maxLength"])
            for name in FIELD_ORDER if "maxLength" in props[name]}


def type_codes() -> tuple:
    prop = _model_json_schema()["properties"]["type"]
    return tuple(prop["enum"]) if "enum" in prop else (prop["const"],)


def output_json_schema() -> Dict[str, Any]:
    """JSON schema for `response_format` (vLLM, llama.cpp, Ollama, LM Studio)."""
    bounds = field_bounds()
    props: Dict[str, Any] = {}
    for name in FIELD_ORDER:
        if name in bounds:
            low, high = bounds[name]
            props[name] = {"type": "string", "minLength": low, "maxLength": high}
        else:
            props[name] = {"type": "string", "enum": list(type_codes())}
    return {"type": "object", "properties": props, "required": list(FIELD_ORDER),
            "additionalProperties": False}


# One JSON string character: a plain char (no quote, backslash or control
# char), a short escape, or a \uXXXX escape outside the surrogate range so that
# every unit decodes to exactly one code point (keeps bounds == model lengths).
# Plain groups, not (?:...): some grammar engines' regex readers lack them.
JSON_CHAR = (r'([^"\\\x00-\x1f]|\\["\\/bfnrt]'
             r'|\\u([0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))')


def output_regex(max_lengths: Optional[Mapping[str, int]] = None) -> str:
    """Regex for constrained decoding: fixed key order, every string bounded.

    `max_lengths` may tighten a field's bound (never loosen it past the model's,
    which would let the decoder produce answers the model rejects). Uses no
    lookaround, backreference, `\\p{..}`, inline flag, non-capturing group or
    `.`, so Rust regex (llguidance), xgrammar and Python's `re` read it alike.
    """
    bounds = field_bounds()
    for name, value in (max_lengths or {}).items():
        if name not in bounds:
            raise ValueError(f"unknown field {name!r}; bounded fields are {sorted(bounds)}")
        if not bounds[name][0] <= value <= bounds[name][1]:
            raise ValueError(f"{name} bound {value} is outside {bounds[name]} allowed by PicturePrompt")
        bounds[name] = (bounds[name][0], value)
    parts = []
    for name in FIELD_ORDER:
        if name in bounds:
            low, high = bounds[name]
            pattern = f'"{JSON_CHAR}{{{max(low, 0)},{high}}}"'
        else:
            pattern = '"[' + "".join(type_codes()) + ']"'
        parts.append(f'"{name}": ?{pattern}')
    return r"\{ ?" + ", ?".join(parts) + r" ?\}"


def matches(text: str, regex: Optional[str] = None) -> bool:
    return re.fullmatch(regex or output_regex(), text) is not None
