"""Real SGLang end to end: `newspicgen serve --engine sglang --device cpu` with the tiny model.

Skipped unless NEWSPICGEN_SGLANG_PYTHON names a python with SGLang and its CPU
kernel (see tests/support/sglang.py). One server serves the whole module; the
last test stops it with Ctrl-C and checks that nothing is left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from extension.config import NewsPicGenConfig
from extension.tab_logic import TabLogic
from prompt_server.client import PromptClient
from prompt_server.errors import AuthenticationError, GrammarRejected
from prompt_server.schema import PicturePrompt, matches
from tests.support import REPO
from tests.support.sglang import LaunchedSGLang, alive, skip_without_sglang

pytestmark = skip_without_sglang()

API_KEY = "sglang-test-key"
NEWS = {"title": "雪豹现身祁连山保护区红外相机",
        "content": "祁连山国家公园近日公布一组红外相机画面，一只成年雪豹在岩壁间缓步巡视领地，随后跃上山脊消失在雪线之上。"}


@pytest.fixture(scope="module")
def sglang(tiny_model_dir):
    server = LaunchedSGLang(tiny_model_dir, api_key=API_KEY)
    server.wait_ready()
    yield server
    server.stop()


def cli(*argv, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), NEWSPICGEN_API_KEY=API_KEY)
    return subprocess.run([sys.executable, "-m", "newspicgen", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("mode", ["regex", "json_schema"])
def test_prompt_command_gives_a_valid_picture_prompt(sglang, mode):
    result = cli("prompt", "--server", sglang.url, "--mode", mode, "--title", NEWS["title"],
                 "--content", NEWS["content"], "--seed", "1")
    assert result.returncode == 0, result.stderr
    prompt = PicturePrompt.from_json(result.stdout)
    assert prompt.en_prompt.strip()
    if mode == "regex":
        assert matches(result.stdout.strip())


def test_a_batch_of_the_24_sample_articles_completes_valid(sglang, tmp_path):
    out = tmp_path / "out"
    result = cli("batch", str(REPO / "examples" / "news.jsonl"), "--out", str(out), "--server", sglang.url,
                 "--concurrency", "4", "--seed", "5", timeout=1500)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "prompts.jsonl").read_text(encoding="utf-8").split("\n") if line]
    assert len(records) == 24 == len({r["id"] for r in records})
    for record in records:
        PicturePrompt.from_dict(record["picture_prompt"])


class BadRegexClient(PromptClient):
    def request_body(self, *args, **kwargs):
        return {**super().request_body(*args, **kwargs), "regex": "(unclosed"}


def test_a_bad_regex_is_the_typed_grammar_error_with_sglangs_message(sglang):
    with pytest.raises(GrammarRejected) as info:
        BadRegexClient(sglang.url, api_key=API_KEY, retries=0).generate(NEWS)
    assert "Failed to compile regex" in info.value.server_message
    assert PromptClient(sglang.url, api_key=API_KEY).health().ok, "the server stays up"


def test_the_api_key_is_enforced(sglang):
    with pytest.raises(AuthenticationError):
        PromptClient(sglang.url, api_key=None, retries=0).generate(NEWS)
    with pytest.raises(AuthenticationError):
        PromptClient(sglang.url, api_key="wrong", retries=0).generate(NEWS)
    assert API_KEY not in sglang.text(), "the key never reaches the log (the command line is shown masked)"


def test_seeds_on_sglangs_cpu_engine_are_not_promised_and_the_launcher_says_so(sglang):
    # SGLang honours a request's seed only with --enable-deterministic-inference, which our
    # CUDA command line sets (see test_sglang_args) and which its CPU engine refuses.
    assert "SGLang's CPU engine ignores per-request seeds" in sglang.text()
    client = PromptClient(sglang.url, api_key=API_KEY)
    assert client.generate(NEWS, seed=42).en_prompt and client.generate(NEWS, seed=42).en_prompt


def test_the_tabs_status_line_names_the_engine(sglang, tmp_path):
    config = NewsPicGenConfig(server_url=sglang.url, api_key=API_KEY, timeout=120, preset_dir=str(tmp_path))
    status = TabLogic(lambda: config).check_server().values["status"]
    assert "engine `SGLang (regex)`" in status


def test_ctrl_c_stops_sglang_and_leaves_no_process_behind(sglang):
    family = sglang.descendants()
    assert family, "SGLang runs as children of the launcher"
    started = time.monotonic()
    assert sglang.interrupt() == 0
    deadline = time.monotonic() + 30
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive(family) == [], f"left behind: {alive(family)}"
    assert time.monotonic() - started < 120
    # SIGTERM to the server, which drains and stops its scheduler and detokenizer itself
    assert "SIGTERM received" in sglang.text() and "KeyboardInterrupt" not in sglang.text()
