"""NewsPicGen inside a real, unmodified AUTOMATIC1111 WebUI (1.10.x) and real Forge.

Each test runs once per WebUI whose folder is given (CI has neither: skipped).
A WebUI is started with --api, a data folder of its own (so its config and
extensions list stay untouched) with this repository symlinked into
extensions/, and NEWSPICGEN_SERVER_URL pointing at a loopback proxy in front of
the tiny-model prompt server (the proxy can be taken down: "server down").

  NEWSPICGEN_WEBUI_DIR     AUTOMATIC1111's folder (launch.py, venv/)
  NEWSPICGEN_WEBUI_START   optional start script taking `PORT [args...]` (e.g. one that sets
                           TORCH_COMMAND, HF_HOME, --ckpt); default: venv/bin/python launch.py + CPU flags
  NEWSPICGEN_FORGE_DIR     Forge's folder (launch.py, venv/, a checkpoint in models/Stable-diffusion)
  NEWSPICGEN_WEBUI_TIMEOUT seconds to wait for start-up (default 900)

Starting a WebUI and driving its page live in tests/support/webui.py (docs/screenshots.py
uses them too). The real-page part (headless Chromium) needs Debian's chromium and
Playwright as well.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.webui import CHROMIUM, CHROMIUM_ARGS, Watched, call, slow_event_outputs, stop_webui, wait_until_up
from tests.support.webui import start_webui as start_webui_in

WEBUI_DIR = os.environ.get("NEWSPICGEN_WEBUI_DIR", "")
FORGE_DIR = os.environ.get("NEWSPICGEN_FORGE_DIR", "")
NEWS = {"title": "大熊猫宝宝首次亮相", "content": "成都大熊猫繁育研究基地的大熊猫宝宝今天首次与游客见面，吸引了大批游客。"}
PRESET = "newspicgen-comic-person"
TEST_LORA = "newspicgen-test-lora"
KINDS = {"a1111": (WEBUI_DIR, "NEWSPICGEN_WEBUI_DIR"), "forge": (FORGE_DIR, "NEWSPICGEN_FORGE_DIR")}


def write_empty_lora(path: Path) -> None:
    """A safetensors file holding no tensors: the WebUI lists it as a LoRA (its header is all
    it reads until a prompt uses it), so the editor's LoRA picker has something to offer."""
    header = b'{"__metadata__":{}}'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def start_webui(kind: str, tmp: Path, server_url: str, with_extension: bool = True):
    write_empty_lora(tmp / "data" / "models" / "Lora" / f"{TEST_LORA}.safetensors")
    return start_webui_in(kind, KINDS[kind][0], tmp, server_url, with_extension=with_extension,
                          start_script=os.environ.get("NEWSPICGEN_WEBUI_START"))


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request):
    folder, variable = KINDS[request.param]
    if not (folder and (Path(folder) / "launch.py").is_file()):
        pytest.skip(f"{variable} does not point at a WebUI folder (launch.py)")
    return request.param


@pytest.fixture(scope="module")
def prompt_proxy(local_server_url):
    """The prompt server behind a proxy the tests can take down."""
    from tests.support.loopback import SwitchableProxy
    target = urllib.parse.urlsplit(local_server_url)
    proxy = SwitchableProxy(target.hostname or "127.0.0.1", target.port or 80)
    yield proxy
    proxy.down()


class Running:
    def __init__(self, kind: str, base: str, log: Path, data_dir: Path, proxy):
        self.kind, self.base, self.log, self.data_dir, self.proxy = kind, base, log, data_dir, proxy

    def __getitem__(self, index):  # webui[0] is the base URL, as before
        return (self.base, self.log)[index]


@pytest.fixture(scope="module")
def webui(kind, prompt_proxy, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"webui-{kind}")
    process, base, log = start_webui(kind, tmp, prompt_proxy.url)
    try:
        wait_until_up(base, process, log, float(os.environ.get("NEWSPICGEN_WEBUI_TIMEOUT", "900")))
        yield Running(kind, base, log, tmp / "data", prompt_proxy)
    finally:
        stop_webui(process)


def test_config_has_the_newspicgen_tab_and_settings(webui):
    status, config = call(webui[0], "/config")
    assert status == 200
    props = [c.get("props", {}) for c in config["components"]]
    assert any(p.get("elem_id") == "tab_newspicgen" and p.get("label") == "NewsPicGen" for p in props), \
        "no NewsPicGen tab; see the WebUI log for 'NewsPicGen: the tab could not be built'"
    settings = {p.get("elem_id"): p for p in props if str(p.get("elem_id", "")).startswith("setting_newspicgen_")}
    assert {"setting_newspicgen_server_url", "setting_newspicgen_timeout", "setting_newspicgen_mode",
            "setting_newspicgen_family", "setting_newspicgen_preset_dir"} <= set(settings)
    assert "setting_newspicgen_api_key" not in settings, "the key is never a setting (API callers list them)"


def test_an_api_key_planted_through_the_options_api_is_never_sent(webui):
    """Forge does not enforce restrict_api: whatever an API caller stores as a key must not reach a server."""
    call(webui.base, "/sdapi/v1/options", {"newspicgen_api_key": "planted-key-123"})
    del webui.proxy.sent[:]
    status, body = call(webui.base, "/newspicgen/v1/prompt", {**NEWS, "seed": 3})
    assert status == 200, body
    sent = bytes(webui.proxy.sent)
    assert b"/v1/chat/completions" in sent, "the request went through the proxy"
    assert b"planted-key-123" not in sent and b"authorization:" not in sent.lower()


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
    infotext = png_parameters(base64.b64decode(body["images"][0]))
    assert provenance_text(body) in infotext, infotext


def test_alwayson_with_the_prompt_server_down_returns_no_picture(webui):
    logged = len(webui.log.read_text(encoding="utf-8", errors="replace"))
    webui.proxy.down()
    try:
        status, body = call(webui.base, "/sdapi/v1/txt2img", {
            "prompt": "the caller's prompt", "steps": 1, "width": 64, "height": 64,
            "alwayson_scripts": {"newspicgen": {"args": [True, NEWS["title"], NEWS["content"], ""]}}})
    finally:
        webui.proxy.up()
    assert status == 503, body
    assert "images" not in body, "no picture made from the caller's own prompt"
    # A1111's handler adds "error" (the exception's class); Forge answers an HTTPException as FastAPI does
    assert body.get("error", "NewsPicGenError") == "NewsPicGenError", body
    assert body["detail"].startswith("cannot reach the prompt server"), body
    assert "`" not in body["detail"] and "NEWSPICGEN_SERVER_URL" in body["detail"], body
    # the caller has a clean 503: the console gets one line, not a traceback
    log = webui.log.read_text(encoding="utf-8", errors="replace")[logged:]
    refused = [line for line in log.splitlines() if "this generation is refused" in line]
    assert len(refused) == 1 and refused[0].startswith("NewsPicGen: cannot reach the prompt server"), log[-3000:]
    assert "Traceback" not in log and "API error" not in log, log[-3000:]


def test_webui_records_the_extension_start_up_steps(webui):
    status, record = call(webui[0], "/internal/profile-startup")
    assert status == 200 and record
    ours = {k: round(v, 3) for k, v in record["records"].items() if "newspicgen" in k.lower()}
    assert ours, "the WebUI recorded no start-up step for the extension"
    print(f"\nWebUI start-up total {record['total']:.1f} s; NewsPicGen steps: {ours}; "
          f"together {sum(ours.values()):.3f} s (installer process + script load)")


def test_models_validate_under_the_webuis_pydantic(kind):
    python = Path(KINDS[kind][0]) / "venv" / "bin" / "python"
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


# --- helpers ----------------------------------------------------------------------

def png_parameters(png: bytes) -> str:
    """The "parameters" text chunk (what PNG Info shows) of a PNG written by the WebUI."""
    import struct
    import zlib
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at = 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        at += 12 + length
        if kind == b"tEXt" and data.startswith(b"parameters\0"):
            return data.split(b"\0", 1)[1].decode("latin-1")
        if kind == b"iTXt" and data.startswith(b"parameters\0"):
            _, rest = data.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            text = rest.split(b"\0", 2)[2]
            return (zlib.decompress(text) if compressed else text).decode("utf-8")
    return ""


def provenance_text(composed: dict) -> str:
    """The NewsPicGen fields as the WebUI writes them into the infotext."""
    from style_presets.compose import quote
    picture = composed["picture_prompt"]
    keyword = " ".join(picture["en_keyword"].split())
    return (f"NewsPicGen type: {picture['type']}, NewsPicGen keyword: {quote(keyword)}, "
            f"NewsPicGen preset: {quote(composed['preset'])}")


# --- the real page in headless Chromium --------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def watched(browser, webui):
    page = Watched(browser, webui.base)
    yield page
    page.context.close()


def badges_without_the_extension(kind, prompt_proxy, browser, tmp) -> int:
    """The same WebUI with no extension: what the WebUI shows by itself."""
    process, base, log = start_webui(kind, tmp, prompt_proxy.url, with_extension=False)
    try:
        wait_until_up(base, process, log, float(os.environ.get("NEWSPICGEN_WEBUI_TIMEOUT", "900")))
        page = Watched(browser, base)
        page.open()
        count = 0
        for name in ("txt2img", "img2img", "Settings"):
            page.tab(name)
            count = max(count, page.badges())
        page.context.close()
        return count
    finally:
        stop_webui(process)


def test_page_has_no_error_badges_and_settings_shows_the_url_in_use(webui, watched, browser, tmp_path):
    watched.open()
    names = watched.page.eval_on_selector_all("#tabs > .tab-nav > button", "els => els.map(e => e.textContent.trim())")
    assert "NewsPicGen" in names
    counts = {}
    for name in names:
        watched.tab(name)
        counts[name] = watched.badges()
    page = watched.page
    # Settings: our section, under a category, saying which URL requests go to
    page.locator("#tabs > .tab-nav > button", has_text="Settings").first.click()
    page.locator("#settings .tab-nav button", has_text="NewsPicGen").first.click()
    in_use = page.get_by_text(f"in use: {webui.proxy.url}").first
    in_use.wait_for(state="visible", timeout=30_000)  # gradio 4 renders the section after the click
    assert in_use.is_visible()
    # opts._categories: [first section, category] per category, in page order
    categories = page.evaluate("typeof opts === 'object' ? opts._categories : null")
    if categories is not None:
        sections = page.eval_on_selector_all("#settings .tab-nav button", "els => els.map(e => e.textContent.trim())")
        starts = [(sections.index(first), category) for first, category in categories if first in sections]
        ours = max((start for start in starts if start[0] <= sections.index("NewsPicGen")), default=(0, None))
        assert ours[1] == "Stable Diffusion", (sections, categories)
    ours = [line for line in watched.console if "newspicgen" in line.lower()]
    assert not ours, ours
    assert not watched.failed, watched.failed
    if any(counts.values()):  # only then is the WebUI without us worth starting
        baseline = badges_without_the_extension(webui.kind, webui.proxy, browser, tmp_path)
        assert max(counts.values()) <= baseline, f"error badges with NewsPicGen {counts}, without {baseline}"


def test_generate_send_to_txt2img_then_generate_writes_provenance(webui, watched):
    watched.open()
    page = watched.page
    watched.tab("NewsPicGen")
    page.fill("#newspicgen_title textarea", NEWS["title"])
    page.fill("#newspicgen_content textarea", NEWS["content"])
    page.click("#newspicgen_generate")
    page.wait_for_function("document.querySelector('#newspicgen_infotext textarea').value.includes('NewsPicGen')",
                           timeout=300_000)
    positive = page.input_value("#newspicgen_positive textarea")
    negative = page.input_value("#newspicgen_negative textarea")
    infotext = page.input_value("#newspicgen_infotext textarea")
    fields = dict(part.split(": ", 1) for part in infotext.splitlines()[-1].split(", ") if ": " in part)
    page.click("#newspicgen_send_txt2img")
    page.wait_for_function(f"document.querySelector('#txt2img_prompt textarea').value === {json.dumps(positive)}")
    assert page.input_value("#txt2img_neg_prompt textarea") == negative
    assert page.input_value("#txt2img_steps input[type=number]") == fields["Steps"]
    assert page.input_value("#txt2img_cfg_scale input[type=number]") == fields["CFG scale"]
    width, height = fields["Size"].split("x")
    assert (page.input_value("#txt2img_width input[type=number]"),
            page.input_value("#txt2img_height input[type=number]")) == (width, height)
    assert page.input_value("#txt2img_sampling input") == fields["Sampler"]
    for box, small in (("steps", "1"), ("width", "64"), ("height", "64")):  # a CPU-sized picture
        page.fill(f"#txt2img_{box} input[type=number]", small)
        page.press(f"#txt2img_{box} input[type=number]", "Enter")
    page.wait_for_timeout(500)
    page.click("#txt2img_generate")
    page.wait_for_function("document.querySelector('#html_info_txt2img') && "
                           "document.querySelector('#html_info_txt2img').textContent.includes('Steps: 1')",
                           timeout=300_000)
    assert "NewsPicGen type:" in page.text_content("#html_info_txt2img")
    src = page.get_attribute("#txt2img_gallery img", "src")
    png = watched.context.request.get(src if src.startswith("http") else webui.base + src).body()
    parameters = png_parameters(png)
    keyword = fields["NewsPicGen keyword"]
    assert f"NewsPicGen type: {fields['NewsPicGen type']}" in parameters, parameters
    assert f"NewsPicGen keyword: {keyword}" in parameters and f"NewsPicGen preset: {fields['NewsPicGen preset']}" \
        in parameters, parameters


def test_a_preset_dropped_into_the_user_folder_is_listed_after_reload(webui, watched):
    from style_presets.store import PresetStore
    folder = webui.data_dir / "newspicgen" / "presets"  # the default user folder
    folder.mkdir(parents=True, exist_ok=True)
    name = f"dropped-in-{webui.kind}"
    (folder / f"{name}.json").write_text(PresetStore(folder).get(PRESET).copy_with(name=name).to_json(),
                                         encoding="utf-8")
    watched.open()  # a page (re)load
    watched.page.click("#script_txt2img_newspicgen_accordion .label-wrap")  # the always-on accordion
    assert name in watched.options_once_listed("#script_txt2img_newspicgen_preset", name)
    watched.tab("NewsPicGen")
    assert name in watched.options_once_listed("#newspicgen_preset", name)


def test_preset_editor_form_offers_the_webuis_lists_and_saves_what_is_picked(webui, watched):
    page = watched.page
    watched.open()
    samplers = watched.dropdown_options("#txt2img_sampling")
    schedulers = watched.dropdown_options("#txt2img_scheduler")
    watched.tab("NewsPicGen")
    page.click("#newspicgen_editor .label-wrap")
    page.click("#newspicgen_editor_json_view .label-wrap")
    watched.choose("#newspicgen_editor_pick", PRESET)
    page.wait_for_function("document.querySelector('#newspicgen_form_steps input').value === '25'")
    # built-ins are read-only (gradio 3.41 redraws a field turned read-only a moment after its value)
    page.wait_for_function("document.querySelector('#newspicgen_form_template textarea').disabled"
                           " && document.querySelector('#newspicgen_form_sampler input').disabled", timeout=10_000)

    name = f"form-{webui.kind}"
    page.fill("#newspicgen_editor_new_name input", name)
    page.click("#newspicgen_editor_duplicate")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Duplicated')")
    page.wait_for_function("!document.querySelector('#newspicgen_form_template textarea').disabled")
    # the pickers list what this WebUI's txt2img lists, and the LoRAs in its folder
    assert [o for o in watched.dropdown_options("#newspicgen_form_sampler") if o] == samplers
    assert [o for o in watched.dropdown_options("#newspicgen_form_scheduler") if o] == schedulers
    assert watched.options_once_listed("#newspicgen_form_lora_pick", TEST_LORA) == [TEST_LORA]
    watched.choose("#newspicgen_form_lora_pick", TEST_LORA)
    weight = "#newspicgen_form_lora_weight input[type=number]"
    page.fill(weight, "0.7")
    page.press(weight, "Enter")
    page.wait_for_timeout(500)
    page.click("#newspicgen_form_add_lora")
    page.wait_for_function(f"document.querySelector('#newspicgen_form_loras textarea').value === '{TEST_LORA}:0.7'")
    watched.choose("#newspicgen_form_sampler", "Euler")
    page.fill("#newspicgen_form_steps input", "30")
    page.wait_for_function("(() => { const v = document.querySelector('#newspicgen_editor_json textarea').value;"
                           " return v.includes('\"steps\": 30') && v.includes('\"sampler_name\": \"Euler\"'); })()")
    positive = page.input_value("#newspicgen_editor_positive textarea")
    assert f"<lora:{TEST_LORA}:0.7>" in positive
    assert TEST_LORA not in page.inner_text("#newspicgen_editor_check"), "the WebUI has it: nothing to warn about"
    page.wait_for_timeout(500)
    page.click("#newspicgen_editor_save")
    page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText.includes('Saved')")
    saved = json.loads((webui.data_dir / "newspicgen" / "presets" / f"{name}.json").read_text(encoding="utf-8"))
    assert saved["settings"]["steps"] == 30 and saved["settings"]["sampler_name"] == "Euler"
    assert saved["loras"] == [{"name": TEST_LORA, "weight": 0.7}]
    assert name in watched.dropdown_options("#newspicgen_preset")
    ours = [line for line in watched.console if "newspicgen" in line.lower()]
    assert not ours and not watched.failed, (ours, watched.failed)


def test_the_txt2img_accordion_header_shows_whether_newspicgen_is_on(webui, watched):
    page = watched.page
    watched.open()
    accordion = "#script_txt2img_newspicgen_accordion"
    header_box = f"{accordion}-visible-checkbox"  # the WebUI's InputAccordion puts it in the header
    page.wait_for_selector(f"{accordion} .label-wrap {header_box}", state="visible")
    assert not page.is_checked(header_box)
    assert page.locator(f"{accordion} .label-wrap.open").count() == 0, "collapsed"
    page.click(header_box)
    assert page.is_checked(header_box) and page.locator(f"{accordion} .label-wrap.open").count() == 0, \
        "ticked in the header while still collapsed"
    page.wait_for_function(f"document.querySelector('{accordion}-checkbox input').checked")  # the script's arg
    ours = [line for line in watched.console if "newspicgen" in line.lower()]
    assert not ours and not watched.failed, (ours, watched.failed)


def test_server_down_toasts_and_status_are_plain_text_and_name_the_fix(webui, watched):
    page = watched.page
    watched.open()
    watched.tab("NewsPicGen")
    page.fill("#newspicgen_title textarea", NEWS["title"])
    page.fill("#newspicgen_content textarea", NEWS["content"])
    webui.proxy.down()
    try:
        page.click("#newspicgen_generate")
        page.wait_for_function("document.querySelector('#newspicgen_status').innerText.includes('panel')",
                               timeout=120_000)
        page.wait_for_selector(".toast-body", timeout=30_000)
        status = page.inner_text("#newspicgen_status")
        toasts = page.eval_on_selector_all(".toast-body", "els => els.map(e => e.innerText)")
    finally:
        webui.proxy.up()
    assert toasts and any("cannot reach the prompt server" in toast for toast in toasts), toasts
    for text in (status, *toasts):
        assert "`" not in text and "**" not in text and "NewsPicGen: NewsPicGen" not in text, text
    # the URL comes from NEWSPICGEN_SERVER_URL here: Settings shows it read-only, so the fix is there
    assert "NEWSPICGEN_SERVER_URL" in status and "Settings →" not in status, status
    assert "make serve" not in status and str(REPO) not in status, "no terminal, no path of this machine"
    assert page.input_value("#newspicgen_title textarea") == NEWS["title"], "nothing typed is lost"


def test_generate_leaves_the_news_readable_and_the_send_buttons_in_sight(webui, browser):
    status, config = call(webui.base, "/config")
    assert status == 200
    slow = slow_event_outputs(config)
    assert "newspicgen_en_prompt" in slow and not {"newspicgen_title", "newspicgen_content"} & slow, slow
    watched = Watched(browser, webui.base, viewport={"width": 1440, "height": 900})
    try:
        page = watched.page
        watched.open()
        watched.tab("NewsPicGen")
        page.fill("#newspicgen_content textarea", NEWS["title"] + "\n" + NEWS["content"])  # a pasted article
        page.click("#newspicgen_generate")
        page.wait_for_function("document.querySelector('#newspicgen_title textarea').value !== ''")  # split first
        page.wait_for_function("document.querySelector('#newspicgen_infotext textarea').value.includes('NewsPicGen')",
                               timeout=300_000)
        assert page.input_value("#newspicgen_title textarea") == NEWS["title"]
        page.evaluate("window.scrollTo(0, 0)")
        for tabname in ("txt2img", "img2img"):
            box = page.locator(f"#newspicgen_send_{tabname}").bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 900, (tabname, box)
    finally:
        watched.context.close()
