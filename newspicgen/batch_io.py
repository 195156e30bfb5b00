"""Files of the `batch` command: the articles going in, the JSONL logs coming out.

Input is JSONL or CSV with `id`, `title`, `content`. A row without an id gets a
stable one from its content, so a rerun of the same file resumes instead of
starting over. Bad rows are reported by line number and skipped.

Output logs are append-only JSONL. Every record is one complete line written
with a single write and fsync'd, so an interrupt never leaves half a line; a
hard crash (power loss) can, and `read_jsonl` drops such a tail on the next run.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from prompt_server.files import atomic_write

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class InputError(ValueError):
    """The input file as a whole cannot be read (missing, wrong format, no content column)."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    content: str
    line: int  # where it came from, for messages
    # The row's other columns (e.g. eval's `type` label and `reference`), as read.
    extra: Dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def news_dict(self) -> Dict[str, str]:
        return {"title": self.title, "content": self.content}


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def stable_id(title: str, content: str) -> str:
    """Same article text -> same id on every run and every machine."""
    digest = hashlib.sha1(f"{title.strip()}\n{content.strip()}".encode()).hexdigest()
    return f"auto-{digest[:12]}"


def read_articles(path: str | os.PathLike) -> Tuple[List[Article], List[BadRow]]:
    """Articles in file order, plus the rows skipped and why. Duplicate ids keep the first."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} not found; pass a JSONL or CSV file of articles "
                         "with title and content")
    rows = _csv_rows(path) if _is_csv(path) else _jsonl_rows(path)
    articles: List[Article] = []
    bad: List[BadRow] = []
    first_line: Dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, BadRow):
            bad.append(row)
            continue
        article = _article(line, row)
        if isinstance(article, BadRow):
            bad.append(article)
        elif article.id in first_line:
            bad.append(BadRow(line, f"duplicate id {article.id!r} (first on line {first_line[article.id]})"))
        else:
            first_line[article.id] = line
            articles.append(article)
    return articles, bad


def _is_csv(path: Path) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    if path.suffix.lower() in JSONL_SUFFIXES:
        return False
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        head = f.read(4096).lstrip()
    return not head.startswith("{")


def _jsonl_rows(path: Path) -> Iterator[Tuple[int, Union[dict, BadRow]]]:
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, BadRow(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield number, BadRow(number, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield number, row


def _csv_rows(path: Path) -> Iterator[Tuple[int, Union[dict, BadRow]]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in (reader.fieldnames or [])]
        if "content" not in fields:
            raise InputError(f"{path}: CSV header has no 'content' column (found {fields or 'none'}); "
                             "the first row must name the columns id,title,content")
        reader.fieldnames = fields
        start = reader.line_num + 1
        for row in reader:
            # line_num is the last physical line of the record; report its first.
            yield start, {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1


def _article(line: int, row: dict) -> Article | BadRow:
    title, content, given_id = row.get("title", ""), row.get("content"), row.get("id")
    if content is None or (isinstance(content, str) and not content.strip()):
        return BadRow(line, "no content (fill in the article text in 'content')")
    if title is None:
        title = ""
    if not isinstance(content, str) or not isinstance(title, str):
        return BadRow(line, "title and content must be text")
    if isinstance(given_id, (dict, list, bool)):
        return BadRow(line, "id must be a string or a number")
    text_id = "" if given_id is None else str(given_id).strip()
    extra = {k: v for k, v in row.items() if k not in ("id", "title", "content")}
    return Article(id=text_id or stable_id(title, content), title=title, content=content, line=line,
                   extra=extra)


# ---------------------------------------------------------------- output logs

def read_jsonl(path: str | os.PathLike) -> Tuple[List[dict], bool, List[int]]:
    """Records of an append-only log, repairing it first.

    Returns (records, dropped_partial_tail, unreadable_line_numbers). A last
    line without its newline can only come from a crash mid-write: it is cut
    off the file so the next append starts on a fresh line.
    """
    path = Path(path)
    if not path.exists():
        return [], False, []
    data = path.read_bytes()
    dropped = False
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        data, dropped = data[:keep], True
    records, unreadable = [], []
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:
            unreadable.append(number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            unreadable.append(number)
    return records, dropped, unreadable


class JsonlLog:
    """Append-only JSONL file: one os.write of a whole line, then fsync."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: Optional[int] = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop only for the pathological case
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rewrite_jsonl(path: str | os.PathLike, records: List[dict]) -> None:
    """Replace a log atomically (write a temp file, fsync, rename)."""
    atomic_write(path, b"".join((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
                                for record in records))
