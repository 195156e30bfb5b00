"""POST /newspicgen/v1/comic and /newspicgen/v1/ad: the same objects `newspicgen comic`
and `newspicgen ad` print; with "render": true also the pictures, made by the
WebUI's own txt2img (one per panel), and the strip / poster image."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from newspicgen.task_render import render_ad, render_strip, strip_seed

from .api import _ERRORS, PREFIX, TAGS, Txt2Img, Txt2ImgUnavailable, _http_error, split_overrides
from .api_models import AdRequest, ComicRequest
from .config import NewsPicGenConfig
from .task_runs import b64, make_ad, make_comic, webui_render


def mount_task_routes(app: Any, get_config: Callable[[], NewsPicGenConfig], *, txt2img: Optional[Txt2Img] = None,
                      available: Callable[[], Any] = lambda: None, dependencies: Optional[list] = None) -> None:

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
