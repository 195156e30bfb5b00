"""Strings the tab builds at run time (the status line, notes, warnings), in the
WebUI's language.

The WebUI's localization files (localizations/*.json) translate only text that
is on the page when it loads; a message made later goes through `tr()` here,
keyed on the English template, in the language of `opts.localization`.
Nothing here imports gradio or `modules`.
"""
from __future__ import annotations

import string
from typing import Any, Dict, Optional

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
