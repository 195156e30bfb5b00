"""The always-on script "NewsPicGen" for txt2img and img2img.

API callers: "alwayson_scripts": {"newspicgen": {"args": [enabled, title, content, preset]}}
(preset "" = the default for the generated picture type; rewrite.SCRIPT_ARGS names
all eight). In the UI it is a collapsed accordion with the first four inputs.
"""
from __future__ import annotations

import gradio as gr
from modules import scripts

from prompt_server.instruction import News

from . import webui
from .api import error_status
from .rewrite import (
    PROVENANCE_KEYS,
    PROVENANCE_PROMPT,
    NewsPicGenError,
    apply_provenance,
    apply_to_processing,
    refuse_processing,
)

TITLE = "NewsPicGen"


def _prompt_seed(p) -> int | None:
    """The picture's seed also seeds the prompt model, so a fixed seed repeats the whole picture."""
    seed = getattr(p, "seed", None)
    return int(seed) if isinstance(seed, (int, float)) and int(seed) != -1 else None


def compose_failed(exc: Exception) -> NewsPicGenError:
    return NewsPicGenError(f"NewsPicGen: {exc}", error_status(exc) or 500)


class NewsPicGenScript(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion(TITLE, open=False, elem_id=self.elem_id("accordion")):
            enabled = gr.Checkbox(False, label="Enable NewsPicGen (replaces the prompts with ones made from the news)",
                                  elem_id=self.elem_id("enabled"))
            title = gr.Textbox(label="News title", lines=1, elem_id=self.elem_id("title"))
            content = gr.Textbox(label="News content", lines=4, elem_id=self.elem_id("content"))
            preset = gr.Dropdown(label="Preset (empty = the default for the picture type)",
                                 choices=webui.preset_choices(), value="", allow_custom_value=True,
                                 elem_id=self.elem_id("preset"))
            webui.PRESET_DROPDOWNS.append(preset)  # the tab refreshes its choices on every page load
            # Filled by "Send to txt2img" from the tab's infotext; see rewrite.SCRIPT_ARGS. The value ""
            # is needed: the WebUI's paste converts with type(component.value), and gradio 4's (Forge's)
            # Textbox defaults to None, which made the paste skip these boxes.
            hidden = [gr.Textbox("", visible=False, elem_id=self.elem_id(f"from_{i}")) for i in range(4)]
        self.infotext_fields = list(zip(hidden, (*PROVENANCE_KEYS, PROVENANCE_PROMPT), strict=True))
        return [enabled, title, content, preset, *hidden]

    def before_process(self, p, enabled=False, title="", content="", preset="", from_type="", from_keyword="",
                       from_preset="", from_prompt="", *args):
        # before_process runs before setup_prompts()/fill_fields_from_opts(): the composed
        # prompt reaches every image of every batch, and the preset's size/steps/sampler apply.
        if not enabled:
            apply_provenance(p, (from_type, from_keyword, from_preset), from_prompt)
            return
        try:
            composed = webui.get_config().pipeline().run(News(title=title or "", content=content or ""),
                                                         preset=preset or None, seed=_prompt_seed(p),
                                                         available=webui.available(), base=webui.model_base())
        except Exception as exc:  # the WebUI would only log it and draw the caller's prompt
            error = compose_failed(exc)
            print(f"{error} (this generation is refused)")
            refuse_processing(p, error)
            return
        for message in composed.warnings:
            print(f"NewsPicGen: {message}")
        apply_to_processing(p, composed, webui.untouched(self.is_img2img))
