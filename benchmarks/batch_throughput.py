"""Articles per second of `batch` against the embedded engine, at several concurrencies.

    python benchmarks/batch_throughput.py [--articles 16] [--rounds 3] [--levels 1,2,4,8]

Builds the tiny random-weight test model (tests/support/tiny_model.py), starts a real
`python -m prompt_server serve --engine local` on loopback, then runs the real
batch pipeline over the same articles at each concurrency. Levels are
interleaved within every round (in a rotated order), so a machine that gets
busier or quieter during the run shifts all levels alike. A fixed --seed keeps
each article's answer (and so its token count) the same at every level, which
makes the work comparable. Prints a table with the ratio to concurrency 1.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newspicgen.cli import main as cli_main  # noqa: E402
from tests.support.local_server import running_local  # noqa: E402
from tests.support.tiny_model import build_tiny_model  # noqa: E402

SAMPLE = REPO / "examples" / "news.jsonl"


def articles(count: int) -> list:
    """The repository's sample news, repeated to `count`."""
    # "\n" only: splitlines() would also break at a U+2028 inside a JSON string
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [{"id": f"b{i:03d}", "title": rows[i % len(rows)]["title"], "content": rows[i % len(rows)]["content"]}
            for i in range(count)]


def local_server(model_dir: Path, max_batch_size: int, threads: int | None):
    # fewer torch threads spin less when other processes hold the CPUs; None: torch's default
    return running_local(model_dir, "--max-batch-size", str(max_batch_size),
                         threads=str(threads) if threads else None, timeout=300)


def one_run(url: str, news: Path, work: Path, concurrency: int, seed: int) -> tuple:
    """(articles/s, p50 latency ms) of one full batch run."""
    out = Path(tempfile.mkdtemp(dir=work, prefix=f"c{concurrency}-"))
    args = ["batch", str(news), "--out", str(out), "--server", url, "--concurrency", str(concurrency),
            "--seed", str(seed), "--preset-dir", str(work / "presets"), "--retries", "0", "--timeout", "600"]
    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = cli_main(args)
    elapsed = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    if code != 0:
        raise SystemExit(f"batch at concurrency {concurrency} exited {code}:\n{sink.getvalue()[-2000:]}")
    latencies = sorted(r["latency_ms"] for r in records)
    return len(records) / elapsed, latencies[len(latencies) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=8, help="the engine's batch limit")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the server (OMP_NUM_THREADS; default: torch's choice)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="newspicgen-bench-") as tmp:
        work = Path(tmp)
        model_dir = build_tiny_model(work / "tiny-model")
        news = work / "news.jsonl"
        news.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles(args.articles)),
                        encoding="utf-8")
        rates = {c: [] for c in levels}
        p50s = {c: [] for c in levels}
        with local_server(model_dir, args.max_batch_size, args.threads) as url:
            one_run(url, news, work, max(levels), args.seed)  # warm-up (first-call costs), not counted
            for round_no in range(args.rounds):
                order = levels[round_no % len(levels):] + levels[:round_no % len(levels)]
                for c in order:
                    rate, p50 = one_run(url, news, work, c, args.seed)
                    rates[c].append(rate)
                    p50s[c].append(p50)
                    print(f"round {round_no + 1}: concurrency {c}: {rate:.2f} articles/s", file=sys.stderr)

    base = statistics.median(rates[levels[0]])
    print(f"\nbatch throughput, embedded engine, tiny model, {args.articles} articles, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, engine --max-batch-size {args.max_batch_size}, "
          f"torch threads {args.threads or 'default'}")
    # Other processes competing for the CPUs swamp the differences between levels; say how busy it was.
    print(f"load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f} "
          f"(numbers are only comparable on an otherwise idle machine)")
    print(f"{'concurrency':>11} | {'articles/s (median)':>19} | {'min-max':>11} | {'p50 latency':>11} | "
          f"ratio to {levels[0]}")
    for c in levels:
        median = statistics.median(rates[c])
        print(f"{c:>11} | {median:>19.2f} | {min(rates[c]):>5.2f}-{max(rates[c]):<5.2f} | "
              f"{statistics.median(p50s[c]):>8.0f} ms | {median / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
