"""What a server admin sees of the embedded engine: /metrics, --keep-alive and POST /unload.

Real servers on loopback. The keep-alive test runs a model with ~100 MB of
weights (the tiny model's tokenizer, wider layers) so that freeing them shows
in the process's resident memory.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import pytest
import requests

from prompt_server.schema import PicturePrompt, output_regex
from tests.support.local_server import launch_local
from tests.support.loopback import stop_process

NEWS = "以下是一篇新闻，标题“城市公园开放”。新闻内容：市民在新公园里散步。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"


def chat(url, seed=1, **fields):
    payload = {"model": "newspicgen", "messages": [{"role": "user", "content": NEWS}], "max_tokens": 300,
               "temperature": 0.8, "seed": seed, "regex": output_regex(), **fields}
    return requests.post(url + "/v1/chat/completions", json=payload, timeout=120)


def answered(response) -> bool:
    """200 with text (the wide model is untrained: it fills its strings to max_tokens)."""
    return response.status_code == 200 and bool(response.json()["choices"][0]["message"]["content"])


def metrics(url) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if "le" not in sample.labels:
                values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def test_metrics_count_tokens_passes_requests_and_time_to_first_token(local_server_url):
    url = local_server_url
    before = metrics(url)
    for seed in (1, 2):
        response = chat(url, seed=seed)
        assert response.status_code == 200
        PicturePrompt.from_json(response.json()["choices"][0]["message"]["content"])
    assert chat(url, regex="(unclosed").status_code == 400
    after = metrics(url)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    generated = delta("newspicgen_generation_tokens_total")
    assert generated > 0
    assert 0 < delta("newspicgen_forced_tokens_total") < generated
    assert 0 < delta("newspicgen_forward_passes_total") < generated  # forced tokens ride along
    assert delta("newspicgen_prompt_tokens_total") > 0
    assert delta("newspicgen_cached_prompt_tokens_total") > 0  # the second request reuses the first's prompt
    assert delta("newspicgen_requests_total{status=stop}") == 2
    assert delta("newspicgen_requests_total{status=rejected}") == 1
    assert delta("newspicgen_time_to_first_token_seconds_count") == 2
    assert after["newspicgen_num_running_reqs"] == 0 and after["newspicgen_num_waiting_reqs"] == 0
    assert after["newspicgen_model_loaded"] == 1


@contextlib.contextmanager
def server(model_dir, *args):
    process, url = launch_local(model_dir, *args)
    try:
        yield url, process
    finally:
        stop_process(process)


def wider_model(tiny_model_dir: Path, folder: Path) -> int:
    """The tiny model's tokenizer with layers wide enough to see in RSS; returns the weights' bytes."""
    import torch
    from transformers import AutoConfig, Qwen2ForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 256, 8192, 4
    config.layer_types = ["full_attention"] * 4
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder)
    for file in tiny_model_dir.iterdir():  # tokenizer, chat template, generation config
        if file.name not in ("config.json", "model.safetensors"):
            shutil.copy(file, folder / file.name)
    return sum(p.numel() * 4 for p in model.parameters())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_keep_alive_frees_the_weights_when_idle_and_the_next_request_reloads_them(tiny_model_dir, tmp_path):
    weight_bytes = wider_model(tiny_model_dir, tmp_path)
    with server(tmp_path, "--dtype", "float32", "--keep-alive", "1s") as (url, process):
        assert answered(chat(url, max_tokens=16))
        wait_until(lambda: metrics(url)["newspicgen_model_loaded"] == 0, "the idle unload")
        unloaded = rss_bytes(process.pid)
        health = requests.get(url + "/health", timeout=10)
        assert health.status_code == 200 and health.json()["model_loaded"] is False

        assert answered(chat(url, seed=3, max_tokens=16))  # loads the weights again
        loaded = rss_bytes(process.pid)
        assert loaded - unloaded > weight_bytes / 2

        wait_until(lambda: metrics(url)["newspicgen_model_loaded"] == 0, "the second idle unload")
        assert loaded - rss_bytes(process.pid) > weight_bytes / 2


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_unload_frees_the_weights_now_and_health_keeps_answering(tiny_model_dir, tmp_path):
    weight_bytes = wider_model(tiny_model_dir, tmp_path)
    with server(tmp_path, "--dtype", "float32") as (url, process):  # keep-alive: never
        assert answered(chat(url, max_tokens=16))
        time.sleep(1.5)
        assert metrics(url)["newspicgen_model_loaded"] == 1  # no keep-alive: it stays
        loaded = rss_bytes(process.pid)
        response = requests.post(url + "/unload", timeout=60)
        assert response.status_code == 200 and response.json()["model_loaded"] is False
        assert loaded - rss_bytes(process.pid) > weight_bytes / 2
        assert requests.get(url + "/health", timeout=10).status_code == 200
        assert answered(chat(url, seed=4, max_tokens=16))
        assert metrics(url)["newspicgen_model_loaded"] == 1


def test_keep_alive_durations_read_like_ollama():
    from prompt_server.engine.durations import parse_keep_alive

    assert parse_keep_alive("5m") == 300 and parse_keep_alive("30s") == 30 and parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive("0") == 0 and parse_keep_alive("2.5") == 2.5
    assert parse_keep_alive("-1") is None and parse_keep_alive("-5m") is None
    for bad in ("5x", "", "m", "inf", "5m3"):
        with pytest.raises(ValueError, match="5m, 30s"):
            parse_keep_alive(bad)
