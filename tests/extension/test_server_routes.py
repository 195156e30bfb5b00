"""The /newspicgen/v1/server routes on a real FastAPI app over a real ServerManager, and the
WebUI's extension-access rule (--listen / --share / --server-name) for them and the panel."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from extension.server_access import refusal
from extension.server_control import ServerControl
from extension.server_routes import mount_server_routes
from prompt_server.setup.manager import ServerManager
from tests.support.loopback import free_port
from tests.support.server_setup import CPU_MACHINE, installed_shell, offline_environ

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402


def opts(**flags):
    base = dict(share=False, listen=False, ngrok=None, server_name=None, enable_insecure_extension_access=False)
    return SimpleNamespace(**{**base, **flags})


@pytest.mark.parametrize(("flags", "refused"), [
    ({}, False),
    ({"listen": True}, True),
    ({"share": True}, True),
    ({"server_name": "0.0.0.0"}, True),
    ({"ngrok": "token"}, True),
    ({"listen": True, "enable_insecure_extension_access": True}, False),
    ({"share": True, "enable_insecure_extension_access": True}, False),
    ({"enable_insecure_extension_access": True}, False),
])
def test_the_rule_is_the_webuis_extension_installer_rule(flags, refused):
    reason = refusal(opts(**flags))
    assert (reason is not None) == refused
    if refused:
        assert "--enable-insecure-extension-access" in reason and "python -m prompt_server.setup" in reason


def test_the_webuis_own_verdict_wins_when_it_computed_one():
    """A1111 and Forge set cmd_opts.disable_extension_access from the same flags; it is read as is."""
    assert refusal(opts(listen=True, disable_extension_access=False)) is None
    assert refusal(opts(disable_extension_access=True)) is not None
    assert refusal(None) is None


def app_for(folder, refused=None) -> TestClient:
    manager = ServerManager(folder, environ=offline_environ(), machine=lambda: CPU_MACHINE,
                            preferred_port=free_port(), start_timeout=120)
    control = ServerControl(manager, refusal=lambda: refused, use_server=lambda *a: None,
                            configured=lambda: ("http://127.0.0.1:9", None), probe=lambda **kw: [])
    app = FastAPI()
    mount_server_routes(app, lambda: control)
    return TestClient(app)


def test_routes_refuse_setup_start_and_stop_when_the_webui_listens_beyond_loopback(tmp_path):
    reason = refusal(opts(listen=True))
    client = app_for(tmp_path / "server", refused=reason)
    for path, body in (("/setup", {"model": "x/y"}), ("/start", None), ("/stop", None)):
        response = client.post(f"/newspicgen/v1/server{path}", json=body)
        assert response.status_code == 403 and "--enable-insecure-extension-access" in response.json()["detail"]
    status = client.get("/newspicgen/v1/server").json()
    assert status["state"] == "none" and status["refused"] == reason
    assert not (tmp_path / "server" / "venv").exists(), "nothing was installed"


def test_start_before_setup_is_a_409_naming_set_up(tmp_path):
    response = app_for(tmp_path / "server").post("/newspicgen/v1/server/start")
    assert response.status_code == 409 and "Set up" in response.json()["detail"]


def test_setup_route_runs_the_steps_and_a_failure_names_step_cause_and_fix(tmp_path):
    client = app_for(installed_shell(tmp_path / "server"))
    started = client.post("/newspicgen/v1/server/setup", json={"model": "/no/such/model-folder"})
    assert started.status_code == 200 and started.json()["state"] == "installing"
    deadline = time.monotonic() + 120
    status = client.get("/newspicgen/v1/server?probe=false").json()
    while status["busy"] and time.monotonic() < deadline:
        time.sleep(0.2)
        status = client.get("/newspicgen/v1/server?probe=false").json()
    assert status["state"] == "failed"
    assert status["error"]["step"] == "model" and "does not exist" in status["error"]["cause"]
    assert "check the path" in status["error"]["fix"]
    assert any("FAILED at model" in line for line in status["log_tail"])
    assert {"url", "engine", "model", "progress", "found", "log_tail"} <= set(status)
