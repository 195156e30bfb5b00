"""Reading preset and style files that may be anything: bounded, regular files only, UTF-8.

A preset folder is user territory. A FIFO or a symlink to /dev/zero named
`x.json` would block or never end a plain read, and a huge file would fill
memory, so the file is opened without blocking, checked to be a regular file
and read up to a cap. Every failure is a ReadError whose message names the
cause and the fix; callers report it per file and go on with the others.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Union

MAX_PRESET_BYTES = 1 << 20   # a preset is a few KB; 1 MiB leaves room for long descriptions
MAX_IMPORT_BYTES = 32 << 20  # a styles.csv / Fooocus file with thousands of styles


class ReadError(ValueError):
    """The file cannot be read as text; str() is one line: the cause and the fix."""


def read_text(path: Union[str, Path], limit: int) -> str:
    """The file's text (UTF-8, BOM dropped), refusing anything but a regular file under `limit` bytes."""
    data = _read_bytes(Path(path), limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReadError(f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}; saved in a "
                        "legacy encoding such as GBK or Latin-1?); re-save it as UTF-8") from None


def parse_json(text: str) -> Any:
    """json.loads, with deep nesting reported instead of a RecursionError traceback."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ReadError("JSON nested too deeply to be a preset or style file; "
                        "fix or remove the file") from None


def _read_bytes(path: Path, limit: int) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the fstat below refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ReadError(f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ReadError(f"not a regular file ({_kind(mode)}); remove it or replace it "
                            "with a real file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ReadError(f"larger than {limit // (1 << 20)} MiB, too big for this kind of file; "
                        "check it is the file you meant")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"
