"""Strings the tab builds at run time (the status line, notes, warnings), in the
WebUI's language.

The WebUI's localization files (localizations/*.json) translate only text that
is on the page when it loads; a message made later goes through `tr()` here,
keyed on the English template, in the language of `opts.localization`.
Nothing here imports gradio or `modules`.
"""
from __future__ import annotations

import os
import re
import string
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from prompt_server.defaults import ENV_API_KEY, ENV_SERVER_URL
from prompt_server.errors import AuthenticationError, PromptServerError, ServerTimeout, ServerUnreachable
from prompt_server.instruction import EmptyNewsError

ZH: Dict[str, str] = {
    "Prompt server `{url}` — not checked yet (press **Check server** or **Generate prompt**).":
        "提示词服务器 `{url}`：尚未检查（点击 **检查服务器** 或 **生成提示词**）。",
    "🟢 Prompt server `{url}` · engine `{engine}` · model `{model}` · last latency {latency}":
        "🟢 提示词服务器 `{url}` · 引擎 `{engine}` · 模型 `{model}` · 上次耗时 {latency}",
    "unknown": "未知",
    "no answer": "无应答",
    "not ready": "未就绪",
    "🔴 **Prompt server down or not ready** — {reason}": "🔴 **提示词服务器未启动或未就绪**：{reason}",
    "Last request failed: {error}": "上次请求失败：{error}",
    "{count} candidates from seeds {first}–{last}; pick one to use it.":
        "{count} 个候选，种子 {first}–{last}；选择一个即可使用。",
    "{count} candidates from seeds {first}–{last}, the most relevant to the article first; pick one to use it.":
        "{count} 个候选，种子 {first}–{last}，与新闻最相关的在前；选择一个即可使用。",
    "that candidate is gone; press Generate candidates again": "该候选已失效，请再次点击“生成候选”",
    "Generate a prompt (or type one) to see the composed prompt.": "生成（或输入）提示词后可在此预览组合后的提示词。",
    # Settings → NewsPicGen help, built when the page is (it names the environment in use)
    "SGLang or python -m prompt_server serve; the {env} environment variable overrides this":
        "SGLang 或 python -m prompt_server serve；环境变量 {env} 优先于此设置",
    "in use: {url}, from the {env} environment variable, which overrides this":
        "当前使用：{url}，来自环境变量 {env}，它优先于此设置",
    "API key: from {env}, sent only to {url}": "API 密钥：来自 {env}，只发送给 {url}",
    "API key: none; start the WebUI with {env} (and {env_url}) if the server needs one":
        "API 密钥：未设置；服务器需要密钥时，请用 {env}（及 {env_url}）启动 WebUI",
    # the preset editor (button names as the localized page shows them)
    "**{name}** is a built-in preset (read-only). Type a name for a copy and press **Duplicate preset** "
    "to get an editable user preset.":
        "**{name}** 是内置预设（只读）。输入副本名称并点击 **复制预设**，即可得到可编辑的用户预设。",
    # a file name, not its path: the folder is in Settings, and a path would show the machine's layout
    "**{name}** is a user preset: `{file}` in the user preset folder":
        "**{name}** 是用户预设：用户预设文件夹中的 `{file}`",
    "Deleted **{name}** (backup: `{file}` in the user preset folder). Its JSON stays here; **Save preset** "
    "restores it.":
        "已删除 **{name}**（备份：用户预设文件夹中的 `{file}`）。它的 JSON 仍在此处；点击 **保存预设** 即可恢复。",
    "Duplicated as **{name}**: `{file}` in the user preset folder": "已复制为 **{name}**：用户预设文件夹中的 `{file}`",
    "Saved **{name}** as `{file}` in the user preset folder": "已将 **{name}** 保存为用户预设文件夹中的 `{file}`",
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
    # what to do when it is down, in the WebUI: the tab's panel, and where the URL really comes from
    "set up or start a server in the Prompt server panel of the NewsPicGen tab, or change the server URL in "
    "Settings → NewsPicGen":
        "请在 NewsPicGen 标签页的“提示词服务器”面板中安装或启动服务器，或在“设置 → NewsPicGen”中修改服务器地址",
    "set up or start a server in the Prompt server panel of the NewsPicGen tab, or change {env} where the "
    "WebUI is started (it overrides Settings)":
        "请在 NewsPicGen 标签页的“提示词服务器”面板中安装或启动服务器，"
        "或修改启动 WebUI 时设置的 {env}（它优先于设置页）",
    "the prompt server at {url} did not answer within {timeout} s": "提示词服务器 {url} 在 {timeout} 秒内没有应答",
    "it may still be loading the model or be busy; retry, or raise the timeout (the NewsPicGen settings)":
        "它可能仍在加载模型或正忙；请重试，或调大超时（NewsPicGen 设置）",
    "the prompt server at {url} refused the API key (HTTP {status})":
        "提示词服务器 {url} 拒绝了 API 密钥（HTTP {status}）",
    "the prompt server at {url} requires an API key (HTTP {status})":
        "提示词服务器 {url} 需要 API 密钥（HTTP {status}）",
    "start the WebUI with {env} set to the server's key (it is sent only to {env_url}, or to the default URL "
    "without it)":
        "请在启动 WebUI 时把 {env} 设为服务器的密钥（它只发送给 {env_url} 指定的服务器，未设置时只发送给默认地址）",
    "the news is empty (markup and invisible characters do not count); paste a title or content":
        "新闻是空的（HTML 标记和看不见的字符不算文字）；请粘贴标题或正文",
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


_BOLD = re.compile(r"(?<!\*)\*\*(?!\*)(.+?)(?<!\*)\*\*(?!\*)")  # **x**, not a redacted password's ***


def plain_text(markdown: str) -> str:
    """A message for a toast, the console or an API answer, where Markdown shows as typed:
    its **bold** and `code` marks removed."""
    return _BOLD.sub(r"\1", markdown).replace("`", "")


def sentence(text: str, language: str) -> str:
    """A hint ("set up ...") as a sentence of its own ("Set up ....", "请……。")."""
    if language == "zh":
        return text + "。"
    return text[:1].upper() + text[1:] + "."


def server_hint(language: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """What to do when the prompt server is down, inside the WebUI: the tab's panel sets one up
    or starts it, and the URL is changed where it comes from (NEWSPICGEN_SERVER_URL makes the
    Settings field read-only, so sending the user there would not help)."""
    env = os.environ if environ is None else environ
    if (env.get(ENV_SERVER_URL) or "").strip():
        return tr(language, "set up or start a server in the Prompt server panel of the NewsPicGen tab, or change "
                            "{env} where the WebUI is started (it overrides Settings)", env=ENV_SERVER_URL)
    return tr(language, "set up or start a server in the Prompt server panel of the NewsPicGen tab, or change the "
                        "server URL in Settings → NewsPicGen")


def error_parts(exc: BaseException, language: str) -> Tuple[str, str]:
    """(what happened, what to do) for an error, in `language`, as a WebUI user meets it: the
    hints name the WebUI's ways (the tab's panel, the WebUI's environment), not a terminal's.
    The errors a tab user meets most have a translation; the rest stay English."""
    if isinstance(exc, ServerUnreachable) and exc.url:
        reason = (f"（{exc.reason}）" if language == "zh" else f" ({exc.reason})") if exc.reason else ""
        return tr(language, "cannot reach the prompt server at {url}", url=exc.url) + reason, server_hint(language)
    if isinstance(exc, AuthenticationError) and exc.url:
        message = (tr(language, "the prompt server at {url} refused the API key (HTTP {status})",
                      url=exc.url, status=exc.status) if exc.has_key else
                   tr(language, "the prompt server at {url} requires an API key (HTTP {status})",
                      url=exc.url, status=exc.status))
        return message, tr(language, "start the WebUI with {env} set to the server's key (it is sent only to "
                                     "{env_url}, or to the default URL without it)",
                           env=ENV_API_KEY, env_url=ENV_SERVER_URL)
    if isinstance(exc, ServerTimeout) and exc.url:
        return (tr(language, "the prompt server at {url} did not answer within {timeout} s",
                   url=exc.url, timeout=f"{exc.timeout:g}"),
                tr(language, "it may still be loading the model or be busy; retry, or raise the timeout "
                             "(the NewsPicGen settings)"))
    if language == "en" or language not in CATALOGS:
        return (exc.message, exc.hint) if isinstance(exc, PromptServerError) else (str(exc), "")
    if isinstance(exc, EmptyNewsError) and str(exc) == EmptyNewsError.DEFAULT:
        return tr(language, EmptyNewsError.DEFAULT), ""
    return error_parts(exc, "en")


def error_text(exc: BaseException, language: str) -> str:
    """An error as one line of plain text in `language`: what happened; what to do."""
    message, hint = error_parts(exc, language)
    separator = "；" if language == "zh" else "; "  # Chinese text takes the full-width semicolon
    return plain_text(f"{message}{separator}{hint}" if hint else message)
