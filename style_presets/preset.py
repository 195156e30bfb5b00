"""The preset file format: what an artist writes, validated with pydantic 1.10 or 2.x."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

from pydantic import Field

from prompt_server.compat import StrictModel, field_check
from prompt_server.schema import PictureType
from style_presets.bases import parse_base

# Names become file names (NAME.json) in the user folder: letters of any script,
# digits, space and a few safe marks; nothing Windows or a shell would trip on.
NAME_RE = re.compile(r"^[^\W_][\w .+()\-]{0,79}$")
# What A1111 accepts inside <lora:NAME:W> and as an embedding file stem.
NETWORK_NAME_RE = re.compile(r"^[^<>:,\s()\[\]{}|\\]+(?: [^<>:,\s()\[\]{}|\\]+)*$")
ALL_TYPES = [t.value for t in PictureType]
EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")  # A1111's modules/extra_networks.re_extra_net


class LoraRef(StrictModel):
    name: str
    weight: float = Field(1.0, ge=-5.0, le=5.0)

    @field_check("name")
    def _name_ok(cls, value: str) -> str:
        value = value.strip()
        if not NETWORK_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a usable LoRA name (no <, >, :, commas, brackets)")
        return value

    def tag(self) -> str:
        """The A1111 prompt tag, e.g. <lora:add_detail:0.5>."""
        return f"<lora:{self.name}:{format_number(self.weight)}>"


class Settings(StrictModel):
    """Generation settings as /sdapi/v1/txt2img names them; None = leave the WebUI's value."""

    steps: Optional[int] = Field(None, ge=1, le=150)
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    cfg_scale: Optional[float] = Field(None, ge=1.0, le=30.0)
    distilled_cfg_scale: Optional[float] = Field(None, ge=0.0, le=30.0)  # Forge, Flux: its "Distilled CFG Scale"
    width: Optional[int] = Field(None, ge=64, le=2048)
    height: Optional[int] = Field(None, ge=64, le=2048)
    seed: Optional[int] = Field(None, ge=-1)

    @field_check("width", "height")
    def _multiple_of_8(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (Stable Diffusion needs that); "
                             f"try {value - value % 8}")
        return value

    @field_check("sampler_name", "scheduler")
    def _not_blank(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("empty; leave the field out to keep the WebUI's choice")
        return value.strip() if value is not None else None

    def set_fields(self) -> Dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if v is not None}


class StylePreset(StrictModel):
    name: str
    family: str = "custom"
    base: Optional[str] = None  # the model family it is made for (style_presets.bases); None: any
    description: str = ""
    types: List[str] = Field(default_factory=lambda: list(ALL_TYPES))
    prompt: str = "{prompt}"
    negative_prompt: str = ""
    loras: List[LoraRef] = Field(default_factory=list)
    embeddings: List[str] = Field(default_factory=list)
    negative_embeddings: List[str] = Field(default_factory=list)
    settings: Settings = Field(default_factory=lambda: Settings.from_dict({}))

    @field_check("name", "family")
    def _name_ok(cls, value: str) -> str:
        value = value.strip()
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name: use 1-80 letters, digits, spaces "
                             "or . + ( ) - _, starting with a letter or digit")
        return value

    @field_check("base")
    def _base_ok(cls, value: Any) -> Optional[str]:
        return parse_base(value)

    @field_check("types")
    def _types_ok(cls, value: List[Any]) -> List[str]:
        if not value:
            raise ValueError(f"serves no picture type; list some of {ALL_TYPES}")
        codes = []
        for item in value:
            code = PictureType.parse(item).value  # accepts "2", "person", "人物"
            if code not in codes:
                codes.append(code)
        return sorted(codes)

    @field_check("prompt")
    def _has_placeholder(cls, value: str) -> str:
        if "{prompt}" not in value:
            raise ValueError("the template has no {prompt} placeholder, so the picture prompt "
                             "would be dropped; add {prompt} where it belongs")
        return value

    @field_check("prompt", "negative_prompt")
    def _no_inline_networks(cls, value: str) -> str:
        tag = EXTRA_NETWORK_TAG.search(value)
        if tag:
            raise ValueError(f"{tag.group(0)} is written into the text; list LoRAs under "
                             "\"loras\" (and embeddings under \"embeddings\") so they can be "
                             "checked against what the WebUI has")
        return value

    @field_check("embeddings", "negative_embeddings")
    def _embedding_names_ok(cls, value: List[str]) -> List[str]:
        out = []
        for name in value:
            name = name.strip()
            if not NETWORK_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a usable embedding name "
                                 "(the file stem, without <, >, :, commas or brackets)")
            out.append(name)
        return out

    def needs_networks(self) -> bool:
        """True when it names LoRAs or embeddings (a fresh WebUI may lack them)."""
        return bool(self.loras or self.embeddings or self.negative_embeddings)

    def serves(self, picture_type: str) -> bool:
        return PictureType.parse(picture_type).value in self.types

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"

    def copy_with(self, **changes: Any) -> StylePreset:
        """A validated copy with some fields changed."""
        data = self.to_dict()
        data.update(changes)
        return StylePreset.from_dict(data)


def format_number(value: float) -> str:
    """7.0 -> "7", 0.5 -> "0.5": how the WebUI's sliders show numbers."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
