"""The comic strip task: a story in, a character sheet and 2-8 panels out.

Each recurring character gets a short name and a fixed visual description (English
and Chinese) once; the panels name the characters they show, and composition
(newspicgen.comic) repeats the descriptions verbatim in every panel, so a
character looks the same from panel to panel. The number of panels asked for is
enforced by the constraint, not hoped for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Literal, Mapping, Tuple

from pydantic import Field, constr

from prompt_server.compat import StrictModel
from prompt_server.instruction import Instruction, News, build_instruction
from prompt_server.shape import bounded_list
from prompt_server.task import Task

MIN_PANELS, MAX_PANELS = 2, 8
MAX_CHARACTERS = 4
SHOTS = ("full body", "upper body", "close-up", "wide")
Shot = Literal["full body", "upper body", "close-up", "wide"]
CharacterName = constr(min_length=1, max_length=16)


class Character(StrictModel):
    name: str = Field(..., min_length=1, max_length=16, description="short name panels refer to")
    en: str = Field(..., min_length=1, max_length=160, description="fixed English visual description")
    zh: str = Field(..., min_length=1, max_length=80, description="the same description in Chinese")


class Panel(StrictModel):
    en_prompt: str = Field(..., min_length=1, max_length=240, description="English scene prompt")
    ch_prompt: str = Field(..., min_length=1, max_length=120, description="Chinese scene prompt")
    characters: List[CharacterName] = bounded_list(0, MAX_CHARACTERS,  # type: ignore[valid-type]
                                                   description="names of the characters shown")
    shot: Shot = Field(..., description="full body, upper body, close-up or wide")
    caption: str = Field(..., min_length=1, max_length=20, description="Chinese caption")


class ComicStrip(StrictModel):
    characters: List[Character] = bounded_list(1, MAX_CHARACTERS)
    panels: List[Panel] = bounded_list(MIN_PANELS, MAX_PANELS)


@dataclass(frozen=True)
class ComicInput:
    title: str
    content: str
    panels: int = 4

    @classmethod
    def parse(cls, data: Any) -> ComicInput:
        if isinstance(data, ComicInput):
            value = data
        else:
            if not isinstance(data, Mapping):
                raise ValueError('comic input must be an object like {"title": ..., "content": ..., "panels": 4}')
            news = News.from_dict(data)
            panels = data.get("panels", 4)
            if isinstance(panels, bool) or not isinstance(panels, (int, str)) or not str(panels).strip().isdigit():
                raise ValueError(f"panels must be a whole number from {MIN_PANELS} to {MAX_PANELS}, got {panels!r}")
            value = cls(news.title, news.content, int(panels))
        if not MIN_PANELS <= value.panels <= MAX_PANELS:
            raise ValueError(f"panels must be from {MIN_PANELS} to {MAX_PANELS}, got {value.panels}; "
                             "split a longer story into several strips")
        return value


INSTRUCT_TEMPLATE = (
    "Turn this story into a comic strip of exactly {panels} panels.\n"
    "Title: {title}\nStory: {content}\n"
    "Answer with one JSON object with two fields. characters: the recurring characters (1 to 4), each "
    "with name (a short name, at most 16 characters), en (a fixed English visual description for "
    "Stable Diffusion: age, build, hair, clothes; at most 160 characters) and zh (the same description "
    "in Chinese). panels: the {panels} panels in story order, each with en_prompt (an English scene "
    "prompt: action, place, light; do not repeat the characters' looks), ch_prompt (the scene in "
    "Chinese), characters (the names of the characters in the panel), shot (\"full body\", "
    "\"upper body\", \"close-up\" or \"wide\") and caption (a Chinese caption of at most 20 characters).")


def _instruct(task_input: ComicInput, budget: int) -> Instruction:
    template = INSTRUCT_TEMPLATE.replace("{panels}", str(task_input.panels))
    return build_instruction(News(task_input.title, task_input.content), max_content_chars=budget,
                             template=template)


def _bounds(task_input: ComicInput) -> Mapping[str, Tuple[int, int]]:
    return {"panels": (task_input.panels, task_input.panels)}


COMIC = Task(name="comic", output=ComicStrip, parse_input=ComicInput.parse, default_family="instruct",
             instructions={"instruct": _instruct}, max_tokens=3072, request_bounds=_bounds)
