"""`python -m style_presets` run as a real subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from style_presets.store import PresetStore
from tests.support import REPO

EVIL = "<lora:evil:2.0> (masterpiece:1.8) [cat:dog:0.5] BREAK ... AND {red|blue} __wildcard__"
PERSON = {"ch_keyword": "市长", "ch_prompt": "市长在发布会上讲话", "en_keyword": "mayor",
          "en_prompt": "a mayor speaking at a press conference", "type": "2"}


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "NEWSPICGEN_PRESET_DIR": str(tmp_path / "user"), "PYTHONPATH": str(REPO)}

    def _run(*args, stdin=""):
        result = subprocess.run([sys.executable, "-m", "style_presets", *map(str, args)], cwd=REPO,
                                env=env, input=stdin, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:  # failures are one clean line
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result
    return _run


def test_list_json_shows_three_presets_per_type(run):
    result = run("list", "--json")
    assert result.returncode == 0, result.stderr
    presets = json.loads(result.stdout)
    assert all({"name", "family", "types"} <= set(p) for p in presets)
    for code in "12345678":
        serving = [p["name"] for p in presets if code in p["types"]]
        assert len(serving) >= 3, (code, serving)
    assert {p["family"] for p in presets} >= {"newspicgen-comic", "ink-wash", "editorial-photo"}


def test_list_table_and_show(run):
    table = run("list").stdout
    assert "newspicgen-comic-person" in table and "built-in" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert [rows[f"newspicgen-comic-person{s}"][2] for s in ("", "-sd15", "-flux")] == ["sdxl", "sd15", "flux"]
    assert rows["ink-wash-sd15"][-3:] == ["needs", "add_detail,", "EasyNegative"]  # opt-in: marked
    listed = {p["name"]: p for p in json.loads(run("list", "--json").stdout)}
    assert (listed["ink-wash-nature-sd15"]["base"], listed["ink-wash-nature-sd15"]["needs"]) == ("sd15", [])
    shown = json.loads(run("show", "ink-wash-sd15").stdout)
    assert shown["loras"] == [{"name": "add_detail", "weight": -0.6}]


def test_compose_type_default_on_evil_person_prompt(run):
    picture = {**PERSON, "en_prompt": EVIL}
    result = run("compose", "--type-default", stdin=json.dumps(picture))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["preset"] == "newspicgen-comic-person"
    assert out["prompt"] == (r"comic, \(masterpiece 1.8\) \[cat:dog 0.5\] break ... and \(red/blue\) "
                             "_wildcard_ , graphic illustration, comic art, vibrant, chinese people")
    assert out["negative_prompt"].startswith("watermark, text, photograph, deformed, glitch, noisy, "
                                             "realistic, stock photo, highly detailed, monochromatic, "
                                             "dialogue")
    assert out["settings"]["steps"] == 25 and out["settings"]["sampler_name"] == "DPM++ SDE"
    assert "\nSteps: 25, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 7, Size: 1280x736, " \
           "NewsPicGen type: 2, NewsPicGen keyword: mayor, NewsPicGen preset: newspicgen-comic-person" \
           in out["infotext"]


def test_compose_named_preset_family_and_overrides(run):
    out = json.loads(run("compose", "--type-default", "--family", "ink-wash", "--set", "steps=12",
                         "--set", "sampler_name=Euler a", stdin=json.dumps(PERSON)).stdout)
    assert out["preset"] == "ink-wash-figures"
    assert out["settings"]["steps"] == 12 and out["settings"]["sampler_name"] == "Euler a"
    out = json.loads(run("compose", "--preset", "editorial-photo-sd15", stdin=json.dumps(PERSON)).stdout)
    assert out["prompt"].endswith("<lora:add_detail:0.5>")


def test_preset_dir_option_before_or_after_the_command(run, tmp_path):
    mine = tmp_path / "elsewhere"
    mine.mkdir()
    preset = {"name": "mine", "family": "custom", "types": ["2"], "prompt": "my look, {prompt}"}
    (mine / "mine.json").write_text(json.dumps(preset), encoding="utf-8")
    after = run("compose", "--preset", "mine", "--preset-dir", mine, stdin=json.dumps(PERSON))
    before = run("--preset-dir", mine, "compose", "--preset", "mine", stdin=json.dumps(PERSON))
    assert json.loads(after.stdout)["prompt"] == json.loads(before.stdout)["prompt"] \
        == "my look, a mayor speaking at a press conference"
    names = [p["name"] for p in json.loads(run("list", "--json").stdout)]
    assert "mine" not in names and "newspicgen-comic-person" in names  # the env folder is still the default


def test_compose_drops_missing_networks_with_warning(run, tmp_path):
    loras = tmp_path / "loras.json"
    loras.write_text(json.dumps([{"name": "detail_v2", "alias": "add_detail", "path": "/m/Lora/detail_v2.safetensors",
                                  "metadata": {}}]), encoding="utf-8")
    embeddings = tmp_path / "embeddings.json"
    embeddings.write_text(json.dumps({"loaded": {}, "skipped": {"EasyNegative": {
        "step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 768, "vectors": 8}}}))
    result = run("compose", "--preset", "editorial-photo-sd15", "--loras", loras, "--embeddings", embeddings,
                 stdin=json.dumps(PERSON))
    out = json.loads(result.stdout)
    assert "<lora:add_detail:0.5>" in out["prompt"]  # found by its alias
    assert "EasyNegative" not in out["negative_prompt"]
    assert "warning: embedding 'EasyNegative' is not loaded" in result.stderr


def test_compose_errors_are_one_line(run):
    for args, stdin, expected in [
        (["compose", "--type-default"], "", "no PicturePrompt JSON on stdin"),
        (["compose", "--type-default"], "{oops", "stdin is not JSON"),
        (["compose", "--type-default"], json.dumps({**PERSON, "type": "9"}), "stdin is not a PicturePrompt: type"),
        (["compose", "--preset", "nope"], json.dumps(PERSON), "no preset named 'nope'"),
        (["compose", "--type-default", "--set", "stepz=3"], json.dumps(PERSON), "unknown override 'stepz'"),
        (["compose"], json.dumps(PERSON), "one of the arguments --preset --type-default is required"),
        (["show", "missing"], "", "no preset named 'missing'"),
    ]:
        result = run(*args, stdin=stdin)
        assert result.returncode != 0 and expected in result.stderr, (args, result.stderr)


def test_check_reports_broken_files_and_missing_networks(run, tmp_path):
    assert run("check").returncode == 0
    user = tmp_path / "user"
    user.mkdir()
    (user / "broken.json").write_text(json.dumps({"name": "broken", "prompt": "no placeholder"}))
    loras = tmp_path / "loras.json"
    loras.write_text("[]")
    result = run("check", "--loras", loras)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{user / 'broken.json'}: prompt: the template has no {{prompt}} placeholder" in lines[0]
    assert "editorial-photo-sd15: missing loras: add_detail" in lines
    assert not any("embeddings" in line for line in lines)  # no embeddings list given: not judged
    assert run("list").returncode == 0  # the other presets still load


def test_check_rejects_a_file_that_is_not_the_webui_answer(run, tmp_path):
    bad = tmp_path / "loras.json"
    bad.write_text(json.dumps({"loras": []}))
    result = run("check", "--loras", bad)
    assert result.returncode == 1 and "GET /sdapi/v1/loras" in result.stderr


def test_export_then_import_into_empty_folder_gives_one_preset_per_row(run, tmp_path):
    out = tmp_path / "styles.csv"
    assert run("export", "--format", "a1111-csv", out).returncode == 0
    rows = out.read_text(encoding="utf-8-sig").strip().splitlines()[1:]
    into = tmp_path / "imported"
    result = run("import", "--format", "a1111-csv", out, "--into", into, "--replace-builtins")
    assert result.returncode == 0, result.stderr
    assert len(list(into.glob("*.json"))) == len(rows) == len(PresetStore(tmp_path / "none").list())
    again = run("import", "--format", "a1111-csv", out, "--into", into, "--replace-builtins")
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_import_of_exported_builtins_is_refused_without_replace_builtins(run, tmp_path):
    out = tmp_path / "styles.csv"
    assert run("export", "--format", "a1111-csv", out).returncode == 0
    user = tmp_path / "user"  # the preset folder the run fixture points at
    result = run("import", "--format", "a1111-csv", out, "--into", user)
    assert result.returncode == 1
    assert "named like built-in presets (" in result.stderr and "--replace-builtins" in result.stderr
    assert not list(user.glob("*.json"))  # nothing written
    composed = run("compose", "--type-default", stdin=json.dumps(PERSON))
    assert composed.returncode == 0 and json.loads(composed.stdout)["preset"] == "newspicgen-comic-person"


def test_list_into_a_closed_pipe_exits_quietly(tmp_path):
    env = {**os.environ, "NEWSPICGEN_PRESET_DIR": str(tmp_path / "user"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "style_presets", "list"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has read enough: every write now fails with EPIPE
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""


def test_import_fooocus_via_cli(run, tmp_path):
    path = tmp_path / "fooocus.json"
    path.write_text(json.dumps([{"name": "sai-comic book", "prompt": "comic {prompt} . graphic",
                                 "negative_prompt": "photograph"}]))
    into = tmp_path / "f"
    assert run("import", "--format", "fooocus", path, "--into", into, "--family", "fooocus-sai").returncode == 0
    data = json.loads((into / "sai-comic book.json").read_text(encoding="utf-8"))
    assert data["family"] == "fooocus-sai" and data["prompt"] == "comic {prompt} . graphic"
    assert data["base"] == "sdxl"  # Fooocus styles are SDXL
    styles = tmp_path / "styles.csv"
    styles.write_text("name,prompt,negative_prompt\nink,\"ink, {prompt}\",photo\n", encoding="utf-8")
    assert run("import", "--format", "a1111-csv", styles, "--into", into, "--base", "sd15").returncode == 0
    assert json.loads((into / "ink.json").read_text(encoding="utf-8"))["base"] == "sd15"
    bad = run("import", "--format", "fooocus", tmp_path / "missing.json", "--into", into)
    assert bad.returncode == 1 and "cannot read" in bad.stderr
