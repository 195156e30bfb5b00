"""PicturePrompt + StylePreset -> a txt2img request and the infotext A1111 would write."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import pydantic

from prompt_server.compat import describe_validation_error, field_names
from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability, missing
from style_presets.bases import label, mismatch, parse_base, takes_negative
from style_presets.preset import Settings, StylePreset, format_number
from style_presets.sanitize import neutralize

SETTING_KEYS = tuple(field_names(Settings))
_PLACEHOLDER = re.compile(r"\{(prompt|keyword)\}")
# Joins that would glue (see fill_template): word to word forms AND / BREAK, `__x__` wildcards
# and embedding names (\w covers letters of any script, digits and `_`); a `<` or `\` left of
# model text would open a network tag or escape its first character.
_WORD_END = re.compile(r"\w$")
_WORD_START = re.compile(r"\w")
_OPENS = re.compile(r"[<\\]$")
_NUMBER_SLOT = re.compile(r":\s*[+\-.\d]*$")
_NUMBER_START = re.compile(r"\s*[+\-.\d]")
# A1111 1.10 modules/infotext_utils.py: values with these characters are JSON-quoted.
_NEEDS_QUOTES = (",", "\n", ":")


# PNG Info fields that say how a picture was made; every path that makes one writes them.
INFOTEXT_TYPE = "NewsPicGen type"
INFOTEXT_KEYWORD = "NewsPicGen keyword"
INFOTEXT_PRESET = "NewsPicGen preset"


class OverrideError(ValueError):
    """An override the Settings model rejects; the message names the key and the fix."""


@dataclass
class ComposedRequest:
    prompt: str
    negative_prompt: str
    settings: Dict[str, Any]
    infotext: str
    preset: str
    picture_prompt: PicturePrompt
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "settings": dict(self.settings), "infotext": self.infotext,
                "preset": self.preset, "picture_prompt": self.picture_prompt.to_dict(),
                "warnings": list(self.warnings)}

    @property
    def provenance(self) -> Dict[str, str]:
        """The NewsPicGen infotext fields (whitespace in the keyword folded, as in `infotext`)."""
        return {INFOTEXT_TYPE: self.picture_prompt.type,
                INFOTEXT_KEYWORD: " ".join(self.picture_prompt.en_keyword.split()),
                INFOTEXT_PRESET: self.preset}

    def txt2img_payload(self) -> Dict[str, Any]:
        """Body for POST /sdapi/v1/txt2img; unset settings are left to the WebUI."""
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, **self.settings}


def compose(picture_prompt: Union[PicturePrompt, Mapping[str, Any]], preset: StylePreset,
            overrides: Optional[Mapping[str, Any]] = None, *,
            available: Optional[Availability] = None, base: Optional[str] = None) -> ComposedRequest:
    """Fill the preset's template with the neutralized model text.

    Only the preset contributes LoRA tags and embeddings. With `available`, the
    ones the WebUI lacks are left out and each is named in `warnings`. `base` is
    the loaded model's family (style_presets.bases; None: unknown): a preset made
    for another one is used as asked and named in `warnings`. For a model family
    that takes no negative prompt (Flux: the loaded one, else the preset's), none is sent.
    """
    if not isinstance(picture_prompt, PicturePrompt):
        picture_prompt = PicturePrompt.from_dict(picture_prompt)
    warnings: List[str] = []
    base = parse_base(base)
    wrong_base = mismatch(preset.name, preset.base, base)
    if wrong_base:
        warnings.append(wrong_base)
    if not preset.serves(picture_prompt.type):
        warnings.append(f"preset {preset.name!r} is meant for types {', '.join(preset.types)}, "
                        f"not {picture_prompt.type} ({picture_prompt.picture_type.en}); used anyway")

    loras, embeddings, negative_embeddings = preset.loras, preset.embeddings, preset.negative_embeddings
    if available is not None:
        absent = missing(preset, available)
        for name in absent["loras"]:
            warnings.append(f"LoRA {name!r} is not installed in the WebUI; composed without it "
                            "(put it in models/Lora and refresh to get the preset's full look)")
        for name in absent["embeddings"]:
            warnings.append(f"embedding {name!r} is not loaded in the WebUI; composed without it "
                            "(put it in embeddings/ and check it fits the loaded checkpoint)")
        loras = [ref for ref in loras if ref.name not in absent["loras"]]
        embeddings = [e for e in embeddings if e not in absent["embeddings"]]
        negative_embeddings = [e for e in negative_embeddings if e not in absent["embeddings"]]

    text = neutralize(picture_prompt.en_prompt)
    if not text:
        warnings.append("the model's English prompt is empty once prompt syntax is removed; "
                        "the picture follows the preset alone")
    values = {"prompt": text, "keyword": neutralize(picture_prompt.en_keyword)}
    if available is not None:
        for key in values:
            values[key] = _split_embedding_names(values[key], available.embeddings, warnings)
    positive = join_parts([fill_template(preset.prompt, values),
                           *embeddings, *(ref.tag() for ref in loras)])
    negative = join_parts([*negative_embeddings, preset.negative_prompt])
    target = base or preset.base
    if negative and not takes_negative(target):
        warnings.append(f"no negative prompt is sent: {label(target)} ignores it (the preset's is left out)")
        negative = ""

    settings = apply_overrides(preset.settings, overrides)
    request = ComposedRequest(prompt=positive, negative_prompt=negative, settings=settings, infotext="",
                              preset=preset.name, picture_prompt=picture_prompt, warnings=warnings)
    request.infotext = create_infotext(positive, negative, settings, request.provenance)
    return request


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """The template with each placeholder replaced, every join with model text guarded.

    Neutralising each value alone is not enough: syntax can straddle a join,
    e.g. `{prompt}{keyword}` with "a cat BRE" + "AK dog" gives a live BREAK, and
    `(subject: {prompt})` with "1.5" gives a weight. We guard the joins rather
    than refuse such templates: refusing would need a list of every risky
    template shape (and would break presets saved before), while a join has only
    two sides to look at, whatever the template is.
    """
    pieces = _PLACEHOLDER.split(template)  # text, name, text, name, ..., text
    out = pieces[0]
    for index in range(1, len(pieces), 2):
        out = _guarded_join(out, values[pieces[index]])
        out = _guarded_join(out, pieces[index + 1])
    return out


def _guarded_join(left: str, right: str) -> str:
    """left + right, with a separator where the two would glue into syntax."""
    if not left or not right:
        return left + right
    if _NUMBER_SLOT.search(left) and _NUMBER_START.match(right):
        return left + ", " + right  # ":" then a number is a weight / schedule step; spaces do not stop it
    if _OPENS.search(left) or (_WORD_END.search(left) and _WORD_START.match(right)):
        return left + " " + right
    return left + right


def _split_embedding_names(text: str, names: Any, warnings: List[str]) -> str:
    """Break installed embedding names in model text ("EasyNegative" -> "Easy Negative").

    A1111 loads a textual-inversion embedding wherever its name's tokens appear
    (the tokenizer lower-cases), so model text naming one would add it; a space
    in the middle changes the tokens. Only names the WebUI has can fire. CLIP's
    tokenizer cuts words at digits, `_` and CJK characters, so "EasyNegative2",
    "x_EasyNegative" and "中EasyNegative" fire too; only a Latin letter glued on
    ("EasyNegatives") makes a different token run.
    """
    pattern, canonical = _embedding_pattern(frozenset(names))
    if pattern is None:
        return text
    found: List[str] = []

    def split(match: re.Match[str]) -> str:
        word = match.group(0)
        name = canonical.get(word.lower(), word)
        if name not in found:
            found.append(name)
        return word[:len(word) // 2] + " " + word[len(word) // 2:]

    while True:  # again: a split half may itself be another installed name
        split_text = pattern.sub(split, text)
        if split_text == text:
            break
        text = split_text
    warnings.extend(f"the model's text named the embedding {name!r}; split it so it "
                    "does not load (only presets add embeddings)" for name in found)
    return text


@functools.lru_cache(maxsize=8)
def _embedding_pattern(names: frozenset) -> tuple:
    """One pattern for all names (longest first), built once per set of installed embeddings."""
    usable = sorted((n for n in names if len(n) >= 2), key=len, reverse=True)
    if not usable:
        return None, {}
    # [a-z] under IGNORECASE: any Latin letter next to the name keeps it from firing.
    pattern = re.compile(r"(?<![a-z])(" + "|".join(map(re.escape, usable)) + r")(?![a-z])", re.IGNORECASE)
    return pattern, {n.lower(): n for n in usable}


def join_parts(parts: List[str]) -> str:
    return ", ".join(p.strip() for p in parts if p and p.strip())


def apply_overrides(settings: Settings, overrides: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The preset's settings with `overrides` on top, validated; only the set ones."""
    merged = settings.to_dict()
    for key, value in (overrides or {}).items():
        if key not in SETTING_KEYS:
            raise OverrideError(f"unknown override {key!r}; use one of {', '.join(SETTING_KEYS)}")
        merged[key] = value
    try:
        return Settings.from_dict(merged).set_fields()
    except pydantic.ValidationError as exc:
        where, why = describe_validation_error(exc)[0]
        raise OverrideError(f"override {where}={merged.get(where)!r} rejected: {why}") from None


def quote(value: Any) -> str:
    """A1111's infotext_utils.quote: JSON-quote values containing , : or a newline.

    Also quotes a value that starts with a double quote, which A1111 leaves bare
    and then loses when it parses the line back.
    """
    text = str(value)
    if any(c in text for c in _NEEDS_QUOTES) or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def create_infotext(prompt: str, negative_prompt: str, settings: Mapping[str, Any],
                    extra: Mapping[str, Any]) -> str:
    """The parameters text as A1111 1.10 processing.create_infotext writes it."""
    width, height = settings.get("width"), settings.get("height")
    seed = settings.get("seed")
    params = {
        "Steps": settings.get("steps"),
        "Sampler": settings.get("sampler_name"),
        "Schedule type": settings.get("scheduler"),
        "CFG scale": format_number(settings["cfg_scale"]) if settings.get("cfg_scale") is not None else None,
        # Forge's name (its PasteField); A1111 has no such field and skips it when pasting
        "Distilled CFG Scale": (format_number(settings["distilled_cfg_scale"])
                                if settings.get("distilled_cfg_scale") is not None else None),
        "Seed": seed if seed is not None and seed >= 0 else None,  # -1: picked at generation time
        "Size": f"{width}x{height}" if width and height else None,
        **extra,
    }
    # A1111 writes a bare key when value == key (a flag) and cannot parse it back;
    # none of our fields is a flag, so such a value is quoted instead.
    params_text = ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False) if v == k else quote(v)}"
                            for k, v in params.items() if v is not None and v != "")
    negative_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{params_text}".strip()
