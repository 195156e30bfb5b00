"""`newspicgen batch` against hostile input, busy servers and a second run on the same folder.

Real `python -m newspicgen batch` subprocesses against the real tiny-model
server; the faults a real server cannot make on demand (hanging forever,
dropping the first /health) come from fake loopback servers, named so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from newspicgen.cli import main
from tests.support import REPO
from tests.support.jsonl import read_jsonl_lines
from tests.support.loopback import LoopbackServer, QuietHandler, free_port, stop_process


def batch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(batch_cmd(*args), cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)


def batch_cmd(*args: str) -> list:
    return [sys.executable, "-m", "newspicgen", "batch", *args]


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("NEWSPICGEN_API_KEY", None)
    return env


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def two_articles(path: Path) -> Path:
    return write_rows(path, [{"id": f"a{i}", "title": f"第{i}条", "content": f"第{i}条新闻的内容。"} for i in range(2)])


class _Handler(QuietHandler):
    server: LoopbackServer




class HungServer(LoopbackServer):
    """Fake prompt server: healthy, but never answers a chat request (a run that stays busy)."""

    def __init__(self):
        super().__init__(_HungHandler)
        self.chat_requests = 0
        self.release = threading.Event()


class _HungHandler(_Handler):
    server: HungServer

    def do_GET(self):
        if self.path == "/v1/models":
            return self.send(200, b'{"data": [{"id": "newspicgen", "owned_by": "fake"}]}')
        self.send(200, b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.chat_requests += 1
        self.server.release.wait(60)
        self.close_connection = True


class FlakyHealthProxy(LoopbackServer):
    """Fake front of the real server: the first /health calls get `faults` (a busy or restarting
    server: "drop" closes the connection unanswered, a number is that HTTP status); the rest pass."""

    def __init__(self, upstream: str, faults):
        super().__init__(_FlakyHandler)
        self.upstream, self.faults, self.health_calls = upstream, list(faults), 0


class _FlakyHandler(_Handler):
    server: FlakyHealthProxy

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if method == "POST" else None
        answer = requests.request(method, self.server.upstream + self.path, data=body, timeout=120,
                                  headers={"Content-Type": "application/json"})
        self.send(answer.status_code, answer.content)

    def do_GET(self):
        if self.path == "/health":
            self.server.health_calls += 1
            if self.server.faults:
                fault = self.server.faults.pop(0)
                if fault == "drop":
                    self.close_connection = True
                    return None
                return self.send(fault, b'{"error": "busy"}')
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")


# ------------------------------------------------------------ one run per --out

def test_second_run_on_one_folder_is_refused_with_the_pid_and_a_killed_runs_lock_is_stale_fake_server(
        tmp_path, local_server_url):
    news, out = two_articles(tmp_path / "news.jsonl"), tmp_path / "out"
    presets = ["--preset-dir", str(tmp_path / "presets")]
    with HungServer() as hung:
        first = subprocess.Popen(batch_cmd(str(news), "--out", str(out), "--server", hung.url, *presets),
                                 cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while hung.chat_requests == 0:  # it holds the folder and is working
                assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
                time.sleep(0.05)
            second = batch(str(news), "--out", str(out), "--server", local_server_url, *presets)
            first.kill()  # SIGKILL: no chance to clean up, the lock file stays behind
            first.wait(timeout=30)
        finally:
            hung.release.set()
            stop_process(first)
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and f"PID {first.pid}" in second.stderr and "--out" in second.stderr
    assert not (out / "prompts.jsonl").read_bytes(), "the refused run wrote nothing"

    assert (out / ".batch.lock").read_text().strip() == str(first.pid)  # stale, and it must not matter
    third = batch(str(news), "--out", str(out), "--server", local_server_url, *presets)
    assert third.returncode == 0, third.stderr
    assert sorted(r["id"] for r in read_jsonl_lines(out / "prompts.jsonl")) == ["a0", "a1"]


# ------------------------------------------------------------ start-up checks

def test_startup_probe_retries_a_busy_server_instead_of_calling_it_unreachable_mocked(tmp_path, local_server_url):
    news, out = two_articles(tmp_path / "news.jsonl"), tmp_path / "out"
    with FlakyHealthProxy(local_server_url, ["drop", 503]) as proxy:
        result = batch(str(news), "--out", str(out), "--server", proxy.url, "--preset-dir", str(tmp_path / "p"))
        calls = proxy.health_calls
    assert result.returncode == 0, result.stderr
    assert calls >= 3 and len(read_jsonl_lines(out / "prompts.jsonl")) == 2


def test_webui_down_stops_before_any_prompt_is_made(tmp_path, local_server_url):
    news, out = two_articles(tmp_path / "news.jsonl"), tmp_path / "out"
    webui = f"http://127.0.0.1:{free_port()}"
    result = batch(str(news), "--out", str(out), "--server", local_server_url, "--webui", webui,
                   "--preset-dir", str(tmp_path / "presets"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "WebUI not reachable" in result.stderr and webui in result.stderr
    assert not read_jsonl_lines(out / "prompts.jsonl") and not (out / "failed.jsonl").exists()


def test_unknown_family_refuses_to_start_naming_the_known_families(tmp_path, capsys):
    news = two_articles(tmp_path / "news.jsonl")
    code = main(["batch", str(news), "--out", str(tmp_path / "out"), "--family", "no-such-family",
                 "--server", f"http://127.0.0.1:{free_port()}", "--preset-dir", str(tmp_path / "presets")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no preset family 'no-such-family'; available: " in err and "newspicgen" in err


# ------------------------------------------------------------ hostile input

def test_gbk_csv_is_refused_naming_the_file_the_line_and_utf8(tmp_path, local_server_url):
    news = tmp_path / "news.csv"
    news.write_bytes("title,content\n熊猫,动物园的大熊猫产下双胞胎。\n".encode("gbk"))
    result = batch(str(news), "--out", str(tmp_path / "out"), "--server", local_server_url,
                   "--preset-dir", str(tmp_path / "presets"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{news}: line 2 is not UTF-8" in result.stderr and "save it as UTF-8" in result.stderr
    assert not read_jsonl_lines(tmp_path / "out" / "prompts.jsonl")


def test_deeply_nested_row_is_a_bad_row_and_u2028_stays_inside_its_string(tmp_path, local_server_url):
    news = tmp_path / "news.jsonl"
    tricky = "第一段\u2028第二段\u2029第三段\x85完"  # str.splitlines() breaks at each of these
    news.write_text(json.dumps({"id": "sep", "title": "分\u2028隔", "content": tricky}, ensure_ascii=False) + "\n"
                    + "[" * 100_000 + "\n"
                    + json.dumps({"id": "ok", "title": "好", "content": "正常的新闻。"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    out = tmp_path / "out"
    result = batch(str(news), "--out", str(out), "--server", local_server_url, "--preset-dir", str(tmp_path / "p"))
    assert result.returncode == 1, result.stderr  # a row was skipped
    assert "Traceback" not in result.stderr and f"{news}:line 2: JSON nested too deeply" in result.stderr
    assert sorted(r["id"] for r in read_jsonl_lines(out / "prompts.jsonl")) == ["ok", "sep"]
    (bad,) = read_jsonl_lines(out / "bad_rows.jsonl")
    assert (bad["input"], bad["line"], bad["reason"]) == (str(news), 2, "JSON nested too deeply")
    assert "1 bad input rows" in result.stdout and "bad_rows.jsonl" in result.stdout

    # Fixed input: the next run has nothing to report, so the list goes and the exit code is 0.
    write_rows(news, [{"id": "sep", "title": "x", "content": tricky}, {"id": "ok", "content": "正常的新闻。"}])
    again = batch(str(news), "--out", str(out), "--server", local_server_url, "--preset-dir", str(tmp_path / "p"))
    assert again.returncode == 0, again.stderr
    assert not (out / "bad_rows.jsonl").exists()
