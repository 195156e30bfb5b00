"""The per-type preset follows the loaded checkpoint, in a real AUTOMATIC1111 and a real Forge.

Runs once per WebUI whose folder is given (see test_webui_integration.py, whose
fixtures start it; skipped without). Both harnesses load an SD 1.5 checkpoint
(A1111: its own test/test_files/empty.pt; Forge: a random-weight SD 1.5), so
the tab must pick the SD 1.5 presets, and Forge with its UI switched to "xl"
the SDXL ones.
"""
from __future__ import annotations

import time

import pytest

from tests.extension import test_webui_integration as integration
from tests.support.webui import call

# That module's fixtures, for a WebUI of this module's own (a data folder of its own: the
# Forge test below switches the UI preset, which the WebUI saves in its config).
kind, prompt_proxy, webui = integration.kind, integration.prompt_proxy, integration.webui
browser, watched = integration.browser, integration.watched
NEWS = integration.NEWS

SD15_SETTINGS = {"Steps": "25", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Size": "768x448"}


def wait_for_base(base_url: str, expected: str, timeout: float = 300) -> None:
    """Until the routes report `expected` as the loaded model's family (A1111 loads its
    checkpoint in the background after start-up)."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status, body = call(base_url, "/newspicgen/v1/presets", timeout=30)
        seen = body.get("model_base") if status == 200 and isinstance(body, dict) else body
        if seen == expected:
            return
        time.sleep(2)
    raise AssertionError(f"the WebUI's model family is {seen!r}, not {expected!r}, after {timeout:.0f} s")


def generate(watched) -> tuple:
    """Generate a prompt in the tab: (the preset it picked, the infotext's parameters)."""
    page = watched.page
    watched.tab("NewsPicGen")
    page.fill("#newspicgen_title textarea", NEWS["title"])
    page.fill("#newspicgen_content textarea", NEWS["content"])
    page.click("#newspicgen_generate")
    page.wait_for_function("document.querySelector('#newspicgen_infotext textarea').value.includes('NewsPicGen')",
                           timeout=300_000)
    infotext = page.input_value("#newspicgen_infotext textarea")
    fields = dict(part.split(": ", 1) for part in infotext.splitlines()[-1].split(", ") if ": " in part)
    return page.input_value("#newspicgen_preset input"), fields


def test_with_an_sd15_checkpoint_send_to_txt2img_gives_sd15_size_and_settings(webui, watched):
    wait_for_base(webui.base, "sd15")
    watched.open()
    page = watched.page
    preset, fields = generate(watched)
    assert preset.startswith("newspicgen-comic-") and preset.endswith("-sd15"), preset
    assert {k: fields.get(k) for k in SD15_SETTINGS} == SD15_SETTINGS
    assert fields["NewsPicGen preset"] == preset
    assert "is made for" not in page.inner_text("#newspicgen_preview_notes")
    page.click("#newspicgen_send_txt2img")
    page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value.startsWith('comic, ')")
    page.wait_for_timeout(1000)
    on_page = {name: page.input_value(f"#txt2img_{name} input[type=number]")
               for name in ("width", "height", "steps", "cfg_scale")}
    assert on_page == {"width": "768", "height": "448", "steps": "25", "cfg_scale": "7"}
    assert page.input_value("#txt2img_sampling input") == "DPM++ 2M"


def test_a_hand_picked_sdxl_preset_is_kept_and_warned_about_on_sd15(webui):
    wait_for_base(webui.base, "sd15")
    status, body = call(webui.base, "/newspicgen/v1/prompt", {**NEWS, "seed": 3, "preset": "newspicgen-comic-person"})
    assert status == 200, body
    assert body["preset"] == "newspicgen-comic-person" and body["settings"]["width"] == 1280
    assert any("is made for SDXL; SD 1.5 is loaded" in w for w in body["warnings"]), body["warnings"]


def test_forge_with_its_ui_switched_to_xl_picks_the_sdxl_preset(webui, watched):
    if webui.kind != "forge":
        pytest.skip("the UI preset (sd / xl / flux / all) is Forge's")
    watched.open()
    page = watched.page
    page.click('#forge_ui_preset [data-testid="xl-radio-label"]')  # gradio 4.40's Radio option
    try:
        page.wait_for_function("document.querySelector('#forge_ui_preset input[value=\"xl\"]').checked")
        try:
            wait_for_base(webui.base, "sdxl", timeout=60)
        except AssertionError as exc:
            status, options = call(webui.base, "/sdapi/v1/options", timeout=30)
            tail = webui.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}; options say forge_preset={options.get('forge_preset')!r}; "
                                 f"console: {watched.console}; log: {tail}") from None
        preset, fields = generate(watched)
        assert preset.startswith("newspicgen-comic-") and not preset.endswith(("-sd15", "-flux")), preset
        assert (fields["Size"], fields["Sampler"], fields["Steps"]) == ("1280x736", "DPM++ SDE", "25")
    finally:  # the page's choice is saved in the WebUI's config: back to "sd" for the tests after this one
        call(webui.base, "/sdapi/v1/options", {"forge_preset": "sd"})
