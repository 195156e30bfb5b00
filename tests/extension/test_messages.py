"""Messages built at run time (status line, notes, warnings, Settings help) in the WebUI's language."""
from __future__ import annotations

import ast

import pytest

from extension.messages import ZH, language_of, placeholders, tr
from extension.settings import KEY_SERVER_URL, option_specs
from extension.tab_logic import TabLogic, status_markdown
from prompt_server.client import ServerInfo
from prompt_server.errors import ServerUnreachable
from tests.support import REPO


def templates_used() -> set:
    """Every literal template passed to tr() / self._t() in the extension."""
    found = set()
    for path in (REPO / "extension").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                args = node.args[1:] if name == "tr" else node.args if name == "_t" else []
                if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                    found.add(args[0].value)
    return found


def test_every_message_has_a_chinese_translation_with_the_same_placeholders():
    used = templates_used()
    assert len(used) >= 15, "the scan found the tab's and the Settings' messages"
    assert not sorted(used - set(ZH)), "add these to extension/messages.py ZH"
    for english, chinese in ZH.items():
        assert placeholders(english) == placeholders(chinese), english
        assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese), english


@pytest.mark.parametrize("localization, language", [
    ("None", "en"), (None, "en"), ("zh_CN", "zh"), ("zh-Hans (Stable)", "zh"), ("zh-Hans (Testing)", "zh"),
    ("ja_JP", "en"),
])
def test_the_webuis_localization_setting_picks_the_language(localization, language):
    assert language_of(localization) == language


def test_the_status_line_follows_the_language():
    down = ServerInfo("http://127.0.0.1:9", False, error=ServerUnreachable("cannot reach the prompt server"))
    english, chinese = (status_markdown(down, "http://127.0.0.1:9", language=lang) for lang in ("en", "zh"))
    assert "Prompt server down or not ready" in english and "提示词服务器未启动或未就绪" in chinese
    assert "“提示词服务器”面板" in chinese and "Prompt server panel" in english, "the tab's panel, not a terminal"
    assert "尚未检查" in status_markdown(None, "http://x:1", language="zh")
    assert tr("fr", "no answer") == "no answer", "a language without a catalog falls back to English"


def test_the_tabs_messages_follow_the_webuis_language_on_every_event():
    language = ["en"]
    logic = TabLogic(lambda: None, language=lambda: language[0])
    assert logic.pick_candidate("#3 x", [{}], False, "").warning.startswith("that candidate is gone")
    language[0] = "zh"  # the user switched the WebUI's localization
    assert logic.pick_candidate("#3 x", [{}], False, "").warning.startswith("该候选已失效")
    assert "生成" in logic.preview("", "", "", "", "", "").values["preview_notes"]


def test_settings_help_is_built_in_the_language():
    env = {"NEWSPICGEN_SERVER_URL": "http://gpu-box:30000", "NEWSPICGEN_API_KEY": "s3cret"}
    spec = {s["key"]: s for s in option_specs("/srv", environ=env, language="zh")}[KEY_SERVER_URL]
    assert "当前使用：http://gpu-box:30000" in spec["info"] and "只发送给 http://gpu-box:30000" in spec["info"]
    assert "s3cret" not in spec["info"]


def test_the_errors_a_tab_user_meets_are_in_the_webuis_language(tmp_path):
    from extension.config import NewsPicGenConfig
    from extension.messages import error_text
    from prompt_server.errors import AuthenticationError, ServerTimeout
    from prompt_server.instruction import EmptyNewsError
    from tests.support.loopback import free_port

    port = free_port()  # nothing listens there
    language = ["zh"]
    config = NewsPicGenConfig(server_url=f"http://127.0.0.1:{port}", timeout=5, preset_dir=str(tmp_path))
    logic = TabLogic(lambda: config, language=lambda: language[0])
    down = logic.generate("标题", "正文", True, "")
    assert down.warning.startswith(f"无法连接提示词服务器 http://127.0.0.1:{port}")
    assert "“提示词服务器”面板" in down.warning and "`" not in down.warning
    assert "提示词服务器未启动或未就绪**：无法连接提示词服务器" in down.values["status"]
    assert "cannot reach" not in down.values["status"]
    empty = logic.generate("", "<p>\u200b</p>", True, "")
    assert empty.warning.startswith("新闻是空的")
    language[0] = "en"
    assert logic.generate("标题", "正文", True, "").warning.startswith("cannot reach the prompt server")

    timeout = ServerTimeout("http://h:1", 2.5)
    assert error_text(timeout, "zh").startswith("提示词服务器 http://h:1 在 2.5 秒内没有应答；")
    assert error_text(timeout, "en").endswith("raise the timeout (the NewsPicGen settings)"), \
        "the WebUI's fix, not the command line's --timeout"
    assert "拒绝了 API 密钥" in error_text(AuthenticationError("http://h:1", 401, True), "zh")
    assert "需要 API 密钥" in error_text(AuthenticationError("http://h:1", 401, False), "zh")
    assert error_text(EmptyNewsError("custom"), "zh") == "custom", "only the texts it knows are translated"
    assert EmptyNewsError.DEFAULT in ZH


def test_toasts_show_no_markdown_marks():
    """gradio toasts (and the WebUI's console) show Markdown as typed."""
    from types import SimpleNamespace

    from extension.ui_events import Outcome, make_wire

    shown, events = [], []
    gr = SimpleNamespace(update=lambda **kw: kw)
    wire = make_wire(gr, {"a": object()}, shown.append)
    wire(lambda **kw: events.append(kw["fn"]), lambda value: Outcome(
        warning="pick a LoRA, then press **Add LoRA to the preset**: `x` at http://bob:***@h"), ["a"], ["a"])
    events[0]("typed")
    assert shown == ["pick a LoRA, then press Add LoRA to the preset: x at http://bob:***@h"]


def test_the_server_down_hint_names_where_the_url_comes_from():
    from extension.messages import server_hint
    for language in ("en", "zh"):
        from_settings = server_hint(language, environ={})
        from_env = server_hint(language, environ={"NEWSPICGEN_SERVER_URL": "http://gpu-box:30000"})
        assert ("Settings → NewsPicGen" in from_settings) or ("设置 → NewsPicGen" in from_settings)
        assert "NEWSPICGEN_SERVER_URL" in from_env and "→" not in from_env, "that Settings field is read-only"
        assert "make serve" not in from_settings + from_env, "the tab's panel, not a terminal"


def test_error_texts_a_webui_user_meets_are_plain_one_line_and_say_newspicgen_at_most_once():
    from extension.messages import error_text
    from prompt_server.errors import AuthenticationError, GrammarRejected, InvalidOutput, ServerTimeout
    from prompt_server.instruction import EmptyNewsError
    errors = [ServerUnreachable("http://h:1", "connection refused"), ServerTimeout("http://h:1", 2.0),
              AuthenticationError("http://h:1", 401, False), GrammarRejected("bad", "json_schema"),
              InvalidOutput("{}", "no fields"), EmptyNewsError()]
    for error in errors:
        for language in ("en", "zh"):
            text = error_text(error, language)
            assert "`" not in text and "**" not in text and "\n" not in text, text
            assert text.count("NewsPicGen:") == 0 and "--timeout" not in text, text


def test_chinese_sentences_take_chinese_punctuation():
    import json
    import re

    from tests.support import REPO
    # an ASCII , ; : ( ) ! ? or . touching a Chinese character, or an English dash between clauses
    wrong = re.compile(r"[\u4e00-\u9fff][,;:()!?.]|[,;:()!?][\u4e00-\u9fff]| — ")
    labels = json.loads((REPO / "localizations" / "zh_CN.json").read_text(encoding="utf-8"))
    found = [text for text in [*ZH.values(), *labels.values()] if wrong.search(text)]
    assert not found, found
    assert labels["Send to txt2img"] == "发送到文生图" and labels["Send to img2img"] == "发送到图生图", \
        "the tab's Send buttons are Chinese with this extension's localization alone"
