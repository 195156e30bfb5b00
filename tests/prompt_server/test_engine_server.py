"""The embedded engine under load and abuse: a real `serve --engine local` on loopback, tiny model.

Covers the HTTP hardening (backlog, poison input, half-open and slow
clients, oversize bodies, API key before the body, disconnects) and
continuous batching as a client sees it (a short request overtakes a long
one; streaming). Orderings are asserted, never absolute times.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from prompt_server.schema import PicturePrompt, output_regex
from tests.support import REPO
from tests.support.loopback import free_port, stop_process

KEY = "k3y-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLIENT_TIMEOUT_S = 3
NEWS = "以下是一篇新闻，标题“城市公园开放”。新闻内容：市民在新公园里散步。，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。"


class Server:
    def __init__(self, model_dir, *args, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - read and removed in stop()
            prefix="engine-stderr-", suffix=".log", delete=False)
        full_env = {k: v for k, v in os.environ.items() if k != "NEWSPICGEN_API_KEY"}
        full_env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prompt_server", "serve", "--engine", "local", "--model", str(model_dir),
             "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"engine did not start:\n{self.stderr()[-3000:]}", pytrace=False)

    def stderr(self) -> str:
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    srv = Server(tiny_model_dir, "--max-batch-size", "16", "--client-timeout", str(CLIENT_TIMEOUT_S),
                 env={"NEWSPICGEN_API_KEY": KEY})
    yield srv
    srv.stop()
    # every abuse above (disconnects, resets, half-sent requests) left no traceback behind
    assert "Traceback" not in srv.stderr(), srv.stderr()[-3000:]


def body(**fields):
    payload = {"model": "newspicgen", "messages": [{"role": "user", "content": NEWS}], "max_tokens": 300,
               "temperature": 0.7}
    payload.update(fields)
    return payload


def post(server, timeout=120, headers=AUTH, **fields):
    return requests.post(server.url + "/v1/chat/completions", json=body(**fields), headers=headers,
                         timeout=timeout)


def content(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def raw_request(port: int, head: bytes, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + payload)
    return sock


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            match = re.search(rb"content-length: (\d+)", head, re.I)
            if match and len(rest) >= int(match.group(1)):
                break
    return data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# --- load ------------------------------------------------------------------------------------

def test_96_concurrent_requests_are_all_answered(server):
    def one(i):
        with requests.Session() as session:  # a connection of its own, like 96 separate clients
            return session.post(server.url + "/v1/chat/completions", headers=AUTH, timeout=300,
                                json=body(max_tokens=6, ignore_eos=True, seed=i))

    with ThreadPoolExecutor(96) as pool:
        responses = list(pool.map(one, range(96)))  # a connection error would raise here
    assert [r.status_code for r in responses] == [200] * 96
    assert all(r.json()["usage"]["completion_tokens"] == 6 for r in responses)


def test_poison_requests_affect_only_themselves(server):
    seeds = [21, 22, 23, 24]
    alone = {s: content(post(server, regex=output_regex(), seed=s)) for s in seeds}
    poison = [
        ({"temperature": 1e308}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"seed": 2 ** 64}, "seed"),
        ({"seed": -(2 ** 70)}, "seed"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 10 ** 9}, "maximum context length"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 10 ** 6}, "n"),
        ({"min_tokens": 50, "max_tokens": 5}, "min_tokens"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"regex": "(?<=x)a"}, "Failed to compile regex grammar"),
        ({"frequency_penalty": 1.0}, "frequency_penalty not supported"),
    ]

    def good(seed):
        return content(post(server, regex=output_regex(), seed=seed))

    def bad(case):
        fields, needle = case
        return post(server, **fields), needle

    with ThreadPoolExecutor(len(seeds) + len(poison)) as pool:
        goods = [pool.submit(good, s) for s in seeds]
        bads = [pool.submit(bad, case) for case in poison]
        nan = pool.submit(requests.post, server.url + "/v1/chat/completions", timeout=60,
                          data=json.dumps(body(temperature=float("nan"))),
                          headers={**AUTH, "Content-Type": "application/json"})
        for future in bads:
            response, needle = future.result()
            error = response.json()
            assert response.status_code == 400, (needle, response.text)
            assert error["object"] == "error" and error["type"] == "BadRequestError" and error["code"] == 400
            assert needle in error["message"], (needle, error["message"])
        assert nan.result().status_code == 400 and "NaN" in nan.result().json()["message"]
        assert {s: f.result() for s, f in zip(seeds, goods, strict=False)} == alone  # same seed, same answer
    for text in alone.values():
        PicturePrompt.from_json(text)


def test_malformed_http_is_refused_and_the_server_stays_up(server):
    bad_length = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Length: abc\r\n\r\n")
    assert status_of(read_response(bad_length)) == 400
    bad_length.close()
    wrong_type = requests.post(server.url + "/v1/chat/completions", data=b"x=1", headers=AUTH, timeout=30)
    assert wrong_type.status_code == 415 and "Content-Type must be application/json" in wrong_type.json()["message"]
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


# --- slow, idle and oversize clients -----------------------------------------------------------

def test_idle_half_open_connections_do_not_delay_a_request(server):
    idle = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            idle.append(sock)
        closed_before = sum(bool(select.select([s], [], [], 0)[0]) for s in idle)
        response = post(server, max_tokens=4, ignore_eos=True, seed=1, timeout=60)
        assert response.status_code == 200
        assert closed_before == 0  # they were all still held open when the request went in
        # ... and the server drops them once --client-timeout passes
        deadline = time.monotonic() + 10 * CLIENT_TIMEOUT_S
        open_ = list(idle)
        while open_ and time.monotonic() < deadline:
            readable, _, _ = select.select(open_, [], [], 1.0)
            for sock in readable:
                try:
                    if sock.recv(1024) == b"":
                        open_.remove(sock)
                except ConnectionResetError:
                    open_.remove(sock)
        assert not open_, f"{len(open_)} half-open connections were never closed"
    finally:
        for sock in idle:
            sock.close()


def test_a_slow_body_times_out_with_408(server):
    sock = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n", b'{"mess')
    data = read_response(sock)  # the server answers on its own after --client-timeout
    sock.close()
    assert status_of(data) == 408 and b"not received within" in data


def test_a_64_mib_body_gets_413_without_being_read(server):
    size = 64 << 20
    sock = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: " + str(size).encode() +
                       b"\r\n\r\n", b"x" * 65536)  # only the first 64 KiB are ever sent
    data = read_response(sock)
    assert status_of(data) == 413 and b"larger than the server's limit" in data
    assert sock.recv(1) == b""  # and the connection is closed: the rest is never read
    sock.close()


def test_an_oversize_chunked_body_gets_413(server):
    sock = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                                    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    try:
        for _ in range(64):  # 4 MiB, four times the limit
            sock.sendall(chunk)
            if select.select([sock], [], [], 0)[0]:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert status_of(read_response(sock)) == 413
    sock.close()


def test_the_api_key_is_checked_before_the_body_is_read(server):
    for auth in (b"", b"Authorization: Bearer wrong\r\n", b"Authorization: Bearer " + KEY.encode() + b"x\r\n"):
        sock = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth +
                           b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        data = read_response(sock)  # answered although the body never comes
        sock.close()
        assert status_of(data) == 401 and b"AuthenticationError" in data
    assert requests.get(server.url + "/v1/models", timeout=10).status_code == 401
    assert requests.get(server.url + "/v1/models", headers=AUTH, timeout=10).status_code == 200
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_clients_that_disconnect_leave_no_traceback(server):
    # non-streaming: the client hangs up while its answer is being decoded
    payload = json.dumps(body(max_tokens=800, ignore_eos=True, seed=3)).encode()
    sock = raw_request(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload),
                       payload)
    time.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    sock.close()
    # streaming: read one event, then go away
    with requests.post(server.url + "/v1/chat/completions", headers=AUTH, stream=True, timeout=60,
                       json=body(max_tokens=800, ignore_eos=True, seed=4, stream=True)) as response:
        next(response.iter_lines())
    assert content(post(server, max_tokens=3, seed=5)) is not None  # still serving
    assert "Traceback" not in server.stderr()


# --- continuous batching, streaming ----------------------------------------------------------------

def test_a_short_request_sent_during_a_long_one_finishes_first(server):
    finished = []
    with requests.post(server.url + "/v1/chat/completions", headers=AUTH, stream=True, timeout=300,
                       json=body(max_tokens=2000, ignore_eos=True, seed=8, stream=True)) as long_response:
        lines = long_response.iter_lines()
        while not next(lines).startswith(b'data: {"id"'):
            pass  # the long request is decoding now

        def long_reader():
            try:
                for line in lines:
                    if line == b"data: [DONE]":
                        finished.append("long")
                        return
            except Exception:  # the test closed the stream under it: that is the end of it
                return

        reader = threading.Thread(target=long_reader, daemon=True)
        reader.start()
        short = post(server, max_tokens=5, ignore_eos=True, seed=9)
        finished.append("short")
        assert short.status_code == 200 and short.json()["usage"]["completion_tokens"] == 5
        assert finished == ["short"]  # the long one is still decoding; leaving frees its slot
    reader.join(timeout=60)


def test_streaming_matches_the_non_streamed_answer(server):
    fields = dict(regex=output_regex(), seed=31)
    expected = content(post(server, **fields))
    with requests.post(server.url + "/v1/chat/completions", headers=AUTH, stream=True, timeout=120,
                       json=body(stream=True, stream_options={"include_usage": True}, **fields)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(line[len(b"data: "):]) for line in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    assert "".join(c["delta"].get("content", "") for c in choices) == expected
    assert choices[-1]["finish_reason"] == "stop" and all(c["finish_reason"] is None for c in choices[:-1])
    assert len(choices) > 3  # it really came in pieces
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    PicturePrompt.from_json(expected)


def test_min_tokens_holds_eos_back(server):
    for seed in range(3):
        payload = post(server, max_tokens=40, min_tokens=25, seed=seed).json()
        assert payload["usage"]["completion_tokens"] >= 25


# --- API key sources -------------------------------------------------------------------------------

def _args(**fields):
    import argparse

    return argparse.Namespace(**{"api_key": None, "api_key_file": None, **fields})


def test_api_key_sources_file_then_environment_then_argv(tmp_path, capsys):
    from prompt_server.launcher import LaunchError, api_key_from

    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n", encoding="utf-8")
    env = {"NEWSPICGEN_API_KEY": "from-env"}
    assert api_key_from(_args(api_key_file=str(key_file), api_key="argv"), env) == "from-a-file"
    assert api_key_from(_args(api_key="argv"), env) == "from-env"
    assert api_key_from(_args(), {}) is None
    assert api_key_from(_args(api_key="argv"), {}) == "argv"
    assert "process list" in capsys.readouterr().err  # argv works, with a warning
    with pytest.raises(LaunchError, match="cannot read --api-key-file"):
        api_key_from(_args(api_key_file=str(tmp_path / "missing")), {})
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(LaunchError, match="is empty"):
        api_key_from(_args(api_key_file=str(tmp_path / "empty")), {})
