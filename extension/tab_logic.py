"""What the NewsPicGen tab does, without gradio: every handler takes the values on
screen and returns an `Outcome` (see ui_events). The unit tests drive it directly."""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from newspicgen.relevance import ScorerUnavailable
from prompt_server.client import ServerInfo
from prompt_server.errors import PromptServerError, ServerUnreachable, redact_url
from prompt_server.instruction import EmptyNewsError, News
from prompt_server.schema import PicturePrompt, PictureType
from prompt_server.server_kind import KIND_LABELS
from style_presets.store import PresetNotFound

from .messages import Translator, error_parts, error_text, sentence, server_hint, tr
from .ui_events import Choices, Outcome, asked, warnings_markdown

# The editable result fields, in the order handlers receive and return them.
FIELDS = ("en_prompt", "ch_prompt", "en_keyword", "ch_keyword", "type")


def type_choices() -> List[str]:
    return [type_label(t.value) for t in PictureType]


def type_label(code: str) -> str:
    member = PictureType.parse(code)
    return f"{member.value} {member.en} / {member.zh}"


def type_code(label: str) -> str:
    """"2 person / 人物" -> "2" (also accepts anything PictureType.parse does)."""
    text = (label or "").strip()
    return PictureType.parse(text.split(" ", 1)[0] if text[:1].isdigit() else text).value


def split_article(title: str, content: str) -> Tuple[str, str]:
    """A whole article pasted into the content box: its first line becomes the title.

    Only when the title box is empty and the content has more than one line, and
    the first line is short enough to be a headline.
    """
    if (title or "").strip() or not content:
        return title, content
    lines = content.strip().splitlines()
    if len(lines) < 2 or len(lines[0].strip()) > 100:
        return title, content
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def status_markdown(info: Optional[ServerInfo], url: str, last_latency_ms: Optional[float] = None,
                    note: str = "", language: str = "en") -> str:
    """The status line: URL, engine, model, last latency; when down, what to do in the WebUI."""
    if info is None:
        text = tr(language, "Prompt server `{url}` — not checked yet (press **Check server** or **Generate prompt**).",
                  url=url)
    elif info.ok:
        latency = f"{last_latency_ms:.0f} ms" if last_latency_ms is not None else "—"
        unknown = tr(language, "unknown")
        text = tr(language, "🟢 Prompt server `{url}` · engine `{engine}` · model `{model}` · last latency {latency}",
                  url=info.url, engine=engine_label(info) or unknown, model=info.model or unknown, latency=latency)
    else:
        reason, hint = error_parts(info.error, language) if info.error else (tr(language, "no answer"), "")
        if not hint or isinstance(info.error, ServerUnreachable):
            hint = server_hint(language)
        text = (tr(language, "🔴 **Prompt server down or not ready** — {reason}", reason=reason) + "\n\n"
                + sentence(hint, language))
    return text + (f"\n\n{note}" if note else "")


def engine_label(info: ServerInfo) -> Optional[str]:
    """The server's kind and the constraint it gets, e.g. "vLLM (vllm_regex)"."""
    name = KIND_LABELS.get(info.kind, info.engine) if info.kind else info.engine
    return f"{name} ({info.mode})" if name and info.mode else name


def picture_prompt_from_fields(values: Sequence[str]) -> PicturePrompt:
    """The edited fields as a PicturePrompt.

    The user may write longer prompts than the model's bounds, so only the type
    and a non-empty English prompt are required; compose() neutralizes the text.
    """
    data = dict(zip(FIELDS, ((v or "").strip() for v in values), strict=False))
    if not data["en_prompt"]:
        raise ValueError("the English prompt is empty; generate one or type it")
    if not data["type"]:
        raise ValueError("no picture type yet; generate a prompt or pick a type")
    data["type"] = type_code(data["type"])
    return PicturePrompt.construct_unchecked(**data)


def fields_from_picture_prompt(pp: PicturePrompt) -> Dict[str, str]:
    return {"en_prompt": pp.en_prompt, "ch_prompt": pp.ch_prompt, "en_keyword": pp.en_keyword,
            "ch_keyword": pp.ch_keyword, "type": type_label(pp.type)}


def candidate_label(index: int, pp: PicturePrompt, relevance: Optional[float] = None) -> str:
    text = pp.en_prompt if len(pp.en_prompt) <= 90 else pp.en_prompt[:89] + "…"
    score = f" · relevance {relevance:.3f}" if relevance is not None else ""
    return f"#{index + 1}{score} · {type_label(pp.type)} · {pp.en_keyword}: {text}"


class TabLogic:
    """The tab's behaviour; `get_config()` is read on every event so settings apply at once."""

    def __init__(self, get_config: Callable[[], Any], available: Optional[Callable[[], Any]] = None,
                 language: Optional[Callable[[], str]] = None,
                 model_base: Optional[Callable[[], Optional[str]]] = None):
        self.get_config = get_config
        self.available = available or (lambda: None)
        self.model_base = model_base or (lambda: None)  # the loaded model's family, asked on every event
        self._t = Translator(language)
        self._info: Dict[str, ServerInfo] = {}

    @classmethod
    def from_hooks(cls, get_config: Callable[[], Any], hooks: Any = None) -> TabLogic:
        """The tab's logic connected to the WebUI's hooks (extension.webui_hooks.WebUIHooks)."""
        return cls(get_config, getattr(hooks, "available", None), getattr(hooks, "language", None),
                   getattr(hooks, "model_base", None))

    def _base(self) -> Optional[str]:
        return asked(self.model_base)

    def _lang(self) -> str:
        return self._t.language()

    def _error(self, exc: BaseException) -> str:
        return error_text(exc, self._lang())

    # status
    def _status(self, client, note: str = "", force: bool = False) -> str:
        url = client.base_url
        info = self._info.get(url)
        if force or info is None or not info.ok:
            info = self._info[url] = client.health()
        return status_markdown(info, url, client.last_latency_ms, note, self._lang())

    def _noted(self, client, note: str) -> str:
        """The last known status plus a note, without asking the server."""
        return status_markdown(self._info.get(client.base_url), client.base_url, client.last_latency_ms, note,
                               self._lang())

    def initial_status(self) -> str:
        try:
            url = self.get_config().server_url
        except Exception as exc:  # a bad setting: say which
            return f"🔴 {exc}"
        return status_markdown(None, redact_url(url), language=self._lang())  # the setting may hold a password

    def check_server(self) -> Outcome:
        try:
            client = self.get_config().client()
        except Exception as exc:
            return Outcome({"status": f"🔴 {self._error(exc)}"}, warning=self._error(exc))
        text = self._status(client, force=True)
        info = self._info[client.base_url]
        return Outcome({"status": text}, warning=None if info.ok else
                       self._error(info.error) if info.error else self._t("not ready"))

    def _server_failed(self, client, exc: PromptServerError) -> Outcome:
        """A failed request: warn, and show the server status (with the start command when down)."""
        if isinstance(exc, ServerUnreachable):
            self._info[client.base_url] = ServerInfo(client.base_url, False, error=exc)
            status = status_markdown(self._info[client.base_url], client.base_url, language=self._lang())
        else:
            status = self._status(client, note=self._t("Last request failed: {error}", error=self._error(exc)),
                                  force=True)
        return Outcome({"status": status}, warning=self._error(exc))

    # generate
    def split(self, title: str, content: str) -> Outcome:
        """A pasted article split into title and content, at once and without the queue: the
        slow Generate that follows never has the news boxes as outputs, so they stay usable."""
        split_title, split_content = split_article(title, content)
        if (split_title, split_content) == (title, content):
            return Outcome()
        return Outcome({"title": split_title, "content": split_content})

    def _ask(self, title: str, content: str, ask: Callable[[Any, News], Any]) -> Tuple[Dict[str, str], Any, Any]:
        """Run `ask(pipeline, news)` for the article on screen.

        Returns (the title/content as split, the pipeline, the answer) or, on failure,
        (split, None, an Outcome that warns and keeps everything typed).
        """
        title, content = split_article(title, content)
        split = {"title": title, "content": content}
        try:
            pipeline = self.get_config().pipeline()
        except Exception as exc:
            return split, None, Outcome({"status": f"🔴 {self._error(exc)}"}, warning=self._error(exc))
        try:
            return split, pipeline, ask(pipeline, News(title=title or "", content=content or ""))
        except (EmptyNewsError, ScorerUnavailable) as exc:
            return split, None, Outcome({**split, "status": self._noted(pipeline.client, f"⚠️ {self._error(exc)}")},
                                        warning=self._error(exc))
        except PromptServerError as exc:
            out = self._server_failed(pipeline.client, exc)
            out.values.update(split)
            return split, None, out

    def generate(self, title: str, content: str, follow: bool, preset: str) -> Outcome:
        split, pipeline, pp = self._ask(title, content, lambda pipeline, news: pipeline.picture_prompt(news))
        if pipeline is None:
            return pp
        values: Dict[str, Any] = {**split, **fields_from_picture_prompt(pp)}
        values["status"] = self._status(pipeline.client)
        if follow:
            values.update(self._followed_preset(pp.type, preset))
        return Outcome(values)

    def more_candidates(self, title: str, content: str, n: float, seed: float, rank: bool = False) -> Outcome:
        """n seeded samples; with `rank`, the most relevant to the article first, each with its score."""
        n = max(1, min(int(n or 1), 8))
        base = int(seed) if seed is not None and int(seed) >= 0 else random.randrange(2 ** 31)

        def ask(pipeline, news):  # [(relevance or None, prompt)]
            if rank:
                return pipeline.best_of(news, n, seed=base)
            return [(None, pp) for pp in pipeline.candidates(news, n, seed=base)]

        split, pipeline, found = self._ask(title, content, ask)
        if pipeline is None:
            return found
        seeds = {"count": len(found), "first": base, "last": base + len(found) - 1}
        if rank:
            note = self._t("{count} candidates from seeds {first}–{last}, the most relevant to the article first; "
                           "pick one to use it.", **seeds)
        else:
            note = self._t("{count} candidates from seeds {first}–{last}; pick one to use it.", **seeds)
        labels = [candidate_label(i, pp, score) for i, (score, pp) in enumerate(found)]
        return Outcome({**split, "candidates": Choices(labels, None),
                        "candidate_data": [pp.to_dict() for _, pp in found],
                        "status": self._status(pipeline.client, note=note)})

    def pick_candidate(self, label: str, data: List[dict], follow: bool, preset: str) -> Outcome:
        if not label or not data:
            return Outcome()
        index = int(label.split(" ", 1)[0].lstrip("#")) - 1
        if not 0 <= index < len(data):
            return Outcome(warning=self._t("that candidate is gone; press Generate candidates again"))
        pp = PicturePrompt.from_dict(data[index])
        values: Dict[str, Any] = fields_from_picture_prompt(pp)
        if follow:
            values.update(self._followed_preset(pp.type, preset))
        return Outcome(values)

    # preset following the type
    def _followed_preset(self, code: str, current: str) -> Dict[str, Any]:
        try:
            return {"preset": self.get_config().pipeline().preset_for(code, base=self._base()).name}
        except PresetNotFound:
            return {"preset": current}

    def type_changed(self, type_text: str, follow: bool, preset: str) -> Outcome:
        if not follow or not type_text:
            return Outcome()
        return Outcome(self._followed_preset(type_code(type_text), preset))

    def follow_toggled(self, follow: bool, type_text: str, preset: str) -> Outcome:
        return self.type_changed(type_text, follow, preset)

    # preview
    def preview(self, en_prompt: str, ch_prompt: str, en_keyword: str, ch_keyword: str, type_text: str,
                preset_name: str) -> Outcome:
        empty = {"positive": "", "negative": "", "infotext": ""}
        if not any((en_prompt, ch_prompt, en_keyword, ch_keyword)):
            note = self._t("Generate a prompt (or type one) to see the composed prompt.")
            return Outcome({**empty, "preview_notes": note})
        try:
            pp = picture_prompt_from_fields((en_prompt, ch_prompt, en_keyword, ch_keyword, type_text))
            composed = self.get_config().pipeline().compose(pp, preset_name, available=self._available(),
                                                            base=self._base())
        except (ValueError, PresetNotFound) as exc:
            return Outcome({**empty, "preview_notes": f"⚠️ {exc}"})
        return Outcome({"positive": composed.prompt, "negative": composed.negative_prompt,
                        "infotext": composed.infotext, "preview_notes": warnings_markdown(composed.warnings)})

    def _available(self):
        return asked(self.available)
