"""compose(): template filling, overrides, availability, and infotext that parses back.

`parse_infotext()` is our own small parser following A1111 1.10's documented
format (modules/infotext_utils.py: the last line holds `Key: value` pairs matched
by its published regex `re_param_code`, JSON-quoted when they contain , : or a
newline; earlier lines are the prompt, then `Negative prompt:`). It is not
A1111's code; it checks that our text has the shape PNG Info reads.
"""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability
from style_presets.compose import OverrideError, compose
from style_presets.preset import LoraRef, Settings, StylePreset
from style_presets.store import PresetStore

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
EVIL = "<lora:evil:2.0> (masterpiece:1.8) [cat:dog:0.5] BREAK a man AND {red|blue} __wildcard__"


def parse_infotext(text: str):
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    params = {}
    for key, value in RE_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        params[key] = value
    return "\n".join(prompt), "\n".join(negative), params


def picture(en_prompt="a panda eating bamboo", type_="2", en_keyword="panda"):
    return PicturePrompt(ch_keyword="熊猫", ch_prompt="熊猫吃竹子", en_keyword=en_keyword,
                         en_prompt=en_prompt, type=type_)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return PresetStore(tmp_path_factory.mktemp("empty-user-dir"))


def test_type_default_person_gives_newspicgen_comic_look_with_evil_text_defused(store):
    request = compose(picture(EVIL), store.resolve(None, "2"))
    assert request.preset == "newspicgen-comic-person"
    assert request.prompt.startswith("comic, ")
    assert request.prompt.endswith(" , graphic illustration, comic art, vibrant, chinese people")
    assert "masterpiece" in request.prompt and "red/blue" in request.prompt  # the words stay
    assert "<" not in request.prompt and "evil" not in request.prompt
    assert " BREAK " not in request.prompt and " AND " not in request.prompt and "__" not in request.prompt
    assert request.negative_prompt.startswith(
        "watermark, text, photograph, deformed, glitch, noisy, realistic, stock photo, "
        "highly detailed, monochromatic, dialogue, nsfw")
    assert request.settings == {"steps": 25, "sampler_name": "DPM++ SDE", "scheduler": "Karras",
                                "cfg_scale": 7, "width": 1280, "height": 736}


def test_infotext_reads_as_a1111_writes_it(store):
    request = compose(picture(), store.get("newspicgen-comic-person"), {"seed": 1234})
    assert request.infotext == (
        "comic, a panda eating bamboo , graphic illustration, comic art, vibrant, chinese people\n"
        "Negative prompt: " + request.negative_prompt + "\n"
        "Steps: 25, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
        "Size: 1280x736, NewsPicGen type: 2, NewsPicGen keyword: panda, "
        "NewsPicGen preset: newspicgen-comic-person")


def test_infotext_quotes_values_with_commas_and_colons(store):
    request = compose(picture(en_keyword="Beijing, 2024: summit"), store.get("newspicgen-comic-person"))
    assert 'NewsPicGen keyword: "Beijing, 2024: summit"' in request.infotext
    assert parse_infotext(request.infotext)[2]["NewsPicGen keyword"] == "Beijing, 2024: summit"


keyword_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(en_prompt=st.text(min_size=1, max_size=200), en_keyword=keyword_text,
       preset_name=st.sampled_from(["newspicgen-comic-person", "ink-wash-sd15", "editorial-photo-crowd"]))
def test_infotext_parses_back(store, en_prompt, en_keyword, preset_name):
    request = compose(picture(en_prompt, en_keyword=en_keyword), store.get(preset_name))
    prompt, negative, params = parse_infotext(request.infotext)
    assert prompt == request.prompt
    assert negative == request.negative_prompt
    assert params["Steps"] == str(request.settings["steps"])
    assert params["Sampler"] == request.settings["sampler_name"]
    assert params["Size"] == f"{request.settings['width']}x{request.settings['height']}"
    assert params["NewsPicGen preset"] == preset_name
    assert params["NewsPicGen type"] == "2"
    assert params.get("NewsPicGen keyword", "") == " ".join(en_keyword.split())


def test_flux_composition_sends_no_negative_prompt_and_the_distilled_cfg(store):
    request = compose(picture(), store.default_for("2", base="flux"), base="flux")
    assert request.preset == "newspicgen-comic-person-flux" and request.warnings == []
    assert request.negative_prompt == "" and "Negative prompt:" not in request.infotext
    assert request.txt2img_payload()["negative_prompt"] == ""
    assert (request.settings["cfg_scale"], request.settings["distilled_cfg_scale"]) == (1, 3.5)
    params = parse_infotext(request.infotext)[2]
    assert (params["CFG scale"], params["Distilled CFG Scale"], params["Sampler"]) == ("1", "3.5", "Euler")
    # an SDXL preset on a loaded Flux model: used as asked, without its negative, and said so
    request = compose(picture(), store.get("newspicgen-comic-person"), base="flux")
    assert request.negative_prompt == ""
    assert request.warnings == [
        "preset 'newspicgen-comic-person' is made for SDXL; Flux is loaded (its size, sampler and CFG may not "
        "suit it: pick a Flux preset, or leave the preset empty to get one)",
        "no negative prompt is sent: Flux ignores it (the preset's is left out)"]


def test_a_preset_made_for_another_model_is_kept_and_warned_about(store):
    request = compose(picture(), store.get("newspicgen-comic-person"), base="sd15")
    assert request.preset == "newspicgen-comic-person" and request.settings["width"] == 1280
    assert request.negative_prompt and any("is made for SDXL; SD 1.5 is loaded" in w for w in request.warnings)
    assert compose(picture(), store.get("newspicgen-comic-person-sd15"), base="sd15").warnings == []
    assert compose(picture(), StylePreset(name="any"), base="sd15").warnings == []  # made for any model
    assert compose(picture(), store.get("newspicgen-comic-person")).warnings == []  # model unknown


def test_loras_and_embeddings_come_from_the_preset_only(store):
    preset = store.get("editorial-photo-sd15")
    request = compose(picture("<lora:other:1> EasyNegative portrait"), preset)
    assert re.findall(r"<lora:[^>]+>", request.prompt) == ["<lora:add_detail:0.5>"]
    assert request.negative_prompt.startswith("EasyNegative, ")


def test_keyword_placeholder_is_filled_neutralized():
    preset = StylePreset(name="kw", prompt="{keyword}: {prompt}", embeddings=["style-emb"])
    request = compose(picture("a (big) panda", en_keyword="<lora:x:1>panda"), preset)
    assert request.prompt == r"panda: a \(big\) panda, style-emb"


def test_model_text_cannot_inject_placeholders():
    preset = StylePreset(name="kw", prompt="[{keyword}] {prompt}")
    request = compose(picture("{keyword} {prompt}", en_keyword="kw"), preset)
    assert request.prompt == r"[kw] \(keyword\) \(prompt\)"


def test_overrides_apply_and_are_validated(store):
    preset = store.get("ink-wash-sd15")
    request = compose(picture(), preset, {"steps": 40, "seed": 7, "width": 512})
    assert request.settings["steps"] == 40 and request.settings["seed"] == 7
    assert request.txt2img_payload() == {"prompt": request.prompt,
                                         "negative_prompt": request.negative_prompt,
                                         "steps": 40, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
                                         "cfg_scale": 7, "width": 512, "height": 512, "seed": 7}
    with pytest.raises(OverrideError, match="unknown override 'stepz'; use one of steps"):
        compose(picture(), preset, {"stepz": 40})
    with pytest.raises(OverrideError, match="width=500 rejected: 500 is not a multiple of 8"):
        compose(picture(), preset, {"width": 500})
    assert preset.settings.width == 768  # the preset itself is untouched


def test_seed_minus_one_is_sent_but_not_written_to_infotext(store):
    request = compose(picture(), store.get("newspicgen-comic-person"), {"seed": -1})
    assert request.txt2img_payload()["seed"] == -1
    assert "Seed:" not in request.infotext


def test_missing_networks_dropped_with_warnings(store):
    preset = store.get("editorial-photo-sd15")
    request = compose(picture(), preset, available=Availability(loras={"other"}, embeddings=set()))
    assert "<lora:" not in request.prompt and "EasyNegative" not in request.negative_prompt
    assert any("LoRA 'add_detail' is not installed" in w for w in request.warnings)
    assert any("embedding 'EasyNegative' is not loaded" in w for w in request.warnings)
    full = compose(picture(), preset, available=Availability({"add_detail"}, {"EasyNegative"}))
    assert full.warnings == [] and "<lora:add_detail:0.5>" in full.prompt


def test_model_text_cannot_load_an_installed_embedding(store):
    available = Availability({"add_detail"}, {"EasyNegative", "ghibli-style"})
    request = compose(picture("easynegative cat, Ghibli-Style hills, EasyNegatives"),
                      store.get("editorial-photo-sd15"), available=available)
    assert "easynegative" not in request.prompt.lower().replace("easynegatives", "")
    assert "ghibli-style" not in request.prompt.lower()
    assert "EasyNegatives" in request.prompt  # a longer word is a different token run
    assert request.negative_prompt.startswith("EasyNegative, ")  # the preset's own use stays
    assert sum("split it so it does not load" in w for w in request.warnings) == 2


def test_without_availability_everything_is_kept(store):
    request = compose(picture(), store.get("ink-wash-sd15"))
    assert "<lora:add_detail:-0.6>" in request.prompt and request.warnings == []


def test_wrong_type_and_empty_text_warn(store):
    request = compose(picture("<lora:only:1>", type_="4"), store.get("newspicgen-comic-person"))
    assert any("meant for types 2, not 4 (landscape)" in w for w in request.warnings)
    assert any("empty once prompt syntax is removed" in w for w in request.warnings)


def test_to_dict_is_json_ready(store):
    data = compose(picture(), store.get("newspicgen-comic-tech"), available=Availability()).to_dict()
    assert set(data) == {"prompt", "negative_prompt", "settings", "infotext", "preset",
                         "picture_prompt", "warnings"}
    assert json.loads(json.dumps(data))["picture_prompt"]["en_keyword"] == "panda"


def test_compose_accepts_a_dict(store):
    request = compose(picture().to_dict(), store.get("newspicgen-comic-animal"))
    assert request.picture_prompt.type == "2"


def test_preset_without_settings_still_gives_parsable_infotext():
    request = compose(picture(), StylePreset(name="bare", settings=Settings()))
    prompt, negative, params = parse_infotext(request.infotext)
    assert prompt == "a panda eating bamboo" and negative == ""
    assert params == {"NewsPicGen type": "2", "NewsPicGen keyword": "panda", "NewsPicGen preset": "bare"}


def test_lora_weight_formatting():
    assert LoraRef(name="add_detail", weight=1).tag() == "<lora:add_detail:1>"
    assert LoraRef(name="add_detail", weight=-0.6).tag() == "<lora:add_detail:-0.6>"


@pytest.mark.parametrize("text", ["EasyNegative2 cat", "x_EasyNegative cat", "中EasyNegative 猫",
                                  "cat,EasyNegative.", "easynegative_v2 cat"])
def test_embedding_names_glued_to_digits_underscores_or_cjk_are_split(text):
    request = compose(picture(text), StylePreset(name="plain"),
                      available=Availability(set(), {"EasyNegative"}))
    assert "easynegative" not in request.prompt.lower()
    assert any("named the embedding 'EasyNegative'" in w for w in request.warnings)
