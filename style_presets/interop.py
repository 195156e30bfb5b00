"""Presets to and from A1111 styles.csv and Fooocus style JSON.

A1111 styles carry only name, prompt and negative_prompt, so on export the
preset's LoRA tags and embedding names are written into the text (the way a
user would type them) and its settings are left behind. On import, LoRA tags
are lifted back into `loras`, and names of known embeddings standing alone
between commas into `embeddings` / `negative_embeddings`.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set, Tuple, Union

import pydantic

from prompt_server.compat import describe_validation_error
from style_presets.preset import ALL_TYPES, EXTRA_NETWORK_TAG, LoraRef, StylePreset
from style_presets.reading import MAX_IMPORT_BYTES, ReadError, parse_json, read_text

CSV_FIELDS = ("name", "prompt", "negative_prompt")
_LORA_KINDS = ("lora", "lyco")  # A1111 1.10's Lora extension answers to both
_EMPTY_ITEMS = re.compile(r"\s*,(?:\s*,)+")
_EDGE_COMMAS = re.compile(r"^[\s,]+|[\s,]+$")
_INVALID_NAME_CHARS = re.compile(r"[^\w .+()\-]+")


class ImportFormatError(ValueError):
    """The file is not the format it claims; the message says what was expected."""


# -- export ------------------------------------------------------------------------
def style_texts(preset: StylePreset) -> tuple:
    """(prompt, negative_prompt) as one A1111 style: tokens in the text, {prompt} kept."""
    template = _tidy(preset.prompt.replace("{keyword}", ""))  # A1111 styles know only {prompt}
    prompt = _join([template, *preset.embeddings, *(ref.tag() for ref in preset.loras)])
    negative = _join([*preset.negative_embeddings, preset.negative_prompt])
    return prompt, negative


def export_a1111_csv(presets: Iterable[StylePreset], destination: Union[str, Path, io.TextIOBase]) -> int:
    """Write a styles.csv (utf-8 with BOM like A1111's own); returns the row count."""
    rows = [dict(zip(CSV_FIELDS, (p.name, *style_texts(p)), strict=False)) for p in presets]
    if isinstance(destination, (str, Path)):
        with open(destination, "w", encoding="utf-8-sig", newline="") as handle:
            _write_rows(handle, rows)
    else:
        _write_rows(destination, rows)
    return len(rows)


def _write_rows(handle: Any, rows: List[dict]) -> None:
    writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)


# -- import ------------------------------------------------------------------------
def import_a1111_csv(path: Union[str, Path], *, family: str = "a1111-styles",
                     known_embeddings: Iterable[str] = (), base: Optional[str] = None) -> List[StylePreset]:
    """One preset per styles.csv row (rows whose name starts with # are dividers, skipped).
    A styles.csv does not say which model its styles are for: `base` when the caller knows."""
    reader = csv.DictReader(io.StringIO(_read(path), newline=""), skipinitialspace=True)
    try:
        fields = reader.fieldnames or []
        if "name" not in fields or not ({"prompt", "text"} & set(fields)):
            raise ImportFormatError(f"{path}: not an A1111 styles.csv; the header must be "
                                    "name,prompt,negative_prompt (found: "
                                    f"{','.join(fields) or 'nothing'})")
        rows = list(reader)
    except csv.Error as exc:  # a field over csv.field_size_limit(), a NUL byte; DictReader.line_num lags
        raise ImportFormatError(f"{path}: line {reader.reader.line_num}: {exc}; fix or shorten that "
                                "style (A1111 cannot read it either)") from None
    known = set(known_embeddings)
    presets = []
    for number, row in enumerate(rows, start=2):
        name = (row.get("name") or "").strip()
        if not name or name.startswith("#"):
            continue
        prompt = row.get("prompt") if row.get("prompt") is not None else row.get("text", "")
        presets.append(_preset_from_style(name, prompt or "", row.get("negative_prompt") or "",
                                          family, known, f"{path}: row {number}", base))
    return presets


def import_fooocus(path: Union[str, Path], *, family: str = "fooocus",
                   known_embeddings: Iterable[str] = (), base: Optional[str] = "sdxl") -> List[StylePreset]:
    """Fooocus sdxl_styles JSON: [{"name", "prompt", "negative_prompt"}, ...]; Fooocus runs SDXL only,
    so its styles are made for SDXL."""
    try:
        data = parse_json(_read(path))
    except ReadError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise ImportFormatError(f"{path}: a Fooocus style file is a JSON list of "
                                '{"name", "prompt", "negative_prompt"} objects')
    known = set(known_embeddings)
    presets = []
    for index, item in enumerate(data):
        name, prompt, negative = _fooocus_texts(item, f"{path}: item {index}")
        presets.append(_preset_from_style(name, prompt, negative, family, known, f"{path}: item {index}", base))
    return presets


def _fooocus_texts(item: Any, where: str) -> Tuple[str, str, str]:
    """(name, prompt, negative_prompt), refusing what is not text instead of str()-ing it."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        raise ImportFormatError(f"{where} has no \"name\" text; each style needs "
                                "name, prompt and negative_prompt")
    texts = []
    for key in ("prompt", "negative_prompt"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ImportFormatError(f"{where} ({item['name']!r}): \"{key}\" is a {type(value).__name__}, "
                                    "not text; write it as a JSON string")
        texts.append(value or "")
    return item["name"].strip(), texts[0], texts[1]


def _read(path: Union[str, Path]) -> str:
    try:
        return read_text(path, MAX_IMPORT_BYTES)
    except ReadError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None


def preset_name(style_name: str) -> str:
    """A style name made usable as a preset (file) name."""
    name = _INVALID_NAME_CHARS.sub("-", style_name).strip(" .-_")
    return (name or "style")[:80]


def _preset_from_style(name: str, prompt: str, negative: str, family: str,
                       known_embeddings: Set[str], where: str, base: Optional[str] = None) -> StylePreset:
    try:
        loras = [_lora_ref(m) for m in EXTRA_NETWORK_TAG.finditer(prompt) if m.group(1) in _LORA_KINDS]
    except pydantic.ValidationError as exc:
        raise ImportFormatError(f"{where}: style {name!r} has an unusable LoRA tag: "
                                f"{describe_validation_error(exc)[0][1]}") from None
    prompt = _tidy(EXTRA_NETWORK_TAG.sub(lambda m: "" if m.group(1) in _LORA_KINDS else m.group(0), prompt))
    prompt, embeddings = _split_embeddings(prompt, known_embeddings)
    negative, negative_embeddings = _split_embeddings(_tidy(negative), known_embeddings)
    if "{prompt}" not in prompt:  # A1111 appends such a style after the user's prompt
        prompt = _join(["{prompt}", prompt])
    data = {"name": preset_name(name), "family": family, "base": base, "types": list(ALL_TYPES),
            "description": f"Imported from {where} ({name!r}).", "prompt": prompt,
            "negative_prompt": negative, "loras": loras,
            "embeddings": embeddings, "negative_embeddings": negative_embeddings}
    try:
        return StylePreset.from_dict(data)
    except pydantic.ValidationError as exc:
        field, why = describe_validation_error(exc)[0]
        raise ImportFormatError(f"{where}: style {name!r} cannot become a preset: {field}: {why}") from None


def _lora_ref(match: re.Match[str]) -> dict:
    parts = match.group(2).split(":")
    try:
        weight = float(parts[1]) if len(parts) > 1 and parts[1].strip() else 1.0
    except ValueError:
        weight = 1.0
    return LoraRef(name=parts[0], weight=weight).to_dict()


def _split_embeddings(text: str, known: Set[str]) -> tuple:
    """Lift known embedding names out; text without any is returned untouched."""
    parts = _parts(text)
    if not any(part in known for part in parts):
        return text, []
    kept: List[str] = []
    found: List[str] = []
    for part in parts:
        (found if part in known else kept).append(part)
    return ", ".join(kept), list(dict.fromkeys(found))


def _tidy(text: str) -> str:
    """Drop the empty items and edge commas left where a token was taken out."""
    return _EDGE_COMMAS.sub("", _EMPTY_ITEMS.sub(",", text))


def _parts(text: str) -> List[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _join(parts: Iterable[str]) -> str:
    return ", ".join(p.strip() for p in parts if p and p.strip())
