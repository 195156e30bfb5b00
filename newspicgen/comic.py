"""A comic strip (prompt_server.comic_task.ComicStrip) + a preset family -> one txt2img request per panel.

The rules that keep a strip one story:
- every panel's prompt carries, verbatim, the fixed English description of each
  character it shows (from the character sheet, never re-described per panel)
  and its shot;
- one seed for the strip: the same for every panel (a character's look holds
  best), or seed+i with `seed_step=1`;
- one preset family's look for every panel, each panel through the family's
  default for its picture type (person / crowd / other) via the normal store
  and compose(), so the presets' own rules apply unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from prompt_server.comic_task import Character, ComicStrip, Panel
from prompt_server.schema import PicturePrompt
from prompt_server.shape import dump
from style_presets.availability import Availability
from style_presets.compose import ComposedRequest, compose, create_infotext, join_parts
from style_presets.store import PresetStore

SHOT_WORDS = {"full body": "full body shot", "upper body": "upper body shot",
              "close-up": "close-up shot", "wide": "wide shot"}
INFOTEXT_PANEL = "NewsPicGen panel"


@dataclass
class ComposedPanel:
    panel: Panel
    request: ComposedRequest
    provenance: Dict[str, str]  # the NewsPicGen infotext fields, with the panel's place in the strip

    def to_dict(self) -> Dict[str, Any]:
        return {**dump(self.panel), "prompt": self.request.prompt,
                "negative_prompt": self.request.negative_prompt, "settings": dict(self.request.settings),
                "infotext": self.request.infotext, "preset": self.request.preset,
                "warnings": list(self.request.warnings)}


@dataclass
class ComposedStrip:
    strip: ComicStrip
    panels: List[ComposedPanel]
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """The shape `newspicgen comic` prints and the comic route answers."""
        return {"characters": [dump(c) for c in self.strip.characters],
                "panels": [p.to_dict() for p in self.panels], "warnings": list(self.warnings)}


def cast(strip: ComicStrip, panel: Panel) -> List[Character]:
    """The sheet's characters a panel names, in the panel's order, each once."""
    sheet = {c.name: c for c in strip.characters}
    seen: List[Character] = []
    for name in panel.characters:
        if name in sheet and sheet[name] not in seen:
            seen.append(sheet[name])
    return seen


def panel_prompt(strip: ComicStrip, index: int) -> PicturePrompt:
    """Panel `index` as a PicturePrompt for compose(): shot, the characters' fixed descriptions,
    the scene. The keyword names the panel's place and cast, so the picture's infotext
    (NewsPicGen keyword) says which panel of which strip it is.

    Built unchecked: the descriptions together may pass the news prompt's 400
    characters, a bound of the news model, not of a panel.
    """
    panel = strip.panels[index]
    characters = cast(strip, panel)
    place = f"panel {index + 1}/{len(strip.panels)}"
    code = "2" if len(characters) == 1 else "3" if characters else "8"
    return PicturePrompt.construct_unchecked(
        ch_keyword=panel.caption, ch_prompt=panel.ch_prompt,
        en_keyword=f"{place}: {', '.join(c.name for c in characters)}" if characters else place,
        en_prompt=join_parts([SHOT_WORDS[panel.shot], *(c.en for c in characters), panel.en_prompt]),
        type=code)


def compose_strip(strip: ComicStrip, store: PresetStore, *, family: Optional[str] = None,
                  preset: Optional[str] = None, seed: Optional[int] = None, seed_step: int = 0,
                  overrides: Optional[Mapping[str, Any]] = None,
                  available: Optional[Availability] = None) -> ComposedStrip:
    """One composed request per panel. Raises PresetNotFound or OverrideError (messages name the fix)."""
    if preset:
        store.get(preset)
    warnings: List[str] = []
    names = {c.name for c in strip.characters}
    panels: List[ComposedPanel] = []
    for index, panel in enumerate(strip.panels):
        unknown = [n for n in panel.characters if n not in names]
        if unknown:
            warnings.append(f"panel {index + 1} names {', '.join(map(repr, unknown))}, not on the character "
                            "sheet; drawn without a fixed description (edit the names to match the sheet)")
        picture = panel_prompt(strip, index)
        settings = dict(overrides or {})
        if seed is not None and seed >= 0:
            settings["seed"] = int(seed) + index * int(seed_step)
        request = compose(picture, store.resolve(preset or None, picture.type, family), settings,
                          available=available)
        provenance = {**request.provenance, INFOTEXT_PANEL: f"{index + 1}/{len(strip.panels)}"}
        request.infotext = create_infotext(request.prompt, request.negative_prompt, request.settings, provenance)
        panels.append(ComposedPanel(panel, request, provenance))
    return ComposedStrip(strip, panels, warnings)


def with_character(strip: ComicStrip, name: str, changes: Mapping[str, str]) -> ComicStrip:
    """The strip with one character's sheet entry changed (renamed in every panel too):
    edit a character once and every panel follows."""
    data = dump(strip)
    new_name = changes.get("name", name)
    for character in data["characters"]:
        if character["name"] == name:
            character.update(changes)
    for panel in data["panels"]:
        panel["characters"] = [new_name if n == name else n for n in panel["characters"]]
    return ComicStrip.from_dict(data)
