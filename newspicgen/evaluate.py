"""The numbers of `newspicgen eval`: validity, type accuracy, relevance, reference similarity, latency.

Input is one Outcome per article (whatever produced it: a server now, or a
prompts file from before); output is an Evaluation: a JSON-ready summary, one
record per article, and the mismatched-pair scores the relevance plot needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from newspicgen.batch_progress import percentile
from prompt_server.schema import PicturePrompt, PictureType

TYPE_CODES = [t.value for t in PictureType]
# Mismatched pairs for the baseline: each article against the prompts of up to this
# many others (cyclic shifts), so the cost stays linear in n; below 21 prompts it is every pair.
SHUFFLE_SHIFTS = 20


@dataclass
class Outcome:
    """One article and what the model made of it (prompt None: no valid output, error says why)."""
    id: str
    news: Dict[str, str]
    label: Optional[str] = None          # the expected type code "1".."8", if the input has one
    reference: Optional[str] = None      # an English reference prompt, if the input has one
    prompt: Optional[PicturePrompt] = None
    error: Optional[str] = None
    latency_ms: Optional[float] = None


@dataclass
class Evaluation:
    summary: Dict[str, Any]
    items: List[Dict[str, Any]]
    shuffled_scores: List[float] = field(default_factory=list)


def _mean(values: Sequence[float]) -> Optional[float]:
    return float(sum(values) / len(values)) if values else None


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def evaluate(outcomes: Sequence[Outcome], relevance=None, reference=None) -> Evaluation:
    """relevance: a RelevanceScorer (None skips relevance); reference: a ReferenceScorer or None."""
    n = len(outcomes)
    valid = [o for o in outcomes if o.prompt is not None]
    items = [_item(o) for o in outcomes]
    by_id = {item["id"]: item for item in items}
    summary: Dict[str, Any] = {"n": n, "valid": len(valid), "valid_rate": _round(len(valid) / n if n else None)}
    errors: Dict[str, int] = {}
    for o in outcomes:
        if o.prompt is None:
            kind = (o.error or "no output").split(":")[0]
            errors[kind] = errors.get(kind, 0) + 1
    summary["errors"] = errors
    summary.update(_type_metrics(outcomes))

    shuffled: List[float] = []
    if relevance is not None:
        rel, shuffled = _relevance(valid, relevance)
        for o, score in zip(valid, rel["scores"], strict=False):
            by_id[o.id]["relevance"] = _round(score)
        summary["relevance"] = rel["summary"]
    with_reference = [o for o in valid if o.reference]
    if reference is not None and with_reference:
        sims = reference.similarity([o.prompt for o in with_reference], [o.reference for o in with_reference])
        for o, sim in zip(with_reference, sims, strict=False):
            by_id[o.id]["reference_similarity"] = _round(sim)
        summary["reference_similarity"] = {
            "model": reference.name, "n": len(sims), "mean": _round(_mean(sims)),
            "references": sum(1 for o in outcomes if o.reference)}
    else:
        summary["reference_similarity"] = None

    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    summary["latency_ms"] = ({"n": len(latencies), "p50": _round(percentile(latencies, 50), 1),
                              "p95": _round(percentile(latencies, 95), 1)} if latencies else None)
    return Evaluation(summary=summary, items=items, shuffled_scores=shuffled)


def _item(o: Outcome) -> Dict[str, Any]:
    item: Dict[str, Any] = {"id": o.id, "valid": o.prompt is not None, "label": o.label,
                            "type": o.prompt.type if o.prompt is not None else None}
    if o.prompt is not None:
        item["en_prompt"] = o.prompt.en_prompt
    if o.error:
        item["error"] = o.error
    if o.latency_ms is not None:
        item["latency_ms"] = _round(o.latency_ms, 1)
    return item


def _type_metrics(outcomes: Sequence[Outcome]) -> Dict[str, Any]:
    """Accuracy and the 8x8 confusion (rows: the label, columns: the model's type) over
    labelled articles with a valid prompt; an invalid output has no type to confuse."""
    labelled = [o for o in outcomes if o.label is not None]
    scored = [o for o in labelled if o.prompt is not None]
    matrix = [[0] * len(TYPE_CODES) for _ in TYPE_CODES]
    for o in scored:
        assert o.label is not None and o.prompt is not None  # filtered above
        matrix[TYPE_CODES.index(o.label)][TYPE_CODES.index(o.prompt.type)] += 1
    correct = sum(matrix[i][i] for i in range(len(TYPE_CODES)))
    return {
        "labelled": len(labelled),
        "type_accuracy": _round(correct / len(scored) if scored else None),
        "confusion": {"labels": TYPE_CODES, "names": [PictureType(c).en for c in TYPE_CODES],
                      "rows": "label", "columns": "model", "n": len(scored), "matrix": matrix},
    }


def _relevance(valid: Sequence[Outcome], scorer) -> tuple:
    if not valid:
        return {"scores": [], "summary": {"model": scorer.name, "n": 0, "mean": None,
                                          "shuffled_mean": None, "margin": None}}, []
    news = scorer.embed_news([o.news for o in valid])
    prompts = scorer.embed_prompts([o.prompt for o in valid])
    matched = [float(x) for x in (news * prompts).sum(axis=1)]
    shuffled: List[float] = []
    m = len(valid)
    for shift in range(1, min(m - 1, SHUFFLE_SHIFTS) + 1):
        shuffled.extend(float(x) for x in (news * prompts[[(i + shift) % m for i in range(m)]]).sum(axis=1))
    mean, shuffled_mean = _mean(matched), _mean(shuffled)
    margin = None if shuffled_mean is None or mean is None else mean - shuffled_mean
    return {"scores": matched, "summary": {
        "model": scorer.name, "n": m, "mean": _round(mean), "shuffled_mean": _round(shuffled_mean),
        "margin": _round(margin), "shuffled_pairs": len(shuffled)}}, shuffled


def compare(a: Evaluation, b: Evaluation) -> Dict[str, Any]:
    """Paired differences over the articles both sides answered validly (B minus A)."""
    b_items = {item["id"]: item for item in b.items}
    pairs = [(x, b_items[x["id"]]) for x in a.items if x["id"] in b_items]
    both = [(x, y) for x, y in pairs if x["valid"] and y["valid"]]
    rel = [(x["relevance"], y["relevance"]) for x, y in both if "relevance" in x and "relevance" in y]
    return {
        "n_both_valid": len(both),
        "type_agreement": _round(_mean([float(x["type"] == y["type"]) for x, y in both])),
        "relevance_mean_diff": _round(_mean([y - x for x, y in rel])),
        "b_more_relevant_rate": _round(_mean([float(y > x) for x, y in rel])),
    }
