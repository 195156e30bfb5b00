"""Comic strips and ad posters inside a real AUTOMATIC1111 / Forge (skipped without them):
the routes with `render` and the tab's Comic strip part, end to end at 64x64 / 1 step,
with provenance in each panel's infotext. Fixtures and helpers: test_webui_integration.py.

NEWSPICGEN_SHOT_DIR=DIR also keeps the strip, the poster and a screenshot of the part
there (the pictures in docs/comic-and-ad.md).
"""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

from tests.extension import test_webui_integration as integration
from tests.extension.test_webui_integration import KINDS, png_parameters

# the real-page fixtures (a WebUI per kind, the prompt server behind a proxy, Chromium)
kind, browser, prompt_proxy = integration.kind, integration.browser, integration.prompt_proxy
webui, watched = integration.webui, integration.watched

STORY = {"title": "乡村教师坚守山区讲台三十年",
         "content": "在海拔两千米的山村小学，五十六岁的李老师已经教书三十年。她每天清晨步行一小时到校，"
                    "为全校二十三名学生讲授语文和数学。"}
SMALL = {"steps": 1, "width": 64, "height": 64}
SHOT_DIR = os.environ.get("NEWSPICGEN_SHOT_DIR", "")


def _keep(name: str, data: bytes) -> None:
    if SHOT_DIR:
        Path(SHOT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(SHOT_DIR) / name).write_bytes(data)


def test_comic_route_draws_a_4_panel_strip_with_provenance_in_every_panel(webui):
    from tests.support.webui import call
    status, body = call(webui.base, "/newspicgen/v1/comic", {**STORY, "panels": 4, "seed": 3, "render": True,
                                                             "overrides": {**SMALL, "seed": 42}})
    assert status == 200, body
    assert len(body["panels"]) == 4 and len(body["images"]) == 4
    for number, image in enumerate(body["images"], start=1):
        parameters = png_parameters(base64.b64decode(image))
        assert "Steps: 1" in parameters and "Seed: 42" in parameters and "Size: 64x64" in parameters, parameters
        assert f"panel {number}/4" in parameters and "NewsPicGen preset: " in parameters, parameters
    strip = base64.b64decode(body["strip"])
    from PIL import Image
    assert Image.open(io.BytesIO(strip)).width == 4 * 64 + 5 * 4
    _keep(f"comic-strip-{webui.kind}.png", strip)


def test_ad_route_draws_a_poster(webui):
    from tests.support.webui import call
    status, body = call(webui.base, "/newspicgen/v1/ad", {"product": "连衣裙", "facts": "类型#裙*颜色#蓝色*风格#清新",
                                                          "seed": 1, "render": True,
                                                          "overrides": {"steps": 1, "width": 128, "height": 128}})
    assert status == 200, body
    assert {"headline", "copy", "en_prompt", "type", "prompt", "negative_prompt", "poster"} <= set(body)
    assert "NewsPicGen preset: ad-" in png_parameters(base64.b64decode(body["images"][0]))
    _keep(f"ad-poster-{webui.kind}.png", base64.b64decode(body["poster"]))


def test_comic_part_in_the_page_makes_a_4_panel_strip(webui, watched):
    page = watched.page
    watched.open()
    watched.tab("NewsPicGen")
    page.fill("#newspicgen_title textarea", STORY["title"])
    page.fill("#newspicgen_content textarea", STORY["content"])
    page.click("#newspicgen_comic .label-wrap")
    page.click("#newspicgen_comic_write")
    page.wait_for_function("document.querySelector('#newspicgen_comic_panel_3_en_prompt textarea').value !== ''",
                           timeout=300_000)
    # a character changed once on the sheet
    page.fill("#newspicgen_comic_char_0_en textarea", "an old teacher in a green coat")
    for name, value in SMALL.items():
        box = f"#newspicgen_comic_{name} input[type=number]"
        page.fill(box, str(value))
        page.press(box, "Enter")
    page.wait_for_timeout(500)
    page.click("#newspicgen_comic_render")
    page.wait_for_function("document.querySelector('#newspicgen_comic_notes').innerText.includes('Saved in')",
                           timeout=600_000)
    notes = page.inner_text("#newspicgen_comic_notes")
    folder = Path(re.search(r"Saved in (.+?) \(", notes.replace("`", "")).group(1))
    if not folder.is_absolute():
        folder = Path(KINDS[webui.kind][0]) / folder
    strip = sorted(folder.glob("*-strip.png"))[-1]
    stem = strip.name[:-len("-strip.png")]
    prompts = page.input_value("#newspicgen_comic_prompts textarea")
    for number in range(1, 5):
        parameters = png_parameters((folder / f"{stem}-panel-{number}.png").read_bytes())
        assert "Steps: 1" in parameters and "Size: 64x64" in parameters, parameters
        assert f"panel {number}/4" in parameters and "NewsPicGen type: " in parameters, parameters
    assert (folder / f"{stem}-captions.txt").read_text(encoding="utf-8").count("\n") == 4
    assert [line.split(". ", 1)[0] for line in prompts.split("\n\n")] == ["1", "2", "3", "4"]
    assert not watched.failed, watched.failed
    if SHOT_DIR:
        shutil.copy(strip, Path(SHOT_DIR) / f"comic-strip-page-{webui.kind}.png")
        page.locator("#newspicgen_comic").screenshot(path=str(Path(SHOT_DIR) / f"comic-part-{webui.kind}.png"))
