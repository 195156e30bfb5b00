"""`newspicgen ad --product TEXT`: product facts in, Chinese ad copy and a picture prompt out
(one JSON object on stdout)."""
from __future__ import annotations

import argparse
import os
import sys

from newspicgen.ad import AD_FAMILY, compose_ad
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
from prompt_server.ad_task import AD, AdInput
from prompt_server.defaults import ENV_DEBUG
from prompt_server.errors import PromptServerError
from prompt_server.instruction import EmptyNewsError
from style_presets.compose import OverrideError

HELP = "turn product facts into a Chinese ad (headline, copy) and a poster picture prompt (JSON on stdout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--product", required=True,
                        help="product name or facts: free text or AdvertiseGen's 类型#裙*颜色#蓝色*风格#清新")
    parser.add_argument("--facts", default="", help="more facts about the product (same forms)")
    add_task_arguments(parser, AD, AD_FAMILY)


def run(args: argparse.Namespace) -> int:
    try:
        product = AdInput.parse({"product": args.product, "facts": args.facts})
        store = preset_store(args)
        client = task_client(args, AD)
    except CommandError as exc:
        return fail(str(exc), exc.code)
    except ValueError as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    try:
        with client:
            ad = client.generate_task(AD, product, seed=args.seed, temperature=args.temperature)
        composed = compose_ad(ad, store, family=args.family, preset=args.preset, seed=args.image_seed,
                              overrides=overrides(args))
    except (EmptyNewsError, OverrideError) as exc:
        return fail(str(exc), EXIT_BAD_INPUT)
    except PromptServerError as exc:
        return fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # one line, never a traceback; NEWSPICGEN_DEBUG=1 shows it
        if os.environ.get(ENV_DEBUG):
            raise
        return fail(f"unexpected {type(exc).__name__}: {exc} (set NEWSPICGEN_DEBUG=1 for details)", EXIT_FAILED)
    for warning in composed.request.warnings:
        print(f"note: {warning}", file=sys.stderr)
    print_json(composed.to_dict())
    return 0
