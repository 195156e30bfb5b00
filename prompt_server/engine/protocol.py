"""SGLang's OpenAI-compatible /v1/chat/completions request, range-checked (pydantic 2).

Every number a client sends is bounded here, before it reaches the batch:
a request with `temperature: 1e308` or `seed: 2**64` is a 400 for that
request alone. Fields SGLang accepts but this engine does not implement are
accepted at their neutral value and refused otherwise (a clear 400 rather
than a silently different answer); unknown fields are ignored, as SGLang does.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Literal, Optional, Union, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SEED_MIN, SEED_MAX = -(2 ** 63), 2 ** 64 - 1   # what torch.Generator.manual_seed accepts
MAX_TEMPERATURE = 2.0                           # OpenAI's documented range; SGLang treats < 1e-6 as greedy
MAX_N = 16


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Optional[str] = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Union[str, List[TextPart], None] = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Optional[str] = None
    schema_: Any = Field(alias="schema")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaSpec] = None

    @model_validator(mode="after")
    def _needs_schema(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('json_schema needs {"json_schema": {"name": ..., "schema": {...}}}')
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    messages: List[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1, strict=True)
    max_completion_tokens: Optional[int] = Field(None, ge=1, strict=True)
    min_tokens: int = Field(0, ge=0, strict=True)
    temperature: float = Field(1.0, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: Optional[int] = Field(None, ge=SEED_MIN, le=SEED_MAX, strict=True)
    n: int = Field(1, ge=1, le=MAX_N, strict=True)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    regex: Optional[str] = None
    response_format: Optional[ResponseFormat] = None
    ignore_eos: bool = False
    # accepted at their neutral values only (this engine does not implement them)
    top_k: int = Field(-1, ge=-1, strict=True)
    min_p: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0, allow_inf_nan=False)
    stop: Union[str, List[str], None] = None
    logprobs: bool = False

    @field_validator("temperature", "top_p", mode="before")
    @classmethod
    def _none_is_default(cls, value, info):
        return {"temperature": 1.0, "top_p": 1.0}[info.field_name] if value is None else value

    @model_validator(mode="after")
    def _consistent(self):
        if self.regex is not None and self.response_format is not None and self.response_format.type != "text":
            raise ValueError("Only one of regex or response_format can be set; "
                             "this engine applies one constraint per request")
        unsupported = [name for name, neutral in (("top_k", -1), ("min_p", 0.0), ("frequency_penalty", 0.0),
                                                  ("presence_penalty", 0.0), ("repetition_penalty", 1.0),
                                                  ("stop", None), ("logprobs", False))
                       if getattr(self, name) not in (neutral, []) ]
        if unsupported:
            raise ValueError(f"{', '.join(unsupported)} not supported by the embedded engine; "
                             f"leave {'them' if len(unsupported) > 1 else 'it'} out or serve with SGLang")
        limit = self.requested_max_tokens(None)
        if limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens={self.min_tokens} is larger than max_tokens={limit}")
        return self

    @overload
    def requested_max_tokens(self, default: int) -> int: ...
    @overload
    def requested_max_tokens(self, default: None) -> Optional[int]: ...

    def requested_max_tokens(self, default: Optional[int]) -> Optional[int]:
        return self.max_tokens or self.max_completion_tokens or default

    def json_schema(self) -> Optional[Any]:
        if self.response_format is None or self.response_format.type == "text":
            return None
        if self.response_format.type == "json_object":
            return {"type": "object"}
        assert self.response_format.json_schema is not None  # ResponseFormat._needs_schema
        return self.response_format.json_schema.schema_


class RequestError(Exception):
    """A client error, answered in SGLang's error shape."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status, self.kind = status, kind

    def payload(self) -> Dict[str, Any]:
        return {"object": "error", "message": str(self), "type": self.kind, "param": None, "code": self.status}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number; send finite numbers")


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Bytes -> validated request, or RequestError(400) naming the field, the value and the rule."""
    try:
        data = json.loads(body or b"null", parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object with model, messages, ...")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "request"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {_short(value)})"
        parts.append(f"{where}: {message}{shown}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
