"""Scale-out through SGLang's own router: `serve --engine sglang --workers 2`, one worker killed mid-batch.

Skipped unless NEWSPICGEN_SGLANG_PYTHON has SGLang, its CPU kernel and sglang-router.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from prompt_server.schema import PicturePrompt
from tests.support import REPO
from tests.support.jsonl import read_jsonl_lines
from tests.support.sglang import LaunchedSGLang, alive, skip_without_sglang

pytestmark = skip_without_sglang(need_router=True)


def requests_served(worker_url: str) -> float:
    """sglang:num_requests_total from the worker's /metrics (SGLang runs with --enable-metrics)."""
    with urllib.request.urlopen(worker_url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(r"^sglang:num_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def test_a_worker_dying_mid_batch_costs_retries_never_articles(tiny_model_dir, tmp_path):
    server = LaunchedSGLang(tiny_model_dir, "--workers", "2", "--", "--enable-metrics")
    try:
        server.wait_ready()
        workers = server.workers()
        assert len(workers) == 2, server.text()[-3000:]
        (doomed_url, doomed_pid), (survivor_url, _) = sorted(workers.items())
        out = tmp_path / "out"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("NEWSPICGEN_API_KEY", None)
        batch = subprocess.Popen(
            [sys.executable, "-m", "newspicgen", "batch", str(REPO / "examples" / "news.jsonl"), "--out", str(out),
             "--server", server.url, "--concurrency", "8", "--retries", "4", "--seed", "3"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 900
        while len(read_jsonl_lines(out / "prompts.jsonl")) < 4 and batch.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        served_by_doomed = requests_served(doomed_url)
        os.killpg(doomed_pid, signal.SIGKILL)  # the whole worker: its scheduler and detokenizer too
        output, _ = batch.communicate(timeout=1500)
        assert batch.returncode == 0, output[-4000:]
        records = read_jsonl_lines(out / "prompts.jsonl")
        ids = [r["id"] for r in records]
        assert len(ids) == 24 == len(set(ids)), "every article exactly once"
        for record in records:
            PicturePrompt.from_dict(record["picture_prompt"])
        assert served_by_doomed > 0 and requests_served(survivor_url) > 0, "both workers served requests"
        assert server.process.poll() is None, "the router and the other worker keep serving"
    finally:
        family = server.descendants()
        server.stop()
        deadline = time.monotonic() + 30
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert alive(family) == [], "Ctrl-C stopped the router and the workers"
