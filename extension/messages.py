"""Strings the tab builds at run time (the status line, notes, warnings), in the
WebUI's language.

The WebUI's localization files (localizations/*.json) translate only text that
is on the page when it loads; a message made later goes through `tr()` here,
keyed on the English template, in the language of `opts.localization`.
Nothing here imports gradio or `modules`.
"""
from __future__ import annotations

import string
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import urlparse

from prompt_server.defaults import ENV_API_KEY, start_command
from prompt_server.errors import AuthenticationError, PromptServerError, ServerTimeout, ServerUnreachable
from prompt_server.instruction import EmptyNewsError

ZH: Dict[str, str] = {
    "Prompt server `{url}` — not checked yet (press **Check server** or **Generate prompt**).":
        "提示词服务器 `{url}` — 尚未检查（点击 **Check server** 或 **Generate prompt**）。",
    "🟢 Prompt server `{url}` · engine `{engine}` · model `{model}` · last latency {latency}":
        "🟢 提示词服务器 `{url}` · 引擎 `{engine}` · 模型 `{model}` · 上次耗时 {latency}",
    "unknown": "未知",
    "no answer": "无应答",
    "not ready": "未就绪",
    "🔴 **Prompt server down or not ready** — {reason}": "🔴 **提示词服务器未启动或未就绪** — {reason}",
    "Start it in a terminal (it sets up its own environment on the first run):":
        "在终端中启动（第一次运行时会自动建立它自己的运行环境）：",
    "or fix the server URL in Settings → NewsPicGen.": "或在 设置 → NewsPicGen 中修改服务器地址。",
    "Last request failed: {error}": "上次请求失败：{error}",
    "{count} candidates from seeds {first}–{last}; pick one to use it.":
        "{count} 个候选，种子 {first}–{last}；选择一个即可使用。",
    "{count} candidates from seeds {first}–{last}, the most relevant to the article first; pick one to use it.":
        "{count} 个候选，种子 {first}–{last}，与新闻最相关的在前；选择一个即可使用。",
    "that candidate is gone; press More candidates again": "该候选已失效；请再次点击 More candidates",
    "Generate a prompt (or type one) to see the composed prompt.": "生成（或输入）提示词后可在此预览组合后的提示词。",
    # Settings → NewsPicGen help, built when the page is (it names the environment in use)
    "SGLang or `python -m prompt_server serve`; the {env} environment variable overrides this":
        "SGLang 或 `python -m prompt_server serve`；环境变量 {env} 优先于此设置",
    "in use: {url}, from the {env} environment variable, which overrides this":
        "当前使用：{url}，来自环境变量 {env}，它优先于此设置",
    "API key: from {env}, sent only to {url}": "API 密钥：来自 {env}，只发送给 {url}",
    "API key: none; start the WebUI with {env} (and {env_url}) if the server needs one":
        "API 密钥：未设置；服务器需要密钥时，请用 {env}（及 {env_url}）启动 WebUI",
    # the preset editor (button names as the localized page shows them)
    "**{name}** is a built-in preset (read-only). Type a name for a copy and press **Duplicate preset** "
    "to get an editable user preset.":
        "**{name}** 是内置预设（只读）。输入副本名称并点击 **复制预设**，即可得到可编辑的用户预设。",
    "**{name}** is a user preset: `{path}`": "**{name}** 是用户预设：`{path}`",
    "Deleted **{name}** (backup: `{path}`). Its JSON stays here; **Save preset** restores it.":
        "已删除 **{name}**（备份：`{path}`）。它的 JSON 仍在此处；点击 **保存预设** 即可恢复。",
    "Duplicated as **{name}**: `{path}`": "已复制为 **{name}**：`{path}`",
    "Saved **{name}** to `{path}`": "已将 **{name}** 保存到 `{path}`",
    "Your unsaved edits are back; **Save preset** keeps them.": "未保存的修改已恢复；点击 **保存预设** 即可保留。",
    "Your unsaved edits to **{name}** are kept: pick it again to get them back.":
        "对 **{name}** 未保存的修改已保留：再次选择它即可找回。",
    "a preset named {name} already exists; pick another name": "已存在名为 {name} 的预设；请换一个名称",
    "cannot duplicate as {name}: {error}": "无法复制为 {name}：{error}",
    "pick a LoRA from the list first, then press **Add LoRA to the preset**":
        "请先从列表中选择一个 LoRA，再点击 **将 LoRA 加入预设**",
    "pick a user preset to delete": "请选择要删除的用户预设",
    "preset not saved: {error}": "预设未保存：{error}",
    "the form cannot write into this JSON: mend it in **Preset JSON** first (your form edit stays in the form)":
        "表单无法写入这段 JSON：请先在 **预设 JSON** 中修正（表单中的修改会保留）",
    "type a name for the copy, then press **Duplicate preset**": "请输入副本名称，再点击 **复制预设**",
    "valid": "有效",
    "{name} is a built-in preset; change its name (or use **Duplicate preset**) to save your own copy":
        "{name} 是内置预设；请修改名称（或使用 **复制预设**）以保存你自己的副本",
    # the prompt server's errors a tab user meets (others stay in English: they quote the server)
    "cannot reach the prompt server at {url}": "无法连接提示词服务器 {url}",
    "start it with `{command}` in the NewsPicGen folder, or fix the server URL":
        "请在 NewsPicGen 文件夹中用 `{command}` 启动它，或修改服务器地址",
    "the prompt server at {url} did not answer within {timeout} s": "提示词服务器 {url} 在 {timeout} 秒内没有应答",
    "it may still be loading the model or be busy; retry, or raise the timeout (the NewsPicGen settings)":
        "它可能仍在加载模型或正忙；请重试，或调大超时（NewsPicGen 设置）",
    "the prompt server at {url} refused the API key (HTTP {status})":
        "提示词服务器 {url} 拒绝了 API 密钥（HTTP {status}）",
    "the prompt server at {url} requires an API key (HTTP {status})":
        "提示词服务器 {url} 需要 API 密钥（HTTP {status}）",
    "set the server's API key: the {env} environment variable, or the NewsPicGen settings in the WebUI":
        "请设置服务器的 API 密钥：环境变量 {env}，或 WebUI 中的 NewsPicGen 设置",
    "the news is empty after cleaning (no text left once HTML, control and zero-width characters are removed); "
    "paste a title or content":
        "清理后新闻为空（去除 HTML、控制字符和零宽字符后没有剩余文字）；请粘贴标题或正文",
}
CATALOGS: Dict[str, Dict[str, str]] = {"zh": ZH}


def language_of(localization: Optional[str]) -> str:
    """The WebUI's `opts.localization` ("None", "zh_CN", "zh-Hans (Stable)", ...) -> "zh" | "en"."""
    name = (localization or "").strip().lower()
    return "zh" if name.startswith("zh") else "en"


def placeholders(template: str) -> set:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def tr(language: str, template: str, **values: Any) -> str:
    """`template` in `language` (English when there is no translation), filled with `values`."""
    return CATALOGS.get(language, {}).get(template, template).format(**values)


class Translator:
    """tr() in the language the WebUI has now: `language()` is read on every message, as the
    user may switch the localization; English when it fails (a nicety never fails an event)."""

    def __init__(self, language: Optional[Callable[[], str]] = None):
        self._language = language or (lambda: "en")

    def language(self) -> str:
        try:
            return self._language()
        except Exception:
            return "en"

    def __call__(self, template: str, **values: Any) -> str:
        return tr(self.language(), template, **values)


def error_parts(exc: BaseException, language: str) -> Tuple[str, str]:
    """(what happened, what to do) for an error, in `language`. English is the error's own
    text; the errors a tab user meets most have a translation, the rest stay English."""
    if language == "en" or language not in CATALOGS:
        return (exc.message, exc.hint) if isinstance(exc, PromptServerError) else (str(exc), "")
    if isinstance(exc, ServerUnreachable) and exc.url:
        message = tr(language, "cannot reach the prompt server at {url}", url=exc.url)
        return (message + (f" ({exc.reason})" if exc.reason else ""),
                tr(language, "start it with `{command}` in the NewsPicGen folder, or fix the server URL",
                   command=start_command(urlparse(exc.url).port)))
    if isinstance(exc, ServerTimeout) and exc.url:
        return (tr(language, "the prompt server at {url} did not answer within {timeout} s",
                   url=exc.url, timeout=f"{exc.timeout:g}"),
                tr(language, "it may still be loading the model or be busy; retry, or raise the timeout "
                             "(the NewsPicGen settings)"))
    if isinstance(exc, AuthenticationError) and exc.url:
        message = (tr(language, "the prompt server at {url} refused the API key (HTTP {status})",
                      url=exc.url, status=exc.status) if exc.has_key else
                   tr(language, "the prompt server at {url} requires an API key (HTTP {status})",
                      url=exc.url, status=exc.status))
        return message, tr(language, "set the server's API key: the {env} environment variable, or the "
                                     "NewsPicGen settings in the WebUI", env=ENV_API_KEY)
    if isinstance(exc, EmptyNewsError) and str(exc) == EmptyNewsError.DEFAULT:
        return tr(language, EmptyNewsError.DEFAULT), ""
    return error_parts(exc, "en")


def error_text(exc: BaseException, language: str) -> str:
    """An error as one line in `language`: what happened; what to do."""
    message, hint = error_parts(exc, language)
    separator = "；" if language == "zh" else "; "  # Chinese text takes the full-width semicolon
    return f"{message}{separator}{hint}" if hint else message
