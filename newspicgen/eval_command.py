"""`newspicgen eval INPUT --out DIR`: how good are the prompts for these articles?

INPUT is the batch command's JSONL/CSV (id, title, content) plus two optional
columns: `type` (the expected picture type: "2", "person" or "人物") and
`reference` (an English reference prompt). The prompts come from a server
(--server, generated now) or from a file made before (--prompts, e.g. a batch's
prompts.jsonl, joined by id). --compare adds a second server or file: the same
articles side by side.

Exit status: 0 report written, 2 bad input or the run could not start.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from prompt_server.defaults import DEFAULT_MODE, MODE_HELP, MODES

HELP = ("measure prompt quality on a file of articles: valid output, type accuracy, relevance "
        "to the article, latency (report.json, report.md, plots)")


class EvalError(Exception):
    """The run cannot go on; str() is the one line shown to the user."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT",
                        help="JSONL or CSV with title, content, optional id, type (expected picture type) "
                             "and reference (English reference prompt)")
    parser.add_argument("--task", choices=("news", "comic", "ad"), default="news",
                        help="what to score: news pictures (default), comic strips (INPUT: stories) or "
                             "ads (INPUT: JSONL of product, facts); see newspicgen/task_eval.py")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="report folder: report.json, report.md, items.jsonl, *.png")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--server", metavar="URL", default=None,
                        help="generate the prompts with this prompt server "
                             "(default: $NEWSPICGEN_SERVER_URL or http://127.0.0.1:30000)")
    source.add_argument("--prompts", metavar="PROMPTS.jsonl", default=None,
                        help="score prompts made before instead (a batch's prompts.jsonl, or JSONL of "
                             "{\"id\", the five PicturePrompt fields}), joined to INPUT by id")
    parser.add_argument("--compare", metavar="URL_OR_FILE", default=None,
                        help="a second prompt server (http://...) or prompts file: both side by side")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="API key of the prompt server(s) (default: $NEWSPICGEN_API_KEY)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=MODE_HELP)
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling seed for every article (default 0, so reruns are comparable)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                        help="requests in flight at once (default 4; 1 measures unloaded latency)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds to wait for one prompt (default 120)")
    parser.add_argument("--max-tokens", type=_positive_int, default=768, metavar="N",
                        help="generation limit in tokens (default 768)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def run(args: argparse.Namespace) -> int:
    from newspicgen.relevance import ScorerUnavailable
    try:
        return _run(args)
    except (EvalError, ScorerUnavailable) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "task", "news") != "news":
        from newspicgen.task_eval import run_task_eval
        return run_task_eval(args)
    from newspicgen.eval_report import check_matplotlib, write_report
    from newspicgen.evaluate import compare, evaluate
    from newspicgen.relevance import reference_scorer, relevance_scorer

    outcomes_template = _read_input(args.input)
    specs = [_primary_spec(args)] + ([_compare_spec(args.compare)] if args.compare else [])
    # Load everything the report needs now: a missing extra must not cost a generation run.
    check_matplotlib()
    scorer = relevance_scorer()
    ref = reference_scorer() if any(o.reference for o in outcomes_template) else None
    runs = [_collect(spec, outcomes_template, args, label)
            for spec, label in zip(specs, ("A", "B") if len(specs) > 1 else ("",), strict=False)]
    evaluations = [evaluate(outcomes, relevance=scorer, reference=ref) for outcomes in runs]
    comparison = compare(*evaluations) if len(evaluations) == 2 else None
    out = Path(args.out)
    try:
        written = write_report(out, evaluations, [spec[1] for spec in specs], args.input, comparison)
    except OSError as exc:
        raise EvalError(f"cannot write the report to {str(out)!r}: {exc.strerror or exc}; "
                        "pick a writable --out folder") from None
    for evaluation, (_, source) in zip(evaluations, specs, strict=False):
        print(_summary_line(evaluation.summary, source))
    print(f"eval: report {out / 'report.md'} (and {', '.join(p.name for p in written if p.name != 'report.md')})")
    return 0


# ------------------------------------------------------------------ input

def _read_input(path: str):
    from newspicgen.batch_io import InputError, read_articles
    from newspicgen.evaluate import Outcome
    from prompt_server.schema import PictureType

    try:
        articles, bad_rows = read_articles(path)
    except (InputError, OSError) as exc:
        raise EvalError(str(exc)) from None
    for row in bad_rows:
        print(f"eval: skipped {path}:{row}", file=sys.stderr)
    if not articles:
        raise EvalError(f"{path} has no usable articles; each row needs a content "
                        "(and optionally id, title, type, reference)")
    outcomes = []
    for article in articles:
        label = article.extra.get("type")
        if label is not None and str(label).strip():
            try:
                label = PictureType.parse(label).value
            except ValueError as exc:
                print(f"eval: {path}: line {article.line}: {exc}; the row counts as unlabelled",
                      file=sys.stderr)
                label = None
        else:
            label = None
        reference = article.extra.get("reference")
        reference = reference.strip() if isinstance(reference, str) and reference.strip() else None
        outcomes.append(Outcome(id=article.id, news=article.news_dict(), label=label, reference=reference))
    return outcomes


# ------------------------------------------------------------------ where prompts come from

def _primary_spec(args) -> Tuple[str, str]:
    from prompt_server.defaults import default_server_url
    if args.prompts:
        return "prompts", args.prompts
    return "server", args.server or default_server_url()


def _compare_spec(text: str) -> Tuple[str, str]:
    if text.lower().startswith(("http://", "https://")):
        return "server", text
    if not Path(text).is_file():
        raise EvalError(f"--compare {text!r} is neither a server URL (http://host:port) nor an existing "
                        "prompts file")
    return "prompts", text


def _collect(spec: Tuple[str, str], template, args, label: str):
    kind, where = spec
    if kind == "prompts":
        return _from_prompts_file(where, template)
    return _from_server(where, template, args, label)


def _from_prompts_file(path: str, template):
    """Join a prompts file to the articles by id; an article without a record counts as invalid."""
    from dataclasses import replace

    records, problems = _read_prompt_records(path)
    for problem in problems[:10]:
        print(f"eval: {path}: {problem}", file=sys.stderr)
    if len(problems) > 10:
        print(f"eval: {path}: ... and {len(problems) - 10} more unreadable lines", file=sys.stderr)
    matched = sum(1 for o in template if o.id in records)
    if not matched:
        sample_ids = ", ".join(repr(i) for i in list(records)[:3]) or "none"
        raise EvalError(f"no id in {path} matches an article of the input (its ids: {sample_ids}; the input's: "
                        f"{', '.join(repr(o.id) for o in template[:3])}); pass the INPUT file the prompts "
                        "were made from (rows without an id get one derived from their text)")
    outcomes = []
    for o in template:
        record = records.get(o.id)
        if record is None:
            outcomes.append(replace(o, error=f"missing: no record with this id in {path}"))
            continue
        prompt, error = _parse_record(record)
        latency = record.get("latency_ms")
        outcomes.append(replace(o, prompt=prompt, error=error,
                                latency_ms=float(latency) if isinstance(latency, (int, float)) else None))
    return outcomes


def _read_prompt_records(path: str) -> Tuple[Dict[str, dict], List[str]]:
    """Read-only (unlike batch_io.read_jsonl, which repairs a crashed log in place). Later lines win."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        raise EvalError(f"prompts file {path!r} not found; pass a batch's prompts.jsonl") from None
    except IsADirectoryError:
        raise EvalError(f"{path!r} is a folder; pass the prompts.jsonl inside it") from None
    except UnicodeDecodeError:
        raise EvalError(f"{path!r} is not UTF-8 text; expected JSONL") from None
    records: Dict[str, dict] = {}
    problems: List[str] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            problems.append(f"line {number}: not valid JSON ({exc})")
            continue
        if not isinstance(record, dict) or record.get("id") is None:
            problems.append(f"line {number}: expected a JSON object with an \"id\"")
            continue
        records[str(record["id"]).strip()] = record
    return records, problems


def _parse_record(record: dict):
    """(PicturePrompt, None) or (None, why): a batch record nests the prompt, a flat one is the prompt."""
    from prompt_server.compat import ValidationError, first_error
    from prompt_server.schema import FIELD_ORDER, PicturePrompt

    data = record.get("picture_prompt")
    if data is None:
        data = {k: record[k] for k in FIELD_ORDER if k in record}
    if not isinstance(data, dict) or not data:
        return None, "invalid: the record has no picture_prompt (nor the five prompt fields)"
    try:
        return PicturePrompt.from_dict(data), None
    except ValidationError as exc:
        return None, f"invalid: {first_error(exc)}"


def _from_server(url: str, template, args, label: str):
    from dataclasses import replace

    from prompt_server.client import PromptClient
    from prompt_server.errors import PromptServerError

    try:
        client = PromptClient(base_url=url, api_key=args.api_key, timeout=args.timeout, retries=1,
                              mode=args.mode, max_tokens=args.max_tokens)
    except ValueError as exc:  # a malformed URL
        raise EvalError(str(exc)) from None
    info = client.health()
    if not info.ok:
        raise EvalError(" ".join(str(info.error or f"the prompt server at {url} is not ready").split()))

    def one(o):
        started = time.perf_counter()
        try:
            prompt = client.generate(o.news, seed=args.seed, temperature=args.temperature)
        except (PromptServerError, ValueError) as exc:
            return replace(o, error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return replace(o, prompt=prompt, latency_ms=(time.perf_counter() - started) * 1000.0)

    return _map_with_progress(one, template, args.concurrency, f"eval {label}".strip())


def _map_with_progress(fn, items: Sequence, concurrency: int, desc: str) -> List:
    """fn over items in input order, a tqdm bar on a terminal; Ctrl-C drops what has not started."""
    from tqdm import tqdm

    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items))), thread_name_prefix="eval")
    try:
        futures = [pool.submit(fn, item) for item in items]
        with tqdm(total=len(items), desc=desc, unit="article", file=sys.stderr,
                  disable=not sys.stderr.isatty(), dynamic_ncols=True) as bar:
            for future in futures:
                future.result()
                bar.update(1)
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------ summary

def _summary_line(summary: dict, source: str) -> str:
    parts = [f"eval: {source}: {summary['valid']}/{summary['n']} valid"]
    if summary["type_accuracy"] is not None:
        parts.append(f"type accuracy {100 * summary['type_accuracy']:.1f}% of {summary['confusion']['n']}")
    rel = summary.get("relevance") or {}
    if rel.get("mean") is not None:
        shuffled = (f" vs {rel['shuffled_mean']:.3f} mismatched (margin {rel['margin']:+.3f})"
                    if rel.get("shuffled_mean") is not None else "")
        parts.append(f"relevance {rel['mean']:.3f}{shuffled}")
    ref = summary.get("reference_similarity")
    if ref:
        parts.append(f"reference similarity {ref['mean']:.3f} over {ref['n']}")
    lat: Optional[dict] = summary.get("latency_ms")
    if lat:
        parts.append(f"latency p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms")
    return ", ".join(parts)
