"""The preset editor inside the NewsPicGen tab: pick, edit (form or JSON), duplicate, save, delete.

The preset's JSON text is what is saved; the form (extension.preset_form) writes
into it on every edit and is filled from it when the JSON is edited by hand.
Pickers list the WebUI's LoRAs, embeddings, samplers and schedulers. Built-in
presets are shown read-only; Duplicate copies what is on screen into a user
preset. Handlers follow ui_events' rule: they return an Outcome naming only the
components they change, so a refused save keeps the edited text.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, List, Optional

import pydantic

from prompt_server.compat import describe_validation_error
from style_presets.bases import BASE_CODES
from style_presets.compose import compose
from style_presets.preset import StylePreset
from style_presets.store import PresetError, PresetNotFound

from .messages import Translator
from .preset_form import NAMES, form_data, form_values, set_lora
from .tab_logic import type_choices
from .ui_events import Choices, Editable, NewChoices, Outcome, asked, warnings_markdown

# What the editor previews a preset on: a sample picture prompt of the first type the preset
# serves, so a preset for landscapes is judged on a landscape, not always on the robot.
SAMPLE_PROMPTS = {p["type"]: p for p in (
    {"ch_keyword": "大熊猫", "ch_prompt": "两只大熊猫幼崽在动物园的木台上玩耍",
     "en_keyword": "giant panda cubs", "en_prompt": "two giant panda cubs playing on a wooden platform in a zoo",
     "type": "1"},
    {"ch_keyword": "乡村教师", "ch_prompt": "一位年长的乡村教师在山区小学的黑板前讲课",
     "en_keyword": "village teacher",
     "en_prompt": "an elderly village teacher writing on a blackboard in a mountain school", "type": "2"},
    {"ch_keyword": "广场舞", "ch_prompt": "上万名身穿红色运动服的舞者在城市广场上一起跳舞",
     "en_keyword": "square dance",
     "en_prompt": "thousands of dancers in red tracksuits dancing together in a city square", "type": "3"},
    {"ch_keyword": "雾凇", "ch_prompt": "日出时黄山云海之上挂满雾凇的松树",
     "en_keyword": "rime on pine trees",
     "en_prompt": "pine trees covered in rime above a sea of clouds on a mountain at sunrise", "type": "4"},
    {"ch_keyword": "图书馆", "ch_prompt": "一座有玻璃幕墙和弧形木屋顶的新城市图书馆",
     "en_keyword": "new library", "en_prompt": "a new city library with a glass facade and a curved wooden roof",
     "type": "5"},
    {"ch_keyword": "机器人", "ch_prompt": "一个人形机器人在明亮的实验室里与科学家握手",
     "en_keyword": "robot", "en_prompt": "a humanoid robot shaking hands with a scientist in a bright laboratory",
     "type": "6"},
    {"ch_keyword": "青铜器", "ch_prompt": "博物馆柔和灯光下展出的一件古代青铜器",
     "en_keyword": "bronze vessel", "en_prompt": "an ancient bronze vessel on display under soft light in a museum",
     "type": "7"},
    {"ch_keyword": "经济增长", "ch_prompt": "繁忙的集装箱港口上方一条上升的折线",
     "en_keyword": "economic growth",
     "en_prompt": "a rising line chart above a busy container port with cargo ships", "type": "8"},
)}


def sample_prompt(types: List[str]) -> Dict[str, str]:
    """The sample picture prompt a preset serving `types` is previewed on."""
    return SAMPLE_PROMPTS[next((t for t in types if t in SAMPLE_PROMPTS), "6")]


# What `PresetEditor._form` fills: the form's fields, and its Add LoRA button (off for built-ins).
FORM_OUTPUTS = [*NAMES, "form_add_lora"]
# The pickers whose choices come from the WebUI (refreshed on every page load).
PICKERS = ["form_lora_pick", "form_embeddings", "form_negative_embeddings", "form_sampler", "form_scheduler"]
EMPTY_SETTING = "empty: the WebUI's value"  # the settings' placeholder (a key in localizations/*.json)


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


def preset_text(data: Dict[str, Any]) -> str:
    """The JSON text for a preset object: canonical when valid (so an edit that changes
    nothing changes no text), else as given, for validation to name what is wrong."""
    try:
        return StylePreset.from_dict(data).to_json()
    except pydantic.ValidationError:
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _json_object(text: str) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _with(choices: Iterable[str], values: Iterable[str]) -> List[str]:
    """The choices plus the values not among them (a preset may name what this WebUI lacks)."""
    out = list(choices)
    return out + [v for v in values if v not in out]


def _after(state: Optional[dict], name: Optional[str], text: str) -> dict:
    """Editor state once `name` is saved as `text` (its draft, if any, is done)."""
    drafts = {k: v for k, v in dict((state or {}).get("drafts") or {}).items() if k != name}
    return {"name": name, "text": text, "drafts": drafts}


def _refused(message: str) -> Outcome:
    return Outcome({"editor_msg": f"⚠️ {message}"}, warning=message)


def _listed(get: Callable[[], Any]) -> List[str]:
    return [str(item) for item in asked(get) or []]


class PresetEditor:
    def __init__(self, get_config: Callable[[], Any], available: Callable[[], Any],
                 samplers: Optional[Callable[[], List[str]]] = None,
                 schedulers: Optional[Callable[[], List[str]]] = None,
                 language: Optional[Callable[[], str]] = None):
        self.get_config = get_config
        self.available = available
        self.samplers = samplers or (lambda: [])
        self.schedulers = schedulers or (lambda: [])
        self._t = Translator(language)

    @classmethod
    def from_hooks(cls, get_config: Callable[[], Any], hooks: Any = None) -> PresetEditor:
        """The editor connected to the WebUI's hooks (extension.webui_hooks.WebUIHooks)."""
        return cls(get_config, getattr(hooks, "available", None) or (lambda: None), getattr(hooks, "samplers", None),
                   getattr(hooks, "schedulers", None), getattr(hooks, "language", None))

    def _store(self):
        return self.get_config().store()

    def names(self) -> List[str]:
        try:
            return self._store().names()
        except Exception:
            return []

    def _available(self) -> Any:
        return asked(self.available)

    def _lists(self, editor_value: Optional[str], main_value: str) -> Dict[str, Any]:
        """Both preset dropdowns after the store changed."""
        names = self.names()
        return {"preset": Choices(names, main_value if main_value in names else None),
                "editor_pick": Choices(names, editor_value)}

    def _form(self, data: Dict[str, Any], editable: Optional[bool]) -> Dict[str, Any]:
        """The form showing `data`, its pickers listing what the WebUI has; `editable` None
        keeps each field's interactivity (a built-in stays read-only)."""
        available = self._available()
        embeddings = sorted(available.embeddings) if available else []
        values = form_values(data)
        out: Dict[str, Any] = {name: value if editable is None else Editable(value, editable)
                               for name, value in values.items()}
        for name in ("form_embeddings", "form_negative_embeddings"):
            out[name] = Choices(_with(embeddings, values[name]), values[name], editable)
        out["form_base"] = Choices(_with(["", *BASE_CODES], [values["form_base"]]), values["form_base"], editable)
        for name, listed in (("form_sampler", self.samplers), ("form_scheduler", self.schedulers)):
            out[name] = Choices(_with(["", *_listed(listed)], [values[name]]), values[name], editable)
        if editable is not None:
            out["form_add_lora"] = Editable(None, editable)
        return out

    def refresh(self, external: int = 0) -> Outcome:
        """Fresh choices for every preset dropdown and picker (on page load): presets saved or
        dropped into the user folder since show up without a restart, and the WebUI's LoRAs,
        embeddings, samplers and schedulers as they are now. `external` dropdowns (the
        always-on script's) get "" (= the type's default) first. The preset picker is enabled
        in this same answer, so no preset can be shown before the WebUI's lists have arrived."""
        names = self.names()
        available = self._available()
        embeddings = NewChoices(sorted(available.embeddings) if available else [])
        return Outcome({"preset": Choices(names, None), "editor_pick": Choices(names, None, True),
                        "form_lora_pick": NewChoices(sorted(available.loras) if available else []),
                        "form_embeddings": embeddings, "form_negative_embeddings": embeddings,
                        "form_sampler": NewChoices(["", *_listed(self.samplers)]),
                        "form_scheduler": NewChoices(["", *_listed(self.schedulers)]),
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
                note = " " + self._t("Your unsaved edits to **{name}** are kept: pick it again to get them back.",
                                     name=previous)
        if not name:
            return Outcome()  # e.g. after a delete: keep its message
        store = self._store()
        try:
            preset = store.get(name)
        except PresetNotFound as exc:
            return _refused(str(exc))
        builtin = store.is_builtin(name)
        if builtin:
            msg = self._t("**{name}** is a built-in preset (read-only). Type a name for a copy and press "
                          "**Duplicate preset** to get an editable user preset.", name=name)
        else:
            msg = self._t("**{name}** is a user preset: `{file}` in the user preset folder", name=name,
                          file=store.user_path(name).name)
        stored = preset.to_json()
        shown = stored
        if name in drafts and not builtin:
            shown = drafts.pop(name)
            msg += " " + self._t("Your unsaved edits are back; **Save preset** keeps them.")
        return Outcome({"editor_json": Editable(shown, not builtin), "editor_msg": msg + note,
                        "editor_state": {"name": name, "text": stored, "drafts": drafts},
                        **self._form(_json_object(shown) or preset.to_dict(), not builtin),
                        **self.preview(shown).values})

    def preview(self, text: str) -> Outcome:
        """Validate the text and compose it with the sample prompt for the preset's types."""
        if not (text or "").strip():
            return Outcome({"editor_positive": "", "editor_negative": "", "editor_check": ""})
        try:
            preset = parse_preset_json(text)
        except ValueError as exc:
            return Outcome({"editor_positive": "", "editor_negative": "", "editor_check": f"❌ {exc}"})
        composed = compose(sample_prompt(list(preset.types)), preset, available=self._available())
        check = "✅ " + self._t("valid") + ("\n\n" + warnings_markdown(composed.warnings) if composed.warnings else "")
        return Outcome({"editor_positive": composed.prompt, "editor_negative": composed.negative_prompt,
                        "editor_check": check})

    def json_edit(self, text: str) -> Outcome:
        """The JSON typed by hand: preview it, and show it in the form once it is a JSON object."""
        data = _json_object(text)
        form = self._form(data, None) if data is not None else {}  # as editable as the JSON it mirrors
        return Outcome({**form, **self.preview(text).values})

    def form_edit(self, text: str, *values: Any) -> Outcome:
        """A form field edited (`values` in preset_form.NAMES order): write the form into the
        JSON and preview it. JSON that does not parse is left for the user to mend."""
        if (text or "").strip() and _json_object(text) is None:
            problem = self.preview(text).values["editor_check"] or "❌"
            message = self._t("the form cannot write into this JSON: mend it in **Preset JSON** first "
                              "(your form edit stays in the form)")
            return Outcome({"editor_check": f"{problem}\n\n⚠️ {message}"})
        new_text = preset_text(form_data(dict(zip(NAMES, values, strict=True)), _json_object(text)))
        return Outcome({"editor_json": new_text, **self.preview(new_text).values})

    def add_lora(self, pick: str, weight: float, text: str, *values: Any) -> Outcome:
        """The LoRA picked from the WebUI's list, at the weight chosen, into the form and the JSON."""
        if not (pick or "").strip():
            return _refused(self._t("pick a LoRA from the list first, then press **Add LoRA to the preset**"))
        fields = dict(zip(NAMES, values, strict=True))
        fields["form_loras"] = set_lora(fields.get("form_loras") or "", pick.strip(), round(float(weight), 2))
        outcome = self.form_edit(text, *(fields[name] for name in NAMES))
        outcome.values["form_loras"] = fields["form_loras"]
        return outcome

    def save(self, text: str, main_preset: str, state: Optional[dict] = None) -> Outcome:
        store = self._store()
        try:
            preset = parse_preset_json(text)
        except ValueError as exc:
            return Outcome({"editor_check": f"❌ {exc}"},
                           warning=self._t("preset not saved: {error}", error=exc))
        if store.is_builtin(preset.name):
            return _refused(self._t("{name} is a built-in preset; change its name (or use **Duplicate preset**) "
                                    "to save your own copy", name=repr(preset.name)))
        try:
            path = store.save(preset)
        except (PresetError, OSError) as exc:
            return _refused(str(exc))
        return Outcome({"editor_msg": self._t("Saved **{name}** as `{file}` in the user preset folder",
                                                     name=preset.name, file=path.name),
                        "editor_state": _after(state, preset.name, text),
                        **self._lists(preset.name, main_preset)})

    def duplicate(self, name: str, text: str, new_name: str, main_preset: str,
                  state: Optional[dict] = None) -> Outcome:
        store = self._store()
        new_name = (new_name or "").strip()
        if not new_name:
            return _refused(self._t("type a name for the copy, then press **Duplicate preset**"))
        if new_name in store.names():
            return _refused(self._t("a preset named {name} already exists; pick another name", name=repr(new_name)))
        try:  # copy what is on screen, edits included
            source = parse_preset_json(text) if (text or "").strip() else store.get(name)
            copy = source.copy_with(name=new_name)
            path = store.save(copy)
        except pydantic.ValidationError as exc:
            return _refused(self._t("cannot duplicate as {name}: {error}", name=repr(new_name),
                                    error=describe_validation_error(exc)[0][1]))
        except (ValueError, PresetError, PresetNotFound, OSError) as exc:
            return _refused(str(exc))
        return Outcome({"editor_json": Editable(copy.to_json(), True), "editor_new_name": "",
                        "editor_msg": self._t("Duplicated as **{name}**: `{file}` in the user preset folder",
                                              name=new_name, file=path.name),
                        "editor_state": _after(state, new_name, copy.to_json()),
                        **self._form(copy.to_dict(), True),
                        **self._lists(new_name, main_preset)})

    def delete(self, name: str, main_preset: str, state: Optional[dict] = None) -> Outcome:
        store = self._store()
        if not name:
            return _refused(self._t("pick a user preset to delete"))
        try:
            store.delete(name)
        except (PresetError, PresetNotFound, OSError) as exc:
            return _refused(str(exc))
        # The JSON and the form stay (editable), so Save brings the preset back.
        return Outcome({"editor_json": Editable(None, True),
                        "editor_msg": self._t("Deleted **{name}** (backup: `{file}` in the user preset "
                                              "folder). Its JSON stays here; **Save preset** restores it.",
                                              name=name, file=f"{store.user_path(name).name}.bak"),
                        "editor_state": _after(state, None, ""),
                        **self._lists(None, main_preset)})

def build_preset_editor(gr, editor: PresetEditor, components: Dict[str, Any], wire) -> None:
    """Lay out the editor inside the current Blocks context; register components by name."""
    c = components

    def line(name: str, label: str, **kwargs: Any) -> None:
        """A one-line field, drawn as one (lines=1 alone is a growing text area)."""
        c[name] = gr.Textbox(label=label, lines=1, max_lines=1, elem_id=f"newspicgen_{name}", **kwargs)

    def setting(name: str, label: str) -> None:
        # info, not only a placeholder: the hint shows in gradio 3 and 4 alike, filled in or not
        line(name, label, placeholder=EMPTY_SETTING, info=EMPTY_SETTING)

    with gr.Accordion("Preset editor", open=False, elem_id="newspicgen_editor"):
        with gr.Row():
            c["editor_pick"] = gr.Dropdown(label="Preset to edit", choices=editor.names(), value=None,
                                           interactive=False, elem_id="newspicgen_editor_pick")  # see refresh
            line("editor_new_name", "Name for the copy")
            duplicate = gr.Button("Duplicate preset", elem_id="newspicgen_editor_duplicate", scale=0)
        c["editor_msg"] = gr.Markdown("Pick a preset to edit, or fill in the form for a new one.",
                                      elem_id="newspicgen_editor_msg")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    line("form_name", "Preset name")
                    line("form_family", "Preset family")
                    c["form_base"] = gr.Dropdown(label="Made for (empty: any model)", choices=["", *BASE_CODES],
                                                 value="", elem_id="newspicgen_form_base")
                line("form_description", "Preset description")
                c["form_types"] = gr.CheckboxGroup(label="Picture types it serves", choices=type_choices(),
                                                   elem_id="newspicgen_form_types")
                c["form_template"] = gr.Textbox(label="Prompt template", lines=2,
                                                placeholder="Where {prompt} goes, e.g. comic, {prompt}, vibrant",
                                                elem_id="newspicgen_form_template")
                c["form_negative"] = gr.Textbox(label="Preset negative prompt", lines=2,
                                                elem_id="newspicgen_form_negative")
                with gr.Row():
                    c["form_lora_pick"] = gr.Dropdown(label="LoRA from the WebUI", choices=[], value=None,
                                                      elem_id="newspicgen_form_lora_pick", scale=2)
                    c["form_lora_weight"] = gr.Slider(label="LoRA weight", minimum=-2, maximum=2, step=0.05,
                                                      value=1, elem_id="newspicgen_form_lora_weight")
                    c["form_add_lora"] = gr.Button("Add LoRA to the preset", elem_id="newspicgen_form_add_lora",
                                                   scale=0)
                c["form_loras"] = gr.Textbox(label="LoRAs (one per line, name:weight)", lines=2,
                                             elem_id="newspicgen_form_loras")
                with gr.Row():  # gradio 3.41 has no typed values in a multiselect: other names go in the JSON
                    c["form_embeddings"] = gr.Dropdown(label="Preset embeddings", choices=[], value=[],
                                                       multiselect=True, elem_id="newspicgen_form_embeddings")
                    c["form_negative_embeddings"] = gr.Dropdown(label="Preset negative embeddings", choices=[],
                                                                value=[], multiselect=True,
                                                                elem_id="newspicgen_form_negative_embeddings")
                with gr.Row():
                    setting("form_steps", label="Preset steps")
                    c["form_sampler"] = gr.Dropdown(label="Preset sampler", choices=[""], value="", info=EMPTY_SETTING,
                                                    allow_custom_value=True, elem_id="newspicgen_form_sampler")
                    c["form_scheduler"] = gr.Dropdown(label="Preset schedule type", choices=[""], value="",
                                                      info=EMPTY_SETTING, allow_custom_value=True,
                                                      elem_id="newspicgen_form_scheduler")
                    setting("form_cfg_scale", label="Preset CFG scale")
                    setting("form_distilled_cfg_scale", label="Preset distilled CFG (Forge, Flux)")
                with gr.Row():
                    setting("form_width", label="Preset width")
                    setting("form_height", label="Preset height")
                    setting("form_seed", label="Preset seed")
                with gr.Accordion("Preset JSON (advanced)", open=False, elem_id="newspicgen_editor_json_view"):
                    c["editor_json"] = gr.Textbox(label="Preset JSON", lines=18, elem_id="newspicgen_editor_json")
                with gr.Row():
                    save = gr.Button("Save preset", variant="primary", elem_id="newspicgen_editor_save")
                    delete = gr.Button("Delete preset", variant="stop", elem_id="newspicgen_editor_delete")
            with gr.Column(scale=2):
                c["editor_check"] = gr.Markdown(elem_id="newspicgen_editor_check")
                c["editor_positive"] = gr.Textbox(label="Sample positive prompt", lines=4, interactive=False,
                                                  elem_id="newspicgen_editor_positive")
                c["editor_negative"] = gr.Textbox(label="Sample negative prompt", lines=3, interactive=False,
                                                  elem_id="newspicgen_editor_negative")
    c["editor_state"] = gr.State({})
    preview_out = ["editor_positive", "editor_negative", "editor_check"]
    wire(c["editor_pick"].change, editor.load, ["editor_pick", "editor_json", "editor_state"],
         ["editor_json", "editor_msg", "editor_state", *FORM_OUTPUTS, *preview_out], queue=False)
    wire(c["editor_json"].input, editor.json_edit, ["editor_json"], [*FORM_OUTPUTS, *preview_out], queue=False)
    for name in NAMES:  # user edits only: the form filled from the JSON must not write back into it
        wire(c[name].input, editor.form_edit, ["editor_json", *NAMES], ["editor_json", *preview_out], queue=False)
    wire(c["form_add_lora"].click, editor.add_lora, ["form_lora_pick", "form_lora_weight", "editor_json", *NAMES],
         ["form_loras", "editor_json", "editor_msg", *preview_out], queue=False)
    lists = ["preset", "editor_pick"]
    wire(save.click, editor.save, ["editor_json", "preset", "editor_state"],
         ["editor_msg", "editor_check", "editor_state", *lists])
    wire(duplicate.click, editor.duplicate,
         ["editor_pick", "editor_json", "editor_new_name", "preset", "editor_state"],
         ["editor_json", "editor_new_name", "editor_msg", "editor_state", *FORM_OUTPUTS, *lists])
    wire(delete.click, editor.delete, ["editor_pick", "preset", "editor_state"],
         ["editor_json", "editor_msg", "editor_state", *lists])
