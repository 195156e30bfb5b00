"""child_processes: real subprocesses stopped the way SGLang/vLLM expect, and the wait for a
server (or SGLang's router) to really serve, against loopback stand-ins of the router."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from prompt_server.child_processes import Children, LaunchError, wait_until_serving
from tests.support.loopback import LoopbackServer, QuietHandler

# A server that stops its own worker on SIGTERM, like SGLang and vLLM do.
GRACEFUL = textwrap.dedent("""
    import signal, subprocess, sys, time
    log = open(sys.argv[1], "a")
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    def stop(signum, frame):
        log.write(f"server got {signal.Signals(signum).name}\\n"); log.flush()
        worker.terminate(); worker.wait()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(worker.pid, flush=True)
    time.sleep(600)
""")

# A server, and a worker of it, that ignore SIGTERM.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c",
                               "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(worker.pid, flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for its parent counts as gone
        return stat.read().split(")")[-1].split()[0] != "Z"


def start(children: Children, script: str, *args: str) -> tuple:
    process = subprocess.Popen([sys.executable, "-c", script, *args], start_new_session=True,
                               stdout=subprocess.PIPE, text=True)
    children.processes.append(process)
    return process, int(process.stdout.readline())


def test_stop_sends_sigterm_to_the_server_alone_and_lets_it_stop_its_workers(tmp_path):
    log = tmp_path / "signals.log"
    children = Children()
    server, worker = start(children, GRACEFUL, str(log))
    assert children.stop_all(grace=20) == 0, "the server exited by itself"
    assert log.read_text() == "server got SIGTERM\n", "one SIGTERM, to the server only"
    assert not alive(worker) and server.returncode == 0


def test_what_ignores_sigterm_is_killed_with_its_whole_group_after_the_grace_period():
    children = Children()
    server, worker = start(children, STUBBORN)
    assert children.stop_all(grace=0.5) == 9
    assert server.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker), "the worker went with its group"


def test_ctrl_c_marks_the_stop_and_signals_no_child_itself(tmp_path):
    children = Children()
    server, _ = start(children, GRACEFUL, str(tmp_path / "log"))
    try:
        children.forward(signal.SIGINT, None)
        assert children.stopping
        time.sleep(0.3)
        assert server.poll() is None, "the stop is left to stop_all, in order"
    finally:
        children.stop_all(grace=20)
    assert (tmp_path / "log").read_text() == "server got SIGTERM\n"


def router_stub(ready_after: int, worker_urls):
    """Like SGLang's router: /health at once, its workers listed (and /v1/models 200) only later."""
    calls = {"workers": 0}

    class Router(QuietHandler):
        def do_GET(self):
            if self.path == "/health":
                self.send(200, b"")
            elif self.path == "/workers":
                calls["workers"] += 1
                listed = worker_urls if calls["workers"] > ready_after else []
                self.send(200, {"workers": [{"url": url} for url in listed], "total": len(listed)})
            elif self.path == "/v1/models":
                if calls["workers"] > ready_after:
                    self.send(200, {"object": "list", "data": [{"id": "newspicgen"}]})
                else:
                    self.send(503, {"error": {"message": "no_available_workers"}})
            else:
                self.send(404, {})

    return LoopbackServer(Router), calls


def test_ready_only_once_the_router_lists_every_worker_and_serves_the_model():
    workers = ["http://127.0.0.1:41001", "http://127.0.0.1:41002"]
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server, calls = router_stub(2, workers)
    try:
        with server:
            wait_until_serving(server.url, [process], "SGLang's router", api_key=None, timeout=30,
                               expect_in_workers=workers)
        assert calls["workers"] == 3
    finally:
        process.kill()
        process.wait()


def test_a_router_that_never_lists_its_workers_times_out_naming_the_url():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server, _ = router_stub(10 ** 6, ["http://127.0.0.1:41001"])
    try:
        with server, pytest.raises(LaunchError, match=r"did not list its model at http://127\.0\.0\.1:\d+/v1/models"):
            wait_until_serving(server.url, [process], "SGLang's router", api_key=None, timeout=1.5,
                               expect_in_workers=["http://127.0.0.1:41001"])
    finally:
        process.kill()
        process.wait()


def test_waiting_stops_when_the_user_asks():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(LaunchError, match="stopped while vLLM was starting"):
            wait_until_serving("http://127.0.0.1:9", [process], "vLLM", api_key=None, stop=lambda: True)
    finally:
        process.kill()
        process.wait()
