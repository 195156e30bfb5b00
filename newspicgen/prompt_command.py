"""`newspicgen prompt`: one news in, NewsPicGen's JSON on stdout.

stdout carries exactly one JSON object (so it can be piped); notes and errors
go to stderr as one line each, with a non-zero exit and no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from prompt_server.client import PromptClient
from prompt_server.defaults import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_DEBUG,
    ENV_SERVER_URL,
    MODE_HELP,
    MODES,
    default_server_url,
)
from prompt_server.errors import PromptServerError
from prompt_server.instruction import DEFAULT_MAX_CONTENT_CHARS, EmptyNewsError, News, build_instruction

HELP = "turn one news article into NewsPicGen's drawing prompt (JSON on stdout)"

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class _InputError(Exception):
    """Bad news input: a one-line message for stderr."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("news (one of: --title/--content, --file, or JSON on stdin)")
    source.add_argument("--title", help="news title")
    source.add_argument("--content", help="news body")
    source.add_argument("--file", metavar="NEWS.json",
                        help='a JSON file {"title": ..., "content": ...} ("-" reads stdin)')
    parser.add_argument("--server", metavar="URL",
                        help=f"prompt server URL (default: ${ENV_SERVER_URL}, else {DEFAULT_SERVER_URL})")
    parser.add_argument("--api-key", help=f"API key the server expects (default: ${ENV_API_KEY})")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=MODE_HELP)
    parser.add_argument("--seed", type=int, help="sampling seed, for repeatable output")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help=f"generation limit in tokens (default {DEFAULT_MAX_TOKENS})")
    parser.add_argument("--max-content-chars", type=int, default=DEFAULT_MAX_CONTENT_CHARS,
                        help=f"cut longer news content at a sentence boundary (default {DEFAULT_MAX_CONTENT_CHARS})")


_NO_NEWS = ('no news given: pass --title and --content, --file NEWS.json, '
            'or pipe {"title": ..., "content": ...} into stdin')


def _parse_json_news(text: str, source: str) -> Dict[str, Any]:
    if source == "stdin" and not text.strip():
        raise _InputError(_NO_NEWS)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _InputError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                          'expected {"title": "...", "content": "..."}') from None
    if not isinstance(data, dict):
        raise _InputError(f'{source} holds a JSON {type(data).__name__}; expected an object '
                          '{"title": "...", "content": "..."}')
    return data


def _read_news(args: argparse.Namespace) -> Dict[str, Any]:
    typed = args.title is not None or args.content is not None
    if args.file is not None:
        if typed:
            raise _InputError("give the news either with --file or with --title/--content, not both")
        if args.file == "-":
            return _parse_json_news(sys.stdin.read(), "stdin")
        try:
            with open(args.file, encoding="utf-8-sig") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise _InputError(f"news file not found: {args.file}") from None
        except IsADirectoryError:
            raise _InputError(f"{args.file} is a folder; give a JSON file") from None
        except UnicodeDecodeError:
            raise _InputError(f"{args.file} is not UTF-8 text; save it as UTF-8 JSON") from None
        except OSError as exc:
            raise _InputError(f"cannot read {args.file}: {exc.strerror or exc}") from None
        return _parse_json_news(text, args.file)
    if typed:
        return {"title": args.title or "", "content": args.content or ""}
    if sys.stdin is not None and not sys.stdin.isatty():
        return _parse_json_news(sys.stdin.read(), "stdin")
    raise _InputError(_NO_NEWS)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        news = News.from_dict(_read_news(args))
        instruction = build_instruction(news, max_content_chars=args.max_content_chars)
        client = PromptClient(args.server or default_server_url(), api_key=args.api_key,
                              timeout=args.timeout, mode=args.mode, max_tokens=args.max_tokens,
                              max_content_chars=args.max_content_chars)
    except (_InputError, EmptyNewsError, ValueError) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    if instruction.notice:
        print(f"note: {instruction.notice} (raise --max-content-chars to keep more)", file=sys.stderr)
    try:
        with client:
            prompt = client.generate(news, seed=args.seed, temperature=args.temperature)
    except PromptServerError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # one line, never a traceback; NEWSPICGEN_DEBUG=1 shows it
        if os.environ.get(ENV_DEBUG):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (set NEWSPICGEN_DEBUG=1 for details)", EXIT_FAILED)
    text = prompt.to_json()
    try:
        print(text)
    except UnicodeEncodeError:  # a non-UTF-8 console (old Windows code pages)
        sys.stdout.buffer.write(text.encode("utf-8") + b"\n")
    sys.stdout.flush()
    return 0
