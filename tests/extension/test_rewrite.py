"""The always-on script's rewriting of a processing object, without a WebUI.

`Processing` below carries the attribute defaults of A1111 1.10.1's
StableDiffusionProcessing (modules/processing.py) that the rewrite touches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pytest

from extension.rewrite import apply_provenance, apply_to_processing, provenance_args, refuse_processing
from prompt_server.schema import PicturePrompt
from style_presets.compose import INFOTEXT_KEYWORD, INFOTEXT_PRESET, INFOTEXT_TYPE, compose
from style_presets.store import PresetStore


@dataclass
class Processing:  # the fields and defaults of StableDiffusionProcessing that matter here
    prompt: Any = ""
    negative_prompt: Any = ""
    steps: int = 50
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1
    batch_size: int = 1
    n_iter: int = 1
    extra_generation_params: Dict[str, Any] = field(default_factory=dict)
    all_prompts: Optional[List[str]] = None
    all_negative_prompts: Optional[List[str]] = None
    main_prompt: Optional[str] = None
    main_negative_prompt: Optional[str] = None

    def setup_prompts(self):  # what A1111's setup_prompts does with a str prompt (styles aside)
        self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        self.main_prompt, self.main_negative_prompt = self.all_prompts[0], self.all_negative_prompts[0]


PICTURE = PicturePrompt.from_dict({"ch_keyword": "登月", "ch_prompt": "宇航员在月球上插旗",
                                   "en_keyword": "moon landing", "type": "2",
                                   "en_prompt": "an astronaut (planting) a flag <lora:evil:1> on the moon"})


@pytest.fixture(scope="module")
def composed():
    store = PresetStore(None)
    return compose(PICTURE, store.resolve(None, PICTURE.type))


def test_prompts_of_every_batch_become_the_composed_ones(composed):
    p = Processing(prompt="user prompt", negative_prompt="user negative", batch_size=2, n_iter=3)
    apply_to_processing(p, composed)  # before_process: before setup_prompts
    p.setup_prompts()
    assert p.all_prompts == [composed.prompt] * 6
    assert p.all_negative_prompts == [composed.negative_prompt] * 6
    assert "user prompt" not in composed.prompt and "astronaut" in composed.prompt
    assert "<lora:evil" not in p.prompt  # the model's text is neutralised by compose()


def test_lists_already_filled_are_replaced_too(composed):
    p = Processing(prompt="old", negative_prompt="old neg", batch_size=2, n_iter=2)
    p.setup_prompts()
    apply_to_processing(p, composed)
    assert p.all_prompts == [composed.prompt] * 4 and p.all_negative_prompts == [composed.negative_prompt] * 4
    assert (p.main_prompt, p.main_negative_prompt) == (composed.prompt, composed.negative_prompt)


def test_preset_settings_apply_where_the_caller_left_defaults(composed):
    p = Processing()
    applied = apply_to_processing(p, composed)
    expected = {k: v for k, v in composed.settings.items() if v is not None}
    assert expected, "the default person preset sets size/steps"
    assert applied == expected
    assert all(getattr(p, k) == v for k, v in expected.items())


def test_settings_the_caller_chose_are_kept(composed):
    p = Processing(steps=33, width=768, height=640, cfg_scale=5.5, sampler_name="Euler a", seed=1234)
    applied = apply_to_processing(p, composed)
    assert (p.steps, p.width, p.height, p.cfg_scale, p.sampler_name, p.seed) == (33, 768, 640, 5.5, "Euler a", 1234)
    assert not {"steps", "width", "height", "cfg_scale", "sampler_name", "seed"} & set(applied)


@pytest.mark.parametrize("ui_defaults", [
    dict(steps=20, sampler_name="DPM++ 2M", scheduler="Automatic"),  # stock txt2img UI
    dict(sampler_name="Euler"),  # /sdapi/v1/txt2img without a sampler (sampler_index default)
])
def test_ui_and_api_defaults_count_as_untouched(composed, ui_defaults):
    p = Processing(**ui_defaults)
    apply_to_processing(p, composed)
    for key in ui_defaults:
        if composed.settings.get(key) is not None:
            assert getattr(p, key) == composed.settings[key]


def test_infotext_fields_say_how_the_picture_was_made(composed):
    p = Processing(extra_generation_params={"Other ext": "kept"})
    apply_to_processing(p, composed)
    assert p.extra_generation_params == {"Other ext": "kept", INFOTEXT_TYPE: "2",
                                         INFOTEXT_KEYWORD: "moon landing", INFOTEXT_PRESET: composed.preset}
    # the same values compose() wrote into its own infotext
    assert f"NewsPicGen preset: {composed.preset}" in composed.infotext


def test_pasted_provenance_is_written_while_the_prompt_is_the_composed_one(composed):
    args = provenance_args(composed.provenance, composed.prompt)
    assert args[0] is False, "the script stays disabled: it only records"
    p = Processing(prompt=composed.prompt + " ")  # the paste may trim or add whitespace
    assert apply_provenance(p, tuple(args[4:7]), args[7])
    assert p.extra_generation_params == composed.provenance


@pytest.mark.parametrize("prompt, values", [
    ("a prompt the user rewrote", None),  # a different picture: no NewsPicGen fields
    (None, ("", "", "")),  # nothing pasted (the script's hidden fields are empty)
])
def test_no_provenance_for_other_prompts(composed, prompt, values):
    p = Processing(prompt=prompt or composed.prompt)
    values = values or tuple(composed.provenance.values())
    assert not apply_provenance(p, values, composed.prompt)
    assert p.extra_generation_params == {}


def test_a_refused_processing_fails_where_the_webui_does_not_catch_it():
    p = Processing(prompt="the caller's prompt")
    refusal = LookupError("cannot reach the prompt server")  # alwayson.NewsPicGenError in the WebUI
    refuse_processing(p, refusal)
    with pytest.raises(LookupError) as caught:
        p.setup_prompts()
    assert caught.value is refusal
    assert p.all_prompts is None, "no prompt of the caller's is set up for sampling"


def test_the_webuis_own_ui_defaults_count_as_untouched(composed):
    from types import SimpleNamespace

    from extension.rewrite import ui_defaults, untouched_with
    # Forge with its 'xl' UI preset: the page starts at 896x1152, CFG 5, DPM++ 2M SDE / Karras
    opts = SimpleNamespace(forge_preset="xl", xl_t2i_width=896, xl_t2i_height=1152, xl_t2i_cfg=5,
                           xl_t2i_sampler="DPM++ 2M SDE", xl_t2i_scheduler="Karras", sd_t2i_width=512)
    untouched = untouched_with(ui_defaults({"txt2img/Sampling steps/value": 30}, opts))
    p = Processing(steps=30, width=896, height=1152, cfg_scale=5, sampler_name="DPM++ 2M SDE", scheduler="Karras")
    applied = apply_to_processing(p, composed, untouched)
    assert {k for k, v in composed.settings.items() if v is not None and k != "seed"} <= set(applied)
    chosen = Processing(width=640, height=640)  # not a default anywhere: the caller's
    apply_to_processing(chosen, composed, untouched)
    assert (chosen.width, chosen.height) == (640, 640)


@dataclass
class ForgeProcessing(Processing):  # Forge adds Flux's distilled guidance (modules/processing.py)
    distilled_cfg_scale: float = 3.5


def test_a_flux_preset_on_forge_sets_cfg_1_the_distilled_cfg_and_no_negative():
    from types import SimpleNamespace

    from extension.rewrite import ui_defaults, untouched_with
    flux = compose(PICTURE, PresetStore(None).default_for(PICTURE.type, base="flux"), base="flux")
    opts = SimpleNamespace(forge_preset="flux", flux_t2i_cfg=1, flux_t2i_d_cfg=3.5, flux_t2i_sampler="Euler",
                           flux_t2i_scheduler="Simple", flux_t2i_width=896, flux_t2i_height=1152)
    p = ForgeProcessing(negative_prompt="the caller's negative", cfg_scale=1, width=896, height=1152)
    applied = apply_to_processing(p, flux, untouched_with(ui_defaults({}, opts)))
    assert p.negative_prompt == "" and (p.cfg_scale, p.distilled_cfg_scale) == (1, 3.5)
    assert (p.width, p.height) == (flux.settings["width"], flux.settings["height"]) and "width" in applied
    a1111 = Processing()  # no distilled_cfg_scale there: nothing is set that A1111 lacks
    apply_to_processing(a1111, flux)
    assert not hasattr(a1111, "distilled_cfg_scale")
