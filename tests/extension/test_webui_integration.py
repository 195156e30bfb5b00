"""NewsPicGen inside a real, unmodified AUTOMATIC1111 WebUI (1.10.x).

Runs only when NEWSPICGEN_WEBUI_DIR points at a WebUI checkout with its venv
(CI has none: the whole module is skipped). The WebUI is started with --api, a
data folder of its own (so its config and extensions list stay untouched) with
this repository symlinked into extensions/, and NEWSPICGEN_SERVER_URL pointing
at the tiny-model prompt server.

  NEWSPICGEN_WEBUI_DIR    the WebUI folder (launch.py, venv/)
  NEWSPICGEN_WEBUI_START  optional start script taking `PORT [args...]` (e.g. one that sets
                          TORCH_COMMAND, HF_HOME, --ckpt); default: venv/bin/python launch.py + CPU flags
  NEWSPICGEN_WEBUI_TIMEOUT seconds to wait for start-up (default 900)
"""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import REPO

WEBUI_DIR = os.environ.get("NEWSPICGEN_WEBUI_DIR", "")
CPU_ARGS = ["--skip-torch-cuda-test", "--use-cpu", "all", "--no-half", "--precision", "full",
            "--skip-version-check", "--no-download-sd-model"]
NEWS = {"title": "大熊猫宝宝首次亮相", "content": "成都大熊猫繁育研究基地的大熊猫宝宝今天首次与游客见面，吸引了大批游客。"}
PRESET = "newspicgen-comic-person"

pytestmark = pytest.mark.skipif(not (WEBUI_DIR and (Path(WEBUI_DIR) / "launch.py").is_file()),
                                reason="NEWSPICGEN_WEBUI_DIR does not point at a WebUI (launch.py)")


def call(base: str, path: str, body=None, timeout: float = 600):
    """(status, parsed JSON or text) of a GET (body None) or JSON POST."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def start_command(port: int, data_dir: Path) -> list:
    ours = ["--api", "--data-dir", str(data_dir)]
    start = os.environ.get("NEWSPICGEN_WEBUI_START")
    if start:
        return [start, str(port), *ours]
    return [str(Path(WEBUI_DIR) / "venv" / "bin" / "python"), "launch.py", *CPU_ARGS, "--port", str(port), *ours]


def wait_until_up(base: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the WebUI exited with {process.returncode}:\n{log.read_text(errors='replace')[-6000:]}")
        try:  # the start-up record is set after the app_started callbacks: start-up is complete
            status, record = call(base, "/internal/profile-startup", timeout=5)
            if status == 200 and isinstance(record, dict):
                return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"the WebUI did not start within {timeout:.0f} s:\n{log.read_text(errors='replace')[-6000:]}")


def start_webui(tmp: Path, server_url: str, with_extension: bool = True):
    from tests.support.loopback import free_port
    data_dir = tmp / "data"
    (data_dir / "extensions").mkdir(parents=True)
    if with_extension:
        (data_dir / "extensions" / "newspicgen").symlink_to(REPO)
    port, log = free_port(), tmp / "webui.log"
    env = dict(os.environ, NEWSPICGEN_SERVER_URL=server_url, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the WebUI must find our code through extensions/ only
    process = subprocess.Popen(start_command(port, data_dir), cwd=WEBUI_DIR, env=env, stdin=subprocess.DEVNULL,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}", log


def stop_webui(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def webui(local_server_url, tmp_path_factory):
    process, base, log = start_webui(tmp_path_factory.mktemp("webui"), local_server_url)
    try:
        wait_until_up(base, process, log, float(os.environ.get("NEWSPICGEN_WEBUI_TIMEOUT", "900")))
        yield base, log
    finally:
        stop_webui(process)


def test_config_has_the_newspicgen_tab_and_settings(webui):
    status, config = call(webui[0], "/config")
    assert status == 200
    props = [c.get("props", {}) for c in config["components"]]
    assert any(p.get("elem_id") == "tab_newspicgen" and p.get("label") == "NewsPicGen" for p in props), \
        "no NewsPicGen tab; see the WebUI log for 'NewsPicGen: the tab could not be built'"
    settings = {p.get("elem_id"): p for p in props if str(p.get("elem_id", "")).startswith("setting_newspicgen_")}
    assert {"setting_newspicgen_server_url", "setting_newspicgen_api_key", "setting_newspicgen_timeout",
            "setting_newspicgen_mode", "setting_newspicgen_family", "setting_newspicgen_preset_dir"} <= set(settings)
    assert settings["setting_newspicgen_api_key"].get("type") == "password"


def test_scripts_lists_newspicgen(webui):
    status, body = call(webui[0], "/sdapi/v1/scripts")
    assert status == 200
    assert "newspicgen" in body["txt2img"] and "newspicgen" in body["img2img"]


def test_presets_route_answers(webui):
    status, body = call(webui[0], "/newspicgen/v1/presets")
    assert status == 200 and PRESET in [p["name"] for p in body["presets"]]


def test_prompt_route_returns_a_valid_picture_prompt(webui):
    from prompt_server.schema import PicturePrompt
    status, body = call(webui[0], "/newspicgen/v1/prompt", {**NEWS, "seed": 5, "preset": PRESET})
    assert status == 200, body
    picture = PicturePrompt.from_dict(body["picture_prompt"])
    assert body["prompt"] and body["preset"] == PRESET and f"NewsPicGen type: {picture.type}" in body["infotext"]


def test_empty_news_is_a_4xx_with_a_message(webui):
    status, body = call(webui[0], "/newspicgen/v1/prompt", {"title": "", "content": "  "})
    assert 400 <= status < 500 and "empty" in json.dumps(body, ensure_ascii=False)


def test_alwayson_txt2img_uses_the_composed_prompt(webui):
    base = webui[0]
    _, expected = call(base, "/newspicgen/v1/prompt", {**NEWS, "seed": 42, "preset": PRESET})
    status, body = call(base, "/sdapi/v1/txt2img", {
        "prompt": "the caller's prompt", "seed": 42, "steps": 1, "width": 64, "height": 64, "batch_size": 2,
        "alwayson_scripts": {"newspicgen": {"args": [True, NEWS["title"], NEWS["content"], PRESET]}}})
    assert status == 200, body
    assert len(body["images"]) == 2 and base64.b64decode(body["images"][0])[:4] == b"\x89PNG"
    info = json.loads(body["info"])
    assert info["prompt"] == expected["prompt"]  # same seed -> same picture prompt -> same composed prompt
    assert info["all_prompts"] == [expected["prompt"]] * 2 and info["negative_prompt"] == expected["negative_prompt"]
    assert (info["steps"], info["width"], info["height"]) == (1, 64, 64), "the caller's settings are kept"
    infotext = info["infotexts"][0]
    keyword = expected["picture_prompt"]["en_keyword"]
    assert f"NewsPicGen type: {expected['picture_prompt']['type']}" in infotext
    assert f"NewsPicGen preset: {PRESET}" in infotext and "NewsPicGen keyword: " in infotext
    assert keyword.split(",")[0].strip() in infotext


def test_alwayson_disabled_leaves_the_prompt_alone(webui):
    status, body = call(webui[0], "/sdapi/v1/txt2img", {
        "prompt": "a red apple", "steps": 1, "width": 64, "height": 64,
        "alwayson_scripts": {"newspicgen": {"args": [False, NEWS["title"], NEWS["content"], ""]}}})
    assert status == 200, body
    info = json.loads(body["info"])
    assert info["prompt"] == "a red apple" and "NewsPicGen" not in info["infotexts"][0]


def test_newspicgen_txt2img_route_runs_the_webui_txt2img(webui):
    status, body = call(webui[0], "/newspicgen/v1/txt2img", {
        **NEWS, "seed": 9, "overrides": {"steps": 1, "width": 64, "height": 64}})
    assert status == 200, body
    assert len(body["images"]) == 1 and base64.b64decode(body["images"][0])[:4] == b"\x89PNG"
    assert json.loads(body["info"])["prompt"] == body["prompt"]


def test_webui_records_the_extension_start_up_steps(webui):
    status, record = call(webui[0], "/internal/profile-startup")
    assert status == 200 and record
    ours = {k: round(v, 3) for k, v in record["records"].items() if "newspicgen" in k.lower()}
    assert ours, "the WebUI recorded no start-up step for the extension"
    print(f"\nWebUI start-up total {record['total']:.1f} s; NewsPicGen steps: {ours}; "
          f"together {sum(ours.values()):.3f} s (installer process + script load)")


def test_models_validate_under_the_webuis_pydantic():
    python = Path(WEBUI_DIR) / "venv" / "bin" / "python"
    code = ("import pydantic, json\n"
            "from extension.api_models import ComposedResponse, PromptRequest\n"
            "r = ComposedResponse(picture_prompt={'ch_keyword': '熊猫', 'ch_prompt': '熊猫', 'en_keyword': 'panda',"
            " 'en_prompt': 'a panda', 'type': '1'}, preset='p', prompt='x', negative_prompt='', settings={}, infotext='x')\n"
            "PromptRequest(content='x')\n"
            "try:\n    PromptRequest(title='t')\nexcept pydantic.ValidationError:\n    print(pydantic.VERSION)\n")
    result = subprocess.run([str(python), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    print(f"\nmodels validated under the WebUI's pydantic {result.stdout.strip()}")
    assert result.stdout.strip()
