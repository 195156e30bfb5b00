"""`python -m prompt_server.setup`: `make serve` without make (Windows, or any plain Python 3.10+).

    python -m prompt_server.setup serve  [--dir DIR] [--model M] [--port P] [--keep-alive D]
    python -m prompt_server.setup setup  ...   (install and download only)
    python -m prompt_server.setup status | stop [--dir DIR]

The same ServerManager as the WebUI tab: the server's own venv in DIR (default
<this folder>/.server), a torch that fits the machine, the model downloaded with
progress and resumable, then the server, stopped by Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from prompt_server.defaults import DEFAULT_MODEL, DEFAULT_PORT
from prompt_server.setup.manager import REPO_ROOT, Refused, ServerManager
from prompt_server.setup.state import tail

DEFAULT_DIR = REPO_ROOT / ".server"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prompt_server.setup",
                                     description="Set up and run the NewsPicGen prompt server in a venv of its own.")
    parser.add_argument("action", nargs="?", default="serve", choices=("serve", "setup", "status", "stop"),
                        help="serve (default): set up what is missing, start, stay until Ctrl-C; "
                             "setup: install and download only; status; stop: stop a server started from DIR")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="folder for the venv, the model and the logs (default %(default)s)")
    parser.add_argument("--model", default=None,
                        help=f"Hugging Face id, modelscope:ID or a local folder (default {DEFAULT_MODEL}, "
                             "or the one set up in DIR before)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to listen on, if free (default %(default)s)")
    parser.add_argument("--keep-alive", default=None, metavar="DURATION",
                        help="free the model's memory after this much idle time (5m, 30s; 0: after every "
                             "request; -1: never)")
    return parser


def _follow(manager: ServerManager, until_idle: bool) -> dict:
    """Print progress lines (and the server's new log lines) until the worker is done."""
    shown = ""
    while True:
        status = manager.status()
        text = (status.get("progress") or {}).get("text") or ""
        if text and text != shown:
            print(text, flush=True)
            shown = text
        if not manager.busy():
            return status
        time.sleep(1.0 if until_idle else 0.5)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    manager = ServerManager(args.dir.expanduser().resolve(), preferred_port=args.port)
    if args.action == "status":
        print(json.dumps(manager.status(), indent=2, ensure_ascii=False))
        return 0
    if args.action == "stop":
        try:
            print(f"state: {manager.stop()['state']}")
        except Refused as exc:
            print(f"cannot stop: {exc}", file=sys.stderr)
            return 1
        return 0
    print(f"setting up in {manager.folder} (log: {manager.files.setup_log})", flush=True)
    manager.setup(args.model, keep_alive=args.keep_alive, start=args.action == "serve")
    status = _follow(manager, until_idle=True)
    if status["state"] == "failed":
        error = status["error"] or {}
        print("\n".join(status["log_tail"][-10:]), file=sys.stderr)
        print(f"setup failed at {error.get('step')}: {error.get('cause')}; {error.get('fix')}", file=sys.stderr)
        return 1
    if args.action == "setup":
        print(f"set up: {status['model_path']} with {manager.python}")
        return 0
    print(f"NewsPicGen prompt server running at {status['url']} (process {status['pid']}); Ctrl-C stops it",
          flush=True)
    return _serve_until_interrupted(manager)


def _serve_until_interrupted(manager: ServerManager) -> int:
    printed = len(tail(manager.files.server_log, 1000))
    try:
        while True:
            lines = tail(manager.files.server_log, 1000)
            for line in lines[printed:]:
                print(line, flush=True)
            printed = len(lines) if len(lines) >= printed else 0
            status = manager.status()
            if status["state"] != "running":
                error = status.get("error") or {}
                print(f"the server stopped: {error.get('cause') or status['state']}", file=sys.stderr)
                return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping the server ...", file=sys.stderr, flush=True)
        manager.stop()
        return 0


