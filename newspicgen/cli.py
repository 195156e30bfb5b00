"""`newspicgen` (also `python -m newspicgen`, `python -m prompt_server`): one entry point,
one module per subcommand.

Each subcommand module exposes HELP, add_arguments(parser) and run(args) -> int,
and imports nothing heavy at module level, so `--help` and `prompt` stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMANDS = {
    "serve": "prompt_server.launcher",
    "prompt": "newspicgen.prompt_command",
    "batch": "newspicgen.batch",
    "eval": "newspicgen.eval_command",
    "comic": "newspicgen.comic_command",
    "ad": "newspicgen.ad_command",
    "gguf": "prompt_server.gguf_export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newspicgen",
        description="NewsPicGen: Chinese news in, a Stable Diffusion drawing prompt out.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
