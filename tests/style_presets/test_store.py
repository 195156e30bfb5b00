"""PresetStore: built-ins, user overrides, atomic saves, broken files, defaults."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from prompt_server.schema import PictureType
from style_presets.bases import BASE_CODES
from style_presets.preset import LoraRef, StylePreset
from style_presets.store import BUILTIN_DIR, PresetError, PresetNotFound, PresetStore, default_user_dir

FAMILIES = ("newspicgen-comic", "ink-wash", "editorial-photo")
# 3 families x 3 bases (8 + 4 + 6 presets each) + the 2 opt-in SD 1.5 presets
FAMILY_PRESETS = 56


@pytest.fixture
def store(tmp_path):
    return PresetStore(tmp_path / "user")


def test_builtins_load_cleanly_and_cover_every_type_for_every_base_in_every_family(store):
    assert store.errors == []
    assert len([p for p in store.list() if p.family in FAMILIES]) == FAMILY_PRESETS
    for family in FAMILIES:
        for base in BASE_CODES:
            for picture_type in PictureType:
                preset = store.default_for(picture_type.value, family, base)
                assert (preset.family, preset.base) == (family, base) and picture_type.value in preset.types
                assert not preset.needs_networks(), f"{preset.name}: a fresh install lacks its LoRA/embedding"


def test_builtin_single_files_are_named_after_their_presets():
    singles = [p for p in BUILTIN_DIR.glob("*.json") if not p.name.endswith(".family.json")]
    assert singles
    for path in singles:
        assert json.loads(path.read_text(encoding="utf-8"))["name"] == path.stem


def test_newspicgen_comic_published_facts(store):
    for picture_type in PictureType:
        preset = store.default_for(picture_type.value)
        assert preset.family == "newspicgen-comic"
        assert preset.prompt.startswith("comic, {prompt} , graphic illustration, comic art, vibrant")
        assert preset.base == "sdxl" and preset.settings.set_fields() == {
            "steps": 25, "sampler_name": "DPM++ SDE", "scheduler": "Karras", "cfg_scale": 7.0,
            "width": 1280, "height": 736}
    person, crowd = store.default_for("2"), store.default_for("3")
    assert person.prompt.endswith(", chinese people") and crowd.prompt.endswith(", chinese people")
    assert person.negative_prompt.startswith("watermark, text, photograph, deformed, glitch, noisy, "
                                             "realistic, stock photo, highly detailed, monochromatic, "
                                             "dialogue")
    assert "nsfw" in person.negative_prompt
    assert crowd.negative_prompt.startswith("((noisy)), ((chaos)),")
    assert store.default_for("6").prompt.endswith(", product publicity, product release")
    assert store.default_for("6").negative_prompt.startswith("((logo)),(noisy), (chaos),")
    obj = store.default_for("7").negative_prompt
    assert obj.startswith("((text)), ((numbers)), ((chart)),") and obj.endswith("broken goods")


def test_the_opt_in_sd15_presets_keep_their_lora_and_embedding(store):
    for name in ("ink-wash-sd15", "editorial-photo-sd15"):
        preset = store.get(name)
        assert [ref.name for ref in preset.loras] == ["add_detail"]
        assert preset.negative_embeddings == ["EasyNegative"]
        assert (preset.settings.width, preset.settings.height) == (768, 512)
        assert preset.base == "sd15" and preset.needs_networks()
    assert store.get("ink-wash-figures").settings.width == 1216  # SDXL size


def test_resolution_by_type_base_and_family(store):
    assert store.default_for("2").name == "newspicgen-comic-person"  # unknown model: SDXL, as published
    assert store.default_for("2", base="sdxl").name == "newspicgen-comic-person"
    assert store.default_for("2", base="sd15").name == "newspicgen-comic-person-sd15"
    assert store.default_for("2", base="flux").name == "newspicgen-comic-person-flux"
    assert store.resolve(None, "1", "ink-wash", "sd15").name == "ink-wash-nature-sd15"  # not the LoRA one
    assert store.resolve(None, "8", "editorial-photo", "flux").name == "editorial-photo-general-flux"
    # a named preset is kept whatever the loaded model
    assert store.resolve("newspicgen-comic-person", "2", base="sd15").name == "newspicgen-comic-person"


def test_sizes_samplers_and_cfg_suit_each_base(store):
    for preset in store.list():
        s = preset.settings
        if preset.base == "sd15":
            assert max(s.width, s.height) <= 768 and s.cfg_scale >= 5, preset.name
        elif preset.base == "sdxl":
            assert s.width * s.height >= 880_000, preset.name
        elif preset.base == "flux":
            assert (s.cfg_scale, s.sampler_name, s.scheduler) == (1.0, "Euler", "Simple"), preset.name
            assert s.distilled_cfg_scale and not preset.negative_prompt, preset.name
            assert s.width % 16 == 0 and s.height % 16 == 0, preset.name


def test_a_family_without_bases_and_old_files_without_base_still_load_and_serve_any_model(tmp_path):
    old = StylePreset(name="old").to_dict()
    del old["base"], old["settings"]["distilled_cfg_scale"]  # a file saved before bases existed
    (tmp_path / "old.json").write_text(json.dumps({**old, "family": "mine", "types": ["2"]}), encoding="utf-8")
    store = PresetStore(tmp_path)
    assert store.errors == [] and store.get("old").base is None
    for base in (None, *BASE_CODES):
        assert store.resolve(None, "2", "mine", base).name == "old"


def test_a_mixed_user_family_prefers_the_base_then_any_then_the_others(tmp_path):
    store = PresetStore(tmp_path)
    store.save(StylePreset(name="xl", family="mine", base="sdxl", types=["2"]))
    store.save(StylePreset(name="generic", family="mine", types=["2"]))
    assert store.default_for("2", "mine", "sdxl").name == "xl"
    assert store.default_for("2", "mine", "sd15").name == "generic"
    assert store.default_for("2", "mine").name == "xl"  # unknown model: SDXL first
    store.delete("generic")
    assert store.default_for("2", "mine", "flux").name == "xl"  # nothing closer; compose() warns


def test_base_values_are_checked_and_aliases_accepted():
    assert StylePreset(name="t", base="SD 1.5").base == "sd15"
    assert StylePreset(name="t", base="xl").base == "sdxl"
    assert StylePreset(name="t", base="").base is None
    with pytest.raises(ValueError, match="unknown base 'sd3'; use one of sd15, sdxl, flux"):
        StylePreset(name="t", base="sd3")


def test_a_broken_family_file_is_reported_and_its_good_entries_load(tmp_path):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    family = {"family": "f", "bases": {"sd15": {"name_suffix": "-sd15", "settings": {"width": 512, "height": 512}},
                                       "sd9": {"settings": {}}},
              "presets": [{"name": "good", "types": ["1"], "prompt": "{prompt}, x", "negative_prompt": "n"},
                          {"name": "bad", "types": ["1"], "prompt": "no placeholder"}]}
    (builtin / "f.family.json").write_text(json.dumps(family), encoding="utf-8")
    store = PresetStore(tmp_path / "user", builtin_dir=builtin, default_family="f")
    assert store.names() == ["good-sd15"] and store.get("good-sd15").base == "sd15"
    assert {e.field for e in store.errors} == {"bases.sd9", "presets[1] (sd15).prompt"}
    # a family file in the user folder is refused by name, not read as a broken preset
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "f.family.json").write_text(json.dumps(family), encoding="utf-8")
    store = PresetStore(tmp_path / "user", builtin_dir=builtin, default_family="f")
    assert any("family files are read from the built-in folder only" in str(e) for e in store.errors)


def test_default_prefers_the_most_specific_preset(store):
    assert store.default_for("2", "editorial-photo").name == "editorial-photo-portrait"
    assert store.default_for("person", "ink-wash").name == "ink-wash-figures"


def test_resolve(store):
    assert store.resolve("ink-wash-sd15", "2").name == "ink-wash-sd15"
    assert store.resolve(None, "4").name == "newspicgen-comic-landscape"
    assert store.resolve(None, "4", "ink-wash").name == "ink-wash-nature"
    store.save(StylePreset(name="only-people", family="tiny", types=["2"]))
    assert store.resolve(None, "2", "tiny").name == "only-people"
    assert store.resolve(None, "5", "tiny").name == "newspicgen-comic-building"  # global fallback
    with pytest.raises(PresetNotFound, match="no preset family 'nope'; available: .*editorial-photo"):
        store.resolve(None, "2", "nope")
    with pytest.raises(PresetNotFound, match="no preset named 'missing'; available: .*ink-wash-sd15"):
        store.resolve("missing", "2")


def test_save_is_atomic_keeps_previous_version_and_overrides_builtin(store, tmp_path):
    builtin = store.get("newspicgen-comic-person")
    assert store.is_builtin(builtin.name)
    mine = builtin.copy_with(negative_prompt="my own negative")
    path = store.save(mine)
    assert path == tmp_path / "user" / "newspicgen-comic-person.json"
    assert not store.is_builtin(mine.name) and store.overrides_builtin(mine.name)
    assert PresetStore(tmp_path / "user").get(mine.name).negative_prompt == "my own negative"
    store.save(mine.copy_with(negative_prompt="second"))
    backup = json.loads(Path(str(path) + ".bak").read_text(encoding="utf-8"))
    assert backup["negative_prompt"] == "my own negative"
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == [
        "newspicgen-comic-person.json", "newspicgen-comic-person.json.bak"]  # no temp files left
    # the built-in itself is untouched
    assert PresetStore(tmp_path / "elsewhere").get(mine.name).negative_prompt == builtin.negative_prompt


def test_invalid_preset_is_refused_and_nothing_changes(store, tmp_path):
    good = StylePreset(name="mine")
    path = store.save(good)
    before = path.read_bytes()
    bad = good.to_dict()
    bad["prompt"] = "no placeholder here"
    with pytest.raises(PresetError, match=r"nothing changed on disk: prompt: .*no \{prompt\} placeholder"):
        store.save(bad)
    bad = good.to_dict()
    bad["settings"]["width"] = 1000 + 3
    with pytest.raises(PresetError, match="settings.width: 1003 is not a multiple of 8"):
        store.save(bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["mine.json"]


def test_delete_builtin_is_refused_user_override_falls_back(store, tmp_path):
    with pytest.raises(PresetError, match="built-in preset and cannot be deleted"):
        store.delete("ink-wash-sd15")
    store.save(store.get("ink-wash-sd15").copy_with(description="mine"))
    store.delete("ink-wash-sd15")
    assert store.get("ink-wash-sd15").description != "mine" and store.is_builtin("ink-wash-sd15")
    assert (tmp_path / "user" / "ink-wash-sd15.json.bak").exists()  # deleted work is recoverable
    with pytest.raises(PresetNotFound):
        store.delete("never-existed")


def test_duplicate(store):
    copy = store.duplicate("newspicgen-comic-tech", "my-tech")
    assert copy.prompt == store.get("newspicgen-comic-tech").prompt
    assert store.get("my-tech") == copy and not store.is_builtin("my-tech")
    with pytest.raises(PresetError, match="already exists"):
        store.duplicate("newspicgen-comic-tech", "my-tech")
    with pytest.raises(PresetError, match="not a valid name"):
        store.duplicate("newspicgen-comic-tech", "../escape")


def test_broken_files_are_reported_by_path_and_field_and_the_rest_loads(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "good.json").write_text(StylePreset(name="good").to_json(), encoding="utf-8")
    (user / "badjson.json").write_text("{ not json", encoding="utf-8")
    broken = StylePreset(name="badfield").to_dict()
    broken["settings"]["steps"] = "many"
    broken["loras"] = [{"name": "a<b", "weight": 1}]
    broken["colour"] = "red"
    (user / "badfield.json").write_text(json.dumps(broken), encoding="utf-8")
    (user / "renamed.json").write_text(StylePreset(name="original").to_json(), encoding="utf-8")
    store = PresetStore(user)
    assert "good" in store.names() and len(store.names()) == 1 + len(store.builtin_names())
    messages = [str(e) for e in store.errors]
    assert any(m.startswith(f"{user / 'badjson.json'}: (file): not valid JSON") for m in messages)
    fields = {e.field for e in store.errors if e.path == str(user / "badfield.json")}
    assert fields == {"settings.steps", "loras.0.name", "colour"}
    assert any(f"{user / 'renamed.json'}: name: 'original' differs from the file name" in m for m in messages)


def test_unknown_field_message_suggests_a_typo(tmp_path):
    data = StylePreset(name="typo").to_dict()
    data["negativ_prompt"] = data.pop("negative_prompt")
    (tmp_path / "typo.json").write_text(json.dumps(data), encoding="utf-8")
    error = PresetStore(tmp_path).errors[0]
    assert (error.field, error.message) == ("negativ_prompt", "unknown field (a typo?); remove or rename it")


def test_preset_validation_rules():
    assert StylePreset(name="t", types=["person", "人物", "7"]).types == ["2", "7"]
    with pytest.raises(ValueError, match="unknown picture type"):
        StylePreset(name="t", types=["9"])
    with pytest.raises(ValueError, match="serves no picture type"):
        StylePreset(name="t", types=[])
    with pytest.raises(ValueError, match="list LoRAs under"):
        StylePreset(name="t", prompt="{prompt}, <lora:x:1>")
    with pytest.raises(ValueError, match="not a usable LoRA name"):
        LoraRef(name="x:1")
    with pytest.raises(ValueError, match="not a usable embedding name"):
        StylePreset(name="t", negative_embeddings=["a, b"])
    assert StylePreset(name="水墨 人物 (v2)").name == "水墨 人物 (v2)"


def test_default_user_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSPICGEN_PRESET_DIR", str(tmp_path / "env"))
    assert default_user_dir() == tmp_path / "env"
    assert PresetStore().user_dir == tmp_path / "env"
    monkeypatch.delenv("NEWSPICGEN_PRESET_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_user_dir() == tmp_path / "xdg" / "newspicgen" / "presets"


def test_reload_sees_files_added_by_hand(store, tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "hand.json").write_text(StylePreset(name="hand").to_json(), encoding="utf-8")
    assert "hand" not in store.names()
    store.reload()
    assert "hand" in store.names()


def test_preset_folder_that_is_a_file_is_reported(tmp_path):
    (tmp_path / "presets").write_text("oops", encoding="utf-8")
    store = PresetStore(tmp_path / "presets")
    assert [str(e) for e in store.errors] == [f"{tmp_path / 'presets'}: (folder): is a file, not a folder; "
                                              "point the preset folder setting at a directory"]
    assert "newspicgen-comic-person" in store.names()


# -- one bad file never takes the others down --------------------------------------
def _load_in_thread(user_dir: Path) -> PresetStore:
    """Build the store in a thread so a read that blocks (a FIFO) fails the test, not hangs it."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("store", PresetStore(user_dir)), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert "store" in result, "loading the presets blocked"
    return result["store"]


def _errors_by_file(store: PresetStore) -> dict:
    return {Path(e.path).name: e.message for e in store.errors}


def test_legacy_encodings_nesting_and_huge_files_are_reported_and_the_rest_loads(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "good.json").write_text(StylePreset(name="good").to_json(), encoding="utf-8")
    (user / "gbk.json").write_bytes(StylePreset(name="gbk", description="水墨画").to_json().encode("gbk"))
    (user / "latin.json").write_bytes(StylePreset(name="latin", description="café").to_json()
                                      .encode("latin-1"))
    (user / "deep.json").write_text("[" * 200_000, encoding="utf-8")
    huge = StylePreset(name="huge", description="x" * (2 << 20))
    (user / "huge.json").write_text(huge.to_json(), encoding="utf-8")
    store = PresetStore(user)
    assert "good" in store.names()
    assert not {"gbk", "latin", "deep", "huge"} & set(store.names())
    errors = _errors_by_file(store)
    assert errors["gbk.json"].startswith("not UTF-8 (byte 0x") and "re-save it as UTF-8" in errors["gbk.json"]
    assert errors["latin.json"].startswith("not UTF-8")
    assert errors["deep.json"].startswith("JSON nested too deeply")
    assert errors["huge.json"].startswith("larger than 1 MiB")
    assert all(str(user) in str(e) for e in store.errors)  # each names its file


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_fifo_and_symlink_to_a_device_are_refused_without_blocking(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "good.json").write_text(StylePreset(name="good").to_json(), encoding="utf-8")
    fifo = user / "pipe.json"
    os.mkfifo(fifo)
    (user / "null.json").symlink_to(os.devnull)
    try:
        store = _load_in_thread(user)
    finally:  # unblock a reader stuck in open() (the code before the fix)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert store.names().count("good") == 1
    errors = _errors_by_file(store)
    assert errors["pipe.json"] == "not a regular file (a named pipe); remove it or replace it with a real file"
    assert errors["null.json"].startswith("not a regular file (a device)")


def test_a_preset_dropped_into_the_user_folder_appears_on_refresh(tmp_path):
    store = PresetStore(tmp_path)
    assert not store.refresh(), "nothing changed on disk"
    copy = store.get(store.names()[0]).copy_with(name="dropped in")
    (tmp_path / "dropped in.json").write_text(copy.to_json(), encoding="utf-8")  # another process, by hand
    assert "dropped in" not in store.names()
    assert store.refresh() and "dropped in" in store.names()
    (tmp_path / "dropped in.json").unlink()
    assert store.refresh() and "dropped in" not in store.names()


def test_a_store_read_from_many_threads_while_it_reloads_never_answers_half_loaded(tmp_path):
    """A page load runs many WebUI events at once, each asking the store for its presets."""
    source = PresetStore(tmp_path).get("newspicgen-comic-person")
    for i in range(150):  # enough files that a reload takes a while
        (tmp_path / f"p{i}.json").write_text(source.copy_with(name=f"p{i}").to_json(), encoding="utf-8")
    store = PresetStore(tmp_path)
    (tmp_path / "dropped.json").write_text(source.copy_with(name="dropped").to_json(), encoding="utf-8")
    start, seen = threading.Barrier(8), []

    def ask():
        start.wait()
        store.refresh()
        seen.append("dropped" in store.names())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [True] * 8
