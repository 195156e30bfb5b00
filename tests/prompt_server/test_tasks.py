"""Tasks: the output shapes derived from their pydantic models, and the real tiny
model through the embedded engine answering every task within its constraint."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prompt_server.ad_task import AD, AdCopy, AdInput, spell_out
from prompt_server.client import PromptClient
from prompt_server.comic_task import COMIC, MAX_CHARACTERS, SHOTS, ComicInput, ComicStrip
from prompt_server.compat import ValidationError
from prompt_server.instruction import EmptyNewsError
from prompt_server.schema import PicturePrompt, output_json_schema, output_regex
from prompt_server.shape import ShapeError, output_text, read_shape, tighten, to_json_schema, to_regex
from prompt_server.task import NEWS, get_task

STORY = {"title": "乡村教师坚守山区讲台三十年",
         "content": "在海拔两千米的山村小学，五十六岁的李老师已经教书三十年。她每天清晨步行一小时到校。"}
FOUR = ComicInput(STORY["title"], STORY["content"], 4)


def test_the_generic_derivation_gives_newspicgens_own_regex_and_schema_exactly():
    shape = read_shape(PicturePrompt)
    assert to_regex(shape) == output_regex() == NEWS.regex()
    assert to_json_schema(shape) == output_json_schema() == NEWS.json_schema()


def test_tasks_are_found_by_name_and_unknown_ones_named():
    assert get_task("comic") is COMIC and get_task("ad") is AD and get_task("news") is NEWS
    with pytest.raises(ValueError, match="use one of news, comic, ad"):
        get_task("poem")


def test_a_request_for_n_panels_allows_exactly_n_panels():
    schema = COMIC.json_schema(FOUR)["properties"]["panels"]
    assert (schema["minItems"], schema["maxItems"]) == (4, 4)
    # the model's own bounds stay as they are
    assert COMIC.json_schema()["properties"]["panels"]["maxItems"] == 8
    with pytest.raises(ValueError, match="outside 2..8"):
        tighten(read_shape(ComicStrip), {"panels": (1, 9)})


def test_every_string_and_array_of_every_task_is_bounded():
    def walk(schema):
        if schema["type"] == "string":
            assert "enum" in schema or schema["maxLength"] >= schema["minLength"]
        elif schema["type"] == "array":
            assert schema["maxItems"] >= schema["minItems"]
            walk(schema["items"])
        else:
            assert schema["additionalProperties"] is False
            for sub in schema["properties"].values():
                walk(sub)
    for task in (NEWS, COMIC, AD):
        walk(task.json_schema())


def test_an_unbounded_model_is_refused_with_the_fix():
    from pydantic import Field

    from prompt_server.compat import StrictModel

    class Loose(StrictModel):
        text: str = Field(...)

    with pytest.raises(ShapeError, match="add max_length"):
        read_shape(Loose)


# --- regex <-> model, as test_schema.py does for the news ------------------------------

COMIC_REGEX = COMIC.regex(ComicInput("t", "c", 2))
AD_REGEX = AD.regex()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(COMIC_REGEX, fullmatch=True))
def test_strings_from_the_comic_regex_parse_into_valid_strips(text):
    strip = COMIC.parse(text)
    assert len(strip.panels) == 2 and 1 <= len(strip.characters) <= MAX_CHARACTERS
    assert list(json.loads(text)) == ["characters", "panels"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(AD_REGEX, fullmatch=True))
def test_strings_from_the_ad_regex_parse_into_valid_ads(text):
    ad = AD.parse(text)
    assert list(json.loads(text)) == ["headline", "copy", "en_prompt", "type"]
    assert 1 <= len(ad.headline) <= 16 and 1 <= len(ad.body_copy) <= 120


_TEXT = st.text(alphabet=st.sampled_from(list('"\\\n\t/熊猫 ab😀\u2028{}[]:,')), min_size=1, max_size=16)
_characters = st.builds(lambda name, en, zh: {"name": name, "en": en, "zh": zh}, _TEXT, _TEXT, _TEXT)
_panel = st.builds(lambda en, ch, names, shot, caption: {"en_prompt": en, "ch_prompt": ch, "characters": names,
                                                         "shot": shot, "caption": caption},
                   _TEXT, _TEXT, st.lists(_TEXT, max_size=MAX_CHARACTERS), st.sampled_from(SHOTS), _TEXT)
strips = st.builds(lambda chars, panels: ComicStrip.from_dict({"characters": chars, "panels": panels}),
                   st.lists(_characters, min_size=1, max_size=MAX_CHARACTERS),
                   st.lists(_panel, min_size=2, max_size=2))


@settings(max_examples=80, deadline=None)
@given(strips)
def test_valid_strips_serialise_to_strings_the_regex_matches(strip):
    text = output_text(strip)
    assert re.fullmatch(COMIC_REGEX, text), text
    assert COMIC.parse(text) == strip


def test_the_model_refuses_what_the_regex_refuses():
    base = {"characters": [{"name": "李", "en": "a woman", "zh": "女子"}],
            "panels": [{"en_prompt": "x", "ch_prompt": "y", "characters": ["李"], "shot": "wide",
                        "caption": "字" * 20}] * 2}
    assert re.fullmatch(COMIC_REGEX, json.dumps(base, ensure_ascii=False))
    for broken in ({**base, "panels": base["panels"][:1]},
                   {**base, "characters": []},
                   {**base, "panels": [{**base["panels"][0], "caption": "字" * 21}] * 2},
                   {**base, "panels": [{**base["panels"][0], "shot": "medium"}] * 2}):
        text = json.dumps(broken, ensure_ascii=False)
        assert not re.fullmatch(COMIC_REGEX, text)
        with pytest.raises(ValidationError):
            COMIC.parse(text)


def test_the_ad_copy_is_written_under_its_json_name():
    ad = AdCopy.from_dict({"headline": "清新一夏", "copy": "蓝色连衣裙", "en_prompt": "a blue dress", "type": "7"})
    assert list(json.loads(output_text(ad))) == ["headline", "copy", "en_prompt", "type"]
    assert re.fullmatch(AD_REGEX, output_text(ad))


# --- inputs and instructions -------------------------------------------------------------

def test_comic_input_checks_the_panel_count_with_the_fix():
    assert ComicInput.parse({**STORY, "panels": "6"}).panels == 6
    for bad in (1, 9, "four", True):
        with pytest.raises(ValueError, match="panels must be"):
            ComicInput.parse({**STORY, "panels": bad})


def test_comic_instruction_carries_the_story_and_the_panel_count():
    text = COMIC.instruction(FOUR).text
    assert "exactly 4 panels" in text and STORY["title"] in text and "李老师" in text
    assert "{" not in text


def test_advertisegen_facts_are_spelled_out_for_the_model():
    assert spell_out("类型#裙*颜色#蓝色*风格#清新") == "类型：裙；颜色：蓝色；风格：清新"
    assert spell_out("a free text # with marks") == "a free text # with marks"
    text = AD.instruction(AdInput("连衣裙", "类型#裙*颜色#蓝色")).text
    assert "Product: 连衣裙" in text and "颜色：蓝色" in text


def test_an_empty_product_fails_before_any_request():
    client = PromptClient("http://127.0.0.1:9")  # nothing listens: a request would fail differently
    with pytest.raises(EmptyNewsError, match="the product is empty"):
        client.generate_task(AD, {"product": "  <p></p> "})


def test_a_task_without_an_instruction_for_a_family_says_which_exist():
    with pytest.raises(ValueError, match="no instruction for model family 'newspicgen'; use one of instruct"):
        COMIC.instruction(FOUR, "newspicgen")


def test_a_task_names_its_own_server_and_model_else_the_news_server():
    env = {"NEWSPICGEN_SERVER_URL": "http://news:30000", "NEWSPICGEN_COMIC_SERVER_URL": "http://llm:8000",
           "NEWSPICGEN_COMIC_MODEL": "qwen2.5-7b-instruct"}
    assert COMIC.server(env) == ("http://llm:8000", "qwen2.5-7b-instruct")
    assert AD.server(env) == ("http://news:30000", "newspicgen")


def test_the_request_carries_the_tasks_constraint_in_both_modes():
    instruction = COMIC.instruction(FOUR)
    body = PromptClient("http://127.0.0.1:9", mode="regex").request_body(instruction, task=COMIC, task_input=FOUR)
    assert body["regex"] == COMIC.regex(FOUR)
    body = PromptClient("http://127.0.0.1:9", mode="json_schema").request_body(instruction, task=COMIC,
                                                                                 task_input=FOUR)
    spec = body["response_format"]["json_schema"]
    assert spec["name"] == "comic_output" and spec["schema"]["properties"]["panels"]["minItems"] == 4


# --- the real tiny model -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["regex", "json_schema"])
def test_the_tiny_model_writes_a_valid_strip_of_the_asked_length(local_server_url, mode):
    with PromptClient(local_server_url, mode=mode, max_tokens=COMIC.max_tokens, timeout=300) as client:
        for seed in (1, 2):
            strip = client.generate_task(COMIC, {**STORY, "panels": 2}, seed=seed)
            assert isinstance(strip, ComicStrip) and len(strip.panels) == 2
            assert all(len(p.caption) <= 20 and p.shot in SHOTS for p in strip.panels)
            assert re.fullmatch(COMIC.regex(ComicInput("t", "c", 2)), output_text(strip))


@pytest.mark.parametrize("mode", ["regex", "json_schema"])
def test_the_tiny_model_writes_a_valid_ad(local_server_url, mode):
    with PromptClient(local_server_url, mode=mode, max_tokens=AD.max_tokens, timeout=300) as client:
        for seed in range(3):
            ad = client.generate_task(AD, {"product": "连衣裙", "facts": "类型#裙*颜色#蓝色"}, seed=seed)
            assert isinstance(ad, AdCopy) and len(ad.headline) <= 16 and len(ad.body_copy) <= 120
