"""Reading JSONL in tests the way the project writes it: one record per "\\n".

str.splitlines() also splits at U+2028, U+2029, \\x1c-\\x1e and \\x85, all of
which may stand unescaped inside a JSON string (model output, news text).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List


def jsonl_lines(text: str) -> List[str]:
    return [line for line in text.split("\n") if line.strip()]


def read_jsonl_lines(path: Path) -> List[dict]:
    """The records of a JSONL file; [] when it does not exist."""
    return [json.loads(line) for line in jsonl_lines(path.read_text(encoding="utf-8"))] if path.exists() else []
