"""What the server's venv needs: this project's own requirements plus its `server` extra, read
from pyproject.toml (the one list), without a TOML library (Python 3.10 has no tomllib)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _array(text: str, key: str, section: str) -> List[str]:
    """The strings of the array `key = [...]` inside [section] of a pyproject.toml."""
    body = re.search(rf"^\[{re.escape(section)}\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    if body is None:
        raise ValueError(f"pyproject.toml has no [{section}]")
    start = re.search(rf"^{re.escape(key)}\s*=\s*\[", body.group(1), re.MULTILINE)
    if start is None:
        raise ValueError(f"pyproject.toml has no {key} in [{section}]")
    found, rest = [], body.group(1)[start.end():]
    for line in rest.splitlines():
        # requirement strings hold no "#": what follows one is a comment
        line = line.split("#", 1)[0]
        found += _STRING.findall(line)
        if _STRING.sub("", line).strip().endswith("]"):  # the array's own "]", outside the strings
            return found
    raise ValueError(f"pyproject.toml: the {key} array in [{section}] is not closed")


def server_requirements(pyproject: Path) -> List[str]:
    """[project] dependencies + the server extra, as pip requirement strings (torch left out:
    the torch choice installs it first, from the right index)."""
    text = pyproject.read_text(encoding="utf-8")
    wanted = _array(text, "dependencies", "project") + _array(text, "server", "project.optional-dependencies")
    return [r for r in wanted if re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() != "torch"]
