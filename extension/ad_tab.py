"""The tab's "Product poster" part: product facts -> editable ad copy and picture prompt ->
the picture through the WebUI's own txt2img, with the headline laid over it and the
copy below, saved in the WebUI's outputs folder beside the picture."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from newspicgen.ad import AD_FAMILY, compose_ad
from newspicgen.task_render import render_ad, save_ad
from prompt_server.ad_task import AD, AdCopy
from prompt_server.compat import ValidationError, first_error
from prompt_server.errors import PromptServerError
from prompt_server.instruction import EmptyNewsError
from prompt_server.schema import PictureType
from style_presets.compose import OverrideError
from style_presets.store import PresetNotFound

from . import task_runs
from .comic_tab import output_folder
from .messages import error_text
from .ui_events import Outcome, asked, warnings_markdown

AD_KEYS = ("ad_headline", "ad_copy", "ad_en_prompt", "ad_type")


class AdPart:
    def __init__(self, get_config: Callable[[], Any], available: Optional[Callable[[], Any]] = None,
                 language: Callable[[], str] = lambda: "en", folder: Callable[[], Path] = output_folder):
        self.get_config, self.available, self.language, self.folder = get_config, available, language, folder

    def _fail(self, exc: BaseException) -> Outcome:
        if isinstance(exc, ValidationError):
            return Outcome(warning=f"NewsPicGen ad: {first_error(exc)}")
        return Outcome(warning=f"NewsPicGen ad: {error_text(exc, asked(self.language, 'en'))}")

    def write(self, product: str, facts: str) -> Outcome:
        try:
            client = task_runs.task_client(self.get_config(), AD)
            ad = client.generate_task(AD, {"product": product or "", "facts": facts or ""})
        except (PromptServerError, EmptyNewsError, ValueError) as exc:
            return self._fail(exc)
        return Outcome({"ad_headline": ad.headline, "ad_copy": ad.body_copy, "ad_en_prompt": ad.en_prompt,
                        "ad_type": ad.type})

    def render(self, headline: str, body_copy: str, en_prompt: str, type_code: str, family: str,
               seed: Any) -> Outcome:
        try:
            # edited text may pass the model's bounds: kept as typed
            ad = AdCopy.construct_unchecked(headline=headline or "", body_copy=body_copy or "",
                                            en_prompt=en_prompt or "", type=PictureType.parse(type_code or "7").value)
            image_seed = int(seed) if seed is not None and int(seed) >= 0 else None
            composed = compose_ad(ad, self.get_config().store(), family=family or AD_FAMILY, seed=image_seed,
                                  available=asked(self.available) if self.available else None)
            txt2img = task_runs.WEBUI.get("txt2img")
            if txt2img is None:
                return Outcome(warning="NewsPicGen ad: the WebUI's txt2img API is not available; "
                                       "start the WebUI with --api")
            rendered = render_ad(composed, task_runs.webui_render(txt2img))
            stem = "ad-" + time.strftime("%H%M%S") + f"-{random.randrange(16 ** 4):04x}"
            poster = save_ad(self.folder(), stem, rendered, composed)
        except (PromptServerError, PresetNotFound, OverrideError, ValueError, OSError) as exc:
            return self._fail(exc)
        notes = [f"Saved in `{poster.parent}` ({poster.name}, {stem}.png with its infotext, {stem}-copy.txt)."]
        if not rendered.poster.captions_drawn:
            notes.append(f"No CJK font found, so the headline is not drawn: **{headline}** — {body_copy}")
        notes += [warnings_markdown(composed.request.warnings)] if composed.request.warnings else []
        return Outcome({"ad_poster": str(poster), "ad_prompt": composed.request.prompt,
                        "ad_notes": "\n\n".join(notes)})


def build_ad_part(gr: Any, get_config: Callable[[], Any], hooks: Any, c: Dict[str, Any], wire: Any) -> None:
    part = AdPart(get_config, getattr(hooks, "available", None), getattr(hooks, "language", lambda: "en"))
    with gr.Accordion("Product poster", open=False, elem_id="newspicgen_ad"):
        with gr.Row():
            c["ad_product"] = gr.Textbox(label="Product", placeholder="连衣裙, or 类型#裙*颜色#蓝色*风格#清新",
                                         elem_id="newspicgen_ad_product")
            c["ad_facts"] = gr.Textbox(label="Facts", lines=2, elem_id="newspicgen_ad_facts")
        write = gr.Button("Write the ad", elem_id="newspicgen_ad_write")
        with gr.Row():
            c["ad_headline"] = gr.Textbox(label="Headline (≤ 16 characters)", elem_id="newspicgen_ad_headline")
            c["ad_type"] = gr.Dropdown(label="Picture type", choices=[t.value for t in PictureType], value="7",
                                       elem_id="newspicgen_ad_type")
        c["ad_copy"] = gr.Textbox(label="Copy (≤ 120 characters)", lines=2, elem_id="newspicgen_ad_copy")
        c["ad_en_prompt"] = gr.Textbox(label="Picture prompt (English)", lines=2, elem_id="newspicgen_ad_en_prompt")
        with gr.Row():
            c["ad_family"] = gr.Textbox(label="Preset family", value=AD_FAMILY, elem_id="newspicgen_ad_family")
            c["ad_seed"] = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="newspicgen_ad_seed")
        draw = gr.Button("Make the poster", variant="primary", elem_id="newspicgen_ad_render")
        c["ad_notes"] = gr.Markdown(elem_id="newspicgen_ad_notes")
        c["ad_poster"] = gr.Image(label="Poster", type="filepath", interactive=False, elem_id="newspicgen_ad_poster")
        c["ad_prompt"] = gr.Textbox(label="Composed prompt", lines=2, interactive=False, elem_id="newspicgen_ad_prompt")
    wire(write.click, part.write, ["ad_product", "ad_facts"], list(AD_KEYS))
    wire(draw.click, part.render, [*AD_KEYS, "ad_family", "ad_seed"], ["ad_poster", "ad_prompt", "ad_notes"])
