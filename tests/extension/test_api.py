"""The /newspicgen/v1 routes on a plain FastAPI app, against a real tiny-model prompt server."""
from __future__ import annotations

import http.server
import threading

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from extension.api import mount_routes, split_overrides  # noqa: E402
from extension.config import NewsPicGenConfig  # noqa: E402
from prompt_server.schema import PicturePrompt  # noqa: E402

NEWS = {"title": "大熊猫宝宝首次亮相", "content": "成都大熊猫繁育研究基地的大熊猫宝宝今天首次与游客见面。"}


def client_for(url: str, preset_dir=None, txt2img=None, model_base=lambda: None) -> TestClient:
    app = fastapi.FastAPI()
    config = NewsPicGenConfig(server_url=url, timeout=60, preset_dir=str(preset_dir) if preset_dir else None)
    mount_routes(app, lambda: config, txt2img=txt2img, model_base=model_base)
    return TestClient(app)


@pytest.fixture(scope="module")
def api(local_server_url, tmp_path_factory):
    return client_for(local_server_url, tmp_path_factory.mktemp("presets"))


@pytest.fixture
def closed_port_url():
    import socket
    with socket.socket() as sock:  # bound but never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_prompt_returns_a_valid_picture_prompt_and_the_composed_prompt(api):
    response = api.post("/newspicgen/v1/prompt", json={**NEWS, "seed": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    picture = PicturePrompt.from_dict(body["picture_prompt"])  # schema-valid
    assert set(body) >= {"picture_prompt", "preset", "prompt", "negative_prompt", "settings", "infotext", "warnings"}
    assert body["prompt"] and body["preset"]
    assert f"NewsPicGen type: {picture.type}" in body["infotext"]
    again = api.post("/newspicgen/v1/prompt", json={**NEWS, "seed": 7}).json()
    assert again["picture_prompt"] == body["picture_prompt"], "a seed repeats the picture prompt"


def test_named_preset_is_used(api):
    body = api.post("/newspicgen/v1/prompt", json={**NEWS, "preset": "ink-wash-nature", "seed": 1}).json()
    assert body["preset"] == "ink-wash-nature"


def test_the_routes_pick_the_preset_made_for_the_loaded_model(local_server_url, tmp_path):
    api = client_for(local_server_url, tmp_path, model_base=lambda: "flux")
    body = api.post("/newspicgen/v1/prompt", json={**NEWS, "seed": 7}).json()
    assert body["preset"].endswith("-flux") and body["negative_prompt"] == "" and body["warnings"] == []
    assert body["settings"]["cfg_scale"] == 1 and body["settings"]["distilled_cfg_scale"] == 3.5
    named = api.post("/newspicgen/v1/prompt", json={**NEWS, "seed": 7, "preset": "ink-wash-nature"}).json()
    assert named["preset"] == "ink-wash-nature"
    assert any("made for SDXL; Flux is loaded" in w for w in named["warnings"])
    assert api.get("/newspicgen/v1/presets").json()["model_base"] == "flux"


def test_unknown_preset_is_404_naming_the_available_ones(api):
    response = api.post("/newspicgen/v1/prompt", json={**NEWS, "preset": "no-such-preset", "seed": 1})
    assert response.status_code == 404
    assert "no-such-preset" in response.json()["detail"] and "ink-wash-nature" in response.json()["detail"]


@pytest.mark.parametrize("news", [{"title": " ", "content": "<p>\u200b</p>"}, {"content": ""}])
def test_empty_news_is_422_with_what_to_fill_in(api, news):
    response = api.post("/newspicgen/v1/prompt", json=news)
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_missing_content_field_is_422(api):
    assert api.post("/newspicgen/v1/prompt", json={"title": "only a title"}).status_code == 422


def test_prompt_server_down_is_503_with_what_to_do_in_plain_text(closed_port_url, capsys):
    response = client_for(closed_port_url).post("/newspicgen/v1/prompt", json=NEWS)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert closed_port_url in detail and "Prompt server panel" in detail
    assert "`" not in detail and not detail.startswith("NewsPicGen")
    logged = [line for line in capsys.readouterr().out.splitlines() if "NewsPicGen" in line]
    assert logged == [f"NewsPicGen: HTTP 503: {detail}"], "one line on the console, no traceback"


def test_prompt_server_down_503_never_shows_the_urls_password(closed_port_url):
    url = closed_port_url.replace("http://", "http://alice:s3cret-pw@")
    response = client_for(url).post("/newspicgen/v1/prompt", json=NEWS)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "alice:***@127.0.0.1" in detail and "s3cret" not in detail


class _Always500(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = b'{"object":"error","message":"engine crashed","type":"InternalServerError","code":500}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_prompt_server_error_is_502():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        app = fastapi.FastAPI()
        config = NewsPicGenConfig(server_url=url, timeout=10)
        config.client().retries, config.client().backoff = 0, 0.0  # keep the test fast
        mount_routes(app, lambda: config)
        response = TestClient(app).post("/newspicgen/v1/prompt", json=NEWS)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 502
    assert "engine crashed" in response.json()["detail"] or "500" in response.json()["detail"]


def test_presets_lists_builtins_and_families(api):
    response = api.get("/newspicgen/v1/presets")
    assert response.status_code == 200
    body = response.json()
    names = [p["name"] for p in body["presets"]]
    assert "newspicgen-comic-person" in names and set(body["builtin"]) <= set(names)
    assert "ink-wash" in body["families"] and body["errors"] == []


def test_txt2img_sends_the_composed_payload_to_the_webui_txt2img_stub_backend(local_server_url):
    calls = []

    def fake_webui_txt2img(payload, provenance):  # the real one is exercised in test_webui_integration.py
        calls.append((payload, provenance))
        return {"images": ["iVBORw0KGgo="], "info": '{"prompt": "x"}'}

    api = client_for(local_server_url, txt2img=fake_webui_txt2img)
    response = api.post("/newspicgen/v1/txt2img", json={**NEWS, "seed": 3, "preset": "newspicgen-comic-person",
                                                        "overrides": {"steps": 9, "batch_size": 2, "prompt": "ignored"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == ["iVBORw0KGgo="] and body["info"] == '{"prompt": "x"}'
    ((payload, provenance),) = calls
    assert payload["prompt"] == body["prompt"] != "ignored"
    picture = body["picture_prompt"]
    assert provenance == {"NewsPicGen type": picture["type"], "NewsPicGen keyword": " ".join(
        picture["en_keyword"].split()), "NewsPicGen preset": "newspicgen-comic-person"}
    assert payload["negative_prompt"] == body["negative_prompt"]
    assert payload["steps"] == 9 == body["settings"]["steps"]  # a setting override wins over the preset
    assert payload["batch_size"] == 2  # other txt2img fields pass through
    assert payload["width"] == 1280


def test_txt2img_without_the_webui_api_is_503(api):
    response = api.post("/newspicgen/v1/txt2img", json=NEWS)
    assert response.status_code == 503 and "--api" in response.json()["detail"]


def test_bad_setting_override_is_422(local_server_url):
    api = client_for(local_server_url, txt2img=lambda payload, provenance: pytest.fail("must not run"))
    response = api.post("/newspicgen/v1/txt2img", json={**NEWS, "seed": 1, "overrides": {"width": 513}})
    assert response.status_code == 422 and "width" in response.json()["detail"]


def test_split_overrides():
    assert split_overrides({"steps": 5, "cfg_scale": 4, "n_iter": 2}) == ({"steps": 5, "cfg_scale": 4}, {"n_iter": 2})
    assert split_overrides(None) == ({}, {})


def test_routes_and_models_are_in_the_openapi_docs(api):
    schema = api.get("/openapi.json").json()
    assert {"/newspicgen/v1/prompt", "/newspicgen/v1/presets", "/newspicgen/v1/txt2img"} <= set(schema["paths"])
    assert {"PromptRequest", "Txt2ImgRequest", "ComposedResponse", "Txt2ImgResponse", "PresetList"} <= set(
        schema["components"]["schemas"])
    assert "404" in schema["paths"]["/newspicgen/v1/prompt"]["post"]["responses"]
