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


class ComicRequest(BaseModel):
    title: str = Field("", description="story / news title")
    content: str = Field(..., description="story / news text")
    panels: int = Field(4, ge=2, le=8, description="number of panels, 2-8")
    family: Optional[str] = Field(None, description="preset family for every panel (default: the settings')")
    preset: Optional[str] = Field(None, description="one preset for every panel instead of the family's")
    seed: Optional[int] = Field(None, description="sampling seed of the prompt model")
    seed_step: int = Field(0, ge=0, le=1, description="0: every panel gets the strip's seed; 1: panel i gets seed+i")
    overrides: Optional[Dict[str, Any]] = Field(None, description="txt2img settings (seed = the strip's seed)")
    render: bool = Field(False, description="also make the pictures with the WebUI's txt2img: images + strip")


class AdRequest(BaseModel):
    product: str = Field(..., description="product name or facts (free text or 类型#裙*颜色#蓝色)")
    facts: str = Field("", description="more facts")
    family: Optional[str] = Field(None, description="preset family (default: ad)")
    preset: Optional[str] = None
    seed: Optional[int] = Field(None, description="sampling seed of the prompt model")
    overrides: Optional[Dict[str, Any]] = Field(None, description="txt2img settings")
    render: bool = Field(False, description="also make the picture and the poster: images + poster")
