"""Comic strips and ad posters for the routes and the tab: the task's own client
(its server/model, else the news server of the settings), composition, and
rendering through the WebUI's own txt2img."""
from __future__ import annotations

import base64
import functools
import json
from typing import Any, Callable, Dict, Mapping, Optional

from newspicgen.ad import ComposedAd, compose_ad
from newspicgen.comic import ComposedStrip, compose_strip
from newspicgen.task_render import Render, RenderedPicture
from prompt_server.ad_task import AD
from prompt_server.client import PromptClient
from prompt_server.comic_task import COMIC
from prompt_server.task import Task

from .config import NewsPicGenConfig, key_for

# (payload, provenance) -> {"images": [base64 PNG, ...], "info": the WebUI's info JSON string}
Txt2Img = Callable[[Dict[str, Any], Dict[str, str]], Dict[str, Any]]


# The WebUI's txt2img, set when the routes are mounted (on_app_started, after the tab is built):
# the tab's parts read it at click time.
WEBUI: Dict[str, Optional[Txt2Img]] = {"txt2img": None}


def task_client(config: NewsPicGenConfig, task: Task) -> PromptClient:
    """A client for `task`'s server: NEWSPICGEN_<TASK>_SERVER_URL / _MODEL, else the news server."""
    url, model = task.server(news_url=(config.task_server_url or config.server_url).strip().rstrip("/"),
                             model=config.task_model)
    return _client(url, model, key_for(url) if url != config.server_url else config.api_key,
                   float(config.timeout), config.mode, task.max_tokens or 768)


@functools.lru_cache(maxsize=8)
def _client(url: str, model: str, api_key: Optional[str], timeout: float, mode: str,
            max_tokens: int) -> PromptClient:
    return PromptClient(base_url=url, api_key=api_key, timeout=timeout, mode=mode, model=model,
                        max_tokens=max_tokens)


def make_comic(config: NewsPicGenConfig, story: Mapping[str, Any], *, family: Optional[str] = None,
               preset: Optional[str] = None, seed: Optional[int] = None, image_seed: Optional[int] = None,
               seed_step: int = 0, overrides: Optional[Mapping[str, Any]] = None,
               available: Any = None) -> ComposedStrip:
    """Story -> composed strip. A preset/family typo fails before the model is asked."""
    store = config.store()
    if preset:
        store.get(preset)
    family = family or config.family
    strip = task_client(config, COMIC).generate_task(COMIC, story, seed=seed)
    return compose_strip(strip, store, family=family, preset=preset, seed=image_seed, seed_step=seed_step,
                         overrides=overrides, available=available)


def make_ad(config: NewsPicGenConfig, product: Mapping[str, Any], *, family: Optional[str] = None,
            preset: Optional[str] = None, seed: Optional[int] = None, image_seed: Optional[int] = None,
            overrides: Optional[Mapping[str, Any]] = None, available: Any = None) -> ComposedAd:
    store = config.store()
    if preset:
        store.get(preset)
    ad = task_client(config, AD).generate_task(AD, product, seed=seed)
    return compose_ad(ad, store, family=family or "ad", preset=preset, seed=image_seed, overrides=overrides,
                      available=available)


def webui_render(txt2img: Txt2Img) -> Render:
    """A Render over the routes' txt2img: the first image, and the infotext the WebUI wrote."""
    def render(payload: Dict[str, Any], provenance: Dict[str, str]) -> RenderedPicture:
        result = txt2img(payload, provenance)
        png = base64.b64decode(str(result["images"][0]).split(",", 1)[-1])
        try:
            info = json.loads(result.get("info") or "{}")
        except ValueError:
            info = {}
        texts = info.get("infotexts") if isinstance(info, dict) else None
        return RenderedPicture(png, texts[0] if texts else "")
    return render


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
