"""Progress and statistics of a batch run: a tqdm bar on a terminal, plain lines in logs."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import List

PLAIN_PROGRESS_EVERY_S = 5.0


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


@dataclass
class Stats:
    total: int
    done: int = 0
    failed: int = 0
    abandoned: int = 0
    latencies: List[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class Progress:
    """tqdm with rate and ETA on a terminal; a plain line every few seconds otherwise (logs, cron)."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self._bar = None
        self._closed = False
        self._shown = 0
        self._last_line = time.monotonic()
        if sys.stderr.isatty() and stats.total:
            from tqdm import tqdm
            self._bar = tqdm(total=stats.total, unit="article", file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        finished = self.stats.done + self.stats.failed
        if self._bar is not None:
            self._bar.update(finished - self._shown)
            self._bar.set_postfix(failed=self.stats.failed, refresh=False)
            self._shown = finished
        else:
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self._bar is not None or now - self._last_line < PLAIN_PROGRESS_EVERY_S:
            return
        self._last_line = now
        self._print_line(now)

    def _print_line(self, now: float) -> None:
        s = self.stats
        finished = s.done + s.failed
        rate = finished / max(now - s.started, 1e-9)
        eta = (s.total - finished) / rate if rate > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        print(f"batch: {finished}/{s.total} ({100 * finished / max(s.total, 1):.0f}%), "
              f"{s.done} done, {s.failed} failed, {rate:.2f} articles/s, ETA {eta_text}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.stats.total and self.stats.done + self.stats.failed:
            self._print_line(time.monotonic())
