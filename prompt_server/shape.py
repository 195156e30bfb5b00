"""A task's output shape, read off its pydantic model: the decoding regex and the JSON schema.

The model is the one source of truth (DESIGN.md): its JSON schema (pydantic 1.10
or 2.x) is read into a small tree of bounded strings, string enums, bounded
arrays and objects with a fixed key order, and both constraints are written from
that tree. Anything else in a model (numbers, optional or unbounded fields) is
refused, because the decoder could not keep it bounded.

The regex keeps to the subset every grammar engine reads alike: no lookaround,
backreference, `\\p{..}`, inline flag, non-capturing group or `.`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

from pydantic import Field

from prompt_server.compat import PYDANTIC_V2, StrictModel, ValidationError, json_schema
from prompt_server.schema import JSON_CHAR

# Enum values are written into the regex as they are: keep them to plain characters.
_PLAIN_ENUM = re.compile(r"^[A-Za-z0-9 _-]+$")


def bounded_list(low: int, high: int, **kwargs: Any) -> Any:
    """A list Field with item-count bounds, under pydantic 1.10 and 2.x alike."""
    if PYDANTIC_V2:
        return Field(..., min_length=low, max_length=high, **kwargs)
    return Field(..., min_items=low, max_items=high, **kwargs)  # type: ignore[call-overload]  # pragma: no cover


@dataclass(frozen=True)
class Text:
    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    values: Tuple[str, ...]


@dataclass(frozen=True)
class Items:
    item: Node
    low: int
    high: int


@dataclass(frozen=True)
class Obj:
    fields: Tuple[Tuple[str, Node], ...]


Node = Union[Text, Choice, Items, Obj]


class ShapeError(TypeError):
    """A model field the constraint cannot bound; names the field and what to use instead."""


def read_shape(model: Type[StrictModel]) -> Obj:
    """The model's shape tree (fields in declaration order)."""
    schema = json_schema(model)
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    node = _node(schema, definitions, model.__name__)
    assert isinstance(node, Obj)
    return node


def _resolve(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:  # pydantic 1.10 wraps a described sub-model
        return _resolve(schema["allOf"][0], definitions)
    return schema


def _node(schema: Mapping[str, Any], definitions: Mapping[str, Any], where: str) -> Node:
    schema = _resolve(schema, definitions)
    if "enum" in schema or "const" in schema:
        values = tuple(schema["enum"]) if "enum" in schema else (schema["const"],)
        bad = [v for v in values if not isinstance(v, str) or not _PLAIN_ENUM.match(v)]
        if bad:
            raise ShapeError(f"{where}: enum values must be plain text (letters, digits, space, _ -), got {bad}")
        return Choice(values)
    kind = schema.get("type")
    if kind == "string":
        if "maxLength" not in schema:
            raise ShapeError(f"{where}: a string without max_length cannot be bounded; add max_length")
        return Text(int(schema.get("minLength", 0)), int(schema["maxLength"]))
    if kind == "array":
        if "maxItems" not in schema:
            raise ShapeError(f"{where}: a list without a maximum length cannot be bounded; use bounded_list")
        return Items(_node(schema["items"], definitions, where + "[]"),
                     int(schema.get("minItems", 0)), int(schema["maxItems"]))
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        fields = []
        for name, sub in schema["properties"].items():
            if name not in required:
                raise ShapeError(f"{where}.{name}: every field must be required (the decoder writes them all)")
            fields.append((name, _node(sub, definitions, f"{where}.{name}")))
        return Obj(tuple(fields))
    raise ShapeError(f"{where}: {kind or 'this field'} cannot be constrained; use bounded strings, "
                     "string literals, bounded lists or models of those")


def tighten(shape: Obj, bounds: Mapping[str, Tuple[int, int]]) -> Obj:
    """The shape with some bounds narrowed, by dotted path ("panels", "panels.caption").

    A bound may only narrow the model's (a wider one would let the decoder write
    answers the model rejects).
    """
    for path, (low, high) in bounds.items():
        shape = _tighten(shape, path.split("."), int(low), int(high), path)  # type: ignore[assignment]
    return shape


def _tighten(node: Node, parts: List[str], low: int, high: int, path: str) -> Node:
    if isinstance(node, Items) and parts:
        return replace(node, item=_tighten(node.item, parts, low, high, path))
    if not parts:
        if not isinstance(node, (Text, Items)):
            raise ValueError(f"{path} has no length to bound")
        if not node.low <= low <= high <= node.high:
            raise ValueError(f"{path} bounds {low}..{high} are outside {node.low}..{node.high} allowed by the model")
        return replace(node, low=low, high=high)
    if not isinstance(node, Obj) or parts[0] not in dict(node.fields):
        raise ValueError(f"unknown field path {path!r}")
    return Obj(tuple((name, _tighten(sub, parts[1:], low, high, path) if name == parts[0] else sub)
                     for name, sub in node.fields))


# --- the two constraints -------------------------------------------------------------

def to_regex(node: Node) -> str:
    """Fixed key order, optional single spaces where NewsPicGen's own regex allows them."""
    if isinstance(node, Text):
        return f'"{JSON_CHAR}{{{node.low},{node.high}}}"'
    if isinstance(node, Choice):
        if all(len(v) == 1 for v in node.values):
            return '"[' + "".join(node.values) + ']"'
        return '"(' + "|".join(re.escape(v) for v in node.values) + ')"'
    if isinstance(node, Items):
        item = to_regex(node.item)
        if node.high == 0:
            return r"\[ ?\]"
        more = "" if node.high == 1 else f"(, ?{item}){{{max(node.low - 1, 0)},{node.high - 1}}}"
        body = item + more
        return r"\[ ?" + (body if node.low >= 1 else f"({body})?") + r" ?\]"
    return r"\{ ?" + ", ?".join(f'"{name}": ?{to_regex(sub)}' for name, sub in node.fields) + r" ?\}"


def to_json_schema(node: Node) -> Dict[str, Any]:
    """An inline JSON schema (no $ref) for `response_format`, with every bound."""
    if isinstance(node, Text):
        return {"type": "string", "minLength": node.low, "maxLength": node.high}
    if isinstance(node, Choice):
        return {"type": "string", "enum": list(node.values)}
    if isinstance(node, Items):
        return {"type": "array", "items": to_json_schema(node.item), "minItems": node.low, "maxItems": node.high}
    return {"type": "object", "properties": {name: to_json_schema(sub) for name, sub in node.fields},
            "required": [name for name, _ in node.fields], "additionalProperties": False}


def dump(value: StrictModel) -> Dict[str, Any]:
    """The model as a dict keyed the way its JSON is (aliases: `copy` is a BaseModel method)."""
    return value.model_dump(by_alias=True) if PYDANTIC_V2 else value.dict(by_alias=True)


def output_text(value: StrictModel) -> str:
    """The model as the decoder writes it: key order fixed, CJK unescaped."""
    return json.dumps(dump(value), ensure_ascii=False)


def parse_output(model: Type[StrictModel], text: str) -> Any:
    """Parse and validate model output. Raises ValueError (json) or ValidationError."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return model.from_dict(data)


def is_valid(model: Type[StrictModel], text: str, regex: Optional[str] = None) -> bool:
    """True when `text` parses into `model` (and matches `regex`, when given)."""
    if regex is not None and re.fullmatch(regex, text) is None:
        return False
    try:
        parse_output(model, text)
    except (ValueError, ValidationError):
        return False
    return True
