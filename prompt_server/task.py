"""A task: one kind of structured answer the prompt server is asked for.

A task is its input (parsed from a dict), its instruction per model family
("newspicgen": the fine-tune's own wording, "instruct": a general instruct
model told the JSON shape in words), its output pydantic model and the regex /
JSON schema derived from that model (prompt_server.shape), optionally narrowed
per request (a comic of 4 panels allows exactly 4). How an output becomes
txt2img requests lives in the layers above (newspicgen/, style_presets/).

The news picture is the task `NEWS`; the comic strip and the product poster are
`prompt_server.comic_task.COMIC` and `prompt_server.ad_task.AD`. Stdlib +
pydantic only: the WebUI imports it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type

from prompt_server.compat import StrictModel
from prompt_server.defaults import DEFAULT_SERVER_URL, ENV_SERVER_URL, SERVED_MODEL_NAME
from prompt_server.instruction import DEFAULT_MAX_CONTENT_CHARS, Instruction, News, build_instruction
from prompt_server.schema import PicturePrompt, output_json_schema, output_regex
from prompt_server.shape import Obj, output_text, parse_output, read_shape, tighten, to_json_schema, to_regex

FAMILIES = ("newspicgen", "instruct")  # the NewsPicGen fine-tune; any general instruct model

# (task input, max_content_chars) -> the instruction text and what was cut
InstructionBuilder = Callable[[Any, int], Instruction]


@dataclass(frozen=True)
class Task:
    name: str                      # "news", "comic", "ad": CLI command, route, env prefix
    output: Type[StrictModel]
    parse_input: Callable[[Any], Any]
    instructions: Mapping[str, InstructionBuilder]  # per model family
    default_family: str
    max_tokens: Optional[int] = None  # None: the client's own default (the news JSON is short)
    # task input -> {dotted path: (low, high)} narrowing the model's bounds for this request
    request_bounds: Callable[[Any], Mapping[str, Tuple[int, int]]] = field(default=lambda _: {})

    @property
    def schema_name(self) -> str:
        return "picture_prompt" if self.name == "news" else f"{self.name}_output"

    def shape(self, task_input: Any = None) -> Obj:
        bounds = self.request_bounds(task_input) if task_input is not None else {}
        return tighten(_shape(self.output), bounds)

    def regex(self, task_input: Any = None) -> str:
        return to_regex(self.shape(task_input))

    def json_schema(self, task_input: Any = None) -> Dict[str, Any]:
        return to_json_schema(self.shape(task_input))

    def instruction(self, task_input: Any, family: Optional[str] = None,
                    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS) -> Instruction:
        family = family or self.default_family
        if family not in self.instructions:
            raise ValueError(f"the {self.name} task has no instruction for model family {family!r}; "
                             f"use one of {', '.join(self.instructions)}")
        return self.instructions[family](task_input, max_content_chars)

    def parse(self, text: str) -> Any:
        """Parse and validate the model's answer. Raises ValueError (json) or ValidationError."""
        return parse_output(self.output, text)

    def server(self, environ: Optional[Mapping[str, str]] = None, news_url: Optional[str] = None,
               model: Optional[str] = None) -> Tuple[str, str]:
        """(server URL, model id) for this task: NEWSPICGEN_<TASK>_SERVER_URL / _MODEL, else
        `news_url` / `model` (e.g. WebUI settings), else the news server and model."""
        env = os.environ if environ is None else environ
        prefix = f"NEWSPICGEN_{self.name.upper()}_"
        url = ((env.get(prefix + "SERVER_URL") or "").strip() or news_url
               or (env.get(ENV_SERVER_URL) or "").strip() or DEFAULT_SERVER_URL)
        return url, (env.get(prefix + "MODEL") or "").strip() or model or SERVED_MODEL_NAME


@functools.cache
def _shape(model: Type[StrictModel]) -> Obj:
    return read_shape(model)


# --- the news picture -----------------------------------------------------------------------

class NewsTask(Task):
    """The news picture: NewsPicGen's regex and schema exactly as schema.py writes them."""

    def regex(self, task_input: Any = None) -> str:
        return output_regex()

    def json_schema(self, task_input: Any = None) -> Dict[str, Any]:
        return output_json_schema()

    def parse(self, text: str) -> PicturePrompt:
        return PicturePrompt.from_json(text)


def _news_input(data: Any) -> News:
    return data if isinstance(data, News) else News.from_dict(data)


NEWS_INSTRUCT_TEMPLATE = (
    "Read this Chinese news and write a drawing prompt for one picture that fits it.\n"
    "Title: {title}\nContent: {content}\n"
    "Answer with one JSON object: ch_keyword (a Chinese keyword), ch_prompt (a Chinese drawing prompt), "
    "en_keyword (the English keyword), en_prompt (an English drawing prompt for Stable Diffusion: "
    "subject, scene, composition, comma-separated), type (\"1\" animal, \"2\" person, \"3\" crowd, "
    "\"4\" landscape, \"5\" building, \"6\" tech product, \"7\" object, \"8\" other).")


NEWS = NewsTask(
    name="news", output=PicturePrompt, parse_input=_news_input, default_family="newspicgen",
    instructions={
        "newspicgen": lambda news, budget: build_instruction(news, max_content_chars=budget),
        "instruct": lambda news, budget: build_instruction(news, max_content_chars=budget,
                                                           template=NEWS_INSTRUCT_TEMPLATE),
    })

TASK_MODULES = {"news": "prompt_server.task", "comic": "prompt_server.comic_task", "ad": "prompt_server.ad_task"}


def get_task(name: str) -> Task:
    """The task called `name` ("news", "comic", "ad")."""
    import importlib
    if name not in TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(TASK_MODULES)}")
    task = getattr(importlib.import_module(TASK_MODULES[name]), name.upper())
    assert isinstance(task, Task)
    return task


def answer_text(value: StrictModel) -> str:
    """A task's answer as the decoder writes it (fixed key order, CJK unescaped)."""
    return output_text(value)
