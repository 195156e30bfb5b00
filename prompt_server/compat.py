"""pydantic 1.10 (AUTOMATIC1111) and 2.x (Forge, the server) behind one small API.

Every model of the project derives from `StrictModel` and every version switch
lives here, so no other module asks which pydantic it runs on.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Tuple, Type, TypeVar

import pydantic

PYDANTIC_V2 = pydantic.VERSION.startswith("2")
ValidationError = pydantic.ValidationError

M = TypeVar("M", bound="StrictModel")

if PYDANTIC_V2:
    def field_check(*fields: str) -> Callable[[Any], Any]:
        """A field validator (classmethod-style: (cls, value) -> value)."""
        return pydantic.field_validator(*fields)
else:  # pragma: no cover - exercised in the pydantic 1.10 environment
    def field_check(*fields: str) -> Callable[[Any], Any]:
        return pydantic.validator(*fields, allow_reuse=True)


class StrictModel(pydantic.BaseModel):
    """Unknown keys are errors (a typo in a preset file must not pass silently)."""

    if PYDANTIC_V2:
        model_config = {"extra": "forbid"}
    else:  # pragma: no cover
        class Config:
            extra = "forbid"

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump() if PYDANTIC_V2 else self.dict()

    @classmethod
    def from_dict(cls: Type[M], data: Mapping[str, Any]) -> M:
        return cls.model_validate(data) if PYDANTIC_V2 else cls.parse_obj(data)

    @classmethod
    def construct_unchecked(cls: Type[M], **values: Any) -> M:
        """An instance without validation (user-edited text that may exceed the model's bounds)."""
        return cls.model_construct(**values) if PYDANTIC_V2 else cls.construct(**values)


def json_schema(model: Type[pydantic.BaseModel]) -> Dict[str, Any]:
    return model.model_json_schema() if PYDANTIC_V2 else model.schema()


def field_names(model: Type[pydantic.BaseModel]) -> List[str]:
    return list(getattr(model, "model_fields" if PYDANTIC_V2 else "__fields__"))


def describe_validation_error(error: ValidationError, root: str = "(file)") -> List[Tuple[str, str]]:
    """[(field path, message)] with pydantic 2's "Value error, " prefix dropped."""
    out = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item.get("loc", ())) or root
        msg = item.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if item.get("type") in ("extra_forbidden", "value_error.extra"):
            msg = "unknown field (a typo?); remove or rename it"
        out.append((loc, msg))
    return out


def first_error(error: ValidationError) -> str:
    """'field.path: message' of the first problem, for one-line messages."""
    described = describe_validation_error(error, root="(object)")
    return f"{described[0][0]}: {described[0][1]}" if described else str(error)
