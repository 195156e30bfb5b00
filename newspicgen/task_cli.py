"""What `newspicgen comic` and `newspicgen ad` share: the server and preset options,
the client for a task's own server, and one-line errors.

A task runs on its own server/model when NEWSPICGEN_<TASK>_SERVER_URL / _MODEL
(or --server / --model) name one: the NewsPicGen fine-tune knows news only, and
a general instruct model (SGLang, vLLM, Ollama, LM Studio) writes better strips.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional

from prompt_server.client import PromptClient
from prompt_server.defaults import DEFAULT_TEMPERATURE, DEFAULT_TIMEOUT_S, ENV_API_KEY, MODES
from prompt_server.task import Task
from style_presets.store import PresetNotFound, PresetStore

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


class CommandError(Exception):
    """A one-line message for stderr; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


def add_task_arguments(parser: argparse.ArgumentParser, task: Task, default_family: Optional[str]) -> None:
    env = f"NEWSPICGEN_{task.name.upper()}_"
    parser.add_argument("--server", metavar="URL", default=None,
                        help=f"prompt server URL (default: ${env}SERVER_URL, else the news server)")
    parser.add_argument("--model", default=None,
                        help=f"model id sent to the server (default: ${env}MODEL, else newspicgen)")
    parser.add_argument("--api-key", default=None, help=f"API key the server expects (default: ${ENV_API_KEY})")
    parser.add_argument("--mode", choices=MODES, default=MODES[0],
                        help="output constraint: regex (SGLang, our engine) or json_schema "
                             "(vLLM, llama.cpp, Ollama, LM Studio)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed of the prompt model")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S * 2,
                        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S * 2:g})")
    parser.add_argument("--max-tokens", type=int, default=task.max_tokens,
                        help=f"generation limit in tokens (default {task.max_tokens})")
    parser.add_argument("--family", default=default_family,
                        help=f"preset family (default: {default_family or 'the default family'})")
    parser.add_argument("--preset", default=None, help="one preset for every picture (default: the family's)")
    parser.add_argument("--preset-dir", default=None, metavar="DIR",
                        help="user preset folder (default: $NEWSPICGEN_PRESET_DIR or the per-user folder)")
    parser.add_argument("--image-seed", type=int, default=None,
                        help="txt2img seed (default: the preset's; a strip picks one for all its panels)")


def task_client(args: argparse.Namespace, task: Task) -> PromptClient:
    url, model = task.server()
    try:
        return PromptClient(args.server or url, api_key=args.api_key, timeout=args.timeout, mode=args.mode,
                            max_tokens=args.max_tokens, model=args.model or model)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def preset_store(args: argparse.Namespace) -> PresetStore:
    """The store, with --preset / --family checked now: a typo fails before the slow model call."""
    store = PresetStore(args.preset_dir)
    for error in store.errors:
        print(f"note: preset file ignored: {error}", file=sys.stderr)
    try:
        if args.preset:
            store.get(args.preset)
        elif args.family and args.family not in store.families():
            raise PresetNotFound(args.family, store.families(), "preset family")
    except PresetNotFound as exc:
        raise CommandError(str(exc)) from None
    return store


def overrides(args: argparse.Namespace) -> Dict[str, Any]:
    return {} if args.image_seed is None else {"seed": args.image_seed}


def print_json(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    try:
        print(text)
    except UnicodeEncodeError:  # a non-UTF-8 console
        sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()


def fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code
