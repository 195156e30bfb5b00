"""The preset editor's form without a browser: JSON <-> form, pickers, read-only built-ins.

tests/extension/test_tab_browser.py drives the same form in a real page (gradio 3.41);
tests/extension/test_webui_integration.py in the real A1111 and Forge pages.
"""
from __future__ import annotations

import json

import pytest

from extension.config import NewsPicGenConfig
from extension.preset_editor import FORM_OUTPUTS, PICKERS, PresetEditor, parse_preset_json, preset_text
from extension.preset_form import NAMES, form_data, form_values, parse_lora_lines, set_lora
from extension.tab_logic import TabLogic
from extension.ui_events import Choices, Editable, NewChoices
from extension.webui_hooks import WebUIHooks
from style_presets.availability import Availability
from style_presets.store import PresetStore

SAMPLERS = ["Euler a", "DPM++ 2M", "DPM++ SDE"]
SCHEDULERS = ["Automatic", "Uniform", "Karras"]
WEBUI = Availability(loras={"add_detail", "film grain"}, embeddings={"EasyNegative", "style-ink"})


def editor_for(tmp_path, language="en", available=WEBUI) -> PresetEditor:
    config = NewsPicGenConfig(preset_dir=str(tmp_path))
    return PresetEditor(lambda: config, lambda: available, lambda: SAMPLERS, lambda: SCHEDULERS,
                        lambda: language)


def shown(outcome) -> dict:
    """The form's values as the outcome sets them."""
    return {name: outcome.values[name].value for name in NAMES}


def form_args(values: dict) -> list:
    return [values[name] for name in NAMES]


def user_preset(editor: PresetEditor, name: str = "mine"):
    """Duplicate a built-in into a user preset; (its JSON text, the form's values)."""
    text = editor.load("newspicgen-comic-person").values["editor_json"].value
    out = editor.duplicate("newspicgen-comic-person", text, name, "")
    return out.values["editor_json"].value, shown(out)


def test_every_builtin_preset_goes_through_the_form_unchanged():
    store = PresetStore()
    for name in store.names():
        preset = store.get(name)
        assert preset_text(form_data(form_values(preset.to_dict()))) == preset.to_json(), name


def test_the_form_shows_and_edits_base_and_the_distilled_cfg():
    flux = PresetStore().get("newspicgen-comic-person-flux").to_dict()
    values = form_values(flux)
    assert (values["form_base"], values["form_distilled_cfg_scale"], values["form_cfg_scale"]) == ("flux", "3.5", "1")
    assert parse_preset_json(preset_text(form_data({**values, "form_base": "sd15"}, flux))).base == "sd15"
    assert parse_preset_json(preset_text(form_data({**values, "form_base": ""}, flux))).base is None  # any model
    old = {k: v for k, v in flux.items() if k != "base"}  # a preset file from before `base`
    assert form_values(old)["form_base"] == ""


def test_lora_lines_parse_and_set():
    assert parse_lora_lines("add_detail:0.5\n\n film grain \nx:abc") == [
        {"name": "add_detail", "weight": 0.5}, {"name": "film grain", "weight": 1.0}, {"name": "x", "weight": "abc"}]
    assert set_lora("add_detail:0.5\nfilm grain:1", "add_detail", 0.8) == "add_detail:0.8\nfilm grain:1"
    assert set_lora("add_detail:0.5", "film grain", -1.0) == "add_detail:0.5\nfilm grain:-1"
    assert set_lora("", "add_detail", 1.0) == "add_detail:1"


def test_a_form_edit_writes_the_json_and_the_preview(tmp_path):
    editor = editor_for(tmp_path)
    text, values = user_preset(editor)
    values.update(form_steps="30", form_sampler="Euler a", form_template="woodcut print, {prompt}",
                  form_types=["1 animal / 动物", "2 person / 人物"])
    out = editor.form_edit(text, *form_args(values))
    data = json.loads(out.values["editor_json"])
    assert data["settings"]["steps"] == 30 and data["settings"]["sampler_name"] == "Euler a"
    assert data["types"] == ["1", "2"] and data["prompt"] == "woodcut print, {prompt}"
    assert out.values["editor_positive"].startswith("woodcut print, ")
    assert out.values["editor_check"].startswith("✅")
    values["form_steps"] = ""  # empty: the WebUI's value
    assert json.loads(editor.form_edit(text, *form_args(values)).values["editor_json"])["settings"]["steps"] is None


def test_an_invalid_form_value_is_kept_named_and_not_saved(tmp_path):
    editor = editor_for(tmp_path)
    text, values = user_preset(editor)
    values["form_width"] = "1001"
    out = editor.form_edit(text, *form_args(values))
    assert '"width": 1001' in out.values["editor_json"], "what was typed goes into the JSON as typed"
    assert out.values["editor_check"].startswith("❌") and "multiple of 8" in out.values["editor_check"]
    assert not any(name in out.values for name in NAMES), "the form keeps what the user typed"
    refused = editor.save(out.values["editor_json"], "", {})
    assert "multiple of 8" in refused.warning
    assert json.loads((tmp_path / "mine.json").read_text(encoding="utf-8"))["settings"]["width"] == 1280


def test_broken_json_is_never_overwritten_by_the_form(tmp_path):
    editor = editor_for(tmp_path)
    text, values = user_preset(editor)
    broken = text.replace('"types"', 'types', 1)
    assert editor.json_edit(broken).values.keys() == {"editor_positive", "editor_negative", "editor_check"}
    values["form_steps"] = "40"
    out = editor.form_edit(broken, *form_args(values))
    assert "editor_json" not in out.values and "mend it in **Preset JSON**" in out.values["editor_check"]


def test_json_typed_by_hand_fills_the_form(tmp_path):
    editor = editor_for(tmp_path)
    text, _ = user_preset(editor)
    data = json.loads(text)
    data["loras"] = [{"name": "add_detail", "weight": 0.5}]
    data["negative_embeddings"] = ["EasyNegative", "not-here"]
    data["settings"]["scheduler"] = "Exponential"
    out = editor.json_edit(json.dumps(data))
    assert out.values["form_loras"] == "add_detail:0.5"
    negative = out.values["form_negative_embeddings"]
    assert negative.value == ["EasyNegative", "not-here"]
    assert negative.choices == ["EasyNegative", "style-ink", "not-here"], "the WebUI's, then what it lacks"
    assert out.values["form_scheduler"].choices == ["", *SCHEDULERS, "Exponential"]
    assert "not-here" in out.values["editor_check"], "the preview names the embedding the WebUI lacks"


def test_add_lora_from_the_webuis_list_sets_its_weight(tmp_path):
    editor = editor_for(tmp_path)
    text, values = user_preset(editor)
    out = editor.add_lora("film grain", 0.6500000001, text, *form_args(values))
    assert out.values["form_loras"] == "film grain:0.65"
    assert "<lora:film grain:0.65>" in out.values["editor_positive"]
    values["form_loras"] = out.values["form_loras"]
    again = editor.add_lora("film grain", -0.3, out.values["editor_json"], *form_args(values))
    assert json.loads(again.values["editor_json"])["loras"] == [{"name": "film grain", "weight": -0.3}]
    assert "pick a LoRA" in editor.add_lora("", 1.0, text, *form_args(values)).warning


def test_builtins_show_a_read_only_form_with_the_webuis_lists(tmp_path):
    editor = editor_for(tmp_path)
    out = editor.load("newspicgen-comic-person")
    assert all(not out.values[name].interactive for name in FORM_OUTPUTS)
    assert out.values["form_sampler"] == Choices(["", *SAMPLERS], "DPM++ SDE", False)
    assert out.values["form_scheduler"].value == "Karras" and out.values["form_steps"] == Editable("25", False)
    assert out.values["form_types"].value == ["2 person / 人物"]
    text, _ = user_preset(editor)
    assert all(editor.load("mine", text, {}).values[name].interactive for name in FORM_OUTPUTS)


def test_a_new_preset_can_be_made_from_the_form_alone(tmp_path):
    editor = editor_for(tmp_path)
    values = {name: ("" if name not in ("form_types", "form_embeddings", "form_negative_embeddings") else [])
              for name in NAMES}
    values.update(form_name="ink birds", form_types=["1 animal / 动物"], form_template="ink wash, {prompt}",
                  form_embeddings=["style-ink"])
    text = editor.form_edit("", *form_args(values)).values["editor_json"]
    saved = editor.save(text, "", {})
    assert saved.warning is None and "ink birds" in editor.names()
    assert json.loads((tmp_path / "ink birds.json").read_text(encoding="utf-8"))["embeddings"] == ["style-ink"]


def test_page_load_lists_the_webuis_lists_and_leaves_the_form_alone(tmp_path):
    out = editor_for(tmp_path).refresh().values
    assert out["form_lora_pick"] == NewChoices(["add_detail", "film grain"])
    assert out["form_embeddings"] == NewChoices(["EasyNegative", "style-ink"])
    assert out["form_sampler"] == NewChoices(["", *SAMPLERS]) and out["form_scheduler"] == NewChoices(["", *SCHEDULERS])
    assert set(out) & set(FORM_OUTPUTS) <= set(PICKERS), "the form's values stay"
    assert out["editor_pick"].interactive, "presets can be picked once the pickers are refreshed"
    unknown = editor_for(tmp_path, available=None).refresh().values
    assert unknown["form_lora_pick"].choices == [] and unknown["form_embeddings"].choices == []


@pytest.mark.parametrize("language, expected", [("en", "is a built-in preset"), ("zh", "是内置预设")])
def test_editor_messages_follow_the_webuis_language(tmp_path, language, expected):
    assert expected in editor_for(tmp_path, language).load("newspicgen-comic-person").values["editor_msg"]


def test_the_tab_takes_its_language_and_lists_from_the_webuis_hooks(tmp_path):
    config = NewsPicGenConfig(preset_dir=str(tmp_path))
    hooks = WebUIHooks(language=lambda: "zh", samplers=lambda: SAMPLERS, available=lambda: WEBUI)
    assert "尚未检查" in TabLogic.from_hooks(lambda: config, hooks).initial_status()
    editor = PresetEditor.from_hooks(lambda: config, hooks)
    assert editor.refresh().values["form_sampler"].choices == ["", *SAMPLERS]
    assert "是内置预设" in editor.load("newspicgen-comic-person").values["editor_msg"]


def test_json_shown_again_keeps_a_builtin_read_only(tmp_path):
    """Filling the form from the JSON never changes what may be edited: that is load's and Duplicate's."""
    editor = editor_for(tmp_path)
    text = editor.load("newspicgen-comic-person").values["editor_json"].value
    out = editor.json_edit(text).values
    assert "form_add_lora" not in out and out["form_steps"] == "25"
    assert all(getattr(value, "interactive", None) is None for value in out.values())
