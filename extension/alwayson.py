"""The always-on script "NewsPicGen" for txt2img and img2img.

API callers: "alwayson_scripts": {"newspicgen": {"args": [enabled, title, content, preset]}}
(preset "" = the default for the generated picture type). In the UI it is a
collapsed accordion with the same four inputs.
"""
from __future__ import annotations

import gradio as gr
from modules import scripts

from prompt_server.instruction import News

from . import webui
from .rewrite import apply_to_processing

TITLE = "NewsPicGen"


def _prompt_seed(p) -> int | None:
    """The picture's seed also seeds the prompt model, so a fixed seed repeats the whole picture."""
    seed = getattr(p, "seed", None)
    return int(seed) if isinstance(seed, (int, float)) and int(seed) != -1 else None


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
        return [enabled, title, content, preset]

    def before_process(self, p, enabled=False, title="", content="", preset="", *args):
        # before_process runs before setup_prompts()/fill_fields_from_opts(): the composed
        # prompt reaches every image of every batch, and the preset's size/steps/sampler apply.
        if not enabled:
            return
        try:
            composed = webui.get_config().pipeline().run(News(title=title or "", content=content or ""),
                                                         preset=preset or None, seed=_prompt_seed(p),
                                                         available=webui.available())
        except Exception as exc:
            raise RuntimeError(f"NewsPicGen: {exc}") from exc
        for message in composed.warnings:
            print(f"NewsPicGen: {message}")
        apply_to_processing(p, composed)
