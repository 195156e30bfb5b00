"""The tab's comic strip and product poster parts without a browser: handlers against
the real tiny-model server; drawing through a stub of the WebUI's txt2img function."""
from __future__ import annotations

import base64
import io
import json

import pytest

from extension import task_runs
from extension.ad_tab import AdPart
from extension.comic_tab import CARD_KEYS, ComicPart, fields_from_strip, strip_from_fields
from extension.config import NewsPicGenConfig
from prompt_server.shape import dump
from tests.newspicgen.test_comic_ad import STRIP

PIL = pytest.importorskip("PIL.Image")
NEWS = ("乡村教师坚守山区讲台三十年", "在海拔两千米的山村小学，五十六岁的李老师已经教书三十年。")


def config_for(url, tmp_path):
    config = NewsPicGenConfig(server_url=url, timeout=120, preset_dir=str(tmp_path / "presets"))
    return lambda: config


def values_of(fields):
    return [fields[key] for key in CARD_KEYS]


@pytest.fixture
def stub_txt2img(monkeypatch):
    calls = []

    def txt2img(payload, provenance):
        calls.append((payload, provenance))
        out = io.BytesIO()
        PIL.new("RGB", (64, 64), "white").save(out, format="PNG")
        return {"images": [base64.b64encode(out.getvalue()).decode()],
                "info": json.dumps({"infotexts": [f"{payload['prompt']}\nSteps: 1, Seed: {payload.get('seed')}"]})}

    monkeypatch.setitem(task_runs.WEBUI, "txt2img", txt2img)
    return calls


def test_cards_round_trip_and_a_rename_on_the_sheet_follows_into_every_panel():
    fields = fields_from_strip(STRIP)
    assert strip_from_fields(values_of(fields), 4, dump(STRIP)) .panels[1].characters == ["李老师", "小明"]
    fields["comic_char_0_name"] = "李梅"
    edited = strip_from_fields(values_of(fields), 4, dump(STRIP))
    assert [p.characters for p in edited.panels[:2]] == [["李梅"], ["李梅", "小明"]]
    assert edited.characters[0].name == "李梅"


def test_write_fills_the_cards_from_the_real_model(local_server_url, tmp_path):
    outcome = ComicPart(config_for(local_server_url, tmp_path)).write(*NEWS, 3)
    assert outcome.warning is None
    assert outcome.values["comic_panel_2_en_prompt"] and outcome.values["comic_panel_3_en_prompt"] == ""
    assert len(outcome.values["comic_state"]["panels"]) == 3


def test_write_with_empty_news_keeps_everything_and_says_what_to_fill(local_server_url, tmp_path):
    outcome = ComicPart(config_for(local_server_url, tmp_path)).write("", "  ", 4)
    assert outcome.values == {} and "paste a title or content" in outcome.warning


def test_regenerate_changes_one_panel_only(local_server_url, tmp_path):
    fields = fields_from_strip(STRIP)
    outcome = ComicPart(config_for(local_server_url, tmp_path)).regenerate(1, *NEWS, 4, *values_of(fields))
    assert set(outcome.values) == {f"comic_panel_1_{f}" for f in ("en_prompt", "ch_prompt", "characters",
                                                                  "shot", "caption")}


def test_render_draws_every_panel_and_saves_the_strip_with_infotexts(tmp_path, stub_txt2img):
    fields = fields_from_strip(STRIP)
    fields["comic_char_1_en"] = "a small boy in a green raincoat"  # changed once, on the sheet
    part = ComicPart(config_for("http://127.0.0.1:9", tmp_path), folder=lambda: tmp_path / "out")
    outcome = part.render(4, "", 21, False, 1, 64, 64, dump(STRIP), *values_of(fields))
    assert outcome.warning is None, outcome.warning
    assert len(stub_txt2img) == 4 and {p["seed"] for p, _ in stub_txt2img} == {21}
    assert {(p["steps"], p["width"], p["height"]) for p, _ in stub_txt2img} == {(1, 64, 64)}
    assert [("green raincoat" in p["prompt"]) for p, _ in stub_txt2img] == [False, True, True, False]
    assert len(outcome.values["comic_gallery"]) == 4
    assert (tmp_path / "out").glob("*-strip.png") and outcome.values["comic_strip"].endswith("-strip.png")
    from tests.newspicgen.test_batch_webui import png_text_chunks
    first = sorted((tmp_path / "out").glob("*-panel-1.png"))[0]
    assert "Seed: 21" in png_text_chunks(first.read_bytes())["parameters"]


def test_render_without_the_webui_api_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setitem(task_runs.WEBUI, "txt2img", None)
    part = ComicPart(config_for("http://127.0.0.1:9", tmp_path), folder=lambda: tmp_path)
    outcome = part.render(4, "", -1, False, 0, 0, 0, dump(STRIP), *values_of(fields_from_strip(STRIP)))
    assert outcome.values == {} and "--api" in outcome.warning


def test_ad_part_writes_then_makes_the_poster(local_server_url, tmp_path, stub_txt2img):
    part = AdPart(config_for(local_server_url, tmp_path), folder=lambda: tmp_path / "out")
    written = part.write("连衣裙", "类型#裙*颜色#蓝色")
    assert written.warning is None and len(written.values["ad_headline"]) <= 16
    outcome = part.render("清新一夏", "蓝色连衣裙", "a blue dress", "7", "ad", 5)
    assert outcome.warning is None, outcome.warning
    assert outcome.values["ad_poster"].endswith("-poster.png") and stub_txt2img[0][0]["seed"] == 5


def test_the_task_server_setting_and_env_choose_the_comic_server(monkeypatch):
    from prompt_server.ad_task import AD
    from prompt_server.comic_task import COMIC
    for name in ("NEWSPICGEN_COMIC_SERVER_URL", "NEWSPICGEN_COMIC_MODEL", "NEWSPICGEN_AD_SERVER_URL",
                 "NEWSPICGEN_AD_MODEL", "NEWSPICGEN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    plain = NewsPicGenConfig(server_url="http://127.0.0.1:30000")
    assert (task_runs.task_client(plain, COMIC).base_url, task_runs.task_client(plain, COMIC).model) == \
        ("http://127.0.0.1:30000", "newspicgen")
    own = NewsPicGenConfig(server_url="http://127.0.0.1:30000", task_server_url="http://127.0.0.1:11434",
                           task_model="qwen2.5:7b-instruct")
    client = task_runs.task_client(own, AD)
    assert (client.base_url, client.model, client.max_tokens) == ("http://127.0.0.1:11434", "qwen2.5:7b-instruct",
                                                                  AD.max_tokens)
    monkeypatch.setenv("NEWSPICGEN_COMIC_SERVER_URL", "http://127.0.0.1:8000")
    assert task_runs.task_client(own, COMIC).base_url == "http://127.0.0.1:8000"
