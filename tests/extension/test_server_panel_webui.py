"""The prompt server panel in a real AUTOMATIC1111 1.10 and a real Forge (skipped without them).

With no prompt server running, the panel sets one up from a local tiny-model folder
(progress on the page, then `running`), Generate works against it, Stop ends the
process; with "Start with the WebUI" on, the next WebUI start runs it again (one
process only) and it ends with the WebUI. A server of this project's engine on one
of the probed ports is listed as found, and "Use" makes Generate work against it.

Offline: the server's venv is made beforehand as `python -m venv` makes it, plus a
.pth line to the test venv's packages (tests.support.server_setup), and the WebUI
runs with PIP_NO_INDEX=1, so the setup's real pip run finds everything installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prompt_server.defaults import DEFAULT_SERVER_URL
from prompt_server.setup.processes import pid_alive
from tests.support import REPO
from tests.support.loopback import stop_process
from tests.support.server_setup import offline_venv
from tests.support.webui import CHROMIUM, CHROMIUM_ARGS, Watched, call, start_webui, stop_webui, wait_until_up

KINDS = {"a1111": (os.environ.get("NEWSPICGEN_WEBUI_DIR", ""), "NEWSPICGEN_WEBUI_DIR"),
         "forge": (os.environ.get("NEWSPICGEN_FORGE_DIR", ""), "NEWSPICGEN_FORGE_DIR")}
NEWS = {"title": "大熊猫宝宝首次亮相", "content": "成都大熊猫繁育研究基地的大熊猫宝宝今天首次与游客见面，吸引了大批游客。"}
TIMEOUT = float(os.environ.get("NEWSPICGEN_WEBUI_TIMEOUT", "900"))
# no package index, one torch thread (the server URL is given as "": none from the environment, the
# panel saves its own in Settings)
ENV = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(params=list(KINDS))
def kind(request):
    folder, variable = KINDS[request.param]
    if not (folder and (Path(folder) / "launch.py").is_file()):
        pytest.skip(f"{variable} does not point at a WebUI folder (launch.py)")
    return request.param


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class WebUI:
    """A WebUI on a data folder that outlives one start (for the restart)."""

    def __init__(self, kind: str, tmp: Path):
        self.kind, self.tmp = kind, tmp
        self.process = None
        self.base = ""

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    def start(self) -> None:
        if (self.data_dir / "extensions").exists():  # a restart: start_webui makes the folder itself
            (self.data_dir / "extensions" / "newspicgen").unlink()
            (self.data_dir / "extensions").rmdir()
        self.process, self.base, log = start_webui(self.kind, KINDS[self.kind][0], self.tmp, "", env=ENV,
                                                   start_script=os.environ.get("NEWSPICGEN_WEBUI_START")
                                                   if self.kind == "a1111" else None)
        self.log = log
        wait_until_up(self.base, self.process, log, TIMEOUT)

    def stop(self) -> None:
        if self.process is not None:
            stop_webui(self.process)
            self.process = None

    def saved_settings(self) -> dict:
        """The WebUI's saved settings (config.json): Forge's /sdapi/v1/options lists only the
        options it knew before extensions added theirs, so it never shows ours."""
        return json.loads((self.data_dir / "config.json").read_text(encoding="utf-8"))

    def server(self) -> dict:
        status, body = call(self.base, "/newspicgen/v1/server?probe=false", timeout=60)
        assert status == 200, body
        return body


def our_servers(data_dir: Path) -> list:
    """PIDs of servers started from this data folder's server venv (Linux: /proc)."""
    venv = str(data_dir / "newspicgen" / "server" / "venv")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].decode(errors="replace").startswith(venv) and b"prompt_server.setup.owned" in argv:
                found.append(int(entry.name))
    return found


def wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not pid_alive(pid)


def generate_works(page) -> None:
    page.fill("#newspicgen_title textarea", NEWS["title"])
    page.fill("#newspicgen_content textarea", NEWS["content"])
    page.click("#newspicgen_generate")
    page.wait_for_function("document.querySelector('#newspicgen_infotext textarea').value.includes('NewsPicGen')",
                           timeout=300_000)
    assert page.input_value("#newspicgen_en_prompt textarea").strip()


def panel_text(page) -> str:
    return page.inner_text("#newspicgen_server_state")


def test_set_up_from_the_panel_generate_stop_then_start_with_the_webui(kind, browser, tmp_path, tiny_model_dir):
    webui = WebUI(kind, tmp_path)
    offline_venv(webui.data_dir / "newspicgen" / "server")
    webui.start()
    try:
        assert webui.server()["state"] == "none"
        watched = Watched(browser, webui.base)
        page = watched.page
        watched.open()
        watched.tab("NewsPicGen")
        assert "Prompt server" in page.inner_text("#newspicgen_status") or page.is_visible("#newspicgen_status")
        page.click("#newspicgen_server .label-wrap")
        page.fill("#newspicgen_server_model textarea", str(tiny_model_dir))
        began = time.monotonic()
        page.click("#newspicgen_server_setup")
        shown = set()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = panel_text(page)
            shown.update(word for word in ("setting up", "starting", "packages", "loading the model", "█", "░")
                         if word in text)
            if "Local prompt server: running" in text or "failed" in text:
                break
            page.wait_for_timeout(500)
        print(f"\n{kind}: Set up with a local tiny model, pressed to running on the page: "
              f"{time.monotonic() - began:.1f} s; the page showed {sorted(shown)}")
        assert "Local prompt server: running" in panel_text(page), panel_text(page)
        assert {"setting up", "starting"} <= shown, "progress was shown while it worked"
        assert page.input_value("#newspicgen_server_log textarea").strip(), "the log tail is shown"
        shots = os.environ.get("NEWSPICGEN_SHOT_DIR")
        if shots:  # README's picture of the panel (docs/images/server_panel.png)
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.locator("#tab_newspicgen").screenshot(path=str(Path(shots) / f"server_panel_{kind}.png"))
        status = webui.server()
        pid = status["pid"]
        assert status["state"] == "running" and our_servers(webui.data_dir) == [pid]
        in_use = webui.saved_settings().get("newspicgen_server_url", DEFAULT_SERVER_URL)
        assert in_use == status["url"], "the WebUI points at the new server"
        generate_works(page)

        page.click("#newspicgen_server_autostart input")
        page.wait_for_timeout(1500)
        assert webui.server()["autostart"] is True
        page.click("#newspicgen_server_stop")
        page.wait_for_function("document.querySelector('#newspicgen_server_state').innerText"
                               ".includes('Local prompt server: stopped')", timeout=120_000)
        assert wait_gone(pid), "Stop ended the process"
        assert webui.server()["state"] == "stopped"
        ours = [line for line in watched.console if "newspicgen" in line.lower()]
        assert not ours and not watched.failed, (ours, watched.failed)
        watched.context.close()

        webui.stop()
        webui.start()  # "Start with the WebUI" is on
        deadline = time.monotonic() + 300
        while webui.server()["state"] != "running" and time.monotonic() < deadline:
            time.sleep(1)
        again = webui.server()
        assert again["state"] == "running", again
        assert our_servers(webui.data_dir) == [again["pid"]], "one server process only"
    finally:
        webui.stop()
    pids = our_servers(webui.data_dir)
    assert all(wait_gone(p) for p in pids), "the server ends with the WebUI"


@pytest.fixture
def engine_on_a_probed_port(tiny_model_dir):
    """This project's engine on the first free port among the ones the panel probes."""
    from prompt_server.server_kind import DEFAULT_PROBE_PORTS
    from prompt_server.setup.manager import answers_as_ours, port_free
    port = next((p for p in (8080, 8000, 1234, 11434, 30000) if p in DEFAULT_PROBE_PORTS and port_free(p)), None)
    if port is None:
        pytest.skip("every probed port is taken on this machine")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "prompt_server", "serve", "--engine", "local", "--model",
                                str(tiny_model_dir), "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while not answers_as_ours(url) and time.monotonic() < deadline:
        assert process.poll() is None, "the engine exited"
        time.sleep(0.5)
    yield url
    stop_process(process)


def test_a_running_engine_on_a_probed_port_is_found_and_use_makes_generate_work(kind, browser, tmp_path,
                                                                                   engine_on_a_probed_port):
    url = engine_on_a_probed_port
    webui = WebUI(kind, tmp_path)
    webui.start()
    try:
        status, found = call(webui.base, "/newspicgen/v1/server")
        assert status == 200 and any(f["url"] == url and f["kind"] == "newspicgen" for f in found["found"]), found
        watched = Watched(browser, webui.base)
        page = watched.page
        watched.open()
        watched.tab("NewsPicGen")
        page.click("#newspicgen_server .label-wrap")
        label = f"NewsPicGen engine · {url} · newspicgen"
        watched.choose("#newspicgen_server_found", label)
        page.click("#newspicgen_server_use")
        page.wait_for_function("document.querySelector('#newspicgen_server_state').innerText.includes('Using')",
                               timeout=60_000)
        saved = webui.saved_settings()
        assert saved.get("newspicgen_server_url", DEFAULT_SERVER_URL) == url and saved["newspicgen_mode"] == "regex"
        generate_works(page)
        ours = [line for line in watched.console if "newspicgen" in line.lower()]
        assert not ours and not watched.failed, (ours, watched.failed)
        watched.context.close()
    finally:
        webui.stop()
