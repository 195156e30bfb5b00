"""Writing files so that a crash never leaves half of one (shared by every layer)."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Union


def _new_file_mode() -> int:
    """The mode open() would give a new file: 0o666 less the umask (0o644 with the usual 022).

    The umask can only be read by setting it; another thread creating a file in between
    gets 0o022, the usual value anyway."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Union[str, os.PathLike[str]], data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder, fsync'd, then renamed over it.

    Readers see the old file or the new one, never a mix; the temp file is
    removed if anything fails. The file gets the mode of the one it replaces, or
    a new file's usual mode (mkstemp's own 0600 would hide a preset or a picture
    from the user's other programs and accounts).
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
