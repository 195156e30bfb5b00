"""The files of `newspicgen eval`: report.json (machines), report.md (people), items.jsonl, PNG plots.

One run writes confusion.png and relevance.png; a comparison writes
confusion_a.png, confusion_b.png and one relevance.png with both runs.
Plots use matplotlib's object API (Figure + savefig): no GUI backend, no pyplot state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from newspicgen.evaluate import Evaluation


def check_matplotlib() -> None:
    """Fail before any work is done, not after an hour of generation."""
    from newspicgen.relevance import ScorerUnavailable
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ScorerUnavailable("matplotlib", f"not importable: {exc}") from None


def write_report(out: Path, runs: Sequence[Evaluation], sources: Sequence[str], input_path: str,
                 comparison: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Write every file; return their paths. One run: metrics at the top level of report.json;
    two: {"a": ..., "b": ..., "comparison": ...}."""
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    if len(runs) == 1:
        report: Dict[str, Any] = {"input": input_path, "source": sources[0], **runs[0].summary}
        items = runs[0].items
    else:
        report = {"input": input_path,
                  "a": {"source": sources[0], **runs[0].summary},
                  "b": {"source": sources[1], **runs[1].summary},
                  "comparison": comparison}
        b_items = {item["id"]: item for item in runs[1].items}
        items = [{"id": item["id"], "a": item, "b": b_items.get(item["id"])} for item in runs[0].items]

    path = out / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    path = out / "items.jsonl"
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    written.append(path)

    plots: List[Path] = []
    suffixes = [""] if len(runs) == 1 else ["_a", "_b"]
    for run, suffix in zip(runs, suffixes, strict=False):
        if run.summary["confusion"]["n"]:
            plots.append(_confusion_png(out / f"confusion{suffix}.png", run.summary["confusion"],
                                        "Picture type" + (f" ({suffix[1:].upper()})" if suffix else "")))
    if any(run.summary.get("relevance") and run.summary["relevance"]["n"] for run in runs):
        plots.append(_relevance_png(out / "relevance.png", runs, ["A", "B"] if len(runs) > 1 else [""]))
    written += plots

    path = out / "report.md"
    path.write_text(_markdown(report, runs, sources, input_path, plots), encoding="utf-8")
    written.append(path)
    return written


# ------------------------------------------------------------------ markdown

def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if percent:
        return f"{100 * value:.1f} %"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _rows(summary: Dict[str, Any]) -> List[tuple]:
    rel = summary.get("relevance") or {}
    ref = summary.get("reference_similarity") or {}
    lat = summary.get("latency_ms") or {}
    return [
        ("articles", _fmt(summary["n"])),
        ("valid output", f'{summary["valid"]} ({_fmt(summary["valid_rate"], True)})'),
        ("type accuracy", f'{_fmt(summary["type_accuracy"], True)} of {summary["confusion"]["n"]} labelled'),
        ("relevance mean (news ↔ en_prompt)", _fmt(rel.get("mean"))),
        ("relevance of mismatched pairs", _fmt(rel.get("shuffled_mean"))),
        ("relevance margin", _fmt(rel.get("margin"))),
        ("reference similarity", f'{_fmt(ref.get("mean"))} over {ref["n"]}' if ref else "– (no references)"),
        ("latency p50 / p95", f'{lat["p50"]:.0f} / {lat["p95"]:.0f} ms' if lat else "–"),
    ]


def _markdown(report: Dict[str, Any], runs: Sequence[Evaluation], sources: Sequence[str],
              input_path: str, plots: Sequence[Path]) -> str:
    lines = ["# NewsPicGen evaluation", "", f"Input: `{input_path}`", ""]
    if len(runs) == 1:
        lines += [f"Prompts from: `{sources[0]}`", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in _rows(runs[0].summary)]
    else:
        lines += [f"A: `{sources[0]}`  ", f"B: `{sources[1]}`", "", "| metric | A | B |", "|---|---|---|"]
        for (name, a), (_, b) in zip(_rows(runs[0].summary), _rows(runs[1].summary), strict=False):
            lines.append(f"| {name} | {a} | {b} |")
        c = report["comparison"]
        lines += ["", f"Over the {c['n_both_valid']} articles both answered validly: same type "
                      f"{_fmt(c['type_agreement'], True)}, B − A relevance {_fmt(c['relevance_mean_diff'])}, "
                      f"B more relevant for {_fmt(c['b_more_relevant_rate'], True)} of them."]
    errors = {k: v for run in runs for k, v in run.summary["errors"].items()}
    if errors:
        lines += ["", "Articles without a valid prompt, by cause: "
                  + ", ".join(f"{k} ({v})" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
                  + " — see items.jsonl."]
    lines += ["", "Relevance is the cosine of multilingual-e5-small embeddings of the article (title and "
                  "lead) and the English prompt; the mismatched pairs (each article with other articles' "
                  "prompts) are the baseline, so the margin is what the prompt says about *this* article. "
                  "Reference similarity is the Kaggle image-to-prompt metric (all-MiniLM-L6-v2 cosine)."]
    for plot in plots:
        lines += ["", f"![{plot.stem}]({plot.name})"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ plots

def _confusion_png(path: Path, confusion: Dict[str, Any], title: str) -> Path:
    from matplotlib.figure import Figure

    matrix, names = confusion["matrix"], confusion["names"]
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(names))
    ax.set_xticks(list(ticks), [f"{i + 1} {n}" for i, n in enumerate(names)], rotation=45, ha="right")
    ax.set_yticks(list(ticks), [f"{i + 1} {n}" for i, n in enumerate(names)])
    ax.set_xlabel("model's type")
    ax.set_ylabel("label")
    peak = max(max(row) for row in matrix) or 1
    for r, row in enumerate(matrix):
        for c, count in enumerate(row):
            if count:
                ax.text(c, r, str(count), ha="center", va="center",
                        color="white" if count > peak / 2 else "black")
    ax.set_title(f"{title}: {confusion['n']} labelled articles")
    fig.savefig(path, dpi=100)
    return path


def _relevance_png(path: Path, runs: Sequence[Evaluation], names: Sequence[str]) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    colors = ["tab:blue", "tab:orange"]
    for run, name, color in zip(runs, names, colors, strict=False):
        matched = [i["relevance"] for i in run.items if "relevance" in i]
        if not matched:
            continue
        label = f"{name} " if name else ""
        ax.hist(matched, bins=20, alpha=0.6, color=color, density=True,
                label=f"{label}article ↔ its prompt (mean {sum(matched) / len(matched):.3f})")
        if run.shuffled_scores:
            mean = sum(run.shuffled_scores) / len(run.shuffled_scores)
            ax.hist(run.shuffled_scores, bins=20, histtype="step", linestyle="--", linewidth=1.5,
                    color=color, density=True, label=f"{label}article ↔ other prompts (mean {mean:.3f})")
    ax.set_xlabel("cosine similarity (multilingual-e5-small)")
    ax.set_ylabel("density")
    ax.set_title("Relevance of prompts to their articles vs mismatched pairs")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path
