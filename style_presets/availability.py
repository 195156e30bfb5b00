"""Which LoRAs and embeddings a preset needs that a WebUI does not have.

A prompt naming a LoRA the WebUI lacks loads nothing and only logs a warning on
the server; an unknown embedding name is read as plain words. Both go unnoticed
by the person looking at the picture, so we say so before generating.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Set

from style_presets.preset import StylePreset


@dataclass
class Availability:
    loras: Set[str] = field(default_factory=set)
    embeddings: Set[str] = field(default_factory=set)

    @classmethod
    def from_webui(cls, loras_json: Any = None, embeddings_json: Any = None) -> Availability:
        """From the bodies of /sdapi/v1/loras and /sdapi/v1/embeddings (A1111 1.10).

        /sdapi/v1/loras: [{"name", "alias", "path", "metadata"}, ...] -- a prompt may
        use the name or the alias. /sdapi/v1/embeddings: {"loaded": {name: {...}},
        "skipped": {...}}; skipped ones do not fit the loaded checkpoint, so they
        count as missing.
        """
        loras: Set[str] = set()
        for item in loras_json or []:
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError("LoRA list entries must be objects with a 'name' "
                                 "(the body of GET /sdapi/v1/loras)")
            loras.add(str(item["name"]))
            if item.get("alias"):
                loras.add(str(item["alias"]))
        embeddings: Set[str] = set()
        if embeddings_json is not None:
            if not isinstance(embeddings_json, dict) or not isinstance(embeddings_json.get("loaded"), dict):
                raise ValueError("embeddings must be an object with a 'loaded' mapping "
                                 "(the body of GET /sdapi/v1/embeddings)")
            embeddings = set(embeddings_json["loaded"])
        return cls(loras=loras, embeddings=embeddings)

    @classmethod
    def from_files(cls, loras_file: str | Path | None = None,
                   embeddings_file: str | Path | None = None) -> Availability:
        return cls.from_webui(_read_json(loras_file) if loras_file else None,
                              _read_json(embeddings_file) if embeddings_file else None)


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); save the "
                         "WebUI's answer as is, e.g. curl URL/sdapi/v1/loras > loras.json") from None


def missing(preset: StylePreset, available: Availability) -> Dict[str, List[str]]:
    """{"loras": [...], "embeddings": [...]} that the preset references and the WebUI lacks."""
    return {
        "loras": _absent((ref.name for ref in preset.loras), available.loras),
        "embeddings": _absent(list(preset.embeddings) + list(preset.negative_embeddings),
                              available.embeddings),
    }


def _absent(names: Iterable[str], have: Set[str]) -> List[str]:
    out: List[str] = []
    for name in names:
        if name not in have and name not in out:
            out.append(name)
    return out
