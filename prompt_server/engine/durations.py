"""`--keep-alive` values as Ollama reads them: `5m`, `30s`, `1h30m`, `500ms`, a plain number of
seconds; `0` frees the model after every request; a negative value (`-1`) never does."""
from __future__ import annotations

import re
from typing import Optional

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(text: str) -> Optional[float]:
    """Seconds of idle time before the model is freed; None = never. ValueError names the accepted forms."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None:
        negative = value.startswith("-")
        body = value[1:] if negative else value
        parts = _PART.findall(body)
        if not body or "".join(n + u for n, u in parts) != body:
            raise ValueError(f"keep-alive {text!r} is not a duration; use e.g. 5m, 30s, 1h, 0 (after every "
                             f"request) or -1 (never)") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts) * (-1 if negative else 1)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"keep-alive {text!r} is not a duration; use e.g. 5m, 30s, 0 or -1")
    return None if seconds < 0 else seconds
