"""`newspicgen eval --task comic|ad INPUT --out DIR`: how good are the strips / ads?

comic: INPUT rows are stories (id, title, content[, panels]); scores the valid
rate (constrained answers that parse), character consistency (for every
character, the share of the panels naming it whose composed prompt carries its
sheet description verbatim), cast coverage (panel names found on the sheet) and
relevance of each panel's scene prompt to the story (multilingual-e5, as the news
eval). ad: INPUT rows are products (id, product[, facts]); scores the valid rate
and the relevance of the picture prompt to the product facts.

Writes DIR/report.json, DIR/report.md and DIR/items.jsonl; prints one summary line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from newspicgen.ad import compose_ad
from newspicgen.comic import ComposedStrip, compose_strip
from prompt_server.ad_task import AD
from prompt_server.client import PromptClient
from prompt_server.comic_task import COMIC
from prompt_server.errors import PromptServerError
from style_presets.sanitize import neutralize
from style_presets.store import PresetStore


class TaskEvalError(Exception):
    """The run cannot go on; str() is the one line shown."""


def consistency(composed: ComposedStrip) -> Dict[str, Any]:
    """Per character: in how many of the panels naming it its description appears verbatim."""
    per_character: Dict[str, float] = {}
    named = known = 0
    sheet = {c.name: c for c in composed.strip.characters}
    for character in composed.strip.characters:
        panels = [p for p in composed.panels if character.name in p.panel.characters]
        if panels:
            text = neutralize(character.en)
            per_character[character.name] = sum(text in p.request.prompt for p in panels) / len(panels)
    for item in composed.panels:
        named += len(item.panel.characters)
        known += sum(name in sheet for name in item.panel.characters)
    score = statistics.mean(per_character.values()) if per_character else None
    return {"consistency": score, "per_character": per_character, "cast_known": known / named if named else None}


def _read_rows(path: str) -> List[Dict[str, Any]]:
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise TaskEvalError(f"cannot read {path}: {exc.strerror or exc}; pass a JSONL file") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise TaskEvalError(f"{path}: line {number} is not JSON; one object per line") from None
        if not isinstance(row, dict):
            raise TaskEvalError(f"{path}: line {number} is not a JSON object")
        rows.append({"id": str(row.get("id", number)), **row})
    if not rows:
        raise TaskEvalError(f"{path} has no rows")
    return rows


def run_task_eval(args: argparse.Namespace) -> int:
    from newspicgen.relevance import ScorerUnavailable, relevance_scorer
    try:
        rows = _read_rows(args.input)
        scorer = relevance_scorer()  # before any generation: a missing extra must not cost a run
        client = PromptClient(args.server or (COMIC if args.task == "comic" else AD).server()[0],
                              api_key=args.api_key, timeout=args.timeout, retries=1, mode=args.mode,
                              max_tokens=(COMIC if args.task == "comic" else AD).max_tokens or args.max_tokens)
    except (TaskEvalError, ScorerUnavailable, ValueError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 2
    store = PresetStore()
    items = [_comic_item(row, client, store, scorer, args) if args.task == "comic"
             else _ad_item(row, client, store, scorer, args) for row in rows]
    summary = _summary(args.task, items)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "items.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items),
                                     encoding="utf-8")
    (out / "report.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(args.task, summary), encoding="utf-8")
    print(_line(args.task, summary))
    return 0


def _comic_item(row: Dict[str, Any], client: PromptClient, store: PresetStore, scorer: Any,
                args: argparse.Namespace) -> Dict[str, Any]:
    story = {"title": row.get("title") or "", "content": row.get("content") or "", "panels": row.get("panels", 4)}
    try:
        strip = client.generate_task(COMIC, story, seed=args.seed, temperature=args.temperature)
    except (PromptServerError, ValueError) as exc:
        return {"id": row["id"], "valid": False, "error": " ".join(str(exc).split())}
    composed = compose_strip(strip, store)
    query = scorer.embed_news([story])[0]
    relevance = [float(x) for x in scorer.embed_prompts([p.en_prompt for p in strip.panels]) @ query]
    return {"id": row["id"], "valid": True, **consistency(composed), "relevance": relevance}


def _ad_item(row: Dict[str, Any], client: PromptClient, store: PresetStore, scorer: Any,
             args: argparse.Namespace) -> Dict[str, Any]:
    product = {"product": str(row.get("product") or ""), "facts": str(row.get("facts") or "")}
    try:
        ad = client.generate_task(AD, product, seed=args.seed, temperature=args.temperature)
    except (PromptServerError, ValueError) as exc:
        return {"id": row["id"], "valid": False, "error": " ".join(str(exc).split())}
    compose_ad(ad, store)
    query = scorer.embed_news([{"title": product["product"], "content": product["facts"]}])[0]
    return {"id": row["id"], "valid": True, "relevance": float(scorer.embed_prompts([ad.en_prompt])[0] @ query)}


def _mean(values: List[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def _summary(task: str, items: List[Dict[str, Any]]) -> Dict[str, Any]:
    valid = [i for i in items if i["valid"]]
    summary: Dict[str, Any] = {"task": task, "n": len(items), "valid": len(valid),
                               "valid_rate": len(valid) / len(items) if items else 0.0}
    if task == "comic":
        summary["consistency"] = _mean([i["consistency"] for i in valid])
        summary["cast_known"] = _mean([i["cast_known"] for i in valid])
        summary["relevance"] = _mean([statistics.mean(i["relevance"]) for i in valid])
    else:
        summary["relevance"] = _mean([i["relevance"] for i in valid])
    return summary


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _line(task: str, summary: Dict[str, Any]) -> str:
    parts = [f"eval {task}: {summary['valid']}/{summary['n']} valid"]
    if task == "comic":
        parts.append(f"character consistency {_fmt(summary['consistency'])}")
        parts.append(f"cast on the sheet {_fmt(summary['cast_known'])}")
    parts.append(f"relevance {_fmt(summary['relevance'])}")
    return ", ".join(parts)


def _markdown(task: str, summary: Dict[str, Any]) -> str:
    rows = "".join(f"| {key} | {_fmt(value) if isinstance(value, float) else value} |\n"
                   for key, value in summary.items())
    return f"# NewsPicGen eval: {task}\n\n| measure | value |\n|---|---|\n{rows}"
