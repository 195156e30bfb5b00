"""News -> NewsPicGen's exact instruction: cleaning, empty news, cutting long content."""
from __future__ import annotations

import dataclasses

import pytest

from prompt_server.instruction import (
    DEFAULT_MAX_CONTENT_CHARS,
    INSTRUCTION_TEMPLATE,
    MAX_TITLE_CHARS,
    EmptyNewsError,
    Instruction,
    News,
    build_instruction,
    clean_text,
)


def test_instruction_is_newspicgens_template_character_for_character():
    result = build_instruction(News("动物园迎来两只大熊猫幼崽", "大熊猫顺利产下一对双胞胎幼崽。"))
    assert result.text == ("以下是一篇新闻，标题“动物园迎来两只大熊猫幼崽”。新闻内容：大熊猫顺利产下一对双胞胎幼崽。，"
                           "请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。")
    assert result.truncated is False and result.notice is None
    assert result.original_chars == result.kept_chars == len("大熊猫顺利产下一对双胞胎幼崽。")


def test_news_from_dict_ignores_extra_keys_and_accepts_a_missing_field():
    assert News.from_dict({"id": "dev-01", "type": "1", "title": "T", "content": "C"}) == News("T", "C")
    assert News.from_dict({"title": "T"}) == News("T", "")
    assert News.from_dict({"content": None, "title": "T"}) == News("T", "")


@pytest.mark.parametrize("data, words", [
    ({"headline": "T", "body": "C"}, ["title", "content", "headline"]),
    (["T", "C"], ["JSON object", "list"]),
    ({"title": ["T"], "content": "C"}, ["title", "text", "list"]),
])
def test_news_from_dict_says_what_is_wrong(data, words):
    with pytest.raises(ValueError) as info:
        News.from_dict(data)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("raw, clean", [
    ("<p>市民<b>踊跃</b>参加</p><p>第二段</p>", "市民踊跃参加\n第二段"),
    ("第一行<br>第二行<BR/>第三行", "第一行\n第二行\n第三行"),
    ("A&amp;B &lt;tag&gt; &quot;引号&quot; &#x4E2D;&#25991; &nbsp;end", 'A&B <tag> "引号" 中文 end'),
    ("<script>alert('x')</script>正文<style>p{color:red}</style><!-- comment -->", "正文"),
    ('<a href="http://example.com/x?a=1&b=2">链接</a>文字', "链接文字"),
    ("价格<100元，a < b 且 c>d", "价格<100元，a < b 且 c>d"),  # not tags
    ("零\u200b宽\u200c字\u200d符\u200e\u200f\u2060\ufeff", "零宽字符"),
    ("控制\x00字\x07符\x1b[31m\x7f", "控制字符[31m"),
    ("  多个   空格\t\t和\u3000全角空格  ", "多个 空格 和 全角空格"),
    ("段一\r\n\r\n\r\n  段二  \n\n段三", "段一\n段二\n段三"),
    ("行\u2028分隔", "行\n分隔"),
    ("", ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_clean_text_keeps_escaped_markup_as_visible_text():
    # An article *about* HTML keeps its example; only real tags are markup.
    assert clean_text("用 &lt;script&gt; 标签") == "用 <script> 标签"


@pytest.mark.parametrize("title, content", [
    ("", ""),
    ("   ", "\n\t  "),
    ("<br><p></p>", "&nbsp;&#8203;"),
    ("\u200b\ufeff", "\x00\x01<script>only script</script>"),
])
def test_empty_news_after_cleaning_is_an_error_that_says_what_to_do(title, content):
    with pytest.raises(EmptyNewsError) as info:
        build_instruction(News(title, content))
    message = str(info.value)
    assert "empty" in message and "title or content" in message
    assert isinstance(info.value, ValueError)


def test_title_only_news_uses_the_title_as_content():
    result = build_instruction(News("<b>暴雨</b>预警", ""))
    assert result.text == INSTRUCTION_TEMPLATE.format(title="暴雨预警", content="暴雨预警")


def test_content_only_news_is_accepted():
    result = build_instruction(News("", "城郊湿地公园迎来候鸟。"))
    assert "标题“”" in result.text and "城郊湿地公园迎来候鸟。" in result.text


def test_title_is_one_line_and_bounded_and_its_cut_is_reported():
    result = build_instruction(News("第一行\n第二行", "内容。"))
    assert "标题“第一行 第二行”" in result.text
    long = build_instruction(News("长" * 500, "内容。"))
    assert "长" * MAX_TITLE_CHARS + "”" in long.text and "长" * (MAX_TITLE_CHARS + 1) not in long.text
    assert long.truncated and "title cut from 500 to 200" in long.notice


def test_long_content_is_cut_at_a_sentence_boundary_and_reported():
    sentence = "记者从市政府获悉，新建的跨江大桥今天正式通车。"
    article = (sentence * 1400)[:30_000]
    result = build_instruction(News("大桥通车", article))
    assert result.truncated
    assert result.original_chars == 30_000
    assert result.kept_chars <= DEFAULT_MAX_CONTENT_CHARS
    assert result.kept_chars == (DEFAULT_MAX_CONTENT_CHARS // len(sentence)) * len(sentence)  # whole sentences only
    assert result.text.endswith("通车。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。")
    assert result.notice == (f"content cut from 30000 to {result.kept_chars} characters at a sentence "
                             "boundary to fit the model's input budget")


@pytest.mark.parametrize("end", ["。", "！", "？", "!", "?", "；", ";", "\n"])
def test_every_sentence_end_counts(end):
    content = ("甲" * 50 + end) * 10
    result = build_instruction(News("t", content), max_content_chars=120)
    kept = result.text.split("新闻内容：")[1].split("，请根据")[0]
    assert len(kept) == result.kept_chars
    assert kept == (("甲" * 50 + end) * 2).strip()


def test_closing_quote_stays_with_its_sentence():
    content = "他说：“我们会继续努力。”" * 20
    result = build_instruction(News("t", content), max_content_chars=50)
    kept = result.text.split("新闻内容：")[1].split("，请根据")[0]
    assert kept.endswith("。”") and result.kept_chars <= 50


def test_content_without_sentence_ends_is_cut_mid_sentence_and_says_so():
    result = build_instruction(News("t", "字" * 3000), max_content_chars=100)
    assert result.kept_chars == 100
    assert "mid-sentence" in result.notice


def test_cut_prefers_a_clause_to_throwing_most_of_the_budget_away():
    content = "短句。" + "很长的从句，" * 100
    result = build_instruction(News("t", content), max_content_chars=100)
    assert 50 <= result.kept_chars <= 100
    assert "mid-sentence" in result.notice


def test_budget_is_configurable_and_content_within_it_is_untouched():
    content = "一句话。" * 100  # 400 characters
    assert not build_instruction(News("t", content), max_content_chars=400).truncated
    assert build_instruction(News("t", content), max_content_chars=399).kept_chars == 396
    with pytest.raises(ValueError, match="max_content_chars"):
        build_instruction(News("t", content), max_content_chars=0)


def test_cleaning_happens_before_the_budget_is_counted():
    content = "<p>" + "<b>正文</b>。" * 10 + "</p>"  # 30 visible characters, 100+ raw
    result = build_instruction(News("t", content), max_content_chars=40)
    assert not result.truncated and result.kept_chars == 30


def test_instruction_is_frozen():
    result = build_instruction(News("t", "c"))
    assert isinstance(result, Instruction)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "other"  # type: ignore[misc]
