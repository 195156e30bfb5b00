"""Progress of a setup step as plain data (what the page, the route and the console show)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional


@dataclass
class Progress:
    step: str                          # venv | packages | model | start
    label: str                         # what is happening now, one line
    done: Optional[int] = None         # bytes (model) when counted
    total: Optional[int] = None
    rate: Optional[float] = None       # bytes per second
    eta_s: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["fraction"] = (self.done / self.total) if self.done is not None and self.total else None
        data["text"] = self.describe()
        return data

    def describe(self) -> str:
        """"model: config.json · 1.2 GB of 3.1 GB (39 %) · 25.0 MB/s · about 1 min 16 s left"."""
        parts = [f"{self.step}: {self.label}"]
        if self.done is not None and self.total:
            parts.append(f"{size_text(self.done)} of {size_text(self.total)} ({100 * self.done / self.total:.0f} %)")
        if self.rate:
            parts.append(f"{size_text(self.rate)}/s")
        if self.eta_s is not None and self.rate:
            parts.append(f"about {duration_text(self.eta_s)} left")
        return " · ".join(parts)


def size_text(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Meter:
    """Bytes per second and time left, over the bytes moved since it started (not those found on disk)."""

    def __init__(self, already: int = 0, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.already = already

    def measure(self, done: int, total: Optional[int]) -> tuple:
        elapsed = self.clock() - self.start
        moved = done - self.already
        rate = moved / elapsed if elapsed > 0.2 and moved > 0 else None
        eta = (total - done) / rate if rate and total is not None else None
        return rate, eta
