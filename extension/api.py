"""The /newspicgen/v1 routes, mountable on any FastAPI app.

Inside the WebUI `extension.webui` mounts them in on_app_started with the
WebUI's own txt2img; the tests mount them on a plain FastAPI app. Handlers are
plain `def`s: FastAPI runs them in its thread pool, so a slow prompt server
never blocks the event loop, and txt2img goes through the WebUI's own queue lock.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import pydantic

from newspicgen.task_render import render_ad, render_strip, strip_seed
from prompt_server.errors import PromptServerError, ServerTimeout, ServerUnreachable
from prompt_server.instruction import EmptyNewsError, News
from style_presets.compose import SETTING_KEYS, OverrideError
from style_presets.store import PresetNotFound

from .api_models import (
    AdRequest,
    ComicRequest,
    ComposedResponse,
    ErrorBody,
    PresetList,
    PromptRequest,
    Txt2ImgRequest,
    Txt2ImgResponse,
)
from .config import ConfigError, NewsPicGenConfig
from .messages import error_text
from .task_runs import WEBUI, b64, make_ad, make_comic, webui_render

PREFIX = "/newspicgen/v1"
TAGS = ["NewsPicGen"]


class Txt2ImgUnavailable(RuntimeError):
    """The WebUI's txt2img API is not there (WebUI started without --api)."""


# (payload, provenance: the NewsPicGen infotext fields) -> {"images": [...], "info": str}
Txt2Img = Callable[[Dict[str, Any], Dict[str, str]], Dict[str, Any]]

_ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in {
    404: "unknown preset",  # 422 (empty news, bad override) keeps FastAPI's own schema; its detail may be a string
    502: "the prompt server answered with an error", 503: "the prompt server (or the WebUI's txt2img) is not reachable",
    504: "the prompt server did not answer in time"}.items()}


def error_status(exc: BaseException) -> Optional[int]:
    """HTTP status for an error the caller or the set-up can fix; None = a bug (re-raised)."""
    if isinstance(exc, PresetNotFound):
        return 404
    if isinstance(exc, (EmptyNewsError, OverrideError, pydantic.ValidationError)):
        return 422
    if isinstance(exc, (ServerUnreachable, Txt2ImgUnavailable)):
        return 503
    if isinstance(exc, ServerTimeout):
        return 504
    if isinstance(exc, PromptServerError):
        return 502
    if isinstance(exc, ConfigError):
        return 500  # a bad NewsPicGen setting of this WebUI; the message names it
    return None


def _http_error(exc: Exception) -> Exception:
    """The HTTPException the caller gets for `exc` (the WebUI prints no traceback for one), its
    detail plain text with the WebUI's hints; a 5xx is one line on the console too."""
    from fastapi import HTTPException  # the WebUI's own fastapi; not needed to import this module
    status = error_status(exc)
    if status is None:
        return exc
    detail = error_text(exc, "en")
    if status >= 500:
        print(f"NewsPicGen: HTTP {status}: {detail}")
    return HTTPException(status_code=status, detail=detail)


def split_overrides(overrides: Optional[Mapping[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(preset setting overrides, other txt2img fields)."""
    overrides = dict(overrides or {})
    settings = {k: v for k, v in overrides.items() if k in SETTING_KEYS}
    return settings, {k: v for k, v in overrides.items() if k not in SETTING_KEYS}


def mount_routes(app: Any, get_config: Callable[[], NewsPicGenConfig], *, txt2img: Optional[Txt2Img] = None,
                 available: Callable[[], Any] = lambda: None, dependencies: Optional[list] = None,
                 model_base: Callable[[], Optional[str]] = lambda: None) -> None:
    """Add the NewsPicGen routes to `app`; `dependencies` e.g. the WebUI's --api-auth check;
    `model_base()` the loaded model's family (per-type default presets are picked for it)."""

    def compose_for(req: PromptRequest, overrides: Optional[Mapping[str, Any]] = None):
        return get_config().pipeline().run(News(title=req.title or "", content=req.content or ""),
                                           preset=req.preset, seed=req.seed, overrides=overrides,
                                           available=available(), base=model_base())

    def prompt(req: PromptRequest) -> Dict[str, Any]:
        try:
            return compose_for(req).to_dict()
        except Exception as exc:
            raise _http_error(exc) from exc

    def presets() -> Dict[str, Any]:
        try:
            config = get_config()
            store = config.store()
            return {"presets": [p.to_dict() for p in store.list()],
                    "builtin": [n for n in store.names() if store.is_builtin(n)],
                    "families": list(store.families()), "default_family": config.family,
                    "model_base": model_base(),
                    "errors": [str(e) for e in store.errors]}
        except Exception as exc:
            raise _http_error(exc) from exc

    def run_txt2img(req: Txt2ImgRequest) -> Dict[str, Any]:
        try:
            if txt2img is None:
                raise Txt2ImgUnavailable("the WebUI's txt2img API is not available; start the WebUI with --api")
            setting_overrides, passthrough = split_overrides(req.overrides)
            composed = compose_for(req, setting_overrides)
            result = txt2img({**passthrough, **composed.txt2img_payload()},  # the composed prompt wins
                             composed.provenance)
            return {**composed.to_dict(), "images": result["images"], "info": result["info"]}
        except Exception as exc:
            raise _http_error(exc) from exc

    app.add_api_route(f"{PREFIX}/prompt", prompt, methods=["POST"], response_model=ComposedResponse,
                      responses=_ERRORS, tags=TAGS, dependencies=dependencies,
                      summary="News -> picture prompt + composed txt2img prompt")
    app.add_api_route(f"{PREFIX}/presets", presets, methods=["GET"], response_model=PresetList,
                      responses=_ERRORS, tags=TAGS, dependencies=dependencies,
                      summary="Style presets (built-in and user)")
    app.add_api_route(f"{PREFIX}/txt2img", run_txt2img, methods=["POST"], response_model=Txt2ImgResponse,
                      responses=_ERRORS, tags=TAGS, dependencies=dependencies,
                      summary="News -> picture, through the WebUI's own txt2img")
    mount_task_routes(app, get_config, txt2img=txt2img, available=available, dependencies=dependencies)


# --- comic strip and product poster: the same objects `newspicgen comic` / `newspicgen ad` print;
# with "render": true also the pictures (the WebUI's own txt2img) and the strip / poster image.

def mount_task_routes(app: Any, get_config: Callable[[], NewsPicGenConfig], *, txt2img: Optional[Txt2Img] = None,
                      available: Callable[[], Any] = lambda: None, dependencies: Optional[list] = None) -> None:

    if txt2img is not None:
        WEBUI["txt2img"] = txt2img  # the tab's comic and ad parts draw through it too

    def renderer() -> Any:
        if txt2img is None:
            raise Txt2ImgUnavailable("the WebUI's txt2img API is not available; start the WebUI with --api")
        return webui_render(txt2img)

    def comic(req: ComicRequest) -> Dict[str, Any]:
        try:
            render = renderer() if req.render else None
            settings, passthrough = split_overrides(req.overrides)
            image_seed = strip_seed(settings) if req.render or "seed" in settings else None
            composed = make_comic(get_config(), {"title": req.title, "content": req.content, "panels": req.panels},
                                  family=req.family, preset=req.preset, seed=req.seed, image_seed=image_seed,
                                  seed_step=req.seed_step, overrides=settings, available=available())
            body = composed.to_dict()
            if render is not None:
                rendered = render_strip(composed, render, passthrough=passthrough)
                body.update(images=[b64(p.with_infotext()) for p in rendered.panels], strip=b64(rendered.strip.png),
                            captions_drawn=rendered.strip.captions_drawn)
            return body
        except Exception as exc:
            raise _http_error(exc) from exc

    def ad(req: AdRequest) -> Dict[str, Any]:
        try:
            render = renderer() if req.render else None
            settings, passthrough = split_overrides(req.overrides)
            composed = make_ad(get_config(), {"product": req.product, "facts": req.facts}, family=req.family,
                               preset=req.preset, seed=req.seed, overrides=settings, available=available())
            body = composed.to_dict()
            if render is not None:
                rendered = render_ad(composed, render, passthrough=passthrough)
                body.update(images=[b64(rendered.picture.with_infotext())], poster=b64(rendered.poster.png),
                            captions_drawn=rendered.poster.captions_drawn)
            return body
        except Exception as exc:
            raise _http_error(exc) from exc

    app.add_api_route(f"{PREFIX}/comic", comic, methods=["POST"], responses=_ERRORS, tags=TAGS,
                      dependencies=dependencies, summary="Story -> comic strip prompts (and pictures with render)")
    app.add_api_route(f"{PREFIX}/ad", ad, methods=["POST"], responses=_ERRORS, tags=TAGS,
                      dependencies=dependencies, summary="Product facts -> ad copy + poster prompt (and poster)")
