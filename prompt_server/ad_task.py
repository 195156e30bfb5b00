"""The product poster task: product facts in, Chinese ad copy and a picture prompt out.

Facts may be free text or AdvertiseGen's `key#value*key#value` form
(`类型#裙*颜色#蓝色*风格#清新`), which is spelled out for the model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import Field

from prompt_server.compat import StrictModel
from prompt_server.instruction import EmptyNewsError, Instruction, News, build_instruction
from prompt_server.schema import TypeCode
from prompt_server.task import Task

_ADVERTISEGEN = re.compile(r"^[^#*\s]+#[^#*]+(\*[^#*\s]+#[^#*]+)*$")


class AdCopy(StrictModel):
    headline: str = Field(..., min_length=1, max_length=16, description="Chinese headline")
    # `copy` is a pydantic BaseModel method: the field is body_copy, written "copy"
    body_copy: str = Field(..., alias="copy", min_length=1, max_length=120, description="Chinese body copy")
    en_prompt: str = Field(..., min_length=1, max_length=300, description="English picture prompt")
    type: TypeCode = Field(..., description="picture type, as NewsPicGen's")


@dataclass(frozen=True)
class AdInput:
    product: str
    facts: str = ""

    @classmethod
    def parse(cls, data: Any) -> AdInput:
        if isinstance(data, AdInput):
            return data
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping) or "product" not in data:
            raise ValueError('ad input must be an object like {"product": "...", "facts": "..."}')
        product, facts = data.get("product"), data.get("facts") or ""
        if not isinstance(product, str) or not isinstance(facts, str):
            raise ValueError('ad "product" and "facts" must be text')
        return cls(product, facts)


def spell_out(facts: str) -> str:
    """AdvertiseGen's `类型#裙*颜色#蓝色` as `类型：裙；颜色：蓝色`; other text as it is."""
    text = facts.strip()
    if not _ADVERTISEGEN.match(text):
        return text
    return "；".join("：".join(pair.split("#", 1)) for pair in text.split("*"))


INSTRUCT_TEMPLATE = (
    "Write a product advertisement in Chinese and a picture prompt for its poster.\n"
    "Product: {title}\nFacts: {content}\n"
    "Answer with one JSON object: headline (a Chinese headline of at most 16 characters), copy (Chinese "
    "body copy of at most 120 characters that uses the facts), en_prompt (an English Stable Diffusion "
    "prompt for a product photograph: the product, material, colour, setting, light), type (\"6\" for a "
    "tech product, \"7\" for any other object, \"2\" when a person wears or holds it).")

_EMPTY = "the product is empty; type a product name or its facts (e.g. 类型#裙*颜色#蓝色)"


def _instruct(task_input: AdInput, budget: int) -> Instruction:
    try:
        return build_instruction(News(spell_out(task_input.product), spell_out(task_input.facts)),
                                 max_content_chars=budget, template=INSTRUCT_TEMPLATE)
    except EmptyNewsError:
        raise EmptyNewsError(_EMPTY) from None


AD = Task(name="ad", output=AdCopy, parse_input=AdInput.parse, default_family="instruct",
          instructions={"instruct": _instruct}, max_tokens=1024)
