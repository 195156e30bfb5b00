"""neutralize(): no model text can add an extra network, emphasis, AND/BREAK or wildcards.

`live_syntax()` below lists every piece of text that A1111 1.10 (prompt_parser,
extra_networks, the Comments script) or Dynamic Prompts would act on; it follows
their documented syntax and is written here, not copied from them.
"""
from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prompt_server.schema import PicturePrompt
from style_presets.availability import Availability
from style_presets.compose import compose
from style_presets.preset import LoraRef, StylePreset
from style_presets.sanitize import neutralize

EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")  # A1111 extra_networks.re_extra_net
WORD_KEYWORD = re.compile(r"\b(AND|BREAK|ADDCOMM|ADDBASE|ADDCOL|ADDROW)\b")
WEIGHT_OR_STEP = re.compile(r":\s*[+-]?[.\d]+\s*$")


def live_syntax(text: str) -> list:
    """The live tokens of a prompt, in order; escaped brackets are literal, not live."""
    tokens = [f"net:{m.group(0)}" for m in EXTRA_NET.finditer(text)]
    tokens += [f"kw:{m.group(0)}" for m in WORD_KEYWORD.finditer(text)]
    tokens += ["wildcard"] * len(re.findall(r"__", text))
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escape: the next char is literal
            continue
        if char in "()[]{}|#<>":
            tokens.append(char)
        if char in ")]" and WEIGHT_OR_STEP.search(text[:i]):
            tokens.append("number" + char)  # (x:1.5) weight or [a:b:0.5] schedule step
        i += 1
    return tokens


def test_live_syntax_sees_what_a1111_acts_on():
    # the checker must be able to fail: raw model syntax is live
    assert live_syntax("<lora:evil:2.0> (masterpiece:1.8) BREAK {red|blue} __w__ # x") != []
    assert live_syntax(r"\(literal\) \[also\]") == []


EVIL = "<lora:evil:2.0> (masterpiece:1.8) [cat:dog:0.5] BREAK a man AND {red|blue} __wildcard__"


def test_evil_prompt_keeps_words_and_loses_syntax():
    out = neutralize(EVIL)
    assert live_syntax(out) == []
    assert "evil" not in out  # the whole tag is removed, not just its brackets
    for word in ("masterpiece", "cat", "dog", "break", "a man", "and", "red", "blue", "_wildcard_"):
        assert word in out
    assert out == r"\(masterpiece 1.8\) \[cat:dog 0.5\] break a man and \(red/blue\) _wildcard_"


def test_all_extra_network_kinds_are_removed():
    for tag in ("<lora:x:1>", "<lyco:x:0.5>", "<hypernet:h:1>", "<lora:x>", "<anything:goes:here>"):
        assert neutralize(f"a {tag} b") == "a b"


def test_tag_cannot_be_rebuilt_from_pieces():
    # removing the inner tag would leave <lora:evil:1> if angles were kept
    out = neutralize("<lo<x:1>ra:evil:1>")
    assert "<" not in out and ">" not in out and live_syntax(out) == []


def test_backslash_cannot_unescape():
    # "\(" from the model would become "\\(" (a literal backslash then a live paren)
    out = neutralize(r"\(x:2\) \\( y \\)")
    assert live_syntax(out) == []


def test_colon_number_cannot_be_rebuilt():
    # removing only the last colon of "::0" would leave ": 0", a live weight before ")"
    for text in ("::0", ": :1.5", "a:\t:.5", "x:+1"):
        assert live_syntax("(" + neutralize(text) + ")") == ["(", ")"], text


def test_keywords_only_defused_as_whole_uppercase_words():
    assert neutralize("ANDROID BREAKING and AND BREAK") == "ANDROID BREAKING and and break"


def test_comment_and_negative_marker_defused():
    out = neutralize("a # hidden\nNegative prompt: b")
    assert "#" not in out and "Negative prompt:" not in out and "\n" not in out


def test_plain_text_is_unchanged_apart_from_whitespace():
    assert neutralize("  A red panda,\n eating  bamboo.  ") == "A red panda, eating bamboo."
    assert neutralize("成都 大熊猫 10am") == "成都 大熊猫 10am"


SYNTAX_PIECES = ["<lora:evil:2>", "<", ">", ":", ":1.5", ":0.5", "(", ")", "[", "]", "{", "}", "|",
                 "\\", "AND", "BREAK", "_", "__", "#", " ", "\n", "lora", "hypernet:", "1.2", "-",
                 "+", ".", "a", "Negative prompt:", "ADDROW", "\t", "\x00"]
model_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(SYNTAX_PIECES), max_size=40).map("".join),
    st.text(alphabet=st.sampled_from(list("()[]{}|<>:\\#_ ,.0123456789ANDBREKandbrek\n")), max_size=60),
)


@settings(max_examples=400, deadline=None)
@given(model_text)
def test_neutralized_text_has_no_live_syntax(text):
    out = neutralize(text)
    assert live_syntax(out) == []
    assert "\n" not in out and out == out.strip()
    assert not re.search(r"\\(?![()\[\]])", out)  # every backslash escapes a bracket


@settings(max_examples=200, deadline=None)
@given(model_text)
def test_neutralizing_twice_stays_inert(text):
    # a second pass only re-escapes; it never finds new syntax to act on
    once = neutralize(text)
    assert live_syntax(neutralize(once)) == []


# The template puts model text inside the preset's own brackets, next to its own weight.
TRICKY = StylePreset(name="tricky", prompt="art, ({prompt}), [{prompt}], ({keyword}:1.1), end",
                     loras=[LoraRef(name="add_detail", weight=0.5)], embeddings=["goodembed"])


@settings(max_examples=300, deadline=None)
@given(model_text, model_text)
def test_compose_adds_only_the_presets_syntax(text, keyword):
    picture_prompt = PicturePrompt(ch_keyword="k", ch_prompt="p", en_keyword=keyword.strip()[:64] or "k",
                                   en_prompt=text.strip()[:400] or "p", type="2")
    request = compose(picture_prompt, TRICKY)
    template_only = TRICKY.prompt.replace("{prompt}", "").replace("{keyword}", "")
    expected = live_syntax(template_only) + ["net:<lora:add_detail:0.5>", "<", ">"]
    assert sorted(live_syntax(request.prompt)) == sorted(expected)
    assert EXTRA_NET.findall(request.prompt) == [("lora", "add_detail:0.5")]


# -- the composed prompt as a whole: model text next to any template text ---------------
def picture_prompt(text: str, keyword: str = "k") -> PicturePrompt:
    return PicturePrompt(ch_keyword="k", ch_prompt="p", en_keyword=keyword.strip()[:64] or "k",
                         en_prompt=text.strip()[:400] or "p", type="2")


@pytest.mark.parametrize("template, text, keyword, live", [
    ("{prompt}{keyword}", "a cat BRE", "AK dog", "BREAK"),
    ("{prompt}{keyword}", "a cat AN", "D dog", "AND"),
    ("_{prompt}{keyword}_", "__wild_", "card__", "__wild_card__"),
    ("BRE{prompt}", "AK", "k", "BREAK"),
    ("<{prompt}>", "lora:evil:x", "k", "<lora:evil:x>"),
])
def test_model_text_cannot_glue_into_syntax_across_a_join(template, text, keyword, live):
    preset = StylePreset(name="t", prompt=template)
    naive = preset.prompt.replace("{prompt}", neutralize(text)).replace("{keyword}", neutralize(keyword))
    assert live in naive  # what placeholder-by-placeholder neutralising gave
    prompt = compose(picture_prompt(text, keyword), preset).prompt
    assert live not in prompt
    template_alone = template.replace("{prompt}", "").replace("{keyword}", "")
    assert not Counter(live_syntax(prompt)) - Counter(live_syntax(template_alone))


@pytest.mark.parametrize("template, text, expected", [
    ("subject: {prompt}", "2024", "subject: , 2024"),  # a style wrapping it in ( ) would weigh 2024
    ("(subject: {prompt})", "1.5", "(subject: , 1.5)"),
    ("[cat:dog:{prompt}]", "0.5", "[cat:dog:, 0.5]"),
    ("(x:1.{prompt})", "5", "(x:1., 5)"),
    ("({prompt} 1.5)", "cat:", "(cat:,  1.5)"),
    ("(subject: {prompt})", "2024 rally", "(subject: , 2024 rally)"),
])
def test_model_text_never_puts_a_number_after_a_colon(template, text, expected):
    prompt = compose(picture_prompt(text), StylePreset(name="t", prompt=template)).prompt
    assert prompt == expected
    assert not [token for token in live_syntax(prompt) if token.startswith("number")]


def test_a_backslash_in_the_template_cannot_unescape_model_brackets():
    prompt = compose(picture_prompt("(masterpiece)"), StylePreset(name="t", prompt="art \\{prompt}")).prompt
    assert "(" in prompt and live_syntax(prompt) == []


def test_plain_templates_are_filled_unchanged():
    preset = StylePreset(name="t", prompt="comic, {prompt} , vibrant, {keyword}: hero")
    prompt = compose(picture_prompt("a red panda", "panda"), preset).prompt
    assert prompt == "comic, a red panda , vibrant, panda: hero"


EMBEDDING = re.compile(r"(?<![a-z])easynegative(?![a-z])", re.IGNORECASE)  # what fires in A1111
COLON_NUMBER = re.compile(r":\s*[+\-.\d]")
TEMPLATE_PIECES = ["{prompt}", "{keyword}", "BRE", "AK", "AN", "D", "_", "__", ":", ": ", "(", ")",
                   "[", "]", "<", ">", "\\", "1.5", "0.", "subject", ", ", " ", "Easy", "Negative",
                   "中", "2", "x", "|", "{", "}"]
MODEL_PIECES = ["BRE", "AK", "AN", "D", "_", "__", "wild", "card", "2024", "1.5", ".5", "-", ":",
                "Easy", "Negative", "EasyNegative", "中", "lora:evil:x", "(", ")", "\\", " ", "x"]
templates = st.lists(st.sampled_from(TEMPLATE_PIECES), min_size=1, max_size=12).map("".join)
adversarial_text = st.one_of(model_text, st.lists(st.sampled_from(MODEL_PIECES), max_size=12).map("".join))


def syntax_and_triggers(text: str) -> list:
    return (live_syntax(text) + ["colon-number"] * len(COLON_NUMBER.findall(text))
            + ["embedding"] * len(EMBEDDING.findall(text)))


@settings(max_examples=500, deadline=None)
@given(templates, adversarial_text, adversarial_text)
def test_composed_prompt_carries_no_syntax_from_model_text(template, text, keyword):
    if "{prompt}" not in template:
        template += "{prompt}"
    try:
        preset = StylePreset(name="t", prompt=template)
    except ValueError:  # pydantic's ValidationError: e.g. a tag written into the template
        return
    request = compose(picture_prompt(text, keyword), preset,
                      available=Availability(set(), {"EasyNegative"}))
    # The template's own syntax, with model text as a mere separator (it may un-glue template words).
    template_alone = template.replace("{prompt}", " ").replace("{keyword}", " ")
    extra = Counter(syntax_and_triggers(request.prompt)) - Counter(syntax_and_triggers(template_alone))
    assert not extra, (request.prompt, extra)
