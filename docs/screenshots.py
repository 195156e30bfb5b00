"""Retake the README screenshots from the real AUTOMATIC1111 WebUI page.

    .venv/bin/python docs/screenshots.py --webui-dir /path/to/stable-diffusion-webui

starts that WebUI (1.10.1, its own venv/) the way the real-page tests do
(tests/support/webui.py): `--api` and a temporary data folder of its own (its
config, extensions list and user presets stay untouched) with this repository
symlinked into extensions/, and NEWSPICGEN_SERVER_URL pointing at a loopback
proxy in front of the prompt server. In headless Chromium it then takes, into
docs/images/ (cropped to the WebUI's checkpoint row, tab row and our tab):

  tab.png            the NewsPicGen tab after Generate prompt
  server_down.png    Generate with the prompt server down (the proxy closed): the toast and the status line
  tab_zh.png         tab.png again after Settings -> Localization zh_CN -> Reload UI: the WebUI's own
                     localization, from this repository's localizations/zh_CN.json (then back to None)
  preset_editor.png  the Preset editor (#newspicgen_editor) after Duplicate of newspicgen-comic-person

No picture may show a path of the machine it is taken on (this checkout, the temporary data
folder, the home folder): the run stops with the text that carries one.

Options: `--webui-dir` (default $NEWSPICGEN_WEBUI_DIR), `--webui-start SCRIPT`
(default $NEWSPICGEN_WEBUI_START: a start script taking `PORT [args...]`, as for
the tests), `--server-url URL` (a running prompt server; without it one is
started with the tiny test model, which needs .venv's server extra), `--out DIR`,
`--timeout S` (WebUI start-up, default $NEWSPICGEN_WEBUI_TIMEOUT or 900). A run
takes about a minute once the WebUI's files are in the disk cache, a few minutes
on a cold, busy CPU machine.

Needs `make setup-test` (.venv with Playwright, Debian's chromium) and CJK +
emoji fonts for legible pictures (apt-get install fonts-wqy-microhei
fonts-noto-color-emoji). The tiny model writes random text, so after a real
Generate the result fields are overwritten with the example below, as a user
editing them would; everything else on the pictures is what the page shows.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.loopback import SwitchableProxy  # noqa: E402
from tests.support.webui import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    Watched,
    WebUIStartError,
    call,
    start_webui,
    stop_webui,
    wait_until_up,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = HERE / "images"
PICTURES = ("tab.png", "tab_zh.png", "preset_editor.png", "server_down.png")
VIEWPORT = {"width": 1280, "height": 900}
GENERATE_TIMEOUT_MS = 300_000
NEWS = {"title": "九旬老人坚持晨跑 完成人生第十个半程马拉松",
        "content": "今年92岁的李大爷在周日举行的城市半程马拉松中顺利完赛，这是他人生中的第十个半程马拉松。"
                   "李大爷说，坚持晨跑三十年让他保持了健康的身体，希望更多老年人加入运动的行列。"}
EXAMPLE = {  # what NewsPicGen writes for such news
    "en_prompt": "a cheerful 92-year-old man running a city half marathon at dawn, cheering crowd along the road",
    "ch_prompt": "一位92岁的老人在清晨的城市半程马拉松中奔跑，道路两旁观众欢呼",
    "en_keyword": "elderly marathon runner",
    "ch_keyword": "老人跑马拉松",
}
TYPE = "2 person / 人物"
PRESET = "newspicgen-comic-person"
COPY = "my-comic-person"


def value_of(selector: str) -> str:
    """JavaScript: the value of the textarea in `selector`."""
    return f"(document.querySelector({json.dumps(selector + ' textarea')}) || {{}}).value || ''"


def no_machine_path(page, selector: str = "#tab_newspicgen") -> None:
    """Refuse a picture that would show where this machine keeps things (this checkout, the
    WebUI's temporary data folder, the home folder): README pictures are for every reader."""
    text = page.inner_text(selector)
    for path in {str(REPO), tempfile.gettempdir(), os.path.expanduser("~")} - {"", "/"}:
        if path in text:
            raise SystemExit(f"{selector} shows the path {path}; the picture would carry it:\n{text[:2000]}")


def clip_to_tab(page, bottom_selector: str = "#tab_newspicgen", margin: int = 12) -> dict:
    """From the page's top (the WebUI's checkpoint row and tab row) down to the bottom of `bottom_selector`."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(bottom_selector).first.bounding_box()
    width = page.evaluate("document.documentElement.clientWidth")
    return {"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + margin}


def generated_tab(watched: Watched) -> None:
    """The NewsPicGen tab after a real Generate, its result fields then edited to the example."""
    page = watched.page
    watched.tab("NewsPicGen")
    page.fill("#newspicgen_title textarea", NEWS["title"])
    page.fill("#newspicgen_content textarea", NEWS["content"])
    page.click("#newspicgen_generate")
    page.wait_for_function(value_of("#newspicgen_infotext") + ".includes('NewsPicGen type:')",
                           timeout=GENERATE_TIMEOUT_MS)
    for name, text in EXAMPLE.items():
        page.fill(f"#newspicgen_{name} textarea", text)
    watched.choose("#newspicgen_type", TYPE)
    page.wait_for_function(value_of("#newspicgen_infotext") + ".includes('NewsPicGen type: 2')")
    page.wait_for_function(value_of("#newspicgen_positive") + ".includes('92-year-old')")
    page.wait_for_function(value_of("#newspicgen_infotext") + ".includes('92-year-old')")
    page.wait_for_timeout(1000)


def take_tab(browser, base: str, out: Path) -> None:
    watched = Watched(browser, base, VIEWPORT)
    try:
        watched.open()
        generated_tab(watched)
        no_machine_path(watched.page)
        watched.page.screenshot(path=str(out / "tab.png"), full_page=True, clip=clip_to_tab(watched.page))
    finally:
        watched.context.close()


def localize(browser, base: str, localization: str, timeout: float) -> None:
    """Settings -> User interface -> Localization, then Reload UI: what a user does for Chinese labels.

    The WebUI puts the localization into the page when it builds the UI, so the option alone
    changes nothing until the UI is rebuilt.
    """
    status, body = call(base, "/sdapi/v1/options", {"localization": localization})
    if status != 200:
        raise SystemExit(f"could not set the WebUI's localization: {status} {body}")
    _, before = call(base, "/internal/profile-startup")
    watched = Watched(browser, base, VIEWPORT)
    try:
        watched.open()
        watched.page.evaluate("document.querySelector('#settings_restart_gradio').click()")  # Reload UI
        watched.page.wait_for_selector("text=Reloading...")
    finally:
        watched.context.close()
    deadline = time.monotonic() + timeout
    while True:  # the UI is rebuilt in the same process, which records its start-up anew at the end
        time.sleep(2)
        try:
            status, record = call(base, "/internal/profile-startup", timeout=5)
            if status == 200 and isinstance(record, dict) and record != before:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the WebUI did not come back from Reload UI within {timeout:.0f} s")


def take_tab_zh(browser, base: str, out: Path) -> None:
    """The tab under the WebUI's own zh_CN localization (localizations/zh_CN.json of this repository)."""
    zh = json.loads((REPO / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    watched = Watched(browser, base, VIEWPORT)
    try:
        watched.open()
        generated_tab(watched)
        page = watched.page
        shown = {"#newspicgen_generate": page.inner_text("#newspicgen_generate").strip(),
                 "#newspicgen_title": page.inner_text("#newspicgen_title label span").strip()}
        wanted = {"#newspicgen_generate": zh["Generate prompt"], "#newspicgen_title": zh["News title"]}
        if shown != wanted:
            raise SystemExit(f"the page is not in Chinese: {shown}, expected {wanted} "
                             "(does the WebUI list zh_CN among its localizations?)")
        no_machine_path(page)
        page.screenshot(path=str(out / "tab_zh.png"), full_page=True, clip=clip_to_tab(page))
    finally:
        watched.context.close()


def take_preset_editor(browser, base: str, out: Path) -> None:
    """Open the editor, pick a built-in, duplicate it; the picture is the editor's accordion alone."""
    watched = Watched(browser, base, VIEWPORT)
    try:
        watched.open()
        watched.tab("NewsPicGen")
        page = watched.page
        page.click("#newspicgen_editor .label-wrap")
        watched.choose("#newspicgen_editor_pick", PRESET)
        page.wait_for_timeout(1500)  # the editor fills itself from the pick
        name_box = page.locator("#newspicgen_editor_new_name textarea, #newspicgen_editor_new_name input")
        if name_box.count():
            name_box.first.fill(COPY)
        message = "document.querySelector('#newspicgen_editor_msg').innerText"
        before = page.evaluate(message)
        page.click("#newspicgen_editor_duplicate")
        page.wait_for_function(f"{message}.trim() && {message} !== {json.dumps(before)}")
        page.wait_for_timeout(1000)
        page.evaluate("window.scrollTo(0, 0)")
        no_machine_path(page, "#newspicgen_editor")
        page.locator("#newspicgen_editor").screenshot(path=str(out / "preset_editor.png"))
    finally:
        watched.context.close()


def take_server_down(browser, base: str, proxy: SwitchableProxy, out: Path) -> None:
    """Generate while nothing listens at the prompt server URL the WebUI was given."""
    proxy.down()
    watched = Watched(browser, base, VIEWPORT)
    try:
        watched.open()
        watched.tab("NewsPicGen")
        page = watched.page
        page.fill("#newspicgen_title textarea", NEWS["title"])
        page.fill("#newspicgen_content textarea", NEWS["content"])
        page.click("#newspicgen_generate")
        page.wait_for_selector(".toast-body")
        # the status line turns into the down notice: the URL it tried and what to do about it
        where = json.dumps(proxy.url.split("//")[1])
        page.wait_for_function(f"document.querySelector('#newspicgen_status').innerText.includes({where})"
                               " && document.querySelector('#newspicgen_status').innerText.includes('panel')")
        page.wait_for_timeout(300)
        no_machine_path(page)
        page.screenshot(path=str(out / "server_down.png"), full_page=True,
                        clip=clip_to_tab(page, "#newspicgen_content", margin=8))
    finally:
        watched.context.close()
        proxy.up()


def shrink(path: Path) -> None:
    """Quantize to 256 colours so each PNG stays small."""
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


@contextlib.contextmanager
def prompt_server(url: str | None, tmp: Path):
    """The given server URL, or a tiny-model server started for the run."""
    if url:
        yield url
        return
    from tests.support.local_server import running_local
    from tests.support.tiny_model import build_tiny_model
    with running_local(build_tiny_model(tmp / "tiny-model")) as started:
        yield started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webui-dir", default=os.environ.get("NEWSPICGEN_WEBUI_DIR"),
                        help="AUTOMATIC1111's folder (launch.py, venv/); default $NEWSPICGEN_WEBUI_DIR")
    parser.add_argument("--webui-start", default=os.environ.get("NEWSPICGEN_WEBUI_START"),
                        help="a start script taking `PORT [args...]`; default $NEWSPICGEN_WEBUI_START")
    parser.add_argument("--server-url", help="a running prompt server (default: start one with the tiny test model)")
    parser.add_argument("--out", default=str(IMAGES))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("NEWSPICGEN_WEBUI_TIMEOUT", "900")),
                        help="seconds to wait for the WebUI to start")
    args = parser.parse_args()
    if not (args.webui_dir and (Path(args.webui_dir) / "launch.py").is_file()):
        parser.error("--webui-dir (or NEWSPICGEN_WEBUI_DIR) must name an AUTOMATIC1111 folder with launch.py")
    if not Path(CHROMIUM).exists():
        parser.error(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NEWSPICGEN_CHROMIUM)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="newspicgen-shots-") as tmp_name:
        tmp = Path(tmp_name)
        with prompt_server(args.server_url, tmp) as server_url:
            target = urllib.parse.urlsplit(server_url)
            proxy = SwitchableProxy(target.hostname or "127.0.0.1", target.port or 80)
            process, base, log = start_webui("a1111", args.webui_dir, tmp, proxy.url, start_script=args.webui_start)
            try:
                print(f"starting the WebUI at {base} (log: {log}) ...", flush=True)
                try:
                    wait_until_up(base, process, log, args.timeout)
                except WebUIStartError as exc:
                    raise SystemExit(str(exc)) from None
                print(f"up after {time.monotonic() - started:.0f} s", flush=True)
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    take_tab(browser, base, out)
                    take_server_down(browser, base, proxy, out)
                    localize(browser, base, "zh_CN", args.timeout)
                    take_tab_zh(browser, base, out)
                    localize(browser, base, "None", args.timeout)
                    # last: its copy of a built-in would be the preset the other pictures' type follows
                    take_preset_editor(browser, base, out)
                    browser.close()
            finally:
                stop_webui(process)
                proxy.down()
    for name in PICTURES:
        shrink(out / name)
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
