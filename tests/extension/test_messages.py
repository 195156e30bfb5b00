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
    assert "make serve PORT=9" in chinese, "the command itself stays as typed"
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
