"""Bodies of the /newspicgen/v1 routes (pydantic 2 here; the pydantic 1.10 run is in test_webui_integration.py)."""
from __future__ import annotations

import pydantic
import pytest

from extension.api_models import ComposedResponse, PresetList, PromptRequest, Txt2ImgRequest, Txt2ImgResponse

PICTURE = {"ch_keyword": "熊猫", "ch_prompt": "熊猫吃竹子", "en_keyword": "panda", "en_prompt": "a panda", "type": "1"}


def composed(**changes):
    body = dict(picture_prompt=PICTURE, preset="p", prompt="comic, a panda", negative_prompt="text",
                settings={"steps": 25}, infotext="comic, a panda\nSteps: 25")
    body.update(changes)
    return body


def test_prompt_request_needs_content_and_defaults_the_rest():
    request = PromptRequest(content="新闻")
    assert (request.title, request.preset, request.seed) == ("", None, None)
    with pytest.raises(pydantic.ValidationError) as info:
        PromptRequest(title="only a title")
    assert "content" in str(info.value)


def test_txt2img_request_takes_overrides():
    request = Txt2ImgRequest(content="新闻", overrides={"steps": 10, "batch_size": 2})
    assert request.overrides == {"steps": 10, "batch_size": 2}
    assert Txt2ImgRequest(content="x").overrides is None


def test_composed_response_validates_the_picture_prompt():
    assert ComposedResponse(**composed()).warnings == []
    with pytest.raises(pydantic.ValidationError):
        ComposedResponse(**composed(picture_prompt={**PICTURE, "type": "9"}))


def test_txt2img_response_needs_images_and_info():
    assert Txt2ImgResponse(**composed(), images=["aGk="], info="{}").images == ["aGk="]
    with pytest.raises(pydantic.ValidationError):
        Txt2ImgResponse(**composed(), info="{}")


def test_preset_list_validates_presets():
    from style_presets.store import PresetStore
    store = PresetStore(None)
    body = PresetList(presets=[p.to_dict() for p in store.list()], builtin=store.names(), families=store.families())
    assert [p.name for p in body.presets] == store.names()
    with pytest.raises(pydantic.ValidationError):
        PresetList(presets=[{"name": "x", "types": ["9"]}], builtin=[], families=[])
