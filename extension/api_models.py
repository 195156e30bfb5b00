"""Request and response bodies of the /newspicgen/v1 routes.

Plain pydantic that validates the same under 1.10 (A1111) and 2.x (Forge), and
shows in the WebUI's /docs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, Field

from prompt_server.schema import PicturePrompt
from style_presets.preset import StylePreset


class PromptRequest(BaseModel):
    title: str = Field("", description="news title (may be empty when the content says enough)")
    content: str = Field(..., description="news body; HTML is cleaned, long text cut at a sentence boundary")
    preset: Optional[str] = Field(None, description="preset name; empty = the default for the generated picture type")
    seed: Optional[int] = Field(None, description="sampling seed of the prompt model, for a repeatable picture prompt")


class Txt2ImgRequest(PromptRequest):
    overrides: Optional[Dict[str, Any]] = Field(
        None, description="steps, sampler_name, scheduler, cfg_scale, width, height, seed win over the preset's; "
                          "any other /sdapi/v1/txt2img field (batch_size, n_iter, enable_hr, ...) "
                          "is passed to the WebUI")


class ComposedResponse(BaseModel):
    picture_prompt: PicturePrompt
    preset: str = Field(..., description="the preset used")
    prompt: str = Field(..., description="composed positive prompt")
    negative_prompt: str
    settings: Dict[str, Any] = Field(..., description="the preset's generation settings after overrides")
    infotext: str = Field(..., description="A1111 infotext (what PNG Info shows), for pasting into txt2img")
    warnings: List[str] = Field(default_factory=list, description="e.g. a preset LoRA the WebUI does not have")


class Txt2ImgResponse(ComposedResponse):
    images: List[str] = Field(..., description="PNG images, base64")
    info: str = Field(..., description="the WebUI's own info JSON string of the run (info.prompt, infotexts, ...)")


class PresetList(BaseModel):
    presets: List[StylePreset]
    builtin: List[str] = Field(..., description="names of the read-only built-in presets")
    families: List[str]
    default_family: Optional[str] = Field(None, description="Settings > NewsPicGen > default preset family")
    model_base: Optional[str] = Field(None, description="the loaded model's family (sd15, sdxl, flux; null: "
                                                        "unknown): per-type default presets are made for it")
    errors: List[str] = Field(default_factory=list,
                              description="preset files that failed to load: path: field: message")


class ErrorBody(BaseModel):
    detail: str = Field(..., description="what went wrong and how to fix it")
