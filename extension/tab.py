"""The NewsPicGen tab: news in, an editable prompt, a composed preview, "Send to txt2img".

The behaviour lives in `TabLogic` (and `preset_editor.PresetEditor`), which
never touch gradio: every handler takes the values on screen and returns an
`Outcome` naming only the components it changes, plus a warning on trouble.
Components not named keep what the user has there, so an error can never wipe
typed or edited text. `build_tab` lays out the components and wires the
handlers; gradio is imported there only (3.41 for A1111, 4.40 for Forge).
"""
from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

try:  # inside the WebUI the repo is loaded under a namespace package of our own
    from ..prompt_server.client import PromptServerError, ServerInfo, ServerUnreachable
    from ..prompt_server.instruction import EmptyNewsError, News
    from ..prompt_server.schema import PYDANTIC_V2, PicturePrompt, PictureType
    from ..style_presets.compose import compose
    from ..style_presets.store import PresetNotFound
except ImportError:  # top-level import (CLI, tests)
    from prompt_server.client import PromptServerError, ServerInfo, ServerUnreachable
    from prompt_server.instruction import EmptyNewsError, News
    from prompt_server.schema import PYDANTIC_V2, PicturePrompt, PictureType
    from style_presets.compose import compose
    from style_presets.store import PresetNotFound

log = logging.getLogger("newspicgen")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 30000
START_COMMAND = "python -m prompt_server serve --model blacker521/NewsPicGen"

# The editable result fields, in the order handlers receive and return them.
FIELDS = ("en_prompt", "ch_prompt", "en_keyword", "ch_keyword", "type")


@dataclass
class Choices:
    """A new choice list (and value) for a dropdown or radio."""
    choices: List[str]
    value: Optional[str]


@dataclass
class Editable:
    """A new value (None: keep the text) and interactivity for a textbox."""
    value: Optional[str]
    interactive: bool


@dataclass
class Outcome:
    values: Dict[str, Any] = field(default_factory=dict)
    warning: Optional[str] = None


# --- small pure helpers ----------------------------------------------------------

def type_choices() -> List[str]:
    return [type_label(t.value) for t in PictureType]


def type_label(code: str) -> str:
    member = PictureType.parse(code)
    return f"{member.value} {member.en} / {member.zh}"


def type_code(label: str) -> str:
    """"2 person / 人物" -> "2" (also accepts anything PictureType.parse does)."""
    text = (label or "").strip()
    return PictureType.parse(text.split(" ", 1)[0] if text[:1].isdigit() else text).value


def split_article(title: str, content: str) -> Tuple[str, str]:
    """A whole article pasted into the content box: its first line becomes the title.

    Only when the title box is empty and the content has more than one line, and
    the first line is short enough to be a headline.
    """
    if (title or "").strip() or not content:
        return title, content
    lines = content.strip().splitlines()
    if len(lines) < 2 or len(lines[0].strip()) > 100:
        return title, content
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def start_command(url: str) -> str:
    port = urlparse(url).port
    return START_COMMAND + (f" --port {port}" if port and port != DEFAULT_PORT else "")


def status_markdown(info: Optional[ServerInfo], url: str, last_latency_ms: Optional[float] = None,
                    note: str = "") -> str:
    """The status line: URL, engine, model, last latency; when down, the start command."""
    if info is None:
        text = f"Prompt server `{url}` — not checked yet (press **Check server** or **Generate prompt**)."
    elif info.ok:
        latency = f"{last_latency_ms:.0f} ms" if last_latency_ms is not None else "—"
        text = (f"🟢 Prompt server `{info.url}` · engine `{info.engine or 'unknown'}` · "
                f"model `{info.model or 'unknown'}` · last latency {latency}")
    else:
        reason = (info.error or "no answer").split("; ", 1)[0]  # PromptServerError: "what; what to do"
        text = (f"🔴 **Prompt server down or not ready** — {reason}\n\n"
                f"Start it (in `{REPO_ROOT}`, or wherever the package is installed) with:\n\n"
                f"```\n{start_command(info.url)}\n```\n\n"
                "or fix the server URL in Settings → NewsPicGen.")
    return text + (f"\n\n{note}" if note else "")


def picture_prompt_from_fields(values: Sequence[str]) -> PicturePrompt:
    """The edited fields as a PicturePrompt.

    The user may write longer prompts than the model's bounds, so only the type
    and a non-empty English prompt are required; compose() neutralizes the text.
    """
    data = dict(zip(FIELDS, ((v or "").strip() for v in values)))
    if not data["en_prompt"]:
        raise ValueError("the English prompt is empty; generate one or type it")
    if not data["type"]:
        raise ValueError("no picture type yet; generate a prompt or pick a type")
    data["type"] = type_code(data["type"])
    if PYDANTIC_V2:
        return PicturePrompt.model_construct(**data)
    return PicturePrompt.construct(**data)


def fields_from_picture_prompt(pp: PicturePrompt) -> Dict[str, str]:
    return {"en_prompt": pp.en_prompt, "ch_prompt": pp.ch_prompt, "en_keyword": pp.en_keyword,
            "ch_keyword": pp.ch_keyword, "type": type_label(pp.type)}


def candidate_label(index: int, pp: PicturePrompt) -> str:
    text = pp.en_prompt if len(pp.en_prompt) <= 90 else pp.en_prompt[:89] + "…"
    return f"#{index + 1} · {type_label(pp.type)} · {pp.en_keyword}: {text}"


def warnings_markdown(warnings: List[str]) -> str:
    return "\n".join(f"⚠️ {w}" for w in warnings)


# --- the handlers ------------------------------------------------------------------

class TabLogic:
    """The tab's behaviour; `get_config()` is read on every event so settings apply at once."""

    def __init__(self, get_config: Callable[[], Any], available: Optional[Callable[[], Any]] = None):
        self.get_config = get_config
        self.available = available or (lambda: None)
        self._info: Dict[str, ServerInfo] = {}

    # status
    def _status(self, client, note: str = "", force: bool = False) -> str:
        url = client.base_url
        info = self._info.get(url)
        if force or info is None or not info.ok:
            info = self._info[url] = client.health()
        return status_markdown(info, url, client.last_latency_ms, note)

    def _noted(self, client, note: str) -> str:
        """The last known status plus a note, without asking the server."""
        return status_markdown(self._info.get(client.base_url), client.base_url, client.last_latency_ms, note)

    def initial_status(self) -> str:
        try:
            url = self.get_config().server_url
        except Exception as exc:  # a bad setting: say which
            return f"🔴 {exc}"
        return status_markdown(None, url)

    def check_server(self) -> Outcome:
        try:
            client = self.get_config().client()
        except Exception as exc:
            return Outcome({"status": f"🔴 {exc}"}, warning=str(exc))
        text = self._status(client, force=True)
        info = self._info[client.base_url]
        return Outcome({"status": text}, warning=None if info.ok else info.error)

    def _server_failed(self, client, exc: Exception) -> Outcome:
        """A failed request: warn, and show the server status (with the start command when down)."""
        if isinstance(exc, ServerUnreachable):
            self._info[client.base_url] = ServerInfo(client.base_url, False, error=str(exc))
            status = status_markdown(self._info[client.base_url], client.base_url)
        else:
            status = self._status(client, note=f"Last request failed: {exc}", force=True)
        return Outcome({"status": status}, warning=str(exc))

    # generate
    def generate(self, title: str, content: str, follow: bool, preset: str) -> Outcome:
        title, content = split_article(title, content)
        split = {"title": title, "content": content}
        try:
            config = self.get_config()
            client = config.client()
        except Exception as exc:
            return Outcome({"status": f"🔴 {exc}"}, warning=str(exc))
        try:
            pp = client.generate(News(title=title or "", content=content or ""))
        except EmptyNewsError as exc:
            return Outcome({**split, "status": self._noted(client, f"⚠️ {exc}")}, warning=str(exc))
        except PromptServerError as exc:
            out = self._server_failed(client, exc)
            out.values.update(split)
            return out
        values: Dict[str, Any] = {**split, **fields_from_picture_prompt(pp)}
        values["status"] = self._status(client)
        if follow:
            values.update(self._followed_preset(pp.type, preset))
        return Outcome(values)

    def more_candidates(self, title: str, content: str, n: float, seed: float) -> Outcome:
        title, content = split_article(title, content)
        split = {"title": title, "content": content}
        n = max(1, min(int(n or 1), 8))
        base = int(seed) if seed is not None and int(seed) >= 0 else random.randrange(2 ** 31)
        try:
            client = self.get_config().client()
        except Exception as exc:
            return Outcome({"status": f"🔴 {exc}"}, warning=str(exc))
        try:
            found = client.candidates(News(title=title or "", content=content or ""), n, seed=base)
        except EmptyNewsError as exc:
            return Outcome({**split, "status": self._noted(client, f"⚠️ {exc}")}, warning=str(exc))
        except PromptServerError as exc:
            out = self._server_failed(client, exc)
            out.values.update(split)
            return out
        note = f"{len(found)} candidates from seeds {base}–{base + len(found) - 1}; pick one to use it."
        return Outcome({**split, "candidates": Choices([candidate_label(i, pp) for i, pp in enumerate(found)], None),
                        "candidate_data": [pp.to_dict() for pp in found],
                        "status": self._status(client, note=note)})

    def pick_candidate(self, label: str, data: List[dict], follow: bool, preset: str) -> Outcome:
        if not label or not data:
            return Outcome()
        index = int(label.split(" ", 1)[0].lstrip("#")) - 1
        if not 0 <= index < len(data):
            return Outcome(warning="that candidate is gone; press More candidates again")
        pp = PicturePrompt.from_dict(data[index])
        values: Dict[str, Any] = fields_from_picture_prompt(pp)
        if follow:
            values.update(self._followed_preset(pp.type, preset))
        return Outcome(values)

    # preset following the type
    def _followed_preset(self, code: str, current: str) -> Dict[str, Any]:
        config = self.get_config()
        try:
            return {"preset": config.store().resolve(None, code, config.family).name}
        except PresetNotFound:
            return {"preset": current}

    def type_changed(self, type_text: str, follow: bool, preset: str) -> Outcome:
        if not follow or not type_text:
            return Outcome()
        return Outcome(self._followed_preset(type_code(type_text), preset))

    def follow_toggled(self, follow: bool, type_text: str, preset: str) -> Outcome:
        return self.type_changed(type_text, follow, preset)

    # preview
    def preview(self, en_prompt: str, ch_prompt: str, en_keyword: str, ch_keyword: str, type_text: str,
                preset_name: str) -> Outcome:
        empty = {"positive": "", "negative": "", "infotext": ""}
        if not any((en_prompt, ch_prompt, en_keyword, ch_keyword)):
            return Outcome({**empty, "preview_notes": "Generate a prompt (or type one) to see the composed prompt."})
        try:
            pp = picture_prompt_from_fields((en_prompt, ch_prompt, en_keyword, ch_keyword, type_text))
            config = self.get_config()
            preset = config.store().resolve(preset_name or None, pp.type, config.family)
            composed = compose(pp, preset, available=self._available())
        except (ValueError, PresetNotFound) as exc:
            return Outcome({**empty, "preview_notes": f"⚠️ {exc}"})
        return Outcome({"positive": composed.prompt, "negative": composed.negative_prompt,
                        "infotext": composed.infotext, "preview_notes": warnings_markdown(composed.warnings)})

    def _available(self):
        try:
            return self.available()
        except Exception:  # the WebUI's lists are a nicety; never fail a preview on them
            return None


# --- the gradio side ---------------------------------------------------------------

def _to_gradio(gr, value: Any) -> Any:
    if isinstance(value, Choices):
        return gr.update(choices=value.choices, value=value.value)
    if isinstance(value, Editable):
        if value.value is None:
            return gr.update(interactive=value.interactive)
        return gr.update(value=value.value, interactive=value.interactive)
    return value


def _make_wire(gr, components: Dict[str, Any], notify: Callable[[str], None]):
    """wire(event, handler, input names, output names): run a handler, show its warning,
    update only the components the Outcome names."""

    def wire(event, handler, inputs: Sequence[str], outputs: Sequence[str], queue: bool = True):
        def run(*values):
            try:
                outcome = handler(*values)
            except Exception as exc:  # a bug must not wipe the page: keep everything, say what broke
                log.exception("NewsPicGen tab: %s failed", getattr(handler, "__name__", handler))
                outcome = Outcome(warning=f"NewsPicGen: unexpected error ({type(exc).__name__}: {exc})")
            if outcome.warning:
                notify(outcome.warning)
            result = [_to_gradio(gr, outcome.values[name]) if name in outcome.values else gr.update()
                      for name in outputs]
            return result[0] if len(result) == 1 else result

        # gradio 4 describes the endpoint from the signature; *values would read as zero parameters
        run.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in inputs])
        return event(fn=run, inputs=[components[n] for n in inputs], outputs=[components[n] for n in outputs],
                     queue=queue, show_progress="minimal" if queue else "hidden",
                     api_name=False)  # the extension's API is its REST routes, not gradio endpoints

    return wire


def _notifier(gr, hooks) -> Callable[[str], None]:
    if hooks is not None and getattr(hooks, "in_webui", False):
        return hooks.warn  # the WebUI shows a toast and logs to its console
    if hasattr(gr, "Warning"):  # gradio >= 3.38; needs the queue, which A1111 and tab_app enable
        return lambda message: gr.Warning(message)
    return lambda message: log.warning("%s", message)


def build_tab(get_config: Callable[[], Any], hooks: Any = None):
    """The NewsPicGen tab as a gr.Blocks, for on_ui_tabs or a standalone demo.

    `hooks` (extension.webui_hooks.WebUIHooks) connects the WebUI: the LoRAs and
    embeddings it has, its "Send to txt2img/img2img" mechanism, its warnings.
    Without hooks the tab works on its own and has no Send buttons.
    """
    import gradio as gr

    from .preset_editor import PresetEditor, build_preset_editor

    available = getattr(hooks, "available", None)
    logic = TabLogic(get_config, available)
    editor = PresetEditor(get_config, logic._available)
    c: Dict[str, Any] = {}
    wire = _make_wire(gr, c, _notifier(gr, hooks))
    in_webui = hooks is not None and getattr(hooks, "in_webui", False)

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            c["status"] = gr.Markdown(logic.initial_status(), elem_id="newspicgen_status")
            check = gr.Button("Check server", elem_id="newspicgen_check", scale=0)
        with gr.Row():
            with gr.Column():
                c["title"] = gr.Textbox(label="News title", lines=1, elem_id="newspicgen_title")
                c["content"] = gr.Textbox(
                    label="News content", lines=12, elem_id="newspicgen_content",
                    placeholder="Paste the article here. With the title box empty, its first line becomes the title.")
                generate = gr.Button("Generate prompt", variant="primary", elem_id="newspicgen_generate")
                with gr.Accordion("More candidates", open=False, elem_id="newspicgen_more"):
                    with gr.Row():
                        c["n"] = gr.Slider(label="Number of candidates", minimum=2, maximum=8, step=1, value=3,
                                           elem_id="newspicgen_n")
                        c["seed"] = gr.Number(label="Candidate seed (-1 = random)", value=-1, precision=0,
                                              elem_id="newspicgen_seed")
                    more = gr.Button("Generate candidates", elem_id="newspicgen_more_button")
                    c["candidates"] = gr.Radio(label="Candidates (pick one to use it)", choices=[],
                                               elem_id="newspicgen_candidates")
                    c["candidate_data"] = gr.State([])
            with gr.Column():
                c["en_prompt"] = gr.Textbox(label="English prompt", lines=3, elem_id="newspicgen_en_prompt")
                c["ch_prompt"] = gr.Textbox(label="Chinese prompt", lines=2, elem_id="newspicgen_ch_prompt")
                with gr.Row():
                    c["en_keyword"] = gr.Textbox(label="English keyword", lines=1, elem_id="newspicgen_en_keyword")
                    c["ch_keyword"] = gr.Textbox(label="Chinese keyword", lines=1, elem_id="newspicgen_ch_keyword")
                with gr.Row():
                    c["type"] = gr.Dropdown(label="Picture type", choices=type_choices(), value=None,
                                            elem_id="newspicgen_type")
                    c["preset"] = gr.Dropdown(label="Style preset", choices=editor.names(), value=None,
                                              elem_id="newspicgen_preset", scale=2)
                c["follow"] = gr.Checkbox(label="Preset follows the picture type", value=True,
                                          elem_id="newspicgen_follow")
                c["positive"] = gr.Textbox(label="Composed prompt", lines=4, interactive=False,
                                           elem_id="newspicgen_positive")
                c["negative"] = gr.Textbox(label="Composed negative prompt", lines=2, interactive=False,
                                           elem_id="newspicgen_negative")
                c["preview_notes"] = gr.Markdown(elem_id="newspicgen_preview_notes")
                # The WebUI's paste mechanism parses this text as PNG Info does.
                c["infotext"] = gr.Textbox(label="Generation parameters", lines=3, interactive=False,
                                           elem_id="newspicgen_infotext")
                if in_webui:
                    with gr.Row():
                        for tabname in ("txt2img", "img2img"):
                            button = gr.Button(f"Send to {tabname}", elem_id=f"newspicgen_send_{tabname}")
                            hooks.register_paste(button, tabname, c["infotext"])
        build_preset_editor(gr, editor, c, wire)

        fields = list(FIELDS)
        wire(check.click, logic.check_server, [], ["status"])
        wire(generate.click, logic.generate, ["title", "content", "follow", "preset"],
             ["title", "content", *fields, "preset", "status"])
        wire(more.click, logic.more_candidates, ["title", "content", "n", "seed"],
             ["title", "content", "candidates", "candidate_data", "status"])
        wire(c["candidates"].input, logic.pick_candidate, ["candidates", "candidate_data", "follow", "preset"],
             [*fields, "preset"], queue=False)
        wire(c["type"].change, logic.type_changed, ["type", "follow", "preset"], ["preset"], queue=False)
        wire(c["follow"].input, logic.follow_toggled, ["follow", "type", "preset"], ["preset"], queue=False)
        # picking a preset by hand stops it following the type
        c["preset"].input(fn=lambda _: False, inputs=[c["preset"]], outputs=[c["follow"]], queue=False,
                          api_name=False)
        for name in (*fields, "preset"):
            wire(c[name].change, logic.preview, [*fields, "preset"],
                 ["positive", "negative", "infotext", "preview_notes"], queue=False)
    return tab

