"""Which model family a WebUI has loaded: the model's flags, Forge's UI preset, the API's names."""
from __future__ import annotations

import pytest

from newspicgen.model_base import base_from_api, base_of_model, base_of_name, base_of_webui


class A1111Model:
    """The flags A1111 1.10's sd_models.set_model_type puts on every loaded model."""

    def __init__(self, **flags):
        for name in ("is_sd1", "is_sd2", "is_sdxl", "is_ssd", "is_sd3"):
            setattr(self, name, flags.get(name, False))


class Flux:  # Forge's backend.diffusion_engine.flux.Flux: the is_* flags all False
    is_sd1 = is_sd2 = is_sdxl = is_sd3 = False
    use_distilled_cfg_scale = True


class FakeInitialModel:  # Forge before any checkpoint is loaded
    pass


def test_the_loaded_models_own_flags():
    assert base_of_model(A1111Model(is_sd1=True)) == "sd15"
    assert base_of_model(A1111Model(is_sdxl=True)) == "sdxl"
    assert base_of_model(A1111Model(is_sdxl=True, is_ssd=True)) == "sdxl"  # SSD-1B: a distilled SDXL
    assert base_of_model(Flux()) == "flux"
    for unknown in (A1111Model(is_sd2=True), A1111Model(is_sd3=True), FakeInitialModel(), None):
        assert base_of_model(unknown) is None


def test_forges_ui_preset_comes_before_the_model():
    sd15 = A1111Model(is_sd1=True)
    assert base_of_webui("xl", sd15) == "sdxl"  # the page is set up for SDXL; Forge loads on Generate
    assert base_of_webui("flux", sd15) == "flux"
    assert base_of_webui("sd", None) == "sd15"
    assert base_of_webui("all", sd15) == "sd15"  # 'all': the model decides
    assert base_of_webui(None, A1111Model(is_sdxl=True)) == "sdxl"  # A1111 has no UI preset


@pytest.mark.parametrize("name, base", [
    ("v1-5-pruned-emaonly.safetensors [6ce0161689]", "sd15"),
    ("sd-v1-4.ckpt [fe4efff1e1]", "sd15"),
    ("dreamshaper_8_sd15.safetensors", "sd15"),
    ("sd_xl_base_1.0.safetensors [31e35c80fc]", "sdxl"),
    ("juggernautXL_v9Rdphoto2Lightning.safetensors", "sdxl"),
    ("ponyDiffusionV6XL.safetensors", "sdxl"),
    ("flux1-dev-bnb-nf4-v2.safetensors [f0770152ec]", "flux"),
    ("model.safetensors [0123456789]", None),
    ("empty.pt", None),
])
def test_checkpoint_names(name, base):
    assert base_of_name(name) == base


def test_over_the_api():
    models = [{"title": "a.safetensors [1]", "model_name": "a", "filename": "/home/alexl/a.safetensors",
               "config": "/m/sd_xl_base.yaml"}]
    # the config file next to the checkpoint says it; the folders above it do not count
    assert base_from_api({"sd_model_checkpoint": "a.safetensors [1]"}, models) == (
        "sdxl", "the checkpoint name 'a.safetensors [1]'")
    assert base_from_api({"sd_model_checkpoint": "a.safetensors [1]", "forge_preset": "sd"}, models)[0] == "sd15"
    assert base_from_api({"sd_model_checkpoint": "b [2]", "forge_preset": "all"}, models) == (
        None, "the checkpoint name 'b [2]' does not say")
    assert base_from_api({}, []) == (None, "no checkpoint is selected")
