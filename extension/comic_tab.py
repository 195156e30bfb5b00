"""The tab's "Comic strip" part: the news above becomes a strip of editable panel cards,
then every panel is drawn through the WebUI's own txt2img into one strip image.

`ComicPart` holds the behaviour without gradio (handlers take the values on screen
and return an Outcome, see ui_events); `build_comic_part` lays it out. The card
fields are fixed in number (8 panels, 4 characters); cards past the panel count
are hidden. Characters are edited once on the sheet: composition repeats their
description in every panel naming them, and renaming one renames it in the panels.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from newspicgen.comic import ComposedStrip, compose_strip
from newspicgen.task_render import render_strip, save_strip
from prompt_server.comic_task import COMIC, MAX_CHARACTERS, MAX_PANELS, SHOTS, ComicStrip
from prompt_server.compat import ValidationError, first_error
from prompt_server.errors import PromptServerError
from prompt_server.instruction import EmptyNewsError
from prompt_server.shape import dump
from style_presets.compose import OverrideError
from style_presets.store import PresetNotFound

from . import task_runs
from .messages import error_text
from .tab_logic import split_article
from .ui_events import Outcome, asked, warnings_markdown

CHARACTER_FIELDS = ("name", "en", "zh")
PANEL_FIELDS = ("en_prompt", "ch_prompt", "characters", "shot", "caption")
CHARACTER_KEYS = [f"comic_char_{k}_{f}" for k in range(MAX_CHARACTERS) for f in CHARACTER_FIELDS]
PANEL_KEYS = [f"comic_panel_{i}_{f}" for i in range(MAX_PANELS) for f in PANEL_FIELDS]
CARD_KEYS = [*CHARACTER_KEYS, *PANEL_KEYS]


def fields_from_strip(strip: ComicStrip) -> Dict[str, Any]:
    """Every card field's value for `strip` (blank past its characters and panels)."""
    values: Dict[str, Any] = {key: "" for key in CHARACTER_KEYS}
    values.update({key: (SHOTS[0] if key.endswith("_shot") else "") for key in PANEL_KEYS})
    for k, character in enumerate(strip.characters):
        for name in CHARACTER_FIELDS:
            values[f"comic_char_{k}_{name}"] = getattr(character, name)
    for i, panel in enumerate(strip.panels):
        values.update(panel_fields(i, dump(panel)))
    return values


def panel_fields(index: int, panel: Dict[str, Any]) -> Dict[str, Any]:
    return {f"comic_panel_{index}_{f}": (", ".join(panel[f]) if f == "characters" else panel[f])
            for f in PANEL_FIELDS}


def strip_from_fields(values: Sequence[Any], panels: int, previous: Optional[Dict[str, Any]]) -> ComicStrip:
    """The strip as edited on the cards. A character renamed on the sheet is renamed in
    every panel too (matched by its place on the sheet of the strip last written)."""
    by_key = dict(zip(CARD_KEYS, values, strict=True))
    characters = []
    renamed: Dict[str, str] = {}
    old_sheet = (previous or {}).get("characters") or []
    for k in range(MAX_CHARACTERS):
        entry = {f: str(by_key[f"comic_char_{k}_{f}"] or "").strip() for f in CHARACTER_FIELDS}
        if not any(entry.values()):
            continue
        characters.append(entry)
        if k < len(old_sheet) and old_sheet[k]["name"] != entry["name"]:
            renamed[old_sheet[k]["name"]] = entry["name"]
    strip_panels = []
    for i in range(int(panels)):
        names = [n.strip() for n in str(by_key[f"comic_panel_{i}_characters"] or "").replace("，", ",").split(",")]
        strip_panels.append({
            "en_prompt": str(by_key[f"comic_panel_{i}_en_prompt"] or "").strip(),
            "ch_prompt": str(by_key[f"comic_panel_{i}_ch_prompt"] or "").strip(),
            "characters": [renamed.get(n, n) for n in names if n],
            "shot": by_key[f"comic_panel_{i}_shot"] or SHOTS[0],
            "caption": str(by_key[f"comic_panel_{i}_caption"] or "").strip()})
    # Edited text may pass the model's bounds (a longer caption): kept as typed, not refused.
    return ComicStrip.construct_unchecked(
        characters=[_unchecked_character(c) for c in characters],
        panels=[_unchecked_panel(p) for p in strip_panels])


def _unchecked_character(data: Dict[str, Any]) -> Any:
    from prompt_server.comic_task import Character
    return Character.construct_unchecked(**data)


def _unchecked_panel(data: Dict[str, Any]) -> Any:
    from prompt_server.comic_task import Panel
    return Panel.construct_unchecked(**data)


def output_folder() -> Path:
    """Inside the WebUI: its outputs folder (beside txt2img-images), else a temp folder."""
    try:
        from modules import shared  # the WebUI's; absent outside it
        base = Path(shared.opts.outdir_txt2img_samples or shared.opts.outdir_samples or "outputs/txt2img-images")
        return base.parent / "newspicgen-comics" / time.strftime("%Y-%m-%d")
    except Exception:
        import tempfile
        return Path(tempfile.gettempdir()) / "newspicgen-comics" / time.strftime("%Y-%m-%d")


class ComicPart:
    def __init__(self, get_config: Callable[[], Any], available: Optional[Callable[[], Any]] = None,
                 language: Callable[[], str] = lambda: "en", folder: Callable[[], Path] = output_folder):
        self.get_config = get_config
        self.available = available or (lambda: None)
        self.language = language
        self.folder = folder

    def _fail(self, exc: BaseException) -> Outcome:
        if isinstance(exc, ValidationError):
            return Outcome(warning=f"NewsPicGen comic: {first_error(exc)}")
        return Outcome(warning=f"NewsPicGen comic: {error_text(exc, asked(self.language, 'en'))}")

    def _ask(self, title: str, content: str, panels: Any, seed: Optional[int]) -> ComicStrip:
        title, content = split_article(title, content)
        client = task_runs.task_client(self.get_config(), COMIC)
        return client.generate_task(COMIC, {"title": title, "content": content, "panels": int(panels)}, seed=seed)

    def write(self, title: str, content: str, panels: Any) -> Outcome:
        """Ask the model for a strip; fill the cards."""
        try:
            strip = self._ask(title, content, panels, None)
        except (PromptServerError, EmptyNewsError, ValueError) as exc:
            return self._fail(exc)
        return Outcome({**fields_from_strip(strip), "comic_state": dump(strip),
                        "comic_notes": f"{len(strip.panels)} panels written; edit any field, then "
                                       "**Generate all panels**."})

    def regenerate(self, index: int, title: str, content: str, panels: Any, *values: Any) -> Outcome:
        """A new take on one panel (a fresh sample of the whole strip, its panel `index` kept);
        names not on this sheet are dropped from it."""
        try:
            fresh = self._ask(title, content, panels, random.randrange(2 ** 31))
            current = strip_from_fields(values, int(panels), None)
        except (PromptServerError, EmptyNewsError, ValueError) as exc:
            return self._fail(exc)
        panel = dump(fresh.panels[index])
        sheet = {c.name for c in current.characters}
        panel["characters"] = [n for n in panel["characters"] if n in sheet]
        return Outcome(panel_fields(index, panel))

    def compose(self, panels: Any, family: str, seed: Any, seed_step: bool, values: Sequence[Any],
                state: Optional[Dict[str, Any]], overrides: Optional[Dict[str, Any]] = None) -> ComposedStrip:
        strip = strip_from_fields(values, int(panels), state)
        image_seed = int(seed) if seed is not None and int(seed) >= 0 else random.randrange(2 ** 32)
        return compose_strip(strip, self.get_config().store(), family=family or None, seed=image_seed,
                             seed_step=1 if seed_step else 0, overrides=overrides, available=asked(self.available))

    def render(self, panels: Any, family: str, seed: Any, seed_step: bool, steps: Any, width: Any, height: Any,
               state: Optional[Dict[str, Any]], *values: Any) -> Outcome:
        """Every panel through the WebUI's txt2img, then the strip; all saved in its outputs folder.
        steps / width / height of 0 keep the preset's."""
        try:
            overrides = {k: int(v) for k, v in (("steps", steps), ("width", width), ("height", height))
                         if v is not None and int(v) > 0}
            composed = self.compose(panels, family, seed, seed_step, values, state, overrides)
            txt2img = task_runs.WEBUI.get("txt2img")
            if txt2img is None:
                return Outcome(warning="NewsPicGen comic: the WebUI's txt2img API is not available; "
                                       "start the WebUI with --api")
            rendered = render_strip(composed, task_runs.webui_render(txt2img))
            stem = time.strftime("%H%M%S") + f"-{random.randrange(16 ** 4):04x}"
            folder = self.folder()
            strip_path = save_strip(folder, stem, rendered, composed)
        except (PromptServerError, PresetNotFound, OverrideError, ValueError, OSError) as exc:
            return self._fail(exc)
        pictures = [str(folder / f"{stem}-panel-{n}.png") for n in range(1, len(rendered.panels) + 1)]
        notes = [f"Saved in `{folder}` ({stem}-strip.png, the panels with their infotext, "
                 f"{stem}-captions.txt)."]
        if not rendered.strip.captions_drawn:
            notes.append("No CJK font found, so the captions are not drawn on the strip "
                         "(install e.g. fonts-wqy-microhei or set NEWSPICGEN_CJK_FONT). Captions: "
                         + " · ".join(f"{n}. {c}" for n, c in enumerate(rendered.captions, start=1)))
        return Outcome({"comic_strip": str(strip_path), "comic_gallery": pictures,
                        "comic_prompts": "\n\n".join(f"{n}. {p.request.prompt}"
                                                     for n, p in enumerate(composed.panels, start=1)),
                        "comic_notes": "\n\n".join(notes + ([warnings_markdown(composed.warnings)]
                                                            if composed.warnings else []))})


def build_comic_part(gr: Any, get_config: Callable[[], Any], hooks: Any, c: Dict[str, Any], wire: Any) -> None:
    """The "Comic strip" accordion; reads the tab's news boxes c["title"], c["content"]."""
    part = ComicPart(get_config, getattr(hooks, "available", None), getattr(hooks, "language", lambda: "en"))
    store = asked(lambda: get_config().store())
    families = asked(lambda: store.families(), []) if store is not None else []
    with gr.Accordion("Comic strip", open=False, elem_id="newspicgen_comic"):
        with gr.Row():
            c["comic_panels"] = gr.Slider(label="Panels", minimum=2, maximum=MAX_PANELS, step=1, value=4,
                                          elem_id="newspicgen_comic_panels")
            c["comic_family"] = gr.Dropdown(label="Preset family", choices=families, value=None,
                                            elem_id="newspicgen_comic_family")
            c["comic_seed"] = gr.Number(label="Strip seed (-1 = random)", value=-1, precision=0,
                                        elem_id="newspicgen_comic_seed")
            c["comic_seed_step"] = gr.Checkbox(label="Seed + panel number", value=False,
                                               elem_id="newspicgen_comic_seed_step")
        write = gr.Button("Write the strip from the news above", elem_id="newspicgen_comic_write")
        c["comic_state"] = gr.State(None)
        with gr.Row():
            for k in range(MAX_CHARACTERS):
                with gr.Column(min_width=160):
                    for name, label in zip(CHARACTER_FIELDS, ("Character", "Looks (English)", "Looks (Chinese)"),
                                           strict=True):
                        c[f"comic_char_{k}_{name}"] = gr.Textbox(label=f"{label} {k + 1}", lines=1 if name == "name"
                                                                 else 2, elem_id=f"newspicgen_comic_char_{k}_{name}")
        cards, regenerate = [], []
        for i in range(MAX_PANELS):
            with gr.Group(visible=i < 4, elem_id=f"newspicgen_comic_card_{i}") as card:
                with gr.Row():
                    c[f"comic_panel_{i}_en_prompt"] = gr.Textbox(label=f"Panel {i + 1} scene (English)", lines=2,
                                                                 elem_id=f"newspicgen_comic_panel_{i}_en_prompt")
                    c[f"comic_panel_{i}_ch_prompt"] = gr.Textbox(label="Scene (Chinese)", lines=2,
                                                                 elem_id=f"newspicgen_comic_panel_{i}_ch_prompt")
                with gr.Row():
                    c[f"comic_panel_{i}_characters"] = gr.Textbox(label="Characters (names, comma-separated)",
                                                                  elem_id=f"newspicgen_comic_panel_{i}_characters")
                    c[f"comic_panel_{i}_shot"] = gr.Dropdown(label="Shot", choices=list(SHOTS), value=SHOTS[0],
                                                             elem_id=f"newspicgen_comic_panel_{i}_shot")
                    c[f"comic_panel_{i}_caption"] = gr.Textbox(label="Caption (≤ 20 characters)",
                                                               elem_id=f"newspicgen_comic_panel_{i}_caption")
                    regenerate.append(gr.Button(f"Regenerate panel {i + 1}", elem_id=f"newspicgen_comic_regen_{i}"))
            cards.append(card)
        with gr.Row():
            for name, label in (("steps", "Steps"), ("width", "Width"), ("height", "Height")):
                c[f"comic_{name}"] = gr.Number(label=f"{label} (0 = the preset's)", value=0, precision=0,
                                               elem_id=f"newspicgen_comic_{name}")
        draw = gr.Button("Generate all panels", variant="primary", elem_id="newspicgen_comic_render")
        c["comic_notes"] = gr.Markdown(elem_id="newspicgen_comic_notes")
        c["comic_strip"] = gr.Image(label="Strip", type="filepath", interactive=False,
                                    elem_id="newspicgen_comic_strip")
        c["comic_gallery"] = gr.Gallery(label="Panels", elem_id="newspicgen_comic_gallery")
        c["comic_prompts"] = gr.Textbox(label="Composed panel prompts", lines=4, interactive=False,
                                        elem_id="newspicgen_comic_prompts")

    c["comic_panels"].change(fn=lambda n: [gr.update(visible=i < int(n)) for i in range(MAX_PANELS)],
                             inputs=[c["comic_panels"]], outputs=cards, queue=False, api_name=False)
    wire(write.click, part.write, ["title", "content", "comic_panels"], [*CARD_KEYS, "comic_state", "comic_notes"])
    for i, button in enumerate(regenerate):
        def one(title: str, content: str, panels: Any, *values: Any, index: int = i) -> Outcome:
            return part.regenerate(index, title, content, panels, *values)
        one.__name__ = f"regenerate_panel_{i + 1}"
        wire(button.click, one, ["title", "content", "comic_panels", *CARD_KEYS],
             [f"comic_panel_{i}_{f}" for f in PANEL_FIELDS])
    wire(draw.click, part.render, ["comic_panels", "comic_family", "comic_seed", "comic_seed_step", "comic_steps",
                                   "comic_width", "comic_height", "comic_state", *CARD_KEYS],
         ["comic_strip", "comic_gallery", "comic_prompts", "comic_notes"])
