"""`python -m prompt_server`: the model side's own command line, `serve` and `prompt`.

For a machine that runs only the prompt server (its own venv, no WebUI, no
`newspicgen` core): `serve` is `newspicgen serve`; `prompt` sends one news
article to a running server and prints NewsPicGen's JSON. The full command
line (batch, eval, presets) is `newspicgen`.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from prompt_server import launcher
from prompt_server.client import PromptClient
from prompt_server.defaults import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_SERVER_URL,
    MODES,
    default_server_url,
)
from prompt_server.errors import PromptServerError
from prompt_server.instruction import EmptyNewsError, News

PROMPT_HELP = "send one news article to a running prompt server and print NewsPicGen's JSON"


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--title", required=True, help="news title")
    parser.add_argument("--content", required=True, help="news body")
    parser.add_argument("--server", metavar="URL",
                        help=f"prompt server URL (default: ${ENV_SERVER_URL}, else {DEFAULT_SERVER_URL})")
    parser.add_argument("--api-key", help=f"API key the server expects (default: ${ENV_API_KEY})")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="output constraint (default %(default)s)")
    parser.add_argument("--seed", type=int, help="sampling seed, for repeatable output")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help="sampling temperature (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds to wait for the answer (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help="generation limit in tokens (default %(default)s)")


def run_prompt(args: argparse.Namespace) -> int:
    try:
        news = News(args.title, args.content)
        client = PromptClient(args.server or default_server_url(), api_key=args.api_key, timeout=args.timeout,
                              mode=args.mode, max_tokens=args.max_tokens)
        with client:
            prompt = client.generate(news, seed=args.seed, temperature=args.temperature)
    except (EmptyNewsError, ValueError, PromptServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (EmptyNewsError, ValueError)) else 1
    sys.stdout.buffer.write(prompt.to_json().encode("utf-8") + b"\n")
    sys.stdout.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prompt_server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser("serve", help=launcher.HELP, description=launcher.HELP)
    launcher.add_arguments(serve)
    serve.set_defaults(_run=launcher.run)
    prompt = sub.add_parser("prompt", help=PROMPT_HELP, description=PROMPT_HELP)
    add_prompt_arguments(prompt)
    prompt.set_defaults(_run=run_prompt)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
