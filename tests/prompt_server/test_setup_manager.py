"""The setup's state machine with real parts: a real venv, a real pip run (offline: every requirement
is already satisfied), a real download from a loopback hub, the real embedded engine on the tiny model."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from prompt_server.client import PromptClient
from prompt_server.instruction import News
from prompt_server.setup.manager import Refused, ServerManager
from prompt_server.setup.processes import pid_alive
from prompt_server.setup.state import StateFile
from tests.support import REPO
from tests.support.loopback import free_port
from tests.support.model_hub import ModelHub
from tests.support.server_setup import CPU_MACHINE, offline_environ, offline_venv

NEWS = News(title="大熊猫宝宝首次亮相", content="成都大熊猫繁育研究基地的大熊猫宝宝今天首次与游客见面。")
REPO_ID = "newspicgen-tests/tiny"


def manager_for(folder: Path, **environ: str) -> ServerManager:
    return ServerManager(folder, environ=offline_environ(**environ), machine=lambda: CPU_MACHINE,
                         preferred_port=free_port(), start_timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder whose venv and packages steps ran for real (once per module); tests copy its state."""
    folder = tmp_path_factory.mktemp("installed")
    offline_venv(folder)
    manager = manager_for(folder)
    manager._venv_step()
    began = time.monotonic()
    manager._packages_step()
    print(f"\npip install (every requirement already satisfied, offline): {time.monotonic() - began:.1f} s")
    assert "packages" in manager.files.load().done
    return folder


def from_installed(installed: Path, folder: Path) -> Path:
    """`folder` with the venv and packages steps done (the venv is shared)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "venv").symlink_to(installed / "venv")
    done = StateFile(installed).load().done
    StateFile(folder).update(done={k: v for k, v in done.items() if k in ("venv", "packages")})
    return folder


def server_lines(folder: Path) -> list:
    log = folder / "server.log"
    return [line for line in log.read_text().splitlines() if line.startswith("--- ")] if log.exists() else []


def wait_for(manager: ServerManager, timeout: float = 300) -> dict:
    status = manager.wait(timeout)
    assert not manager.busy(), "the setup did not finish in time"
    return status


def test_setup_with_a_local_folder_runs_the_server_and_stop_ends_it(tmp_path, tiny_model_dir):
    """From a folder holding only a venv shell: the real steps, a running server, Generate, Stop."""
    folder = tmp_path / "server"
    offline_venv(folder)
    manager = manager_for(folder)
    began = time.monotonic()
    first = manager.setup(str(tiny_model_dir))
    assert first["state"] == "installing" and first["busy"]
    seen = set()
    while manager.busy():
        status = manager.status()
        seen.add(status["state"])
        if status["progress"]:
            seen.add("step:" + status["progress"]["step"])
        time.sleep(0.2)
    status = manager.status()
    print(f"\nsetup with a local tiny model, venv shell to running: {time.monotonic() - began:.1f} s")
    assert status["state"] == "running", status
    assert {"installing", "starting", "step:packages", "step:start"} <= seen
    assert status["url"].startswith("http://127.0.0.1:") and pid_alive(status["pid"])
    assert "CPU-only" in status["torch"]
    picture = PromptClient(status["url"], timeout=120).generate(NEWS, seed=1)
    assert picture.type in "12345678"
    pid = status["pid"]
    stopped = manager.stop()
    assert stopped["state"] == "stopped" and not pid_alive(pid)
    assert json.loads((folder / "state.json").read_text())["state"] == "stopped"


def test_an_interrupted_download_names_the_step_and_a_retry_resumes(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    with ModelHub(REPO_ID, tiny_model_dir) as hub:
        hub.cut_after, hub.cuts_left = 100_000, 100  # more than the download's own retries
        manager = manager_for(folder, HF_ENDPOINT=hub.url)
        manager.setup(REPO_ID)
        failed = wait_for(manager)
        assert failed["state"] == "failed"
        assert failed["error"]["step"] == "model" and "model.safetensors" in failed["error"]["cause"]
        assert "resumes" in failed["error"]["fix"]
        part = next(folder.rglob("model.safetensors.part"))
        assert part.stat().st_size >= 100_000

        hub.cuts_left = 0
        retried = manager.setup(REPO_ID)
        assert retried["state"] == "installing"
        done = wait_for(manager)
        assert done["state"] == "running", done
        assert hub.file_requests("model.safetensors")[-1]["range"].startswith("bytes=")
        log = (folder / "setup.log").read_text()
        assert "packages: installed before" in log, "the finished steps were not run again"
        manager.stop()


def test_a_setup_whose_process_ended_is_reported_and_resumes(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    StateFile(folder).update(state="installing", step="model", model=str(tiny_model_dir), owner_pid=gone.pid)
    manager = manager_for(folder)
    status = manager.status()
    assert status["state"] == "failed" and status["error"]["step"] == "model"
    assert "interrupted" in status["error"]["cause"] and "resumes" in status["error"]["fix"]
    manager.setup()  # the model it was setting up
    done = wait_for(manager)
    assert done["state"] == "running" and done["model"] == str(tiny_model_dir)
    assert "venv: " in (folder / "setup.log").read_text() and "is there" in (folder / "setup.log").read_text()
    manager.stop()


def test_a_second_setup_while_one_runs_joins_it(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    with ModelHub(REPO_ID, tiny_model_dir) as hub:
        hub.delay_s = 1.0  # each file takes a while: the first setup is still downloading
        manager = manager_for(folder, HF_ENDPOINT=hub.url)
        first = manager.setup(REPO_ID)
        second = manager.setup(REPO_ID)
        other_model = manager.setup(str(tiny_model_dir))
        assert not first.get("joined") and second.get("joined") and other_model.get("joined")
        done = wait_for(manager)
        assert done["state"] == "running" and done["model"] == REPO_ID
        assert len(server_lines(folder)) == 1, "one server started"
        assert len(hub.file_requests("model.safetensors")) == 1, "one download"
        manager.stop()


def test_two_starts_at_once_start_one_server(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    manager = manager_for(folder)
    manager.setup(str(tiny_model_dir), start=False)
    assert wait_for(manager)["state"] == "installed"
    barrier = threading.Barrier(2)
    answers = []

    def press_start():
        barrier.wait()
        answers.append(manager.start())

    pressers = [threading.Thread(target=press_start) for _ in range(2)]
    for t in pressers:
        t.start()
    for t in pressers:
        t.join()
    assert sorted(bool(a.get("joined")) for a in answers) == [False, True]
    assert wait_for(manager)["state"] == "running"
    assert len(server_lines(folder)) == 1
    manager.stop()


def test_start_before_setup_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(Refused) as refused:
        manager_for(tmp_path / "empty").start()
    assert "Set up" in str(refused.value)


def test_a_server_left_running_is_found_and_reused_never_duplicated(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    first = manager_for(folder)
    first.setup(str(tiny_model_dir))
    running = wait_for(first)
    assert running["state"] == "running"
    # a new WebUI process on the same folder (this one's Popen is not known to it)
    second = manager_for(folder)
    found = second.status()
    assert found["state"] == "running" and found["pid"] == running["pid"] and "reusing" in found["note"]
    assert second.start()["pid"] == running["pid"]
    assert len(server_lines(folder)) == 1, "not started twice"
    second.stop()
    assert not pid_alive(running["pid"])


def test_the_server_ends_when_the_process_that_started_it_dies(tmp_path, tiny_model_dir, installed):
    """The WebUI's Ctrl-C is os._exit (no atexit): the server must still stop."""
    folder = from_installed(installed, tmp_path / "server")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.support.server_setup import CPU_MACHINE, offline_environ
        from prompt_server.setup.manager import ServerManager
        m = ServerManager({str(folder)!r}, environ=offline_environ(), machine=lambda: CPU_MACHINE,
                          preferred_port={free_port()}, start_timeout=300)
        m.setup({str(tiny_model_dir)!r})
        status = m.wait(300)
        print(status["state"], status["pid"], flush=True)
        os._exit(0)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400, cwd=REPO)
    state, pid = result.stdout.split()[-2:]
    assert state == "running", result.stderr[-2000:]
    deadline = time.monotonic() + 60
    while pid_alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not pid_alive(int(pid)), "the server outlived the process that started it"
    assert "has ended; stopping" in (folder / "server.log").read_text()
    after = manager_for(folder).status()
    assert after["state"] == "stopped"


def test_start_with_the_webui_starts_a_stopped_server_once(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    manager = manager_for(folder)
    manager.setup(str(tiny_model_dir), start=False)
    wait_for(manager)
    assert manager_for(folder).start_if_wanted() is None, "off by default"
    manager.set_options(autostart=True)
    restarted = manager_for(folder)  # the next WebUI start
    assert restarted.start_if_wanted()["state"] == "starting"
    assert wait_for(restarted)["state"] == "running"
    assert restarted.start_if_wanted() is None, "running already"
    restarted.stop()
    shutil.rmtree(folder / "models", ignore_errors=True)


def test_a_torch_mirror_replaces_pytorchs_index(tmp_path):
    mirror = "https://mirrors.example.org/pytorch-wheels/cpu"
    torch, requirements, _ = manager_for(tmp_path, NEWSPICGEN_TORCH_INDEX_URL=mirror).packages_wanted()
    assert torch.pip_args() == ["torch", "--index-url", mirror] and "NEWSPICGEN_TORCH_INDEX_URL" in torch.reason
    plain, _, _ = manager_for(tmp_path, NEWSPICGEN_TORCH_INDEX_URL="").packages_wanted()
    assert plain.pip_args() == ["torch"]
    default, _, _ = manager_for(tmp_path).packages_wanted()
    assert default.index_url == "https://download.pytorch.org/whl/cpu"
    assert not any(r.startswith("torch") for r in requirements)


def test_keep_alive_is_kept_for_the_start_and_empty_clears_it(tmp_path):
    manager = manager_for(tmp_path / "server")
    manager.set_options(keep_alive=" 5m ")
    assert manager.status()["keep_alive"] == "5m"
    manager.set_options(keep_alive="")
    assert manager.status()["keep_alive"] is None


def test_stop_while_the_server_is_starting_ends_stopped_not_failed(tmp_path, tiny_model_dir, installed):
    folder = from_installed(installed, tmp_path / "server")
    manager = manager_for(folder)
    manager.setup(str(tiny_model_dir))
    deadline = time.monotonic() + 120
    while manager.status()["state"] != "starting" and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = manager.status()["pid"]
    assert manager.stop()["state"] == "stopped"
    assert wait_for(manager)["state"] == "stopped" and not pid_alive(pid)
