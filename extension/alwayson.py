"""The always-on script "NewsPicGen" for txt2img and img2img.

API callers: "alwayson_scripts": {"newspicgen": {"args": [enabled, title, content, preset]}}
(preset "" = the default for the generated picture type; rewrite.SCRIPT_ARGS names
all eight). In the UI it is a collapsed accordion whose header checkbox is `enabled`, with the
next three inputs inside.
"""
from __future__ import annotations

import gradio as gr
from fastapi.exceptions import HTTPException
from modules import scripts

from prompt_server.instruction import News

from . import webui
from .api import error_status
from .messages import error_text
from .rewrite import PROVENANCE_KEYS, PROVENANCE_PROMPT, apply_provenance, apply_to_processing, refuse_processing

TITLE = "NewsPicGen"


def _prompt_seed(p) -> int | None:
    """The picture's seed also seeds the prompt model, so a fixed seed repeats the whole picture."""
    seed = getattr(p, "seed", None)
    return int(seed) if isinstance(seed, (int, float)) and int(seed) != -1 else None


class NewsPicGenError(HTTPException):
    """The always-on script could not compose, and this generation is refused.

    The WebUI shows it as "NewsPicGenError: <message>" (so the message carries no prefix of
    its own). It is an HTTPException because the WebUI's API prints a traceback for any
    other exception, and here the caller already gets a clean answer (status_code, detail)
    and the console has the script's one line."""

    def __init__(self, message: str, status_code: int = 500):
        super().__init__(status_code=status_code, detail=message)

    def __str__(self) -> str:
        return str(self.detail)


def compose_failed(exc: Exception, language: str = "en") -> NewsPicGenError:
    """One line of plain text (the WebUI shows it as typed): what went wrong and what to do."""
    return NewsPicGenError(error_text(exc, language), error_status(exc) or 500)


class NewsPicGenScript(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from modules.ui_components import InputAccordion  # A1111 >= 1.7 and Forge
        # The WebUI's own on/off accordion (as FreeU's, Kohya's): a checkbox in the header shows
        # whether NewsPicGen is on while collapsed; its value is the script's first argument.
        with InputAccordion(False, label=TITLE, elem_id=self.elem_id("accordion")) as enabled:
            gr.Markdown("Ticked: the prompts are replaced with ones made from the news below.")
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
            error = compose_failed(exc, "en" if getattr(p, "is_api", False) else webui.language())
            print(f"NewsPicGen: {error} (this generation is refused)")
            refuse_processing(p, error)
            return
        for message in composed.warnings:
            print(f"NewsPicGen: {message}")
        apply_to_processing(p, composed, webui.untouched(self.is_img2img))
