"""Writing files so that a crash never leaves half of one (shared by every layer)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def atomic_write(path: Union[str, os.PathLike[str]], data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder, fsync'd, then renamed over it.

    Readers see the old file or the new one, never a mix; the temp file is
    removed if anything fails.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
