"""A small client for the WebUI's `/sdapi/v1/txt2img` (AUTOMATIC1111 / Forge run with `--api`).

Used by `batch --webui URL`: one composed request in, one PNG (carrying the
WebUI's infotext, as PNG Info reads it) and a sidecar JSON out.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import requests

from newspicgen.model_base import base_from_api
from prompt_server.client import error_text
from prompt_server.errors import one_line, redact_url
from prompt_server.files import atomic_write
from style_presets.availability import Availability

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LIST_TIMEOUT_S = 30.0  # the LoRA / embedding lists come from memory; txt2img gets --webui-timeout


class WebUIError(Exception):
    """The WebUI could not make the picture; str() is one line naming the cause and the fix."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(redact_url(message))  # a --webui URL may carry user:password
        self.transient = transient  # down, busy or a 5xx: asking again later may work


def parse_auth(text: Optional[str]) -> Optional[Tuple[str, str]]:
    """`user:pass` as given to the WebUI's --api-auth."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError("--webui-auth must look like user:password (what the WebUI got as --api-auth)")
    return user, password


@dataclass
class Picture:
    png: bytes
    info: Dict[str, Any] = field(default_factory=dict)  # the WebUI's `info`, decoded

    @property
    def seed(self) -> Optional[int]:
        return self.info.get("seed")

    @property
    def infotext(self) -> Optional[str]:
        texts = self.info.get("infotexts") or []
        return texts[0] if texts else None


class WebUIClient:
    def __init__(self, base_url: str, auth: Optional[str] = None, timeout: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.auth = parse_auth(auth)
        self.timeout = timeout
        self._session = requests.Session()

    @property
    def txt2img_url(self) -> str:
        return f"{self.base_url}/sdapi/v1/txt2img"

    def check(self) -> None:
        """One cheap call before a run: raises WebUIError if the WebUI is down, lacks --api or
        refuses the credentials. /sdapi/v1/progress answers even while a picture is being made."""
        timeout = min(self.timeout, 10.0)
        response = self._call("GET", "/sdapi/v1/progress", timeout, params={"skip_current_image": "true"})
        if response.status_code >= 500:
            raise WebUIError(f"WebUI at {self.base_url} is not ready (HTTP {response.status_code}); "
                             "wait until it has loaded, then rerun", transient=True)

    def availability(self) -> Availability:
        """The LoRAs and embeddings the WebUI has: GET /sdapi/v1/loras and /sdapi/v1/embeddings."""
        loras, embeddings = self._get_json("/sdapi/v1/loras"), self._get_json("/sdapi/v1/embeddings")
        try:
            return Availability.from_webui(loras, embeddings)
        except ValueError as exc:
            raise WebUIError(f"WebUI at {self.base_url} answered an unexpected list: {exc}") from None

    def model_base(self) -> Tuple[Optional[str], str]:
        """(sd15 / sdxl / flux or None, how it was found) for the WebUI's loaded checkpoint:
        GET /sdapi/v1/options and /sdapi/v1/sd-models (see newspicgen.model_base)."""
        options, models = self._get_json("/sdapi/v1/options"), self._get_json("/sdapi/v1/sd-models")
        if not isinstance(options, dict) or not isinstance(models, list):
            return None, "the WebUI's options or model list have an unexpected shape"
        return base_from_api(options, models)

    def _get_json(self, path: str) -> Any:
        response = self._call("GET", path, LIST_TIMEOUT_S)
        if response.status_code != 200:
            raise WebUIError(f"WebUI at {self.base_url} answered {path} with HTTP {response.status_code}; "
                             "start the WebUI with --api", transient=response.status_code >= 500)
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise WebUIError(f"WebUI at {self.base_url} answered {path} with something that is not "
                             "JSON; is that URL the WebUI?") from None

    def txt2img(self, payload: Dict[str, Any]) -> Picture:
        response = self._call("POST", "/sdapi/v1/txt2img", self.timeout, json=payload)
        if response.status_code != 200:
            raise WebUIError(f"WebUI txt2img failed with HTTP {response.status_code}: "
                             f"{one_line(error_text(response), 200)}")
        try:
            body = response.json()
            png = base64.b64decode(body["images"][0], validate=False)
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            raise WebUIError(f"WebUI txt2img answered something that is not a picture: "
                             f"{response.text[:120]!r}") from None
        if not png.startswith(PNG_SIGNATURE):
            raise WebUIError("WebUI txt2img returned an image that is not a PNG; "
                             "set its 'Saving images' format to png")
        return Picture(png=png, info=_decode_info(body.get("info")))

    def _call(self, method: str, path: str, timeout: float, **kwargs: Any) -> requests.Response:
        """One request; no connection, a timeout, refused credentials or no --api raise WebUIError."""
        try:
            response = self._session.request(method, self.base_url + path, auth=self.auth, timeout=timeout,
                                             **kwargs)
        except requests.Timeout:
            raise WebUIError(f"WebUI at {self.base_url} did not answer within {timeout:g} s; "
                             "it may be busy: rerun later or raise --webui-timeout", transient=True) from None
        except requests.ConnectionError:
            raise WebUIError(f"WebUI not reachable at {self.base_url}; start it with --api "
                             "(and --listen if it runs on another machine)", transient=True) from None
        if response.status_code in (401, 403):
            raise WebUIError(f"WebUI at {self.base_url} refused the credentials (HTTP {response.status_code}); "
                             "pass --webui-auth user:password matching its --api-auth")
        if response.status_code == 404:
            raise WebUIError(f"WebUI at {self.base_url} has no {path} (HTTP 404); start the WebUI with --api")
        return response


def _decode_info(info: Any) -> Dict[str, Any]:
    # The WebUI sends `info` as a JSON string inside the JSON answer.
    if isinstance(info, dict):
        return info
    try:
        decoded = json.loads(info) if isinstance(info, str) else {}
    except ValueError:
        return {"raw": info}
    return decoded if isinstance(decoded, dict) else {"raw": decoded}


# ------------------------------------------------------------------ saving

def safe_stem(article_id: str) -> str:
    """A file name for any id; ids that needed changing get a hash so two never collide."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", article_id).strip("._") or "article"
    if stem != article_id:
        stem = f"{stem[:80]}-{zlib.crc32(article_id.encode('utf-8')):08x}"
    return stem


def save_picture(images_dir: Path, article_id: str, picture: Picture, sidecar: Dict[str, Any]) -> Path:
    """Write `<id>.png` and `<id>.json`, each atomically (temp file + rename)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(article_id)
    png = picture.png
    if picture.infotext and not _has_text_chunk(png, "parameters"):
        png = add_text_chunk(png, "parameters", picture.infotext)
    png_path = images_dir / f"{stem}.png"
    atomic_write(png_path, png)
    atomic_write(images_dir / f"{stem}.json",
                  json.dumps(sidecar, ensure_ascii=False, indent=2).encode("utf-8"))
    return png_path


def _chunks(png: bytes):
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        yield pos, kind, png[pos + 8:pos + 8 + length]
        pos += 12 + length


def _has_text_chunk(png: bytes, key: str) -> bool:
    prefix = key.encode("latin-1") + b"\x00"
    return any(kind in (b"tEXt", b"iTXt") and data.startswith(prefix) for _, kind, data in _chunks(png))


def add_text_chunk(png: bytes, key: str, text: str) -> bytes:
    """Insert the infotext before IEND the way PNG Info reads it (tEXt, or iTXt for non-Latin-1)."""
    try:
        kind, data = b"tEXt", key.encode("latin-1") + b"\x00" + text.encode("latin-1")
    except UnicodeEncodeError:
        kind, data = b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    for pos, found, _ in _chunks(png):
        if found == b"IEND":
            return png[:pos] + chunk + png[pos:]
    return png
