"""Composed comic strips and ads -> pictures, through any txt2img (the WebUI's own
function inside the routes, its HTTP API in the batch), then the strip / poster
image and the files saved beside it.

    ComposedStrip ─► render(payload, provenance) per panel ─► panel PNGs ─► strip PNG (+ captions)
    ComposedAd    ─► render(payload, provenance)            ─► picture    ─► poster PNG (+ copy)
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from newspicgen.ad import ComposedAd
from newspicgen.comic import ComposedStrip
from newspicgen.strip_image import TextImage, make_poster, make_strip
from newspicgen.webui_client import _has_text_chunk, add_text_chunk
from prompt_server.files import atomic_write
from style_presets.compose import quote

# (txt2img payload, NewsPicGen infotext fields) -> (PNG, the infotext the WebUI wrote)
Render = Callable[[Dict[str, Any], Dict[str, str]], "RenderedPicture"]


@dataclass
class RenderedPicture:
    png: bytes
    infotext: str = ""

    def with_infotext(self) -> bytes:
        """The PNG with its infotext in the `parameters` chunk PNG Info reads (added when missing)."""
        if self.infotext and not _has_text_chunk(self.png, "parameters"):
            return add_text_chunk(self.png, "parameters", self.infotext)
        return self.png


@dataclass
class RenderedStrip:
    panels: List[RenderedPicture]
    strip: TextImage
    captions: List[str] = field(default_factory=list)


@dataclass
class RenderedAd:
    picture: RenderedPicture
    poster: TextImage


def with_provenance(infotext: str, provenance: Mapping[str, str]) -> str:
    """The WebUI's infotext with the NewsPicGen fields added to its parameters line when it lacks
    them (its HTTP API runs no script of ours unless asked), so PNG Info shows where a panel came from."""
    if not infotext or all(key in infotext for key in provenance):
        return infotext
    fields = ", ".join(f"{key}: {quote(value)}" for key, value in provenance.items() if key not in infotext)
    return f"{infotext}, {fields}"


def strip_seed(overrides: Optional[Mapping[str, Any]]) -> int:
    """The strip's one seed: the caller's, else one picked now (a WebUI -1 would give each panel its own)."""
    seed = (overrides or {}).get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return seed
    return random.randrange(2 ** 32)


def render_strip(composed: ComposedStrip, render: Render, *, passthrough: Optional[Mapping[str, Any]] = None,
                 font_path: Optional[str] = None) -> RenderedStrip:
    """Every panel through `render` in order, then one strip image with the captions."""
    pictures = [render({**(passthrough or {}), **p.request.txt2img_payload()}, p.provenance)
                for p in composed.panels]
    captions = [p.panel.caption for p in composed.panels]
    return RenderedStrip(pictures, make_strip([pic.png for pic in pictures], captions, font_path=font_path),
                         captions)


def render_ad(composed: ComposedAd, render: Render, *, passthrough: Optional[Mapping[str, Any]] = None,
              font_path: Optional[str] = None) -> RenderedAd:
    picture = render({**(passthrough or {}), **composed.request.txt2img_payload()}, composed.request.provenance)
    return RenderedAd(picture, make_poster(picture.png, composed.ad.headline, composed.ad.body_copy,
                                           font_path=font_path))


def save_strip(folder: Path, stem: str, rendered: RenderedStrip, composed: ComposedStrip) -> Path:
    """`<stem>-panel-N.png` (each with its infotext), `<stem>-strip.png`, `<stem>-captions.txt`
    and `<stem>.json` (the composed strip), each written atomically; returns the strip's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, picture in enumerate(rendered.panels, start=1):
        atomic_write(folder / f"{stem}-panel-{number}.png", picture.with_infotext())
    strip_path = folder / f"{stem}-strip.png"
    atomic_write(strip_path, rendered.strip.png)
    atomic_write(folder / f"{stem}-captions.txt",
                 "".join(f"{n}. {c}\n" for n, c in enumerate(rendered.captions, start=1)).encode("utf-8"))
    atomic_write(folder / f"{stem}.json", json.dumps({**composed.to_dict(),
                                                       "captions_drawn": rendered.strip.captions_drawn},
                                                      ensure_ascii=False, indent=2).encode("utf-8"))
    return strip_path


def save_ad(folder: Path, stem: str, rendered: RenderedAd, composed: ComposedAd) -> Path:
    """`<stem>.png` (with its infotext), `<stem>-poster.png`, `<stem>-copy.txt` and `<stem>.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{stem}.png", rendered.picture.with_infotext())
    poster_path = folder / f"{stem}-poster.png"
    atomic_write(poster_path, rendered.poster.png)
    atomic_write(folder / f"{stem}-copy.txt",
                 f"{composed.ad.headline}\n\n{composed.ad.body_copy}\n".encode())
    atomic_write(folder / f"{stem}.json", json.dumps({**composed.to_dict(),
                                                       "captions_drawn": rendered.poster.captions_drawn},
                                                      ensure_ascii=False, indent=2).encode("utf-8"))
    return poster_path
