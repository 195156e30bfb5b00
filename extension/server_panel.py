"""The prompt server panel's layout: the status line (always visible) and, under it, found servers,
Set up, Start / Stop / Restart, "start with the WebUI", Free memory, progress and log.

Behaviour lives in server_panel_logic.ServerPanelLogic. Without a ServerControl
(the standalone demo) only the status line and "Check server" are shown.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, Optional, Sequence

from prompt_server.defaults import DEFAULT_MODEL

from .server_control import ServerControl
from .server_panel_logic import ServerPanelLogic
from .ui_events import to_gradio

log = logging.getLogger("newspicgen")


def make_stream(gr, components: Dict[str, Any], notify: Callable[[str], None]):
    """Like ui_events.make_wire, for handlers that yield Outcomes (the page follows each one)."""

    def stream(event, handler, inputs: Sequence[str], outputs: Sequence[str]):
        def run(*values):
            try:
                for outcome in handler(*values):
                    if outcome.warning:
                        notify(outcome.warning)
                    result = [to_gradio(gr, outcome.values[n]) if n in outcome.values else gr.update()
                              for n in outputs]
                    yield result[0] if len(result) == 1 else result
            except Exception as exc:  # a bug must not wipe the page
                log.exception("NewsPicGen server panel: %s failed", getattr(handler, "__name__", handler))
                notify(f"NewsPicGen: unexpected error ({type(exc).__name__}: {exc})")

        run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # gradio 4 reads the parameters
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in inputs])
        return event(fn=run, inputs=[components[n] for n in inputs], outputs=[components[n] for n in outputs],
                     queue=True, show_progress="hidden", api_name=False)

    return stream


def build_server_panel(gr, c: Dict[str, Any], wire, notify: Callable[[str], None], initial_status: str,
                       control: Optional[ServerControl], status_line: Callable[[], str], page: Any) -> Any:
    """Lay out the panel into `c`; returns the "Check server" button (the tab wires it)."""
    with gr.Row():
        c["status"] = gr.Markdown(initial_status, elem_id="newspicgen_status")
        check = gr.Button("Check server", elem_id="newspicgen_check", scale=0)
    if control is None:
        return check
    logic = ServerPanelLogic(control, status_line)
    allowed = control.refusal() is None
    with gr.Accordion("Prompt server", open=False, elem_id="newspicgen_server"):
        c["server_state"] = gr.Markdown(elem_id="newspicgen_server_state")
        with gr.Row():
            c["server_found"] = gr.Dropdown(label="Found servers", choices=[], value=None, scale=3,
                                            elem_id="newspicgen_server_found")
            find = gr.Button("Find servers", elem_id="newspicgen_server_find", scale=0)
            use = gr.Button("Use this server", elem_id="newspicgen_server_use", scale=0)
        c["server_found_data"] = gr.State([])
        with gr.Row():
            c["server_model"] = gr.Textbox(label="Model: Hugging Face id, modelscope:id, or a local folder",
                                           value=DEFAULT_MODEL, lines=1, scale=3, elem_id="newspicgen_server_model")
            setup = gr.Button("Set up a server here", variant="primary", interactive=allowed, scale=0,
                              elem_id="newspicgen_server_setup")
        with gr.Row():
            start = gr.Button("Start server", interactive=allowed, elem_id="newspicgen_server_start")
            stop = gr.Button("Stop server", interactive=allowed, elem_id="newspicgen_server_stop")
            restart = gr.Button("Restart server", interactive=allowed, elem_id="newspicgen_server_restart")
            free = gr.Button("Free the model's memory now", elem_id="newspicgen_server_free")
            refresh = gr.Button("Refresh server status", elem_id="newspicgen_server_refresh")
        with gr.Row():
            c["server_autostart"] = gr.Checkbox(label="Start with the WebUI", value=False, interactive=allowed,
                                                elem_id="newspicgen_server_autostart")
            c["server_keep_alive"] = gr.Textbox(label="Free its memory when idle for (5m, 30s; empty: never)",
                                                value="", lines=1, elem_id="newspicgen_server_keep_alive")
        c["server_log"] = gr.Textbox(label="Server log", lines=8, max_lines=8, interactive=False,
                                     elem_id="newspicgen_server_log")
    stream = make_stream(gr, c, notify)
    view = ["server_state", "server_log", "server_autostart", "status"]
    stream(page.load, logic.load, [], [*view, "server_found", "server_found_data", "server_keep_alive"])
    stream(refresh.click, logic.refresh, [], view)
    stream(setup.click, logic.setup, ["server_model", "server_keep_alive"], view)
    stream(start.click, logic.start, ["server_keep_alive"], view)
    stream(stop.click, logic.stop, [], view)
    stream(restart.click, logic.restart, ["server_keep_alive"], view)
    wire(find.click, logic.find, [], ["server_state", "server_log", "server_autostart", "server_found",
                                      "server_found_data"])
    wire(use.click, logic.use, ["server_found", "server_found_data"], ["server_state", "status"])
    wire(free.click, logic.free_memory, [], ["server_state"])
    wire(c["server_autostart"].input, logic.autostart, ["server_autostart"], ["server_state", "server_autostart"])
    return check


