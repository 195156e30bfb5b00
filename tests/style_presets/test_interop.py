"""Export to A1111 styles.csv, import from it and from Fooocus style JSON."""
from __future__ import annotations

import csv
import json

import pytest

from style_presets.interop import ImportFormatError, export_a1111_csv, import_a1111_csv, import_fooocus, style_texts
from style_presets.preset import LoraRef, StylePreset
from style_presets.store import PresetStore


def read_like_a1111(path):
    """How A1111 1.10 styles.py reads the file: utf-8-sig, DictReader(skipinitialspace=True)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, skipinitialspace=True))


def test_style_texts_put_tokens_into_the_text():
    preset = StylePreset(name="p", prompt="{keyword}, photo of {prompt}, sharp",
                         negative_prompt="blurry", loras=[LoraRef(name="add_detail", weight=0.5)],
                         embeddings=["good"], negative_embeddings=["EasyNegative"])
    assert style_texts(preset) == ("photo of {prompt}, sharp, good, <lora:add_detail:0.5>",
                                   "EasyNegative, blurry")


def test_builtins_round_trip_through_styles_csv(tmp_path):
    store = PresetStore(tmp_path / "user")
    out = tmp_path / "styles.csv"
    assert export_a1111_csv(store.list(), out) == len(store.list())
    rows = read_like_a1111(out)
    assert [row["name"] for row in rows] == store.names()
    comic = next(row for row in rows if row["name"] == "newspicgen-comic-person")
    assert comic["prompt"] == "comic, {prompt} , graphic illustration, comic art, vibrant, chinese people"
    known = {"EasyNegative", "badhandv4"}  # the negative embeddings the built-ins name
    imported = import_a1111_csv(out, known_embeddings=known)
    assert len(imported) == len(rows)
    for preset in imported:
        original = store.get(preset.name)
        assert (preset.prompt, preset.negative_prompt) == (original.prompt, original.negative_prompt)
        assert preset.loras == original.loras
        assert preset.negative_embeddings == original.negative_embeddings
        assert preset.types == [str(i) for i in range(1, 9)]  # styles.csv knows no types


def test_import_a1111_rows_without_placeholder_dividers_and_odd_names(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\n'
                    '"# Section",,\n'
                    '"Cinematic: dark/moody","film still, <lora:film:0.7>, dark","cartoon, , blurry"\n'
                    'Plain,{prompt} masterpiece,\n', encoding="utf-8")
    presets = import_a1111_csv(path)
    assert [p.name for p in presets] == ["Cinematic- dark-moody", "Plain"]
    cinematic = presets[0]
    assert cinematic.prompt == "{prompt}, film still, dark"  # A1111 appends such a style
    assert cinematic.loras == [LoraRef(name="film", weight=0.7)]
    assert cinematic.negative_prompt == "cartoon, blurry"
    assert presets[1].prompt == "{prompt} masterpiece"


def test_import_rejects_a_file_that_is_not_styles_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("title,body\na,b\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="header must be name,prompt,negative_prompt"):
        import_a1111_csv(path)


def test_import_fooocus(tmp_path):
    path = tmp_path / "sdxl_styles_fooocus.json"
    path.write_text(json.dumps([
        {"name": "Fooocus Sharp", "prompt": "cinematic still {prompt} . emotional, harmonious",
         "negative_prompt": "anime, cartoon, EasyNegative"},
        {"name": "Fooocus Masterpiece", "prompt": "(masterpiece), (best quality), {prompt}"},
        {"name": "Fooocus V2"},
    ]), encoding="utf-8")
    presets = import_fooocus(path, known_embeddings={"EasyNegative"})
    assert [p.name for p in presets] == ["Fooocus Sharp", "Fooocus Masterpiece", "Fooocus V2"]
    assert presets[0].prompt == "cinematic still {prompt} . emotional, harmonious"
    assert (presets[0].negative_prompt, presets[0].negative_embeddings) == ("anime, cartoon", ["EasyNegative"])
    assert presets[1].negative_prompt == "" and presets[2].prompt == "{prompt}"
    assert {p.family for p in presets} == {"fooocus"}
    assert {p.base for p in presets} == {"sdxl"}  # Fooocus runs SDXL only


def test_import_sets_base_where_known(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nink,\"ink, {prompt}\",photo\n", encoding="utf-8")
    assert import_a1111_csv(path)[0].base is None  # a styles.csv does not say: any model
    assert import_a1111_csv(path, base="sd15")[0].base == "sd15"


def test_import_fooocus_wrong_shape(tmp_path):
    path = tmp_path / "styles.json"
    path.write_text(json.dumps({"name": "x"}), encoding="utf-8")
    with pytest.raises(ImportFormatError, match="JSON list of"):
        import_fooocus(path)
    path.write_text(json.dumps([{"prompt": "{prompt}"}]), encoding="utf-8")
    with pytest.raises(ImportFormatError, match='item 0 has no "name"'):
        import_fooocus(path)


def test_import_a1111_field_over_the_csv_limit_is_a_clear_error(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("name,prompt,negative_prompt\nok,{prompt} ink,\nlong," + "x" * (csv.field_size_limit() + 1)
                    + ",\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"styles\.csv: line 3: field larger than field limit"):
        import_a1111_csv(path)


def test_import_a1111_legacy_encoding_is_refused_by_name(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_bytes("name,prompt,negative_prompt\n水墨,{prompt} 水墨画,\n".encode("gbk"))
    with pytest.raises(ImportFormatError, match=r"styles\.csv: not UTF-8 .*re-save it as UTF-8"):
        import_a1111_csv(path)


def test_import_fooocus_deep_nesting_is_a_clear_error(tmp_path):
    path = tmp_path / "styles.json"
    path.write_text("[" * 200_000, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=r"styles\.json: JSON nested too deeply"):
        import_fooocus(path)


@pytest.mark.parametrize("item, field, kind", [
    ({"name": "a", "prompt": ["{prompt}", "ink"]}, "prompt", "list"),
    ({"name": "a", "negative_prompt": {"text": "blurry"}}, "negative_prompt", "dict"),
    ({"name": "a", "prompt": 7}, "prompt", "int"),
])
def test_import_fooocus_refuses_values_that_are_not_text(tmp_path, item, field, kind):
    path = tmp_path / "styles.json"
    path.write_text(json.dumps([item]), encoding="utf-8")
    with pytest.raises(ImportFormatError, match=f"item 0 \\('a'\\): \"{field}\" is a {kind}, not text"):
        import_fooocus(path)


def test_import_fooocus_name_must_be_text(tmp_path):
    path = tmp_path / "styles.json"
    path.write_text(json.dumps([{"name": ["x"], "prompt": "{prompt}"}]), encoding="utf-8")
    with pytest.raises(ImportFormatError, match='item 0 has no "name" text'):
        import_fooocus(path)
