"""Input reading and the append-only logs of `batch` (no server needed)."""
from __future__ import annotations

import json
import os

import pytest

from newspicgen.batch_io import (
    InputError,
    JsonlLog,
    OutputLock,
    OutputLocked,
    read_articles,
    read_jsonl,
    rewrite_jsonl,
    stable_id,
)
from tests.support.jsonl import jsonl_lines, read_jsonl_lines


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_bad_rows_are_reported_by_line_number_and_skipped(tmp_path):
    path = write(tmp_path / "news.jsonl", "\n".join([
        '{"id": "a", "title": "标题一", "content": "内容一"}',
        '{"id": "b", "title": "标题二", "content": ',          # not JSON
        '',                                                     # blank lines are fine
        '["a", "list"]',                                        # not an object
        '{"id": "c", "title": "只有标题"}',                      # no content
        '{"id": "d", "title": "t", "content": "   "}',          # blank content
        '{"id": "a", "title": "again", "content": "dup"}',      # duplicate id
        '{"id": 7, "content": "数字 id 没有标题"}',
    ]) + "\n")
    articles, bad = read_articles(path)
    assert [(a.id, a.title, a.content, a.line) for a in articles] == [
        ("a", "标题一", "内容一", 1), ("7", "", "数字 id 没有标题", 8)]
    assert [b.line for b in bad] == [2, 4, 5, 6, 7]
    reasons = {b.line: b.reason for b in bad}
    assert "not valid JSON" in reasons[2]
    assert "JSON object" in reasons[4]
    assert "no content" in reasons[5] and "no content" in reasons[6]
    assert "duplicate id 'a'" in reasons[7] and "line 1" in reasons[7]
    assert str(bad[0]).startswith("line 2: ")


def test_csv_input_missing_id_gets_a_stable_id_from_the_content(tmp_path):
    path = write(tmp_path / "news.csv",
                 'id,title,content\n'
                 'x1,有 id 的,第一篇\n'
                 ',没有 id,"第二篇，内容里有逗号,\n还有换行"\n'
                 ',空内容,\n'
                 ',没有 id,"第二篇，内容里有逗号,\n还有换行"\n')
    articles, bad = read_articles(path)
    assert [a.id for a in articles] == ["x1", stable_id("没有 id", "第二篇，内容里有逗号,\n还有换行")]
    assert articles[1].id.startswith("auto-") and articles[1].line == 3
    assert articles[1].content == "第二篇，内容里有逗号,\n还有换行"
    # the blank-content row starts on line 5 (the quoted newline took line 4), the duplicate on 6
    assert [(b.line, b.reason.split(" (")[0]) for b in bad] == [(5, "no content"), (6, "duplicate id "
                                                               f"'{articles[1].id}'")]
    # same text, same id: on a rerun, from a JSONL copy of the file, on another machine
    again, _ = read_articles(path)
    assert [a.id for a in again] == [a.id for a in articles]
    assert stable_id("t", "c") != stable_id("t", "c2")


def test_csv_without_content_column_is_a_clear_error(tmp_path):
    path = write(tmp_path / "news.csv", "id,title,body\n1,t,b\n")
    with pytest.raises(InputError, match="no 'content' column"):
        read_articles(path)


def test_missing_input_file_names_the_path(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl"):
        read_articles(tmp_path / "nope.jsonl")


def test_format_sniffed_when_the_suffix_says_nothing(tmp_path):
    jsonl = write(tmp_path / "feed.txt", '{"title": "t", "content": "c"}\n')
    csv_file = write(tmp_path / "feed.dat", "title,content\nt,c\n")
    assert read_articles(jsonl)[0][0].id == read_articles(csv_file)[0][0].id == stable_id("t", "c")


def test_read_jsonl_cuts_a_half_written_last_line_so_the_next_append_is_clean(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "pict')
    records, dropped, unreadable = read_jsonl(path)
    assert [r["id"] for r in records] == ["a", "b"] and dropped and unreadable == []
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    with JsonlLog(path) as log:
        log.append({"id": "c", "text": "中文"})
    assert [r["id"] for r in read_jsonl(path)[0]] == ["a", "b", "c"]
    assert jsonl_lines(path.read_text(encoding="utf-8"))[-1] == '{"id": "c", "text": "中文"}'


def test_read_jsonl_reports_unreadable_middle_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id": "a"}\ngarbage\n42\n{"id": "b"}\n')
    records, dropped, unreadable = read_jsonl(path)
    assert [r["id"] for r in records] == ["a", "b"] and not dropped and unreadable == [2, 3]


def test_rewrite_jsonl_replaces_atomically(tmp_path):
    path = tmp_path / "failed.jsonl"
    path.write_text('{"id": "old"}\n')
    rewrite_jsonl(path, [{"id": "x"}, {"id": "y"}])
    assert [json.loads(line)["id"] for line in jsonl_lines(path.read_text())] == ["x", "y"]
    assert not os.path.exists(str(path) + ".tmp")


def test_other_columns_ride_along_in_extra_for_eval(tmp_path):
    """eval's optional `type` label and `reference` prompt come through read_articles as is."""
    csv_file = tmp_path / "labelled.csv"
    csv_file.write_text("id,title,content,type,reference\na1,标题,内容,人物,A person\n", encoding="utf-8")
    jsonl = tmp_path / "labelled.jsonl"
    jsonl.write_text('{"id": "b1", "content": "内容", "type": 2}\n', encoding="utf-8")
    assert read_articles(csv_file)[0][0].extra == {"type": "人物", "reference": "A person"}
    assert read_articles(jsonl)[0][0].extra == {"type": 2}


# ------------------------------------------------------------ encodings, separators, JSON arrays

def test_jsonl_splits_rows_on_newline_only_so_u2028_stays_inside_a_string(tmp_path):
    text = "一\u2028二\u2029三\x1c四\x85五"  # each one is a line break to str.splitlines()
    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps({"id": "a", "content": text}, ensure_ascii=False) + "\r\n"
                    + json.dumps({"id": "b", "content": "x"}) + "\n", encoding="utf-8")
    articles, bad = read_articles(path)
    assert [(a.id, a.content, a.line) for a in articles] == [("a", text, 1), ("b", "x", 2)]
    assert bad == []
    assert [row["id"] for row in read_jsonl_lines(path)] == ["a", "b"]  # the tests' own reader agrees


def test_non_utf8_input_is_refused_with_file_line_and_fix(tmp_path):
    path = tmp_path / "news.jsonl"
    path.write_bytes(b'{"id": "a", "content": "ok"}\n' + '{"id": "b", "content": "新闻"}\n'.encode("gbk"))
    with pytest.raises(InputError, match=r"news\.jsonl: line 2 is not UTF-8 .*save it as UTF-8"):
        read_articles(path)


def test_deeply_nested_jsonl_row_is_a_bad_row(tmp_path):
    path = write(tmp_path / "news.jsonl", '{"id": "a", "content": "c"}\n' + "[" * 200_000 + "\n")
    articles, bad = read_articles(path)
    assert [a.id for a in articles] == ["a"] and [str(b) for b in bad] == ["line 2: JSON nested too deeply"]
    log = tmp_path / "prompts.jsonl"
    log.write_text('{"id": "a"}\n' + "{\"x\": " * 100_000 + "\n")
    assert read_jsonl(log) == ([{"id": "a"}], False, [2])


def test_json_array_file_is_read_with_the_line_each_element_starts_on(tmp_path):
    path = write(tmp_path / "news.json", '[\n  {"id": "a", "title": "t",\n   "content": "c1"},\n  "text",\n'
                                          '  {"id": "b", "content": "c2"}\n]\n')
    articles, bad = read_articles(path)
    assert [(a.id, a.content, a.line) for a in articles] == [("a", "c1", 2), ("b", "c2", 5)]
    assert [str(b) for b in bad] == ["line 4: expected a JSON object, got str"]
    broken = write(tmp_path / "broken.json", '[\n {"id": "a", "content": "c"}\n {"id": "b", "content": "d"}\n]')
    with pytest.raises(InputError, match=r"broken\.json: line 3: not valid JSON .*JSON array.*JSONL"):
        read_articles(broken)


# ------------------------------------------------------------ the output folder lock

def test_output_lock_refuses_a_second_holder_naming_the_pid_and_frees_on_release(tmp_path):
    first = OutputLock(tmp_path).acquire()
    with pytest.raises(OutputLocked, match=rf"another batch run \(PID {os.getpid()}\) is writing to .*--out"):
        OutputLock(tmp_path).acquire()
    first.release()
    OutputLock(tmp_path).acquire().release()  # free again; the file stays, harmless
    assert (tmp_path / ".batch.lock").read_text().strip() == str(os.getpid())
