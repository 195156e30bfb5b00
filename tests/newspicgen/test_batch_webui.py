"""`batch --webui`: pictures through /sdapi/v1/txt2img.

A real AUTOMATIC1111 cannot run in CI, so these tests run a fake WebUI: a real
loopback HTTP server that speaks the /sdapi/v1/txt2img shape (base64 PNG in
`images`, `info` as a JSON string, 401 for wrong --api-auth credentials).
"""
from __future__ import annotations

import base64
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from newspicgen.webui_client import WebUIClient, WebUIError, add_text_chunk, parse_auth, safe_stem, save_picture
from tests.support.jsonl import read_jsonl_lines
from tests.support.loopback import LoopbackServer, QuietHandler


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A real 8-bit RGB PNG, made with zlib/struct (no Pillow needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def png_text_chunks(png: bytes) -> dict:
    found, pos = {}, 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + data), f"bad CRC in {kind!r}"
        if kind == b"tEXt":
            key, _, value = data.partition(b"\x00")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = data.partition(b"\x00")
            assert rest[:2] == b"\x00\x00"  # not compressed
            _language, _, rest = rest[2:].partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            found[key.decode("latin-1")] = text.decode("utf-8")
        pos += 12 + length
    return found


class FakeWebUI(LoopbackServer):
    """Loopback stand-in for `webui.sh --api [--api-auth user:pass]`."""

    def __init__(self, auth=None, fail_prompts_with=None, delay=0.05, loras=(), embeddings=(),
                 checkpoint="model.safetensors [0123456789]", forge_preset=None):
        super().__init__(_FakeWebUIHandler)
        self.loras, self.embeddings = list(loras), list(embeddings)  # what GET /sdapi/v1/... lists
        # GET /sdapi/v1/options: the loaded checkpoint's title (A1111 1.10), and Forge's UI preset
        self.options = {"sd_model_checkpoint": checkpoint, **({"forge_preset": forge_preset} if forge_preset else {})}
        self.gets = []
        self.auth = auth
        self.fail_prompts_with = fail_prompts_with  # a word: prompts containing it get HTTP 500
        self.delay = delay
        self.payloads = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()


class _FakeWebUIHandler(QuietHandler):
    server: FakeWebUI



    def _authorized(self) -> bool:
        expected = "Basic " + base64.b64encode(self.server.auth.encode()).decode() if self.server.auth else None
        return expected is None or self.headers.get("Authorization") == expected

    def do_GET(self):
        self.server.gets.append(self.path)
        if not self._authorized():
            return self.send(401, {"detail": "Incorrect username or password"})
        if self.path.startswith("/sdapi/v1/progress"):
            return self.send(200, {"progress": 0.0, "eta_relative": 0.0, "state": {}, "current_image": None})
        if self.path == "/sdapi/v1/loras":
            return self.send(200, [{"name": n, "alias": n, "path": f"/m/{n}.safetensors", "metadata": {}}
                                    for n in self.server.loras])
        if self.path == "/sdapi/v1/embeddings":
            return self.send(200, {"loaded": {n: {"step": None, "shape": 768, "vectors": 1}
                                               for n in self.server.embeddings}, "skipped": {}})
        if self.path == "/sdapi/v1/options":
            return self.send(200, self.server.options)
        if self.path == "/sdapi/v1/sd-models":
            title = self.server.options["sd_model_checkpoint"]
            return self.send(200, [{"title": title, "model_name": title.split(" [")[0].rsplit(".", 1)[0],
                                    "hash": "01234567", "sha256": None, "filename": f"/m/{title.split(' [')[0]}",
                                    "config": None}])
        self.send(404, {"detail": "Not Found"})

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/sdapi/v1/txt2img":
            return self.send(404, {"detail": "Not Found"})
        if not self._authorized():
            return self.send(401, {"detail": "Incorrect username or password"})
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            self.server.payloads.append(payload)
        try:
            time.sleep(self.server.delay)  # gives overlapping requests a chance to show up
            word = self.server.fail_prompts_with
            if word and word in payload["prompt"]:
                return self.send(500, {"error": "OutOfMemoryError", "detail": "",
                                        "errors": "CUDA out of memory. Tried to allocate 2.00 GiB"})
            seed = payload.get("seed", -1)
            seed = 1234567 if seed in (-1, None) else seed
            infotext = (f"{payload['prompt']}\nNegative prompt: {payload.get('negative_prompt', '')}\n"
                        f"Steps: {payload.get('steps', 20)}, Seed: {seed}")
            self.send(200, {"images": [base64.b64encode(tiny_png()).decode()], "parameters": payload,
                             "info": json.dumps({"seed": seed, "infotexts": [infotext]})})
        finally:
            with self.server.lock:
                self.server.in_flight -= 1


# ------------------------------------------------------------ the client alone

def test_txt2img_saves_png_with_infotext_and_sidecar(tmp_path):
    with FakeWebUI(auth="artist:s3cret") as webui:
        client = WebUIClient(webui.url, auth="artist:s3cret")
        picture = client.txt2img({"prompt": "comic, a panda, 熊猫", "negative_prompt": "text", "seed": 42})
        assert webui.payloads[0]["seed"] == 42
    assert picture.seed == 42 and picture.infotext.startswith("comic, a panda, 熊猫\nNegative prompt: text")
    path = save_picture(tmp_path / "images", "dev/01", picture, {"id": "dev/01", "seed": 42})
    assert path.name == f"{safe_stem('dev/01')}.png" and "/" not in path.name
    png = path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_text_chunks(png)["parameters"] == picture.infotext  # what PNG Info reads
    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) == {"id": "dev/01", "seed": 42}
    assert not list((tmp_path / "images").glob("*.tmp"))


def test_text_chunk_is_not_added_twice():
    png = add_text_chunk(tiny_png(), "parameters", "plain latin text")
    assert png_text_chunks(png) == {"parameters": "plain latin text"}


def test_wrong_credentials_name_the_flag():
    with FakeWebUI(auth="artist:s3cret") as webui, pytest.raises(WebUIError, match="--webui-auth"):
        WebUIClient(webui.url, auth="artist:wrong").txt2img({"prompt": "x"})


def test_webui_without_api_and_webui_down_say_what_to_do():
    with FakeWebUI() as webui:
        url = webui.url
        with pytest.raises(WebUIError, match="--api"):
            WebUIClient(url + "/nothing-here").txt2img({"prompt": "x"})
    with pytest.raises(WebUIError, match="not reachable"):
        WebUIClient(url, timeout=2).txt2img({"prompt": "x"})


def test_webui_500_message_carries_the_webui_error():
    with FakeWebUI(fail_prompts_with="boom") as webui, \
            pytest.raises(WebUIError, match="HTTP 500: OutOfMemoryError: CUDA out of memory"):
        WebUIClient(webui.url).txt2img({"prompt": "boom"})


def test_auth_must_be_user_colon_password():
    assert parse_auth("a:b:c") == ("a", "b:c")
    assert parse_auth(None) is None
    with pytest.raises(ValueError, match="user:password"):
        parse_auth("justauser")


def test_availability_reads_the_webuis_lists():
    with FakeWebUI(auth="u:p", loras=["add_detail"], embeddings=["EasyNegative"]) as webui:
        available = WebUIClient(webui.url, auth="u:p").availability()
        with pytest.raises(WebUIError, match="--webui-auth"):
            WebUIClient(webui.url, auth="u:wrong").availability()
        with pytest.raises(WebUIError, match=r"has no /sdapi/v1/loras \(HTTP 404\); start the WebUI with --api"):
            WebUIClient(webui.url + "/nothing-here", auth="u:p").availability()
    assert available.loras == {"add_detail"} and available.embeddings == {"EasyNegative"}


# ------------------------------------------------------------ the batch command

def test_batch_with_fake_webui_makes_one_picture_per_article_sequentially(tmp_path, local_server_url,
                                                                          capsys):
    from newspicgen.cli import main
    from prompt_server.schema import PicturePrompt

    news = tmp_path / "news.jsonl"
    news.write_text("\n".join(json.dumps({"id": f"n{i}", "title": f"新闻{i}", "content": f"第{i}篇新闻的内容。"},
                                         ensure_ascii=False) for i in range(5)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with FakeWebUI(auth="u:p") as webui:
        code = main(["batch", str(news), "--out", str(out), "--server", local_server_url,
                     "--preset-dir", str(tmp_path / "presets"), "--concurrency", "3", "--seed", "7",
                     "--webui", webui.url, "--webui-auth", "u:p"])
        payloads, max_in_flight = list(webui.payloads), webui.max_in_flight
    assert code == 0
    assert max_in_flight == 1  # one WebUI queue: never two pictures at once
    assert len(payloads) == 5 and all(p["seed"] == 7 for p in payloads)
    lines = read_jsonl_lines(out / "prompts.jsonl")
    assert sorted(r["id"] for r in lines) == [f"n{i}" for i in range(5)]
    for record in lines:
        PicturePrompt.from_dict(record["picture_prompt"])
        assert record["prompt"] in {p["prompt"] for p in payloads}
        png = (out / record["image"]).read_bytes()
        assert png_text_chunks(png)["parameters"] == record["infotext"]
        sidecar = json.loads((out / record["image"]).with_suffix(".json").read_text(encoding="utf-8"))
        assert sidecar["id"] == record["id"] and sidecar["seed"] == 7
        assert sidecar["article"]["title"].startswith("新闻")
        assert sidecar["picture_prompt"] == record["picture_prompt"] and sidecar["preset"] == record["preset"]
    assert "images:" in capsys.readouterr().out


def test_batch_records_webui_errors_per_article_and_retries_them(tmp_path, local_server_url):
    from newspicgen.cli import main

    news = tmp_path / "news.csv"
    news.write_text("title,content\n" + "".join(f"标题{i},内容{i}。\n" for i in range(2)), encoding="utf-8")
    out = tmp_path / "out"
    args = ["batch", str(news), "--out", str(out), "--server", local_server_url,
            "--preset-dir", str(tmp_path / "presets"), "--retries", "0"]
    with FakeWebUI(fail_prompts_with=" ") as webui:  # every composed prompt has a space: all fail
        assert main(args + ["--webui", webui.url]) == 1
    failed = read_jsonl_lines(out / "failed.jsonl")
    assert len(failed) == 2 and {f["stage"] for f in failed} == {"webui"}
    assert all("CUDA out of memory" in f["reason"] and f["attempt"] == 1 for f in failed)
    assert not (out / "prompts.jsonl").read_text()
    with FakeWebUI() as webui:
        assert main(args + ["--webui", webui.url]) == 0
    assert len(read_jsonl_lines(out / "prompts.jsonl")) == 2
    assert not (out / "failed.jsonl").exists()
    assert len(list((out / "images").glob("*.png"))) == 2


def test_batch_with_wrong_webui_credentials_stops_before_any_prompt_fake_webui(tmp_path, capsys):
    from newspicgen.cli import main

    news = tmp_path / "news.csv"
    news.write_text("title,content\n标题,内容。\n", encoding="utf-8")
    with FakeWebUI(auth="u:p") as webui:  # the prompt server is never reached: none is running
        code = main(["batch", str(news), "--out", str(tmp_path / "out"), "--webui", webui.url,
                     "--webui-auth", "u:wrong", "--server", "http://127.0.0.1:9", "--preset-dir",
                     str(tmp_path / "presets")])
        payloads = list(webui.payloads)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--webui-auth" in err and "HTTP 401" in err
    assert payloads == [] and not (tmp_path / "out" / "failed.jsonl").exists()


def test_webui_errors_never_show_the_password_of_the_webui_url():
    from tests.support.loopback import free_port
    client = WebUIClient(f"http://bob:hunter2@127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(WebUIError) as info:
        client.txt2img({"prompt": "x"})
    assert "hunter2" not in str(info.value) and "bob:***@127.0.0.1" in str(info.value)


def test_batch_composes_against_the_webuis_embeddings_and_loras(tmp_path, local_server_url):
    from newspicgen.cli import main
    from style_presets.preset import LoraRef, StylePreset

    presets = tmp_path / "presets"
    presets.mkdir()
    mine = StylePreset(name="mine", prompt="ink, {prompt}", embeddings=["goodembed", "lostembed"],
                       loras=[LoraRef(name="add_detail"), LoraRef(name="lost_lora")])
    (presets / "mine.json").write_text(mine.to_json(), encoding="utf-8")
    news = tmp_path / "news.jsonl"
    news.write_text(json.dumps({"id": "a", "title": "熊猫", "content": "熊猫吃竹子。"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    out = tmp_path / "out"
    with FakeWebUI(loras=["add_detail"], embeddings=["goodembed"]) as webui:
        code = main(["batch", str(news), "--out", str(out), "--server", local_server_url, "--preset", "mine",
                     "--preset-dir", str(presets), "--webui", webui.url])
        gets, payloads = list(webui.gets), list(webui.payloads)
    assert code == 0
    lists = sorted(g for g in gets if not g.startswith("/sdapi/v1/progress"))
    assert lists == ["/sdapi/v1/embeddings", "/sdapi/v1/loras", "/sdapi/v1/options",
                     "/sdapi/v1/sd-models"]  # once per run, not per article
    prompt = payloads[0]["prompt"]
    assert "goodembed" in prompt and "<lora:add_detail:1>" in prompt
    assert "lostembed" not in prompt and "lost_lora" not in prompt
    record = json.loads((out / "prompts.jsonl").read_text(encoding="utf-8"))
    assert any("'lostembed' is not loaded" in w for w in record["warnings"])


def _one_article(tmp_path) -> Path:
    news = tmp_path / "news.jsonl"
    news.write_text(json.dumps({"id": "a", "title": "熊猫", "content": "熊猫吃竹子。"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return news


@pytest.mark.parametrize("webui_kwargs, base, flag", [
    ({"checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]"}, "sd15", None),
    ({"checkpoint": "SDXL/juggernautXL_v9.safetensors [c9e3e68f89]"}, "sdxl", None),
    ({"checkpoint": "random-sd15.safetensors [abc]", "forge_preset": "flux"}, "flux", None),  # Forge's UI first
    ({"checkpoint": "model.safetensors [0123456789]"}, "sd15", "sd15"),  # a name that says nothing, and --base
])
def test_batch_picks_the_presets_made_for_the_webuis_model(tmp_path, local_server_url, capsys, webui_kwargs,
                                                            base, flag):
    from newspicgen.cli import main
    from style_presets.store import PresetStore

    out = tmp_path / "out"
    with FakeWebUI(**webui_kwargs) as webui:
        code = main(["batch", str(_one_article(tmp_path)), "--out", str(out), "--server", local_server_url,
                     "--preset-dir", str(tmp_path / "presets"), "--webui", webui.url, "--seed", "1",
                     *(["--base", flag] if flag else [])])
        payload = webui.payloads[0]
    assert code == 0
    record = json.loads((out / "prompts.jsonl").read_text(encoding="utf-8"))
    preset = PresetStore(tmp_path / "presets").get(record["preset"])
    assert preset.base == base and preset.family == "newspicgen-comic"
    assert (payload["width"], payload["height"]) == (preset.settings.width, preset.settings.height)
    if base == "flux":
        assert payload["negative_prompt"] == "" and payload["cfg_scale"] == 1 and payload["distilled_cfg_scale"] == 3.5
    else:
        assert payload["negative_prompt"] and "distilled_cfg_scale" not in payload
    if not flag:
        assert "model loaded (from " in capsys.readouterr().err


def test_batch_keeps_a_named_preset_made_for_another_model_and_warns(tmp_path, local_server_url, capsys):
    from newspicgen.cli import main

    out = tmp_path / "out"
    with FakeWebUI(checkpoint="v1-5-pruned-emaonly.safetensors [6ce0161689]") as webui:
        code = main(["batch", str(_one_article(tmp_path)), "--out", str(out), "--server", local_server_url,
                     "--preset-dir", str(tmp_path / "presets"), "--webui", webui.url,
                     "--preset", "newspicgen-comic-person"])
        payload = webui.payloads[0]
    assert code == 0 and (payload["width"], payload["height"]) == (1280, 736)  # kept as asked
    record = json.loads((out / "prompts.jsonl").read_text(encoding="utf-8"))
    assert record["preset"] == "newspicgen-comic-person"
    assert any("is made for SDXL; SD 1.5 is loaded" in w for w in record["warnings"])


def test_batch_with_a_checkpoint_name_that_says_nothing_keeps_sdxl_and_says_how_to_choose(tmp_path,
                                                                                        local_server_url, capsys):
    from newspicgen.cli import main

    with FakeWebUI() as webui:
        assert main(["batch", str(_one_article(tmp_path)), "--out", str(tmp_path / "out"), "--server",
                     local_server_url, "--preset-dir", str(tmp_path / "presets"), "--webui", webui.url]) == 0
    err = capsys.readouterr().err
    assert "model family is unknown" in err and "--base sd15/sdxl/flux" in err
    record = json.loads((tmp_path / "out" / "prompts.jsonl").read_text(encoding="utf-8"))
    assert not record["preset"].endswith(("-sd15", "-flux"))
