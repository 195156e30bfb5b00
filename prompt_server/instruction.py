"""News in, NewsPicGen's exact instruction out.

Pasted news is messy (HTML from a CMS, zero-width characters from a browser,
30,000-character articles); this module cleans it, refuses empty news with a
message that says what to fill in, and cuts long content at a sentence
boundary, reporting the cut instead of hiding it. Stdlib only: the WebUI
imports it.
"""
from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Optional

DEFAULT_MAX_CONTENT_CHARS = 1500
MAX_TITLE_CHARS = 200

# The instruction NewsPicGen was fine-tuned on, character for character.
INSTRUCTION_TEMPLATE = ("以下是一篇新闻，标题“{title}”。新闻内容：{content}，"
                        "请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。")


class EmptyNewsError(ValueError):
    """The news has neither title nor content once markup and invisible characters are gone."""

    DEFAULT = "the news is empty (markup and invisible characters do not count); paste a title or content"

    def __init__(self, message: Optional[str] = None):
        super().__init__(message or self.DEFAULT)


@dataclass(frozen=True)
class News:
    title: str
    content: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> News:
        """Accept {"title", "content"} (either may be missing; other keys are ignored)."""
        if not isinstance(data, Mapping):
            raise ValueError(f'news must be a JSON object like {{"title": ..., "content": ...}}, '
                             f"got {type(data).__name__}")
        if "title" not in data and "content" not in data:
            raise ValueError('news needs a "title" and/or a "content" field; got '
                             f"{sorted(map(str, data)) or 'no fields'}")
        return cls(title=_as_text(data.get("title"), "title"),
                   content=_as_text(data.get("content"), "content"))


def _as_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f'news "{name}" must be text, got {type(value).__name__}')


@dataclass(frozen=True)
class Instruction:
    text: str
    truncated: bool
    original_chars: int  # content length after cleaning, before the cut
    kept_chars: int      # content length sent to the model
    title_original_chars: int = 0  # set only when the title was cut too
    title_kept_chars: int = 0
    at_sentence_boundary: bool = True

    @property
    def notice(self) -> Optional[str]:
        """One human sentence describing what was cut, or None when nothing was."""
        if not self.truncated:
            return None
        parts = []
        if self.kept_chars < self.original_chars:
            where = "at a sentence boundary" if self.at_sentence_boundary else "mid-sentence (no sentence end found)"
            parts.append(f"content cut from {self.original_chars} to {self.kept_chars} characters {where}")
        if self.title_kept_chars < self.title_original_chars:
            parts.append(f"title cut from {self.title_original_chars} to {self.title_kept_chars} characters")
        return "; ".join(parts) + " to fit the model's input budget"


# --- cleaning -------------------------------------------------------------

_DROP_BLOCKS = re.compile(r"<(script|style|noscript|template)\b[^>]*>.*?</\1\s*>|<!--.*?-->",
                          re.IGNORECASE | re.DOTALL)
# Tags that end a line of text in a browser become a line break.
_BREAK_TAGS = re.compile(r"<\s*(?:br|/?p|/?div|/?li|/?tr|/?h[1-6]|/?blockquote|/?section|/?article)\b[^>]*>",
                         re.IGNORECASE)
# A tag starts with a letter, "/" or "!" right after "<", so "价格<100元" and "a < b" stay text.
_ANY_TAG = re.compile(r"</?[A-Za-z!][^<>]*>")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r" ?\n[\s]*")

# Invisible characters that are not Unicode "format" (Cf) or "control" (Cc).
_EXTRA_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"}


def _visible(char: str) -> bool:
    if char in "\n\t ":
        return True
    category = unicodedata.category(char)
    # Cc: control chars; Cf: zero-width and bidi marks (U+200B-U+200F, U+2060, U+FEFF, ...);
    # Cs: lone surrogates, which cannot even be sent as UTF-8.
    return category not in ("Cc", "Cf", "Cs") and char not in _EXTRA_INVISIBLE


def clean_text(text: str) -> str:
    """HTML tags and entities to text, control and zero-width characters out, whitespace folded.

    Line breaks survive as single newlines (they mark paragraph ends, which the
    sentence cutter uses); every other run of whitespace becomes one space.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "<" in text:
        text = _DROP_BLOCKS.sub(" ", text)
        text = _BREAK_TAGS.sub("\n", text)
        text = _ANY_TAG.sub("", text)
    if "&" in text:
        # After tag removal, so that an escaped "&lt;b&gt;" stays visible text.
        text = html.unescape(text)
    # Unicode line/paragraph separators and the like count as line breaks.
    text = "".join("\n" if ch in "\u2028\u2029\x85\x0b\x0c" else ch for ch in text)
    text = "".join(ch for ch in text if _visible(ch))
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _BLANK_LINES.sub("\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# --- cutting ----------------------------------------------------------------

_SENTENCE_END = re.compile(r"[。！？!?；;…\n]|\.(?=\s)")
_CLOSERS = "”’」』）)》】\"'"
_CLAUSE_END = re.compile(r"[，,、：:]|\s")


def _cut(content: str, budget: int) -> tuple[str, bool]:
    """Longest prefix within `budget` that ends a sentence; (prefix, at_sentence_boundary)."""
    window = content[:budget]
    end = 0
    for match in _SENTENCE_END.finditer(window):
        stop = match.end()
        while stop < len(window) and window[stop] in _CLOSERS:  # keep 。” together
            stop += 1
        end = stop
    # A sentence end in the first half would throw most of the budget away:
    # then cut at a clause or word boundary instead, and say so.
    if end >= budget // 2:
        return window[:end].rstrip(), True
    clause = [m.end() for m in _CLAUSE_END.finditer(window)]
    if clause and clause[-1] >= budget // 2:
        return window[:clause[-1]].rstrip(" ,，、：:"), False
    return window.rstrip(), False


_SLOT = re.compile(r"\{(title|content)\}")


def build_instruction(news: News, *, max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
                      template: str = INSTRUCTION_TEMPLATE) -> Instruction:
    """Clean `news`, cut it to the budget and fill NewsPicGen's instruction template
    (or another task's `template`, with the same {title} and {content} slots)."""
    if isinstance(news, Mapping):
        news = News.from_dict(news)
    if int(max_content_chars) < 1:
        raise ValueError(f"max_content_chars must be at least 1, got {max_content_chars}")
    max_content_chars = int(max_content_chars)
    title = " ".join(clean_text(news.title).split())  # a title is one line
    content = clean_text(news.content)
    if not title and not content:
        raise EmptyNewsError()
    if not content:
        # The model was trained with a body; a title-only news gives it the title as body.
        content = title

    title_original = len(title)
    if title_original > MAX_TITLE_CHARS:
        title = title[:MAX_TITLE_CHARS].rstrip()
    title_cut = len(title) < title_original

    original = len(content)
    at_boundary = True
    if original > max_content_chars:
        content, at_boundary = _cut(content, max_content_chars)
    content_cut = len(content) < original

    return Instruction(
        # one pass, so text inside the news that looks like a slot stays text
        text=_SLOT.sub(lambda slot: {"title": title, "content": content}[slot.group(1)], template),
        truncated=content_cut or title_cut,
        original_chars=original,
        kept_chars=len(content),
        title_original_chars=title_original if title_cut else 0,
        title_kept_chars=len(title) if title_cut else 0,
        at_sentence_boundary=at_boundary,
    )
