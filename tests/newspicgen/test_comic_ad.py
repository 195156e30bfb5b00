"""Comic strips and ad posters: composition rules, the strip / poster images, the
`newspicgen comic` / `newspicgen ad` commands against the real embedded engine,
and the resumable comic batch (pictures from a stub WebUI on loopback)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newspicgen.ad import AD_FAMILY, compose_ad
from newspicgen.comic import INFOTEXT_PANEL, SHOT_WORDS, compose_strip, with_character
from newspicgen.strip_image import find_cjk_font, make_poster, make_strip
from newspicgen.task_render import RenderedPicture, render_ad, render_strip, save_ad, save_strip
from prompt_server.ad_task import AdCopy
from prompt_server.comic_task import ComicStrip
from style_presets.availability import Availability
from style_presets.sanitize import neutralize
from style_presets.store import PresetNotFound, PresetStore
from tests.newspicgen.test_batch_webui import FakeWebUI, png_text_chunks
from tests.support import REPO

PIL = pytest.importorskip("PIL.Image")

LI = {"name": "李老师", "en": "a 56-year-old Chinese woman teacher, short grey hair, blue cardigan",
      "zh": "五十六岁的女教师，灰色短发，蓝色开衫"}
PUPIL = {"name": "小明", "en": "a small boy, red school uniform, (black) backpack", "zh": "小男孩，红色校服"}
STRIP = ComicStrip.from_dict({
    "characters": [LI, PUPIL],
    "panels": [
        {"en_prompt": "walking up a mountain path at dawn", "ch_prompt": "清晨走山路", "characters": ["李老师"],
         "shot": "full body", "caption": "清晨出发"},
        {"en_prompt": "teaching in a small classroom", "ch_prompt": "在教室上课", "characters": ["李老师", "小明"],
         "shot": "wide", "caption": "上课了"},
        {"en_prompt": "a boy raising his hand", "ch_prompt": "举手", "characters": ["小明", "王校长"],
         "shot": "close-up", "caption": "我会！"},
        {"en_prompt": "sunset over the mountains", "ch_prompt": "山间日落", "characters": [],
         "shot": "wide", "caption": "三十年如一日"},
    ]})
AD = AdCopy.from_dict({"headline": "清新一夏", "copy": "蓝色连衣裙，清新风格，夏日出游首选。",
                       "en_prompt": "a light blue summer dress on a hanger, linen texture", "type": "7"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return PresetStore(tmp_path_factory.mktemp("presets"))


def png(width=64, height=64, colour="red") -> bytes:
    out = io.BytesIO()
    PIL.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


# --- composition ---------------------------------------------------------------------------

def test_every_panel_carries_its_characters_fixed_descriptions_verbatim_and_its_shot(store):
    composed = compose_strip(STRIP, store)
    for panel, item in zip(STRIP.panels, composed.panels, strict=True):
        assert SHOT_WORDS[panel.shot] in item.request.prompt
        for character in STRIP.characters:
            shown = neutralize(character.en) in item.request.prompt
            assert shown == (character.name in panel.characters), (character.name, item.request.prompt)
    # the sheet's words, not a re-description: "(black)" is only escaped (no emphasis)
    assert r"red school uniform, \(black\) backpack" in composed.panels[1].request.prompt


def test_a_name_not_on_the_sheet_is_drawn_without_a_description_and_named(store):
    composed = compose_strip(STRIP, store)
    assert any("panel 3 names '王校长'" in w for w in composed.warnings)


def test_one_seed_for_the_strip_or_seed_plus_i(store):
    same = compose_strip(STRIP, store, seed=77)
    assert [p.request.settings["seed"] for p in same.panels] == [77, 77, 77, 77]
    stepped = compose_strip(STRIP, store, seed=77, seed_step=1)
    assert [p.request.settings["seed"] for p in stepped.panels] == [77, 78, 79, 80]


def test_every_panel_gets_the_familys_look_and_its_place_in_the_infotext(store):
    composed = compose_strip(STRIP, store, family="ink-wash")
    for number, item in enumerate(composed.panels, start=1):
        preset = store.get(item.request.preset)
        assert preset.family == "ink-wash"
        assert item.request.negative_prompt.endswith(preset.negative_prompt)
        assert f"{INFOTEXT_PANEL}: {number}/4" in item.request.infotext
        assert f"panel {number}/4" in item.provenance["NewsPicGen keyword"]
    # one character: a person preset; two: crowd; none: other
    assert [p.request.picture_prompt.type for p in composed.panels] == ["2", "3", "2", "8"]


def test_an_unknown_family_fails_before_anything_is_drawn(store):
    with pytest.raises(PresetNotFound, match="preset family"):
        compose_strip(STRIP, store, family="no-such-family")


def test_changing_a_character_once_changes_every_panel(store):
    changed = with_character(STRIP, "李老师", {"name": "李梅", "en": "an old woman in a green coat"})
    composed = compose_strip(changed, store)
    assert [p.characters for p in changed.panels][:2] == [["李梅"], ["李梅", "小明"]]
    assert all("green coat" in composed.panels[i].request.prompt for i in (0, 1))
    assert not any("cardigan" in p.request.prompt for p in composed.panels)


def test_the_strip_json_has_the_documented_shape(store):
    data = compose_strip(STRIP, store).to_dict()
    assert [set(c) for c in data["characters"]] == [{"name", "en", "zh"}] * 2
    assert {"en_prompt", "ch_prompt", "characters", "shot", "caption", "prompt", "negative_prompt"} <= set(
        data["panels"][0])


def test_the_ad_uses_the_ad_family_and_marks_missing_networks(store):
    composed = compose_ad(AD, store, available=Availability(loras=frozenset(), embeddings=frozenset()))
    assert store.get(composed.request.preset).family == AD_FAMILY
    assert "<lora:" not in composed.request.prompt
    assert any("add_detail" in w for w in composed.request.warnings)
    assert any("EasyNegative" in w for w in composed.request.warnings)
    full = compose_ad(AD, store, available=Availability(loras=frozenset({"add_detail"}),
                                                        embeddings=frozenset({"EasyNegative", "badhandv4"})))
    assert "<lora:add_detail:0.5>" in full.request.prompt and "EasyNegative" in full.request.negative_prompt
    data = full.to_dict()
    assert [data[k] for k in ("headline", "copy", "type")] == ["清新一夏", AD.body_copy, "7"]


# --- images -------------------------------------------------------------------------------

def _dark_pixels(image, box):
    region = image.crop(box).convert("L")
    return sum(region.histogram()[:128])


def test_the_strip_is_a_grid_with_a_caption_band_when_a_cjk_font_is_found():
    font = find_cjk_font()
    if font is None:
        pytest.skip("no CJK font on this system (e.g. apt install fonts-wqy-microhei)")
    strip = make_strip([png(colour="white")] * 4, ["清晨出发", "上课了", "我会", "完"], font_path=font)
    image = PIL.open(io.BytesIO(strip.png))
    assert strip.captions_drawn and image.size == (strip.width, strip.height)
    assert strip.width == 4 * 64 + 5 * 4 and strip.height > 64 + 8
    assert _dark_pixels(image, (4, 68, 68, strip.height)) > 10  # the caption under panel 1


def test_without_a_cjk_font_the_strip_is_the_panels_alone_and_says_so():
    strip = make_strip([png()] * 6, ["一", "二", "三", "四", "五", "六"], font_path="/no/such/font.ttc")
    assert not strip.captions_drawn and strip.font is None
    assert (strip.width, strip.height) == (4 * 64 + 5 * 4, 2 * (64 + 4) + 4)  # 4 a row


def test_the_poster_lays_the_headline_over_the_picture_and_the_copy_below():
    font = find_cjk_font()
    if font is None:
        pytest.skip("no CJK font on this system")
    poster = make_poster(png(256, 256, "white"), "清新一夏", "蓝色连衣裙，清新风格。", font_path=font)
    image = PIL.open(io.BytesIO(poster.png))
    assert poster.captions_drawn and image.width == 256 and image.height > 256
    assert _dark_pixels(image, (0, 0, 256, 20)) > 100  # the band behind the headline
    assert _dark_pixels(image, (0, 256, 256, image.height)) > 10  # the copy


def test_without_a_font_the_poster_is_the_picture_and_the_copy_goes_in_the_sidecar(tmp_path, store):
    composed = compose_ad(AD, store)
    rendered = render_ad(composed, lambda payload, provenance: RenderedPicture(png(), "a prompt\nSteps: 1"),
                         font_path="/no/such/font.ttc")
    assert not rendered.poster.captions_drawn and (rendered.poster.width, rendered.poster.height) == (64, 64)
    path = save_ad(tmp_path, "ad1", rendered, composed)
    assert path.name == "ad1-poster.png"
    assert (tmp_path / "ad1-copy.txt").read_text(encoding="utf-8").startswith("清新一夏\n")
    assert png_text_chunks((tmp_path / "ad1.png").read_bytes())["parameters"] == "a prompt\nSteps: 1"


def test_a_rendered_strip_is_saved_with_each_panels_infotext_and_the_captions(tmp_path, store):
    composed = compose_strip(STRIP, store, seed=5)
    seen = []

    def render(payload, provenance):
        seen.append((payload["seed"], provenance[INFOTEXT_PANEL]))
        return RenderedPicture(png(), f"{payload['prompt']}\nSteps: 1, Seed: {payload['seed']}")

    rendered = render_strip(composed, render, font_path="/no/such/font.ttc")
    assert seen == [(5, "1/4"), (5, "2/4"), (5, "3/4"), (5, "4/4")]
    save_strip(tmp_path, "s", rendered, composed)
    for number in range(1, 5):
        text = png_text_chunks((tmp_path / f"s-panel-{number}.png").read_bytes())["parameters"]
        assert text.startswith(composed.panels[number - 1].request.prompt)
    assert (tmp_path / "s-captions.txt").read_text(encoding="utf-8").splitlines()[1] == "2. 上课了"
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["captions_drawn"] is False


# --- the commands, against the real tiny model ---------------------------------------------

def run_cli(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSPICGEN_")}
    clean["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "newspicgen", *args], cwd=REPO, capture_output=True,
                          text=True, encoding="utf-8", env={**clean, **(env or {})}, timeout=600)


def test_comic_command_prints_the_strip_json(local_server_url, tmp_path):
    result = run_cli("comic", "--title", "乡村教师", "--content", "李老师在山村教书三十年。", "--panels", "3",
                     "--server", local_server_url, "--seed", "1", "--image-seed", "9",
                     "--preset-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["panels"]) == 3 and data["characters"]
    for panel in data["panels"]:
        assert {"en_prompt", "ch_prompt", "characters", "shot", "caption", "prompt", "negative_prompt"} <= set(panel)
        assert panel["settings"]["seed"] == 9


def test_ad_command_prints_the_ad_json(local_server_url, tmp_path):
    result = run_cli("ad", "--product", "类型#裙*颜色#蓝色*风格#清新", "--server", local_server_url,
                     "--seed", "2", "--preset-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"headline", "copy", "en_prompt", "type", "prompt", "negative_prompt"} <= set(data)
    assert "<lora:add_detail:0.5>" in data["prompt"]


def test_command_errors_are_one_line_with_the_fix(tmp_path):
    result = run_cli("comic", "--title", "t", "--content", "c", "--panels", "12", "--preset-dir", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "panels must be from 2 to 8" in result.stderr
    result = run_cli("ad", "--product", "连衣裙", "--server", "http://127.0.0.1:9", "--timeout", "5",
                     "--preset-dir", str(tmp_path))
    assert result.returncode == 1 and "127.0.0.1:9" in result.stderr and result.stderr.count("\n") == 1


def test_comic_batch_draws_strips_and_a_rerun_skips_the_done_ones_stub_webui(local_server_url, tmp_path):
    stories = tmp_path / "news.jsonl"
    stories.write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in [
        {"id": "a", "title": "熊猫", "content": "动物园的大熊猫产下双胞胎。", "panels": 2},
        {"id": "b", "title": "雾凇", "content": "黄山出现今冬首场雾凇。", "panels": 2}]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with FakeWebUI() as webui:
        args = ["comic", str(stories), "--out", str(out), "--server", local_server_url, "--webui", webui.url,
                "--preset-dir", str(tmp_path / "presets"), "--font", "/no/such/font.ttc"]
        first = run_cli(*args)
        assert first.returncode == 0, first.stderr
        assert len(webui.payloads) == 4
        assert len({p["seed"] for p in webui.payloads[:2]}) == 1  # one seed per strip
        second = run_cli(*args)
        assert second.returncode == 0 and "0 to do" in second.stderr
        assert len(webui.payloads) == 4  # nothing drawn again
    records = [json.loads(line) for line in (out / "comics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["a", "b"]
    assert Path(records[0]["strip"]).is_file() and (out / "images" / "a-panel-2.png").is_file()
    assert (out / "images" / "b-captions.txt").is_file()
    parameters = png_text_chunks((out / "images" / "a-panel-2.png").read_bytes())["parameters"]
    assert 'NewsPicGen keyword: "panel 2/2' in parameters or "NewsPicGen keyword: panel 2/2" in parameters
    assert "NewsPicGen panel: 2/2" in parameters and "NewsPicGen preset: " in parameters


def test_a_failed_story_is_retried_by_the_rerun_stub_webui(local_server_url, tmp_path):
    stories = tmp_path / "news.jsonl"
    stories.write_text(json.dumps({"id": "x", "title": "t", "content": "c", "panels": 2}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with FakeWebUI(fail_prompts_with="comic") as webui:  # every panel (comic family) fails
        args = ["comic", str(stories), "--out", str(out), "--server", local_server_url, "--webui", webui.url,
                "--preset-dir", str(tmp_path / "presets")]
        first = run_cli(*args)
        assert first.returncode == 1 and "rerun" in first.stderr
        assert json.loads((out / "failed.jsonl").read_text(encoding="utf-8"))["id"] == "x"
        webui.fail_prompts_with = None
        second = run_cli(*args)
        assert second.returncode == 0, second.stderr
    assert (out / "failed.jsonl").read_text(encoding="utf-8") == ""
