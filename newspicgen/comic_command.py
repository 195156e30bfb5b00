"""`newspicgen comic`: a story in, a comic strip's prompts out (one JSON object on stdout);
`newspicgen comic NEWS.jsonl --out DIR [--webui URL]`: a file of stories, resumable
(newspicgen.comic_batch)."""
from __future__ import annotations

import argparse
import os
import sys

from newspicgen.comic import compose_strip
from newspicgen.task_cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    CommandError,
    add_task_arguments,
    fail,
    overrides,
    preset_store,
    print_json,
    task_client,
)
from prompt_server.comic_task import COMIC, MAX_PANELS, MIN_PANELS, ComicInput
from prompt_server.defaults import ENV_DEBUG
from prompt_server.errors import PromptServerError
from prompt_server.instruction import EmptyNewsError
from style_presets.compose import OverrideError

HELP = "turn a story into a comic strip: characters and 2-8 panels (JSON on stdout); or a file of them (--out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", nargs="?", default=None,
                        help="JSONL/CSV of stories (id, title, content[, panels]): a batch into --out")
    parser.add_argument("--title", help="story / news title")
    parser.add_argument("--content", help="story / news text")
    parser.add_argument("--panels", type=int, default=4, help=f"panels, {MIN_PANELS}-{MAX_PANELS} (default 4)")
    parser.add_argument("--seed-step", type=int, choices=(0, 1), default=0,
                        help="0: every panel gets the strip's seed (default); 1: panel i gets seed+i")
    add_task_arguments(parser, COMIC, None)
    batch = parser.add_argument_group("batch (with INPUT)")
    batch.add_argument("--out", metavar="DIR", help="output folder: comics.jsonl, failed.jsonl, images/")
    batch.add_argument("--webui", metavar="URL", help="also draw every panel with this WebUI (started with --api)")
    batch.add_argument("--webui-auth", metavar="USER:PASSWORD", help="the WebUI's --api-auth credentials")
    batch.add_argument("--font", metavar="FILE", help="CJK font for the captions (default: found on the system)")


def run(args: argparse.Namespace) -> int:
    if args.input is not None:
        from newspicgen.comic_batch import run_batch
        return run_batch(args)
    if args.out or args.webui:
        return fail("--out and --webui go with an INPUT file of stories; give one, or drop them", EXIT_BAD_INPUT)
    if args.title is None and args.content is None:
        return fail("no story given: pass --title and --content (or an INPUT file with --out)", EXIT_BAD_INPUT)
    try:
        story = ComicInput.parse({"title": args.title or "", "content": args.content or "", "panels": args.panels})
        store = preset_store(args)
        client = task_client(args, COMIC)
    except CommandError as exc:
        return fail(str(exc), exc.code)
    except ValueError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        with client:
            strip = client.generate_task(COMIC, story, seed=args.seed, temperature=args.temperature)
        composed = compose_strip(strip, store, family=args.family, preset=args.preset,
                                 seed=args.image_seed, seed_step=args.seed_step, overrides=overrides(args))
    except (EmptyNewsError, OverrideError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except PromptServerError as exc:
        return fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # one line, never a traceback; NEWSPICGEN_DEBUG=1 shows it
        if os.environ.get(ENV_DEBUG):
            raise
        return fail(f"unexpected {type(exc).__name__}: {exc} (set NEWSPICGEN_DEBUG=1 for details)", EXIT_FAILED)
    for warning in composed.warnings:
        print(f"note: {warning}", file=sys.stderr)
    print_json(composed.to_dict())
    return 0
