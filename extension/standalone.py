"""Serve the NewsPicGen tab outside the WebUI, the way A1111 mounts it (a demo, and the browser tests).

    .venv-gradio3/bin/python -m extension.standalone --port 7861 [--loras loras.json --embeddings embeddings.json]
        [--samplers "Euler a,DPM++ 2M" --schedulers "Automatic,Karras"] [--language zh]

Settings come from NEWSPICGEN_* environment variables (config_from_env), read
on every event. The browser test runs this in a gradio 3.41.2 venv (A1111's
pin); it works with gradio 4.40 (Forge) too. Prints "READY <url>" when up.
"""
from __future__ import annotations

import argparse
import os
import sys

from style_presets.availability import Availability

from .config import config_from_env
from .tab import build_tab
from .webui_hooks import WebUIHooks


def _names(text: str) -> list:
    return [name.strip() for name in text.split(",") if name.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--loras", help="a saved GET /sdapi/v1/loras body: the LoRAs 'the WebUI' has")
    parser.add_argument("--embeddings", help="a saved GET /sdapi/v1/embeddings body")
    parser.add_argument("--samplers", default="", help="comma-separated sampler names 'the WebUI' lists")
    parser.add_argument("--schedulers", default="", help="comma-separated schedule types 'the WebUI' lists")
    parser.add_argument("--language", default="en", choices=["en", "zh"], help="the WebUI's language")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from gradio itself
    import gradio as gr

    # what the WebUI would report; no Send buttons outside it
    known = Availability.from_files(args.loras, args.embeddings) if args.loras or args.embeddings else None
    samplers, schedulers = _names(args.samplers), _names(args.schedulers)
    hooks = WebUIHooks(available=lambda: known, samplers=lambda: samplers, schedulers=lambda: schedulers,
                       language=lambda: args.language)
    tab = build_tab(config_from_env, hooks)
    # System fonts only: the default theme would ask Google Fonts for its fonts.
    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])
    with gr.Blocks(theme=theme, title="NewsPicGen", analytics_enabled=False) as demo, \
            gr.Tab("NewsPicGen", elem_id="tab_newspicgen"):
        tab.render()  # as A1111's ui.py does with every on_ui_tabs Blocks
    demo.queue()
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True,
                show_error=True, quiet=True, show_api=False)
    print(f"READY http://{args.host}:{args.port}", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
