"""The preset editor inside the NewsPicGen tab: pick, edit (JSON), duplicate, save, delete.

Built-in presets are shown read-only; Duplicate copies what is on screen into
a user preset. Handlers follow ui_events' rule: they return an Outcome naming
only the components they change, so a refused save keeps the edited text.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

import pydantic

from prompt_server.compat import describe_validation_error
from style_presets.compose import compose
from style_presets.preset import StylePreset
from style_presets.store import PresetError, PresetNotFound

from .ui_events import Choices, Editable, Outcome, warnings_markdown

# What the editor previews a preset on (with the preset's own first type).
SAMPLE_PROMPT = {
    "ch_keyword": "机器人", "ch_prompt": "一个人形机器人在明亮的实验室里与科学家握手",
    "en_keyword": "robot", "en_prompt": "a humanoid robot shaking hands with a scientist in a bright laboratory",
    "type": "6",
}


def parse_preset_json(text: str) -> StylePreset:
    """The editor's text as a StylePreset; ValueError naming every problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError('a preset is a JSON object: {"name": ..., "prompt": "... {prompt} ...", ...}')
    try:
        return StylePreset.from_dict(data)
    except pydantic.ValidationError as exc:
        raise ValueError("; ".join(f"`{where}`: {why}" for where, why in describe_validation_error(exc))) from None


def _after(state: Optional[dict], name: Optional[str], text: str) -> dict:
    """Editor state once `name` is saved as `text` (its draft, if any, is done)."""
    drafts = {k: v for k, v in dict((state or {}).get("drafts") or {}).items() if k != name}
    return {"name": name, "text": text, "drafts": drafts}


def _refused(message: str) -> Outcome:
    return Outcome({"editor_msg": f"⚠️ {message}"}, warning=message)


class PresetEditor:
    def __init__(self, get_config: Callable[[], Any], available: Callable[[], Any]):
        self.get_config = get_config
        self.available = available

    def _store(self):
        return self.get_config().store()

    def names(self) -> List[str]:
        try:
            return self._store().names()
        except Exception:
            return []

    def _lists(self, editor_value: Optional[str], main_value: str) -> Dict[str, Any]:
        """Both preset dropdowns after the store changed."""
        names = self.names()
        return {"preset": Choices(names, main_value if main_value in names else None),
                "editor_pick": Choices(names, editor_value)}

    def refresh(self, external: int = 0) -> Outcome:
        """Fresh choices for every preset dropdown (on page load): presets saved or dropped
        into the user folder since show up without a restart. `external` dropdowns
        (the always-on script's) get "" (= the type's default) first."""
        names = self.names()
        return Outcome({"preset": Choices(names, None), "editor_pick": Choices(names, None),
                        **{f"external_preset_{i}": Choices([""] + names, "") for i in range(external)}})

    def load(self, name: str, text: str = "", state: Optional[dict] = None) -> Outcome:
        """Show `name`; unsaved edits of the preset shown before are kept as a draft.

        `state` (a gr.State) is {"name", "text" (as loaded or saved), "drafts": {name: text}}.
        """
        state = dict(state or {})
        if name and name == state.get("name") and text == state.get("text"):
            return Outcome()  # already shown, e.g. right after Duplicate or Save: keep their message
        drafts = dict(state.get("drafts") or {})
        previous, note = state.get("name"), ""
        if previous and (text or "").strip() and text != state.get("text"):
            drafts[previous] = text
            if previous != name:
                note = f" Your unsaved edits to **{previous}** are kept: pick it again to get them back."
        if not name:
            return Outcome()  # e.g. after a delete: keep its message
        store = self._store()
        try:
            preset = store.get(name)
        except PresetNotFound as exc:
            return _refused(str(exc))
        builtin = store.is_builtin(name)
        if builtin:
            msg = (f"**{name}** is a built-in preset (read-only). Type a name for a copy and press "
                   "**Duplicate preset** to get an editable user preset.")
        else:
            msg = f"**{name}** is a user preset: `{store.user_path(name)}`"
        stored = preset.to_json()
        shown = stored
        if name in drafts and not builtin:
            shown = drafts.pop(name)
            msg += " Your unsaved edits are back; **Save preset** keeps them."
        return Outcome({"editor_json": Editable(shown, not builtin), "editor_msg": msg + note,
                        "editor_state": {"name": name, "text": stored, "drafts": drafts},
                        **self.preview(shown).values})

    def preview(self, text: str) -> Outcome:
        """Validate the text and compose it with SAMPLE_PROMPT."""
        if not (text or "").strip():
            return Outcome({"editor_positive": "", "editor_negative": "", "editor_check": ""})
        try:
            preset = parse_preset_json(text)
        except ValueError as exc:
            return Outcome({"editor_positive": "", "editor_negative": "", "editor_check": f"❌ {exc}"})
        sample = dict(SAMPLE_PROMPT, type=preset.types[0] if preset.types else SAMPLE_PROMPT["type"])
        try:
            available = self.available()
        except Exception:
            available = None
        composed = compose(sample, preset, available=available)
        check = "✅ valid" + ("\n\n" + warnings_markdown(composed.warnings) if composed.warnings else "")
        return Outcome({"editor_positive": composed.prompt, "editor_negative": composed.negative_prompt,
                        "editor_check": check})

    def save(self, text: str, main_preset: str, state: Optional[dict] = None) -> Outcome:
        store = self._store()
        try:
            preset = parse_preset_json(text)
        except ValueError as exc:
            return Outcome({"editor_check": f"❌ {exc}"}, warning=f"preset not saved: {exc}")
        if store.is_builtin(preset.name):
            return _refused(f"{preset.name!r} is a built-in preset; change \"name\" in the JSON "
                            "(or use Duplicate preset) to save your own copy")
        try:
            path = store.save(preset)
        except (PresetError, OSError) as exc:
            return _refused(str(exc))
        return Outcome({"editor_msg": f"Saved **{preset.name}** to `{path}`",
                        "editor_state": _after(state, preset.name, text),
                        **self._lists(preset.name, main_preset)})

    def duplicate(self, name: str, text: str, new_name: str, main_preset: str,
                  state: Optional[dict] = None) -> Outcome:
        store = self._store()
        new_name = (new_name or "").strip()
        if not new_name:
            return _refused("type a name for the copy, then press Duplicate preset")
        if new_name in store.names():
            return _refused(f"a preset named {new_name!r} already exists; pick another name")
        try:  # copy what is on screen, edits included
            source = parse_preset_json(text) if (text or "").strip() else store.get(name)
            copy = source.copy_with(name=new_name)
            path = store.save(copy)
        except pydantic.ValidationError as exc:
            return _refused(f"cannot duplicate as {new_name!r}: {describe_validation_error(exc)[0][1]}")
        except (ValueError, PresetError, PresetNotFound, OSError) as exc:
            return _refused(str(exc))
        return Outcome({"editor_json": Editable(copy.to_json(), True), "editor_new_name": "",
                        "editor_msg": f"Duplicated as **{new_name}**: `{path}`",
                        "editor_state": _after(state, new_name, copy.to_json()),
                        **self._lists(new_name, main_preset)})

    def delete(self, name: str, main_preset: str, state: Optional[dict] = None) -> Outcome:
        store = self._store()
        if not name:
            return _refused("pick a user preset to delete")
        try:
            store.delete(name)
        except (PresetError, PresetNotFound, OSError) as exc:
            return _refused(str(exc))
        # The JSON stays in the editor (editable), so Save brings the preset back.
        return Outcome({"editor_json": Editable(None, True),
                        "editor_msg": f"Deleted **{name}** (backup: `{store.user_path(name)}.bak`). "
                                      "Its JSON stays here; **Save preset** restores it.",
                        "editor_state": _after(state, None, ""),
                        **self._lists(None, main_preset)})


def build_preset_editor(gr, editor: PresetEditor, components: Dict[str, Any], wire) -> None:
    """Lay out the editor inside the current Blocks context; register components by name."""
    c = components
    with gr.Accordion("Preset editor", open=False, elem_id="newspicgen_editor"):
        with gr.Row():
            c["editor_pick"] = gr.Dropdown(label="Preset to edit", choices=editor.names(), value=None,
                                           elem_id="newspicgen_editor_pick")
            c["editor_new_name"] = gr.Textbox(label="Name for the copy", lines=1,
                                              elem_id="newspicgen_editor_new_name")
        c["editor_msg"] = gr.Markdown("Pick a preset to edit.", elem_id="newspicgen_editor_msg")
        with gr.Row():
            with gr.Column():
                c["editor_json"] = gr.Textbox(label="Preset JSON", lines=18, interactive=False,
                                              elem_id="newspicgen_editor_json")
                with gr.Row():
                    duplicate = gr.Button("Duplicate preset", elem_id="newspicgen_editor_duplicate")
                    save = gr.Button("Save preset", variant="primary", elem_id="newspicgen_editor_save")
                    delete = gr.Button("Delete preset", variant="stop", elem_id="newspicgen_editor_delete")
            with gr.Column():
                c["editor_check"] = gr.Markdown(elem_id="newspicgen_editor_check")
                c["editor_positive"] = gr.Textbox(label="Sample positive prompt", lines=4, interactive=False,
                                                  elem_id="newspicgen_editor_positive")
                c["editor_negative"] = gr.Textbox(label="Sample negative prompt", lines=3, interactive=False,
                                                  elem_id="newspicgen_editor_negative")
    c["editor_state"] = gr.State({})
    preview_out = ["editor_positive", "editor_negative", "editor_check"]
    wire(c["editor_pick"].change, editor.load, ["editor_pick", "editor_json", "editor_state"],
         ["editor_json", "editor_msg", "editor_state", *preview_out], queue=False)
    wire(c["editor_json"].input, editor.preview, ["editor_json"], preview_out, queue=False)
    lists = ["preset", "editor_pick"]
    wire(save.click, editor.save, ["editor_json", "preset", "editor_state"],
         ["editor_msg", "editor_check", "editor_state", *lists])
    wire(duplicate.click, editor.duplicate,
         ["editor_pick", "editor_json", "editor_new_name", "preset", "editor_state"],
         ["editor_json", "editor_new_name", "editor_msg", "editor_state", *lists])
    wire(delete.click, editor.delete, ["editor_pick", "preset", "editor_state"],
         ["editor_json", "editor_msg", "editor_state", *lists])
