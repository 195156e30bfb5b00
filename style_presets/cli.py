"""`python -m style_presets`: list, show, check, compose, export, import.

Errors are one line on stderr and a non-zero exit; no tracebacks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, NoReturn, Optional

import pydantic

from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability, missing
from style_presets.bases import BASE_CODES
from style_presets.compose import compose
from style_presets.interop import export_a1111_csv, import_a1111_csv, import_fooocus
from style_presets.preset import StylePreset
from style_presets.store import PresetStore, default_user_dir


class CliError(Exception):
    """A user mistake: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m style_presets", description=__doc__.splitlines()[0])
    parser.add_argument("--preset-dir", help=f"user preset folder (default: {default_user_dir()})")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", help="list presets (name, family, base, types, origin)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", help="print one preset as JSON")
    p.add_argument("name")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("check", help="report broken preset files and, given the WebUI's lists, "
                                     "missing LoRAs / embeddings")
    _availability_args(p)
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("compose", help="compose a request from a PicturePrompt JSON on stdin")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", help="preset name")
    which.add_argument("--type-default", action="store_true", help="the default preset for the prompt's type")
    p.add_argument("--family", help="with --type-default: pick the default within this family")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set steps=30 --set seed=42")
    _availability_args(p)
    p.set_defaults(run=cmd_compose)

    p = sub.add_parser("export", help="export presets to an A1111 styles.csv")
    p.add_argument("--format", required=True, choices=["a1111-csv"])
    p.add_argument("--family", help="only this family")
    p.add_argument("out", help="file to write")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("import", help="import A1111 styles.csv or Fooocus style JSON as presets")
    p.add_argument("--format", required=True, choices=["a1111-csv", "fooocus"])
    p.add_argument("--into", required=True, help="folder to write the presets to")
    p.add_argument("--family", help="family of the imported presets (default: a1111-styles / fooocus)")
    p.add_argument("--embeddings", help="the WebUI's /sdapi/v1/embeddings JSON: names found in the "
                                        "text become embedding references")
    p.add_argument("--base", choices=BASE_CODES, help="the model family the styles are for (default: sdxl for "
                                                      "Fooocus, which runs SDXL only; unset for a styles.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace presets of the same name")
    p.add_argument("--replace-builtins", action="store_true",
                   help="let imported styles named like built-in presets replace them")
    p.add_argument("file")
    p.set_defaults(run=cmd_import)
    for command in sub.choices.values():  # also accepted after the command name
        command.add_argument("--preset-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _availability_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loras", help="JSON saved from the WebUI's GET /sdapi/v1/loras")
    p.add_argument("--embeddings", help="JSON saved from the WebUI's GET /sdapi/v1/embeddings")


def _store(args: argparse.Namespace) -> PresetStore:
    return PresetStore(args.preset_dir)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows: List[Dict[str, Any]] = [{"name": p.name, "family": p.family, "base": p.base, "types": p.types,
             "builtin": store.is_builtin(p.name), "needs": _needs(p), "description": p.description}
            for p in store.list()]
    if args.json:
        _print_json(rows)
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            origin = "built-in" if r["builtin"] else "user"
            needs = f"  needs {', '.join(r['needs'])}" if r["needs"] else ""
            print(f"{r['name']:<{width}}  {r['family']:<18} {r['base'] or 'any':<5} "
                  f"types {','.join(r['types']):<15} {origin}{needs}")
    for error in store.errors:
        print(f"warning: {error}", file=sys.stderr)
    return 0


def _needs(preset: StylePreset) -> List[str]:
    """The LoRAs and embeddings a preset names (a fresh WebUI has none of them)."""
    return [*(ref.name for ref in preset.loras), *preset.embeddings, *preset.negative_embeddings]


def cmd_show(args: argparse.Namespace) -> int:
    store = _store(args)
    _print_json(store.get(args.name).to_dict())
    return 0


def _availability(args: argparse.Namespace) -> Optional[Availability]:
    if not (args.loras or args.embeddings):
        return None
    available = Availability.from_files(args.loras, args.embeddings)
    return available


def cmd_check(args: argparse.Namespace) -> int:
    store = _store(args)
    problems = [str(error) for error in store.errors]
    available = _availability(args)
    if available is not None:
        for preset in store.list():
            absent = missing(preset, available)
            # Without a list for one kind, nothing of that kind can be judged.
            if not args.loras:
                absent["loras"] = []
            if not args.embeddings:
                absent["embeddings"] = []
            for kind in ("loras", "embeddings"):
                if absent[kind]:
                    problems.append(f"{preset.name}: missing {kind}: {', '.join(absent[kind])}")
    for line in problems:
        print(line)
    short = len({line.split(": missing ")[0] for line in problems[len(store.errors):]})
    print(f"{len(store.list())} presets loaded, {len(store.errors)} broken files, "
          f"{short} presets with missing references", file=sys.stderr)
    return 1 if problems else 0


def _parse_overrides(items: List[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set {item!r}: write KEY=VALUE, e.g. --set steps=30")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value  # plain text such as a sampler name
    return overrides


def cmd_compose(args: argparse.Namespace) -> int:
    if args.family and not args.type_default:
        raise CliError("--family only applies with --type-default")
    text = sys.stdin.read()
    if not text.strip():
        raise CliError("no PicturePrompt JSON on stdin; pipe one in, e.g. the output of "
                       "`python -m prompt_server prompt` | python -m style_presets compose --type-default")
    try:
        picture_prompt = PicturePrompt.from_json(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"stdin is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "(object)"
        raise CliError(f"stdin is not a PicturePrompt: {where}: {first.get('msg')} (needs ch_keyword, "
                       "ch_prompt, en_keyword, en_prompt and type \"1\"..\"8\")") from None
    store = _store(args)
    preset = store.resolve(args.preset, picture_prompt.type, args.family)
    request = compose(picture_prompt, preset, _parse_overrides(args.overrides),
                      available=_availability(args))
    for warning in request.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _print_json(request.to_dict())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    presets = [p for p in store.list() if not args.family or p.family == args.family]
    if not presets:
        raise CliError(f"no presets in family {args.family!r}; families: {', '.join(store.families())}")
    count = export_a1111_csv(presets, args.out)
    print(f"wrote {count} styles to {args.out}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    known = set()
    if args.embeddings:
        known = Availability.from_files(None, args.embeddings).embeddings
    else:  # embeddings our presets already use are recognised without a list
        for preset in _store(args).list():
            known.update(preset.embeddings, preset.negative_embeddings)
    reader = import_a1111_csv if args.format == "a1111-csv" else import_fooocus
    kwargs: Dict[str, Any] = {"known_embeddings": known}
    if args.family:
        kwargs["family"] = args.family
    if args.base:
        kwargs["base"] = args.base
    presets = reader(args.file, **kwargs)
    target = PresetStore(args.into)
    names = [p.name for p in presets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CliError(f"{args.file} holds several styles named {', '.join(duplicates)}; rename them first")
    shadowed = [p.name for p in presets if p.name in target.builtin_names()]
    if shadowed and not args.replace_builtins:
        # An exported styles.csv holds the built-ins: importing it back would hide them all
        # behind copies in another family, and the per-type defaults would be gone.
        raise CliError(f"{args.file} has {len(shadowed)} styles named like built-in presets "
                       f"({', '.join(shadowed[:3])}{', ...' if len(shadowed) > 3 else ''}); they would "
                       "replace the built-ins: rename those rows, or pass --replace-builtins if you mean it")
    taken = [p.name for p in presets if p.name in target.user_names()]
    if taken and not args.overwrite:
        raise CliError(f"{args.into} already has {', '.join(taken)}; pass --overwrite to replace "
                       "them (the old files are kept as .bak)")
    for preset in presets:
        target.save(preset)
    print(f"imported {len(presets)} presets into {args.into}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:  # `... list | head`: the reader has all it wants
        # Point stdout at devnull so the interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a program killed by SIGPIPE would
    except pydantic.ValidationError as exc:  # a safety net; known cases are worded where they occur
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        print(f"error: {where}: {first.get('msg')}", file=sys.stderr)
        return 1
    except (CliError, ValueError, KeyError, OSError) as exc:
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{exc.strerror}: {exc.filename}"
        else:
            message = " ".join(str(exc).split())  # always one line
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
