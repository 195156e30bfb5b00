"""Style presets: the artist's side of NewsPicGen (stdlib + pydantic only).

A preset is one JSON file: a prompt template with {prompt}, a negative prompt,
LoRA / embedding references, generation settings and the picture types it
serves. `compose()` turns a PicturePrompt and a preset into a txt2img request.
"""
from .availability import Availability, missing
from .compose import ComposedRequest, OverrideError, compose
from .preset import LoraRef, Settings, StylePreset
from .sanitize import neutralize
from .store import PresetError, PresetLoadError, PresetNotFound, PresetStore, default_user_dir

__all__ = [
    "Availability", "ComposedRequest", "LoraRef", "OverrideError", "PresetError", "PresetLoadError",
    "PresetNotFound", "PresetStore", "Settings", "StylePreset", "compose", "default_user_dir",
    "missing", "neutralize",
]
