"""The NewsPicGen tab in a real headless Chromium, against a real tiny-model prompt server.

The tab runs in extension/standalone.py under gradio 3.41.2 (A1111's pin), in the venv
.venv-gradio3 (see GRADIO3_VENV); the browser is Debian's chromium driven by
Playwright. Two app instances: one pointed at the real server, one at a dead
port (the "server down" path). No network: the page may only load from loopback.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from prompt_server.schema import PicturePrompt
from tests.support import REPO
from tests.support.loopback import free_port, stop_process

GRADIO3_VENV = Path(os.environ.get("NEWSPICGEN_GRADIO3_VENV", REPO / ".venv-gradio3"))
GRADIO3_PYTHON = GRADIO3_VENV / "bin" / "python"
# A1111 1.10.1's pins (requirements_versions.txt) that gradio 3.41.2 needs to run on Python 3.11
GRADIO3_PINS = ("'gradio==3.41.2' 'fastapi==0.94.0' 'pydantic>=1.10,<2' 'httpx==0.24.1' 'numpy==1.26.2' "
                "'Pillow==9.5.0' 'huggingface_hub<0.26' requests tqdm")
CHROMIUM = os.environ.get("NEWSPICGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP_START_TIMEOUT_S = 90
GENERATE_TIMEOUT_MS = 120_000
UI_TIMEOUT_MS = 15_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver",
                allow_module_level=True)
if not GRADIO3_PYTHON.exists():
    pytest.skip(f"no gradio 3.41.2 venv at {GRADIO3_VENV}: python3 -m venv {GRADIO3_VENV} && "
                f"{GRADIO3_VENV}/bin/pip install {GRADIO3_PINS}",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")

NEWS = [{"title": "九旬老人坚持晨跑 完成人生第十个半程马拉松",
         "content": "今年92岁的李大爷在周日举行的城市半程马拉松中顺利完赛，这是他人生中的第十个半程马拉松。"
                    "李大爷说，坚持晨跑三十年让他保持了健康的身体。"}]


def _start_app(server_url: str, preset_dir: Path, *extra: str):
    port = free_port()
    env = dict(os.environ, NEWSPICGEN_SERVER_URL=server_url, NEWSPICGEN_PRESET_DIR=str(preset_dir),
               NEWSPICGEN_TIMEOUT="60", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO))
    log = open(preset_dir.parent / f"tab_app_{port}.log", "w+b")  # noqa: SIM115 - outlives this function
    process = subprocess.Popen([str(GRADIO3_PYTHON), "-m", "extension.standalone", "--port", str(port), *extra],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def _wait_ready(process, url, log):
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        log.seek(0)
        if b"READY" in log.read():
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop_process(process)
    log.seek(0)
    pytest.fail(f"tab_app at {url} did not start:\n{log.read().decode('utf-8', 'replace')[-4000:]}",
                pytrace=False)


@pytest.fixture(scope="module")
def apps(local_server_url, tmp_path_factory):
    """(url of the tab on the live server, url of the tab on a dead port, user preset dir)."""
    preset_dir = tmp_path_factory.mktemp("tab") / "presets"
    preset_dir.mkdir()
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # "the WebUI" of the live app has one LoRA and no embeddings
    loras, embeddings = preset_dir.parent / "loras.json", preset_dir.parent / "embeddings.json"
    loras.write_text(json.dumps([{"name": "inkstyle", "alias": "inkstyle", "path": "x", "metadata": {}}]))
    embeddings.write_text(json.dumps({"loaded": {}, "skipped": {}}))
    live = _start_app(local_server_url, preset_dir, "--loras", str(loras), "--embeddings", str(embeddings),
                      "--samplers", "Euler a,DPM++ 2M", "--schedulers", "Automatic,Karras")
    dead = _start_app(dead_url, preset_dir)
    try:
        for started in (live, dead):
            _wait_ready(*started)
        yield live[1], dead[1], preset_dir
    finally:
        for process, _, log in (live, dead):
            stop_process(process)
            log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Offline by construction: anything not on loopback is refused.
    context.route("**/*", lambda route: route.continue_()
                  if re.match(r"https?://127\.0\.0\.1[:/]", route.request.url) else route.abort())
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    # gradio runs queue=False events (the live preview) as plain POSTs; settle() waits for them
    page.pending = set()
    page.on("request", lambda request: page.pending.add(request) if request.method == "POST" else None)
    page.on("requestfinished", lambda request: page.pending.discard(request))
    page.on("requestfailed", lambda request: page.pending.discard(request))
    yield page
    context.close()


# --- helpers over gradio 3.41's DOM ----------------------------------------------

def _box(name: str) -> str:
    """The text field of a textbox: a textarea, or an input for a one-line box."""
    return f"#newspicgen_{name} textarea, #newspicgen_{name} input[type=text]"


def value(page, name: str) -> str:
    return page.input_value(_box(name))


def wait_value(page, name: str, predicate: str, timeout: int = UI_TIMEOUT_MS) -> str:
    """Wait until `predicate` (JS, over `v`) holds for the textbox's value."""
    page.wait_for_function(f"(() => {{ const e = document.querySelector({json.dumps(_box(name))});"
                           f" if (!e) return false; const v = e.value; return {predicate}; }})()",
                           timeout=timeout)
    return value(page, name)


def dropdown_value(page, name: str) -> str:
    return page.input_value(f"#newspicgen_{name} input")


def settle(page, quiet_ms: int = 300) -> None:
    """Wait until no event request has been in flight for quiet_ms, so a late answer to an
    earlier change cannot overwrite what the next step checks."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(50)
        if page.pending:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_ms / 1000:
            return
    pytest.fail(f"the page kept requests in flight for {UI_TIMEOUT_MS} ms: {[r.url for r in page.pending]}")


def pick_dropdown(page, name: str, option: str) -> None:
    page.click(f"#newspicgen_{name} input")
    page.click(f"#newspicgen_{name} ul.options li[data-value={json.dumps(option, ensure_ascii=False)}]")
    settle(page)


def generate(page, url: str, news: dict) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.fill(_box("content"), news["title"] + "\n" + news["content"])
    page.click("#newspicgen_generate")


def fields(page) -> dict:
    return {"en_prompt": value(page, "en_prompt"), "ch_prompt": value(page, "ch_prompt"),
            "en_keyword": value(page, "en_keyword"), "ch_keyword": value(page, "ch_keyword"),
            "type": dropdown_value(page, "type").split(" ", 1)[0]}


# --- tests -----------------------------------------------------------------------

def test_generate_fills_fields_and_preview_follows_edits_and_preset(apps, page):
    live_url, _, _ = apps
    news = NEWS[0]
    generate(page, live_url, news)
    wait_value(page, "en_prompt", "v.length > 0", timeout=GENERATE_TIMEOUT_MS)
    settle(page)

    # the pasted article was split: first line -> title
    assert value(page, "title") == news["title"]
    assert value(page, "content") == news["content"]
    # the fields hold a prompt the schema accepts, and the type dropdown shows its label
    prompt = PicturePrompt.from_dict(fields(page))
    assert re.fullmatch(r"[1-8] [a-z ]+ / \S+", dropdown_value(page, "type"))
    status = page.inner_text("#newspicgen_status")
    assert "NewsPicGen engine (regex)" in status and "last latency" in status
    # the preset followed the type and the preview is composed from the fields
    preset = dropdown_value(page, "preset")
    assert preset
    infotext = wait_value(page, "infotext", "v.includes('NewsPicGen preset')")
    assert f"NewsPicGen preset: {preset}" in infotext and "Steps: " in infotext
    assert f"NewsPicGen type: {prompt.type}" in infotext

    # editing the English prompt changes the preview
    page.fill(_box("en_prompt"), "a red panda eating bamboo in fresh snow")
    positive = wait_value(page, "positive", "v.includes('a red panda eating bamboo in fresh snow')")
    assert positive != "a red panda eating bamboo in fresh snow"  # the preset's template wraps it

    # picking another preset by hand changes the preview and stops following the type
    other = "ink-wash-figures" if preset != "ink-wash-figures" else "editorial-photo-general"
    pick_dropdown(page, "preset", other)
    wait_value(page, "infotext", f"v.includes({json.dumps('NewsPicGen preset: ' + other)})")
    assert value(page, "positive") != positive
    assert "a red panda eating bamboo in fresh snow" in value(page, "positive")
    page.wait_for_function("!document.querySelector('#newspicgen_follow input').checked")
    # ... so a type change keeps the user's preset
    pick_dropdown(page, "type", "1 animal / 动物")
    wait_value(page, "infotext", "v.includes('NewsPicGen type: 1')")
    assert dropdown_value(page, "preset") == other
    # following again picks the type's default preset
    page.check("#newspicgen_follow input")
    settle(page)
    page.wait_for_function(f"document.querySelector('#newspicgen_preset input').value != {json.dumps(other)}")
    wait_value(page, "infotext", f"!v.includes({json.dumps('NewsPicGen preset: ' + other)})")


def test_more_candidates_lets_the_user_pick_one(apps, page):
    live_url, _, _ = apps
    generate(page, live_url, NEWS[0])
    wait_value(page, "en_prompt", "v.length > 0", timeout=GENERATE_TIMEOUT_MS)
    settle(page)
    page.click("#newspicgen_more")  # the accordion
    page.fill("#newspicgen_n input[type=number]", "2")
    page.press("#newspicgen_n input[type=number]", "Enter")
    page.fill("#newspicgen_seed input", "7")
    page.click("#newspicgen_more_button")
    options = page.locator("#newspicgen_candidates label")
    options.nth(1).wait_for(timeout=GENERATE_TIMEOUT_MS)
    assert options.count() == 2
    assert "seeds 7–8" in page.inner_text("#newspicgen_status")
    label = options.nth(1).inner_text()
    options.nth(1).click()
    # the label is "#2 · <type label> · <en_keyword>: <en_prompt…>"; the page shows it with runs of
    # whitespace collapsed (a keyword may start with a space), so compare collapsed
    keyword = wait_value(page, "en_keyword",
                         f"{json.dumps(label)}.includes((' · ' + v + ': ').replace(/\\s+/g, ' '))")
    assert keyword and label.startswith("#2 · " + dropdown_value(page, "type"))
    PicturePrompt.from_dict(fields(page))


def test_the_news_boxes_are_never_outputs_of_a_slow_event(apps):
    """Generate's busy overlay covers its outputs; the article split is a queue-less event of its own."""
    import urllib.request

    from tests.support.webui import slow_event_outputs
    with urllib.request.urlopen(apps[0] + "/config", timeout=30) as response:
        config = json.loads(response.read())
    slow = slow_event_outputs(config)
    assert "newspicgen_status" in slow and "newspicgen_en_prompt" in slow, "the scan sees Generate's outputs"
    assert not {"newspicgen_title", "newspicgen_content"} & slow, slow


def test_server_down_says_what_to_do_in_plain_text_and_keeps_the_news(apps, page):
    _, dead_url, _ = apps
    news = NEWS[0]
    page.goto(dead_url, wait_until="domcontentloaded")
    page.fill(_box("title"), news["title"])
    page.fill(_box("content"), news["content"])
    page.fill(_box("en_prompt"), "my own edited prompt")
    page.click("#newspicgen_generate")
    page.wait_for_function("document.querySelector('#newspicgen_status').innerText.includes('Prompt server panel')")
    status = page.inner_text("#newspicgen_status")
    assert "down" in status
    # the app's URL comes from NEWSPICGEN_SERVER_URL: the Settings field would be read-only
    assert "NEWSPICGEN_SERVER_URL" in status and "Settings →" not in status
    assert "make serve" not in status and str(REPO) not in status, "no terminal, no path of this machine"
    # the warning toast (gr.Warning) names the cause too, as plain text
    toast = page.wait_for_selector(".toast-body").inner_text()
    assert "cannot reach the prompt server" in toast
    for text in (status, toast):
        assert "`" not in text and "**" not in text and "NewsPicGen: NewsPicGen" not in text, text
    # nothing typed or edited is lost
    assert value(page, "title") == news["title"]
    assert value(page, "content") == news["content"]
    assert value(page, "en_prompt") == "my own edited prompt"


def test_preset_editor_duplicates_validates_saves_and_deletes(apps, page):
    live_url, _, preset_dir = apps
    page.goto(live_url, wait_until="domcontentloaded")
    page.click("#newspicgen_editor")  # the accordion
    page.click("#newspicgen_editor_json_view")  # and its JSON view
    pick_dropdown(page, "editor_pick", "newspicgen-comic-person")
    wait_value(page, "editor_json", "v.includes('\"name\": \"newspicgen-comic-person\"')")
    assert page.is_disabled(_box("editor_json"))  # built-ins are read-only
    assert "read-only" in page.inner_text("#newspicgen_editor_msg")
    assert value(page, "editor_positive")  # preview on the sample prompt

    page.fill(_box("editor_new_name"), "my-comic")
    page.click("#newspicgen_editor_duplicate")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Duplicated')")
    settle(page)
    saved = preset_dir / "my-comic.json"
    assert json.loads(saved.read_text(encoding="utf-8"))["name"] == "my-comic"
    assert dropdown_value(page, "editor_pick") == "my-comic"
    assert page.is_enabled(_box("editor_json"))

    # an invalid edit is explained and nothing is lost
    data = json.loads(value(page, "editor_json"))
    data["prompt"] = "no placeholder here"
    bad = json.dumps(data, ensure_ascii=False, indent=2)
    page.fill(_box("editor_json"), bad)
    page.wait_for_function("document.querySelector('#newspicgen_editor_check').innerText.includes('prompt')"
                           " && document.querySelector('#newspicgen_editor_check').innerText.includes('❌')")
    page.click("#newspicgen_editor_save")
    page.wait_for_selector(".toast-body")
    assert value(page, "editor_json") == bad
    assert json.loads(saved.read_text(encoding="utf-8"))["prompt"] != "no placeholder here"

    # a valid edit is previewed and saved
    data["prompt"] = "woodcut print, {prompt}, bold lines"
    page.fill(_box("editor_json"), json.dumps(data, ensure_ascii=False, indent=2))
    wait_value(page, "editor_positive", "v.startsWith('woodcut print, ')")
    page.click("#newspicgen_editor_save")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Saved')")
    assert json.loads(saved.read_text(encoding="utf-8"))["prompt"] == "woodcut print, {prompt}, bold lines"

    # LoRAs and embeddings the WebUI lacks are named before anyone generates
    data["loras"] = [{"name": "inkstyle", "weight": 0.8}, {"name": "papercut", "weight": 0.5}]
    data["embeddings"] = ["goodhands"]
    page.fill(_box("editor_json"), json.dumps(data, ensure_ascii=False, indent=2))
    page.wait_for_function("document.querySelector('#newspicgen_editor_check').innerText.includes('papercut')")
    check = page.inner_text("#newspicgen_editor_check")
    assert "goodhands" in check and "inkstyle" not in check
    positive = value(page, "editor_positive")
    assert "<lora:inkstyle:0.8>" in positive and "papercut" not in positive

    # the new preset is offered in the tab's preset dropdown too
    page.click("#newspicgen_preset input")
    assert page.locator('#newspicgen_preset ul.options li[data-value="my-comic"]').count() == 1
    page.keyboard.press("Escape")

    page.click("#newspicgen_editor_delete")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Deleted')")
    assert not saved.exists()
    assert (preset_dir / "my-comic.json.bak").exists()
    assert "woodcut print" in value(page, "editor_json")  # Save would bring it back


def test_preset_editor_form_writes_the_preset_with_the_webuis_lists(apps, page):
    live_url, _, preset_dir = apps
    page.goto(live_url, wait_until="domcontentloaded")
    page.click("#newspicgen_editor")
    pick_dropdown(page, "editor_pick", "newspicgen-comic-animal")
    wait_value(page, "form_steps", "v === '25'")
    assert page.is_disabled(_box("form_template")) and page.is_disabled("#newspicgen_form_add_lora")
    assert page.is_disabled("#newspicgen_form_sampler input")
    assert page.is_checked('#newspicgen_form_types input[type=checkbox] >> nth=0')  # 1 animal

    page.fill(_box("editor_new_name"), "form-made")
    page.click("#newspicgen_editor_duplicate")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Duplicated')")
    settle(page)
    assert page.is_enabled(_box("form_template")) and value(page, "form_name") == "form-made"

    # typed fields, a checkbox, the WebUI's sampler list and its LoRA list with a weight
    page.fill(_box("form_template"), "woodcut print, {prompt}")
    page.fill(_box("form_steps"), "30")
    page.click('#newspicgen_form_types label:has-text("2 person")')
    pick_dropdown(page, "form_sampler", "Euler a")
    pick_dropdown(page, "form_lora_pick", "inkstyle")
    page.fill("#newspicgen_form_lora_weight input[type=number]", "0.6")
    page.press("#newspicgen_form_lora_weight input[type=number]", "Enter")
    settle(page)
    page.click("#newspicgen_form_add_lora")
    wait_value(page, "form_loras", "v === 'inkstyle:0.6'")
    wait_value(page, "editor_positive", "v.startsWith('woodcut print, ') && v.includes('<lora:inkstyle:0.6>')")
    settle(page)
    shown = json.loads(value(page, "editor_json"))
    assert shown["settings"]["steps"] == 30 and shown["settings"]["sampler_name"] == "Euler a"
    assert shown["types"] == ["1", "2"] and shown["loras"] == [{"name": "inkstyle", "weight": 0.6}]

    # an invalid value is named, and kept where it was typed
    page.fill(_box("form_width"), "1001")
    page.wait_for_function("document.querySelector('#newspicgen_editor_check').innerText.includes('multiple of 8')")
    assert value(page, "form_width") == "1001"
    page.fill(_box("form_width"), "")
    page.wait_for_function("document.querySelector('#newspicgen_editor_check').innerText.includes('✅')")
    settle(page)

    page.click("#newspicgen_editor_save")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Saved')")
    saved = json.loads((preset_dir / "form-made.json").read_text(encoding="utf-8"))
    assert saved["prompt"] == "woodcut print, {prompt}" and saved["settings"]["steps"] == 30
    assert saved["settings"]["width"] is None and saved["loras"] == [{"name": "inkstyle", "weight": 0.6}]
