"""A real AUTOMATIC1111 WebUI (or Forge) with this repository as an extension, and its page in Chromium.

Shared by the real-page tests (tests/extension/test_webui_integration.py) and the
README screenshots (docs/screenshots.py). The WebUI gets a data folder of its own
(`--data-dir`: its config and extensions list stay untouched) with this
repository symlinked into extensions/, and NEWSPICGEN_SERVER_URL in its environment.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Optional

from tests.support import REPO
from tests.support.loopback import free_port

CPU_ARGS = ["--skip-torch-cuda-test", "--use-cpu", "all", "--no-half", "--precision", "full",
            "--skip-version-check", "--no-download-sd-model"]
# Forge as the harness starts it; --skip-prepare-environment: no pip, no clones (offline)
FORGE_ARGS = ["--always-cpu", "--skip-torch-cuda-test", "--skip-version-check", "--no-download-sd-model",
              "--skip-prepare-environment", "--skip-install"]
CHROMIUM = os.environ.get("NEWSPICGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# gradio 3.41 (A1111) and 4.40 (Forge) mark a component whose event failed with this badge
ERROR_BADGES = ("[...document.querySelectorAll('.error')].filter(e => e.textContent.trim() === 'Error')"
                ".length + document.querySelectorAll('.toast-body.error').length")


class WebUIStartError(RuntimeError):
    """The WebUI exited or did not finish starting; the message carries the end of its log."""


def call(base: str, path: str, body=None, timeout: float = 600):
    """(status, parsed JSON or text) of a GET (body None) or JSON POST."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def start_command(kind: str, folder: str, port: int, data_dir: Path, start_script: Optional[str] = None) -> list:
    """The command line of a WebUI ("a1111" or "forge") in `folder`; `start_script` takes `PORT [args...]`."""
    ours = ["--api", "--data-dir", str(data_dir)]
    if kind == "forge":  # with --data-dir Forge would look for checkpoints there
        ckpt_dir = str(Path(folder) / "models" / "Stable-diffusion")
        # Forge's gradio 4 serves /file= only from --gradio-allowed-path, which defaults to the data
        # folder alone: with a data folder of its own, Forge's javascript/, script.js and style.css
        # answer 403 and the page runs without its scripts (no Settings hints, no tab switch on Send).
        # Users without --data-dir have Forge's folder there; give the test's Forge the same.
        return [str(Path(folder) / "venv" / "bin" / "python"), "launch.py", *FORGE_ARGS, "--port", str(port),
                *ours, "--ckpt-dir", ckpt_dir, "--gradio-allowed-path", str(Path(folder).resolve())]
    if start_script:
        return [start_script, str(port), *ours]
    return [str(Path(folder) / "venv" / "bin" / "python"), "launch.py", *CPU_ARGS, "--port", str(port), *ours]


def wait_until_up(base: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WebUIStartError(f"the WebUI exited with {process.returncode}:\n"
                                  f"{log.read_text(errors='replace')[-6000:]}")
        # Only after start-up: a request between gradio's launch and the WebUI adding its
        # middleware kills A1111 ("Cannot add middleware after an application has started").
        if "Startup time" in log.read_text(errors="replace"):
            try:  # the start-up record is set after the app_started callbacks: start-up is complete
                status, record = call(base, "/internal/profile-startup", timeout=5)
                if status == 200 and isinstance(record, dict):
                    return
            except OSError:
                pass
        time.sleep(2)
    raise WebUIStartError(f"the WebUI did not start within {timeout:.0f} s:\n{log.read_text(errors='replace')[-6000:]}")


def start_webui(kind: str, folder: str, tmp: Path, server_url: str, with_extension: bool = True,
                start_script: Optional[str] = None, env: Optional[Mapping[str, str]] = None):
    """(process, base URL, log path) of a WebUI starting with data folder `tmp`/data; see wait_until_up."""
    data_dir = tmp / "data"
    (data_dir / "extensions").mkdir(parents=True)
    if with_extension:
        (data_dir / "extensions" / "newspicgen").symlink_to(REPO)
    port, log = free_port(), tmp / "webui.log"
    environ = dict(os.environ, NEWSPICGEN_SERVER_URL=server_url, PYTHONUNBUFFERED="1",
                   GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {}))
    environ.pop("PYTHONPATH", None)  # the WebUI must find our code through extensions/ only
    process = subprocess.Popen(start_command(kind, folder, port, data_dir, start_script), cwd=folder, env=environ,
                               stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, f"http://127.0.0.1:{port}", log


def stop_webui(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Watched:
    """A page of the WebUI with its console errors and failed (5xx) responses recorded."""

    def __init__(self, browser, base: str, viewport: Optional[dict] = None):
        self.context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
        self.context.route("**/*", lambda route: route.continue_()  # offline: loopback only
                           if re.match(r"https?://127\.0\.0\.1[:/]", route.request.url) else route.abort())
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.console: list = []
        self.failed: list = []
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console.append(str(e)))
        self.page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        self.base = base

    def open(self) -> None:
        self.page.goto(self.base + "/", wait_until="domcontentloaded")
        self.page.wait_for_selector("#txt2img_prompt textarea", state="visible", timeout=180_000)
        # the WebUI's own scripts (ui.js: Send's tab switch, Settings hints); a page served
        # without them tests nothing a user sees
        assert self.page.evaluate("typeof switch_to_txt2img === 'function' && typeof opts === 'object'"), \
            "the WebUI's javascript/ did not load (403 from /file=? see --gradio-allowed-path)"
        self.page.wait_for_timeout(3000)  # the WebUI's own load events (settings values, ...)

    def tab(self, name: str) -> None:
        self.page.locator("#tabs > .tab-nav > button", has_text=name).first.click()
        self.page.wait_for_timeout(1500)

    def badges(self) -> int:
        return self.page.evaluate(ERROR_BADGES)

    def open_dropdown(self, selector: str) -> None:
        for attempt in range(3):  # the page-load refresh of the choices may close a list just opened
            self.page.evaluate("document.activeElement && document.activeElement.blur()")  # a list opens on focus
            self.page.click(f"{selector} input")
            try:
                self.page.wait_for_selector(f"{selector} ul.options", timeout=10_000)
                return
            except Exception:
                if attempt == 2:
                    raise
                self.page.keyboard.press("Escape")

    def dropdown_options(self, selector: str) -> list:
        self.open_dropdown(selector)
        options = self.page.eval_on_selector_all(f"{selector} ul.options li", "els => els.map(e => e.textContent.trim())")
        options = [o.lstrip("✓").strip() for o in options]  # gradio marks the selected option with ✓
        self.page.keyboard.press("Escape")
        return options

    def options_once_listed(self, selector: str, name: str, timeout: float = 60) -> list:
        """The dropdown's options once `name` is among them, or as they are after `timeout` s
        (the choices are refreshed by a page-load event that may finish after the page looks ready)."""
        deadline = time.monotonic() + timeout
        while True:
            options = self.dropdown_options(selector)
            if name in options or time.monotonic() > deadline:
                return options
            self.page.wait_for_timeout(1000)

    def choose(self, selector: str, value: str, timeout: float = 60) -> None:
        """Pick the option `value` once the page-load refresh of the choices lists it (by its
        text: gradio 4.40's options carry no data-value)."""
        deadline = time.monotonic() + timeout
        while True:
            self.open_dropdown(selector)
            items = self.page.locator(f"{selector} ul.options li").all()
            texts = [(item.text_content() or "").lstrip("✓").strip() for item in items]
            if value in texts:
                items[texts.index(value)].click()
                return
            self.page.keyboard.press("Escape")
            if time.monotonic() > deadline:
                raise LookupError(f"{selector} does not offer {value!r} (it offers {texts})")
            self.page.wait_for_timeout(1000)


def slow_event_outputs(config: dict) -> set:
    """elem_ids of the components that a queued event (one that shows a busy overlay on its
    outputs while it runs, as Generate does) updates, from a gradio 3.41 / 4.40 /config."""
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    return {ids.get(output) for dependency in config["dependencies"] if dependency.get("queue") is not False
            and (dependency.get("backend_fn", True)) for output in dependency.get("outputs", [])} - {None}
