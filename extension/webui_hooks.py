"""What the NewsPicGen tab may ask of the WebUI it runs in.

`extension/tab.py` is built against this dataclass only, so the same tab runs
inside the WebUI (the scripts entry passes hooks backed by `modules.*`) and
outside it (tests, demos: `WebUIHooks()` with the harmless defaults below).
Nothing here imports gradio or `modules`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional

if TYPE_CHECKING:
    from style_presets.availability import Availability

log = logging.getLogger("newspicgen")

PASTE_TABS = ("txt2img", "img2img")


def _unknown_availability() -> Optional[Availability]:
    return None


def _no_paste(button: Any, tabname: str, infotext_component: Any) -> None:
    return None


def _none_listed() -> List[str]:
    return []


def _unknown_base() -> Optional[str]:
    return None


def _english() -> str:
    return "en"


def _log_warning(message: str) -> None:
    log.warning("%s", message)


@dataclass
class WebUIHooks:
    """Callbacks into the WebUI; every field has a standalone default.

    available():  the LoRAs and embeddings the WebUI has right now, or None when
                  unknown (outside the WebUI, or embeddings not loaded yet) — the
                  preview then marks nothing as missing.
    register_paste(button, tabname, infotext_component):  make `button` a
                  "Send to <tabname>" button ("txt2img" | "img2img") through the
                  WebUI's paste-parameters mechanism: on click the WebUI parses the
                  infotext in `infotext_component` (a gr.Textbox, may be hidden) the
                  way PNG Info does and fills prompt, negative prompt, steps,
                  sampler, CFG, size. Call it while building the Blocks; the WebUI
                  wires the click after all tabs are built. Outside: no-op.
    warn(message): show a warning to the user (inside the WebUI: a gradio toast
                  and the console). Never pass secrets.
    samplers(), schedulers():  the names the WebUI's txt2img lists (sampler names,
                  schedule type labels), for the preset editor's pickers. Outside: [].
    language():   "zh" or "en", from the WebUI's opts.localization, for messages
                  built at run time (extension.messages). Outside: "en".
    model_base(): the loaded model's family ("sd15", "sdxl", "flux"; see
                  newspicgen.model_base), or None when unknown; per-type default
                  presets are picked for it. Outside: None.
    in_webui:     True when the hooks are backed by a running WebUI.
    preset_dropdowns: preset dropdowns outside the tab (the always-on script's, with
                  "" = the type's default) that the tab refreshes with its own on
                  every page load, so a new preset shows without a restart.
    server:       the prompt server panel's ServerControl (set up, start, stop, find,
                  use); None: the tab shows only the status line.
    """

    available: Callable[[], Optional[Availability]] = field(default=_unknown_availability)
    register_paste: Callable[[Any, str, Any], None] = field(default=_no_paste)
    warn: Callable[[str], None] = field(default=_log_warning)
    samplers: Callable[[], List[str]] = field(default=_none_listed)
    schedulers: Callable[[], List[str]] = field(default=_none_listed)
    language: Callable[[], str] = field(default=_english)
    model_base: Callable[[], Optional[str]] = field(default=_unknown_base)
    in_webui: bool = False
    preset_dropdowns: List[Any] = field(default_factory=list)
    server: Any = None  # the prompt server panel's actions (server_control.ServerControl); None outside the WebUI
