"""The NewsPicGen tab's layout: news in, an editable prompt, a composed preview, "Send to txt2img".

The behaviour lives in `tab_logic.TabLogic` and `preset_editor.PresetEditor`;
this module only lays out components and wires them with `ui_events.make_wire`.
gradio is imported inside `build_tab` only (3.41 for A1111, 4.40 for Forge).
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from .ad_tab import build_ad_part
from .comic_tab import build_comic_part
from .preset_editor import PICKERS, PresetEditor, build_preset_editor
from .server_panel import build_server_panel
from .tab_logic import FIELDS, TabLogic, type_choices
from .ui_events import make_wire, notifier


def build_tab(get_config: Callable[[], Any], hooks: Any = None):
    """The NewsPicGen tab as a gr.Blocks, for on_ui_tabs or a standalone demo.

    `hooks` (extension.webui_hooks.WebUIHooks) connects the WebUI: the LoRAs and
    embeddings it has, its "Send to txt2img/img2img" mechanism, its warnings.
    Without hooks the tab works on its own and has no Send buttons.
    """
    import gradio as gr

    logic = TabLogic.from_hooks(get_config, hooks)
    editor = PresetEditor.from_hooks(get_config, hooks)
    c: Dict[str, Any] = {}
    notify = notifier(gr, hooks)
    wire = make_wire(gr, c, notify)
    in_webui = hooks is not None and getattr(hooks, "in_webui", False)

    with gr.Blocks(analytics_enabled=False) as tab:
        check = build_server_panel(gr, c, wire, notify, logic.initial_status(), getattr(hooks, "server", None),
                                   lambda: logic.check_server().values["status"], tab)
        with gr.Row():
            with gr.Column():
                c["title"] = gr.Textbox(label="News title", lines=1, elem_id="newspicgen_title")
                c["content"] = gr.Textbox(
                    label="News content", lines=12, elem_id="newspicgen_content",
                    placeholder="Paste the article here. With the title box empty, its first line becomes the title.")
                generate = gr.Button("Generate prompt", variant="primary", elem_id="newspicgen_generate")
                send = {}  # here, not under the long result column: in sight at 1440x900 after Generate
                if in_webui:
                    with gr.Row():
                        for tabname in ("txt2img", "img2img"):
                            send[tabname] = gr.Button(f"Send to {tabname}", elem_id=f"newspicgen_send_{tabname}")
                with gr.Accordion("More candidates", open=False, elem_id="newspicgen_more"):
                    with gr.Row():
                        c["n"] = gr.Slider(label="Number of candidates", minimum=2, maximum=8, step=1, value=3,
                                           elem_id="newspicgen_n")
                        c["seed"] = gr.Number(label="Candidate seed (-1 = random)", value=-1, precision=0,
                                              elem_id="newspicgen_seed")
                    c["rank"] = gr.Checkbox(label="Rank candidates by relevance to the article", value=False,
                                            elem_id="newspicgen_rank")
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
                for tabname, button in send.items():
                    hooks.register_paste(button, tabname, c["infotext"])
        build_preset_editor(gr, editor, c, wire)
        build_comic_part(gr, get_config, hooks, c, wire)
        build_ad_part(gr, get_config, hooks, c, wire)

        fields = list(FIELDS)
        wire(check.click, logic.check_server, [], ["status"])
        # A pasted article is split by a fast event first; the slow one then never has the news
        # boxes as outputs, so its busy overlay leaves them readable.
        split = wire(generate.click, logic.split, ["title", "content"], ["title", "content"], queue=False)
        wire(split.then, logic.generate, ["title", "content", "follow", "preset"], [*fields, "preset", "status"])
        split = wire(more.click, logic.split, ["title", "content"], ["title", "content"], queue=False)
        wire(split.then, logic.more_candidates, ["title", "content", "n", "seed", "rank"],
             ["candidates", "candidate_data", "status"])
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
        external = list(getattr(hooks, "preset_dropdowns", None) or [])
        c.update({f"external_preset_{i}": dropdown for i, dropdown in enumerate(external)})

        def refresh_presets() -> Any:
            return editor.refresh(len(external))

        wire(tab.load, refresh_presets, [],
             ["preset", "editor_pick", *PICKERS,
              *(f"external_preset_{i}" for i in range(len(external)))], queue=False)
    return tab

