"""The comic strip and the ad poster as images (Pillow, imported when one is drawn).

Chinese text needs a CJK font: an explicit path, $NEWSPICGEN_CJK_FONT, a few
well-known system paths, then `fc-list :lang=zh`. Without one nothing Chinese is
drawn (Pillow's default font would show boxes): the strip is the panels alone
and `captions_drawn` is False, so callers show the captions beside the picture
and keep them in a sidecar file.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

ENV_CJK_FONT = "NEWSPICGEN_CJK_FONT"
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
GAP = 4
MAX_COLUMNS = 4


def find_cjk_font(explicit: Optional[str] = None) -> Optional[str]:
    """A font file that draws Chinese, or None. An explicit path is used as given (None when missing)."""
    if explicit is not None:
        return explicit if Path(explicit).is_file() else None
    env = os.environ.get(ENV_CJK_FONT, "").strip()
    if env:
        return env if Path(env).is_file() else None
    for path in FONT_PATHS:
        if Path(path).is_file():
            return path
    fc_list = shutil.which("fc-list")
    if fc_list:
        try:
            out = subprocess.run([fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in out.splitlines():
            path = line.split(":", 1)[0].strip()
            if path and Path(path).is_file():
                return path
    return None


@dataclass
class TextImage:
    png: bytes
    width: int
    height: int
    captions_drawn: bool  # False: no CJK font; show the text beside the picture instead
    font: Optional[str]


def _open(png: bytes) -> Any:
    from PIL import Image
    return Image.open(io.BytesIO(png)).convert("RGB")


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _wrap(draw: Any, text: str, font: Any, width: int) -> List[str]:
    """Lines within `width` pixels, broken between any two characters (Chinese has no spaces)."""
    lines, line = [], ""
    for char in text:
        if line and draw.textlength(line + char, font=font) > width:
            lines.append(line)
            line = char.lstrip()
        else:
            line += char
    return [*lines, line] if line else lines


def make_strip(panels: Sequence[bytes], captions: Sequence[str], *, font_path: Optional[str] = None,
               columns: Optional[int] = None) -> TextImage:
    """The panels in a grid (up to 4 a row), each with its caption under it when a CJK font is found."""
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise ValueError("a strip needs at least one panel image")
    images = [_open(png) for png in panels]
    cell_w, cell_h = max(i.width for i in images), max(i.height for i in images)
    columns = columns or min(len(images), MAX_COLUMNS)
    rows = -(-len(images) // columns)
    font_file = find_cjk_font(font_path)
    size = max(10, cell_w // 14)
    font = ImageFont.truetype(font_file, size) if font_file else None
    caption_h = 0
    if font is not None:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        caption_h = max(len(_wrap(probe, c, font, cell_w - 4)) for c in captions) * (size + 2) + 6
    strip = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP, rows * (cell_h + caption_h + GAP) + GAP),
                      "white")
    draw = ImageDraw.Draw(strip)
    for index, image in enumerate(images):
        x = GAP + (index % columns) * (cell_w + GAP)
        y = GAP + (index // columns) * (cell_h + caption_h + GAP)
        strip.paste(image, (x, y))
        if font is not None and index < len(captions):
            for line_no, line in enumerate(_wrap(draw, captions[index], font, cell_w - 4)):
                draw.text((x + 2, y + cell_h + 3 + line_no * (size + 2)), line, fill="black", font=font)
    return TextImage(_png(strip), strip.width, strip.height, font is not None, font_file)


def make_poster(picture: bytes, headline: str, body_copy: str, *, font_path: Optional[str] = None) -> TextImage:
    """The picture with the headline laid over its top on a dark band and the copy below it."""
    from PIL import Image, ImageDraw, ImageFont

    image = _open(picture)
    font_file = find_cjk_font(font_path)
    if font_file is None:
        return TextImage(_png(image), image.width, image.height, False, None)
    head_size, body_size = max(12, image.width // 12), max(10, image.width // 24)
    head_font, body_font = ImageFont.truetype(font_file, head_size), ImageFont.truetype(font_file, body_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    head_lines = _wrap(probe, headline, head_font, image.width - 8)
    body_lines = _wrap(probe, body_copy, body_font, image.width - 8)
    body_h = len(body_lines) * (body_size + 4) + 8
    poster = Image.new("RGB", (image.width, image.height + body_h), "white")
    poster.paste(image, (0, 0))
    band = Image.new("RGBA", (image.width, len(head_lines) * (head_size + 4) + 8), (0, 0, 0, 140))
    poster.paste(band, (0, 0), band)
    draw = ImageDraw.Draw(poster)
    for number, line in enumerate(head_lines):
        draw.text((4, 4 + number * (head_size + 4)), line, fill="white", font=head_font)
    for number, line in enumerate(body_lines):
        draw.text((4, image.height + 4 + number * (body_size + 4)), line, fill="black", font=body_font)
    return TextImage(_png(poster), poster.width, poster.height, True, font_file)
