"""Retake the README screenshots from the real tab (extension/standalone.py, gradio 3.41.2).

    .venv/bin/python docs/screenshots.py --server-url http://127.0.0.1:PORT

needs a running prompt server at that URL (the tiny test model is enough:
`python -m tests.support.tiny_model /tmp/tiny && python -m prompt_server serve --engine
local --model /tmp/tiny --port PORT`), .venv-gradio3, Debian's chromium and
Playwright, and CJK + emoji fonts for legible pictures (fonts-wqy-microhei,
fonts-noto-color-emoji). The tiny model writes random text, so after a real
Generate the result fields are overwritten with the example below, as a user
editing them would; everything else on the pictures is what the page shows.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.loopback import free_port, stop_process  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = HERE / "images"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NEWS = {"title": "九旬老人坚持晨跑 完成人生第十个半程马拉松",
        "content": "今年92岁的李大爷在周日举行的城市半程马拉松中顺利完赛，这是他人生中的第十个半程马拉松。"
                   "李大爷说，坚持晨跑三十年让他保持了健康的身体，希望更多老年人加入运动的行列。"}
EXAMPLE = {  # what NewsPicGen writes for such news
    "en_prompt": "a cheerful 92-year-old man running a city half marathon at dawn, cheering crowd along the road",
    "ch_prompt": "一位92岁的老人在清晨的城市半程马拉松中奔跑，道路两旁观众欢呼",
    "en_keyword": "elderly marathon runner",
    "ch_keyword": "老人跑马拉松",
}


def start_app(server_url: str, preset_dir: str, python: Path):
    port = free_port()
    env = dict(os.environ, NEWSPICGEN_SERVER_URL=server_url, NEWSPICGEN_PRESET_DIR=preset_dir,
               GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen([str(python), "-m", "extension.standalone", "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("READY"):
            return process, f"http://127.0.0.1:{port}"
    raise SystemExit("extension.standalone did not start")


def shrink(path: Path, python: Path) -> None:
    """Quantize to 256 colours (Pillow lives in the gradio venv) so each PNG stays small."""
    subprocess.run([str(python), "-c", "import sys; from PIL import Image; im = Image.open(sys.argv[1]);"
                    " im.convert('RGB').quantize(256, dither=0).save(sys.argv[1], optimize=True)", str(path)],
                   check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--gradio-python", default=str(REPO / ".venv-gradio3" / "bin" / "python"))
    parser.add_argument("--out", default=str(IMAGES))
    args = parser.parse_args()
    out, python = Path(args.out), Path(args.gradio_python)
    zh = json.loads((REPO / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))

    with tempfile.TemporaryDirectory() as presets:
        live, live_url = start_app(args.server_url, presets, python)
        dead, dead_url = start_app(f"http://127.0.0.1:{free_port()}", presets, python)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)

                page.goto(live_url)
                page.fill("#newspicgen_content textarea", NEWS["title"] + "\n" + NEWS["content"])
                page.click("#newspicgen_generate")
                page.wait_for_function("document.querySelector('#newspicgen_en_prompt textarea').value")
                for name, text in EXAMPLE.items():
                    page.fill(f"#newspicgen_{name} textarea", text)
                page.click("#newspicgen_type input")
                page.click('#newspicgen_type ul.options li[data-value="2 person / 人物"]')
                page.wait_for_function("document.querySelector('#newspicgen_infotext textarea').value"
                                       ".includes('NewsPicGen type: 2')")
                page.wait_for_function("document.querySelector('#newspicgen_positive textarea').value"
                                       ".includes('92-year-old')")
                time.sleep(0.5)
                page.screenshot(path=str(out / "tab.png"), full_page=True)

                # the same page in Chinese, the way the WebUI applies a localization file
                page.evaluate("""(zh) => {
                    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                    let node; while ((node = walk.nextNode())) {
                        const t = node.textContent.trim(); if (zh[t]) node.textContent = zh[t]; }
                    document.querySelectorAll('[placeholder]').forEach(e => {
                        if (zh[e.placeholder]) e.placeholder = zh[e.placeholder]; });
                }""", zh)
                page.screenshot(path=str(out / "tab_zh.png"), full_page=True)

                page.goto(live_url)
                page.click("#newspicgen_editor")
                page.click("#newspicgen_editor_pick input")
                page.click('#newspicgen_editor_pick ul.options li[data-value="newspicgen-comic-person"]')
                page.wait_for_function("document.querySelector('#newspicgen_editor_positive textarea').value")
                page.fill("#newspicgen_editor_new_name textarea", "my-comic-person")
                page.click("#newspicgen_editor_duplicate")
                page.wait_for_function("document.querySelector('#newspicgen_editor_msg').innerText"
                                       ".includes('Duplicated')")
                time.sleep(0.5)
                page.locator("#newspicgen_editor").screenshot(path=str(out / "preset_editor.png"))

                page.goto(dead_url)
                page.fill("#newspicgen_title textarea", NEWS["title"])
                page.fill("#newspicgen_content textarea", NEWS["content"])
                page.click("#newspicgen_generate")
                page.wait_for_selector(".toast-body")
                page.wait_for_function("document.querySelector('#newspicgen_status').innerText"
                                       ".includes('prompt_server serve')")
                time.sleep(0.3)
                page.screenshot(path=str(out / "server_down.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 620})
                browser.close()
        finally:
            for process in (live, dead):
                stop_process(process)
    for name in ("tab.png", "tab_zh.png", "preset_editor.png", "server_down.png"):
        shrink(out / name, python)
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
