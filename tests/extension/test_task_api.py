"""POST /newspicgen/v1/comic and /ad on a plain FastAPI app, against the real tiny-model
prompt server; `render` runs a stub of the WebUI's txt2img function (the real one
is exercised in test_webui_integration.py)."""
from __future__ import annotations

import base64
import io
import json

import pytest

fastapi = pytest.importorskip("fastapi")
PIL = pytest.importorskip("PIL.Image")
from fastapi.testclient import TestClient  # noqa: E402

from extension.api import mount_routes  # noqa: E402
from extension.config import NewsPicGenConfig  # noqa: E402

STORY = {"title": "乡村教师", "content": "李老师在山村小学教书三十年，每天清晨步行一小时到校。"}


def png_b64(width=64, height=64) -> str:
    out = io.BytesIO()
    PIL.new("RGB", (width, height), "white").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def client_for(url, preset_dir, txt2img=None) -> TestClient:
    app = fastapi.FastAPI()
    config = NewsPicGenConfig(server_url=url, timeout=120, preset_dir=str(preset_dir))
    mount_routes(app, lambda: config, txt2img=txt2img)
    return TestClient(app)


def test_comic_answers_the_strip_json(local_server_url, tmp_path):
    api = client_for(local_server_url, tmp_path)
    response = api.post("/newspicgen/v1/comic", json={**STORY, "panels": 2, "seed": 1, "overrides": {"seed": 11}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["panels"]) == 2 and {"name", "en", "zh"} == set(body["characters"][0])
    assert all(p["settings"]["seed"] == 11 for p in body["panels"])
    assert "images" not in body and "strip" not in body


def test_comic_render_draws_every_panel_with_one_seed_and_a_strip_stub_txt2img(local_server_url, tmp_path):
    calls = []

    def webui_txt2img(payload, provenance):
        calls.append((payload, provenance))
        return {"images": [png_b64()], "info": json.dumps({"infotexts": [payload["prompt"] + "\nSteps: 1"]})}

    api = client_for(local_server_url, tmp_path, webui_txt2img)
    body = api.post("/newspicgen/v1/comic", json={**STORY, "panels": 3, "seed": 2, "render": True,
                                                  "overrides": {"steps": 1, "width": 64, "height": 64,
                                                                "batch_size": 1}}).json()
    assert len(body["images"]) == 3 and len(calls) == 3
    assert len({payload["seed"] for payload, _ in calls}) == 1  # one seed for the strip
    assert all(payload["steps"] == 1 and payload["batch_size"] == 1 for payload, _ in calls)
    assert [prov["NewsPicGen panel"] for _, prov in calls] == ["1/3", "2/3", "3/3"]
    strip = PIL.open(io.BytesIO(base64.b64decode(body["strip"])))
    assert strip.width == 3 * 64 + 4 * 4 and isinstance(body["captions_drawn"], bool)


def test_ad_render_answers_the_ad_and_a_poster_stub_txt2img(local_server_url, tmp_path):
    api = client_for(local_server_url, tmp_path, lambda payload, provenance: {"images": [png_b64(128, 128)],
                                                                            "info": "{}"})
    body = api.post("/newspicgen/v1/ad", json={"product": "类型#裙*颜色#蓝色", "seed": 1, "render": True}).json()
    assert {"headline", "copy", "en_prompt", "type", "prompt", "negative_prompt", "images", "poster"} <= set(body)
    poster = PIL.open(io.BytesIO(base64.b64decode(body["poster"])))
    assert poster.width == 128


def test_errors_name_the_cause_and_the_fix(local_server_url, tmp_path):
    api = client_for(local_server_url, tmp_path)
    response = api.post("/newspicgen/v1/comic", json={**STORY, "render": True})
    assert response.status_code == 503 and "--api" in response.json()["detail"]
    response = api.post("/newspicgen/v1/comic", json={**STORY, "panels": 12})
    assert response.status_code == 422
    response = api.post("/newspicgen/v1/ad", json={"product": "裙", "family": "nope"})
    assert response.status_code == 404 and "family" in response.json()["detail"]
    response = api.post("/newspicgen/v1/ad", json={"product": " "})
    assert response.status_code == 422 and "product is empty" in response.json()["detail"]
