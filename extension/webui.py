"""The WebUI side: callbacks, hooks for the tab, and the WebUI's own txt2img.

Imported only inside AUTOMATIC1111 / Forge (by scripts/newspicgen.py).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional

from newspicgen.model_base import base_of_webui
from style_presets.availability import Availability

from .api import Txt2ImgUnavailable, mount_routes
from .config import NewsPicGenConfig, key_withheld
from .messages import language_of
from .rewrite import provenance_args, ui_defaults, untouched_with
from .server_routes import mount_server_routes
from .server_webui import panel_control, server_control, start_with_webui
from .settings import config_from_opts, register_settings
from .webui_hooks import WebUIHooks

TAB_TITLE = "NewsPicGen"
TAB_ID = "newspicgen"
# The always-on script's preset dropdowns of the UI being built (emptied on each scripts load).
PRESET_DROPDOWNS: List[Any] = []
_WITHHELD_SAID: set = set()  # server URLs already told about (once each, not on every request)


def get_config() -> NewsPicGenConfig:
    from modules import shared
    config = config_from_opts(shared.opts)
    if config.server_url not in _WITHHELD_SAID:
        _WITHHELD_SAID.add(config.server_url)
        line = key_withheld(config.server_url)
        if line:
            print(f"NewsPicGen: {line}")
    return config


def preset_choices() -> List[str]:
    """"" (the default for the type) plus every preset name; a broken folder gives just ""."""
    try:
        return [""] + get_config().store().names()
    except Exception as exc:
        print(f"NewsPicGen: cannot list presets: {exc}")
        return [""]


def _lora_names() -> Optional[set]:
    networks = sys.modules.get("networks")  # the built-in Lora extension's module (A1111 and Forge)
    table = getattr(networks, "available_networks", None)
    if table is None:
        return None
    return set(table) | set(getattr(networks, "available_network_aliases", {}) or {})


def _embedding_names() -> Optional[set]:
    """Embeddings the WebUI has: A1111's model hijack database, or Forge's (it has no
    sd_hijack.embedding_db; its extra-networks page keeps an EmbeddingDatabase of
    the embeddings folder, re-read here when the folder changed)."""
    try:
        from modules import sd_hijack
        db = getattr(getattr(sd_hijack, "model_hijack", None), "embedding_db", None)
        if db is None:
            from modules import ui_extra_networks_textual_inversion as forge_ti
            db = forge_ti.embedding_db
            db.load_textual_inversion_embeddings(sync_with_sd_model=False)  # no-op unless the folder changed
    except Exception:
        return None
    return set(getattr(db, "word_embeddings", {}) or {})


def available() -> Optional[Availability]:
    """LoRAs and embeddings the WebUI has now; None when either is unknown."""
    loras, embeddings = _lora_names(), _embedding_names()
    if loras is None or embeddings is None:
        return None
    return Availability(loras=loras, embeddings=embeddings)


def samplers() -> List[str]:
    from modules import sd_samplers
    return list(sd_samplers.visible_sampler_names())


def schedulers() -> List[str]:
    """Schedule types as txt2img shows them (labels: "Karras"); the API takes them too."""
    from modules import sd_schedulers
    return [scheduler.label for scheduler in sd_schedulers.schedulers]


def untouched(is_img2img: bool) -> Dict[str, Any]:
    """Which txt2img/img2img values count as "left at the default" in this WebUI."""
    from modules import shared
    config: Dict[str, Any] = {}
    try:
        with open(shared.cmd_opts.ui_config_file, encoding="utf8") as file:
            config = json.load(file)
    except (OSError, ValueError, AttributeError):
        pass  # first start: no ui-config.json yet; the stock defaults still apply
    return untouched_with(ui_defaults(config, shared.opts, "img2img" if is_img2img else "txt2img"))


def register_paste(button: Any, tabname: str, infotext_component: Any) -> None:
    try:
        from modules import infotext_utils as paste
    except ImportError:  # WebUI before 1.8
        from modules import generation_parameters_copypaste as paste
    paste.register_paste_params_button(paste.ParamBinding(
        paste_button=button, tabname=tabname, source_text_component=infotext_component))


def warn(message: str) -> None:
    import gradio as gr
    print(f"NewsPicGen: {message}")
    if hasattr(gr, "Warning"):
        gr.Warning(message)


def language() -> str:
    """"zh" when the WebUI's Settings → User interface → Localization is a Chinese one, else "en"."""
    from modules import shared
    return language_of(getattr(shared.opts, "localization", None))


def model_base() -> Optional[str]:
    """The loaded model's family: Forge's UI preset, else the model's own flags. Reads
    sd_models.model_data, not shared.sd_model: asking A1111 for that would load a model."""
    try:
        from modules import sd_models, shared
        return base_of_webui(getattr(shared.opts, "forge_preset", None),
                             getattr(sd_models.model_data, "sd_model", None))
    except Exception:  # a WebUI of another shape: unknown, and the old default applies
        return None


def hooks() -> WebUIHooks:
    return WebUIHooks(available=available, register_paste=register_paste, warn=warn, language=language,
                      samplers=samplers, schedulers=schedulers, model_base=model_base, in_webui=True,
                      preset_dropdowns=list(PRESET_DROPDOWNS), server=panel_control())


def _txt2img_endpoint(app: Any):
    for route in getattr(app, "routes", []):
        if getattr(route, "path", None) == "/sdapi/v1/txt2img":
            return route.endpoint  # the bound method Api.text2imgapi of the WebUI's own Api
    return None


def webui_txt2img(app: Any):
    """A txt2img backend calling the WebUI's own Api.text2imgapi (its queue lock, its scripts).

    The provenance travels as our always-on script's args (disabled: it only writes
    the NewsPicGen infotext fields), beside any scripts the caller passed.
    """

    def run(payload: Dict[str, Any], provenance: Dict[str, str]) -> Dict[str, Any]:
        endpoint = _txt2img_endpoint(app)
        if endpoint is None:
            raise Txt2ImgUnavailable("the WebUI's txt2img API is not available; start the WebUI with --api")
        from modules.api import models
        scripts = {k: v for k, v in dict(payload.get("alwayson_scripts") or {}).items()
                   if str(k).lower() != "newspicgen"}
        scripts["NewsPicGen"] = {"args": provenance_args(provenance, payload["prompt"])}
        payload = {**payload, "alwayson_scripts": scripts}
        response = endpoint(models.StableDiffusionTxt2ImgProcessingAPI(**payload))
        return {"images": list(response.images or []), "info": response.info}

    return run


def _auth_dependencies(app: Any) -> Optional[list]:
    """With --api-auth the WebUI's own routes need credentials; ours too."""
    from modules import shared
    endpoint = _txt2img_endpoint(app)
    api = getattr(endpoint, "__self__", None)
    if api is None or not getattr(shared.cmd_opts, "api_auth", None) or not hasattr(api, "auth"):
        return None
    from fastapi import Depends
    return [Depends(api.auth)]


def on_app_started(demo: Any, app: Any) -> None:
    mount_routes(app, get_config, txt2img=webui_txt2img(app), available=available, model_base=model_base,
                 dependencies=_auth_dependencies(app))
    mount_server_routes(app, server_control, dependencies=_auth_dependencies(app))
    start_with_webui()


def on_ui_tabs():
    try:
        from .tab import build_tab
        blocks = build_tab(get_config, hooks())
    except Exception:
        from modules import errors
        errors.report("NewsPicGen: the tab could not be built; the API routes and the always-on script still work",
                      exc_info=True)
        return []
    return [(blocks, TAB_TITLE, TAB_ID)]


def register() -> None:
    """Called each time the WebUI (re)loads scripts/newspicgen.py; it cleared its callbacks before."""
    from modules import script_callbacks
    PRESET_DROPDOWNS.clear()  # a "Reload UI" builds new components
    script_callbacks.on_ui_settings(register_settings)
    script_callbacks.on_ui_tabs(on_ui_tabs)
    script_callbacks.on_app_started(on_app_started)
