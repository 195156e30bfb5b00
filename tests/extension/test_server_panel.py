"""The prompt server panel's behaviour without gradio: its summary, found servers and Use,
the followed setup, the refusal, Free memory. Real servers on loopback where they answer."""
from __future__ import annotations

from typing import List

import pytest

from extension.server_access import refusal
from extension.server_control import ServerControl
from extension.server_panel_logic import ServerPanelLogic, found_choices, found_pick, state_markdown
from prompt_server.setup.manager import ServerManager
from tests.support.loopback import LoopbackServer, QuietHandler, free_port
from tests.support.server_setup import CPU_MACHINE, installed_shell, offline_environ

LISTENING = refusal(type("Opts", (), {"listen": True})())


def control_for(folder, *, refused=None, probe=None, configured_url="http://127.0.0.1:9", used=None):
    manager = ServerManager(folder, environ=offline_environ(), machine=lambda: CPU_MACHINE,
                            preferred_port=free_port(), start_timeout=120)
    return ServerControl(manager, refusal=lambda: refused,
                         use_server=lambda *args: used.append(args) if used is not None else None,
                         configured=lambda: (configured_url, None), probe=probe or (lambda **kw: []))


def logic_for(control) -> ServerPanelLogic:
    return ServerPanelLogic(control, status_line=lambda: "status line asked again", sleep=lambda s: None)


def test_the_summary_names_state_url_model_progress_and_a_failure_with_its_fix():
    running = state_markdown({"state": "running", "url": "http://127.0.0.1:30000", "engine": "embedded",
                              "model": "blacker521/NewsPicGen", "pid": 42})
    assert "running" in running and "`http://127.0.0.1:30000`" in running and "embedded engine" in running
    assert "blacker521/NewsPicGen" in running and "process 42" in running
    downloading = state_markdown({"state": "installing", "progress": {
        "text": "model: model.safetensors · 1.2 GB of 3.1 GB (39 %)", "fraction": 0.39}})
    assert "39 %" in downloading and "█" in downloading and "░" in downloading
    failed = state_markdown({"state": "failed", "error": {"step": "packages", "cause": "pip could not install torch",
                                                          "fix": "check the network"}})
    assert "failed at **packages**" in failed and "pip could not install torch" in failed and "check the network" in failed
    assert "🔒" in state_markdown({"state": "none", "refused": LISTENING})


def test_found_servers_are_listed_one_line_per_model_and_picked_back():
    found = [{"url": "http://127.0.0.1:11434", "kind": "ollama", "label": "Ollama", "models": ["qwen2.5:1.5b", "x"],
              "mode": "json_schema"},
             {"url": "http://user:pw@127.0.0.1:8080", "kind": "llamacpp", "label": "llama.cpp server", "models": [],
              "mode": "json_schema"}]
    labels = found_choices(found)
    assert labels == ["Ollama · http://127.0.0.1:11434 · qwen2.5:1.5b", "Ollama · http://127.0.0.1:11434 · x",
                      "llama.cpp server · http://user:***@127.0.0.1:8080"]
    assert found_pick(labels[1], found)["model"] == "x"
    assert found_pick(labels[2], found)["url"] == "http://user:pw@127.0.0.1:8080"
    assert found_pick("gone", found) is None


def test_the_page_load_finds_our_engine_and_use_saves_url_model_and_mode(tmp_path, local_server_url):
    server_kind = pytest.importorskip("prompt_server.server_kind")
    used: List[tuple] = []
    control = control_for(tmp_path / "server", used=used,
                          probe=lambda **kw: [server_kind.identify(local_server_url)])
    logic = logic_for(control)
    first = next(logic.load())
    label = f"NewsPicGen engine · {local_server_url} · newspicgen"
    assert label in first.values["server_found"].choices
    outcome = logic.use(label, first.values["server_found_data"])
    assert outcome.warning is None
    assert used == [(local_server_url, "newspicgen", "regex")]
    assert "Using NewsPicGen engine" in outcome.values["server_state"]
    assert outcome.values["status"] == "status line asked again"


def test_use_without_a_pick_says_what_to_do(tmp_path):
    outcome = logic_for(control_for(tmp_path / "server")).use("", [])
    assert "pick a found server first" in outcome.warning


def test_buttons_are_refused_with_the_reason_when_the_webui_listens_beyond_loopback(tmp_path):
    logic = logic_for(control_for(tmp_path / "server", refused=LISTENING))
    for outcomes in (logic.setup("blacker521/NewsPicGen"), logic.start(), logic.stop(), logic.restart()):
        only = list(outcomes)
        assert len(only) == 1 and "--enable-insecure-extension-access" in only[0].warning
    assert "--enable-insecure-extension-access" in logic.autostart(True).warning
    assert not (tmp_path / "server" / "venv").exists()


def test_set_up_is_followed_until_it_ends_and_the_failure_shows_its_fix(tmp_path):
    logic = logic_for(control_for(installed_shell(tmp_path / "server")))
    outcomes = list(logic.setup("/no/such/model-folder"))
    assert len(outcomes) >= 2, "the page is updated while it runs"
    assert "setting up" in outcomes[0].values["server_state"]
    last = outcomes[-1].values
    assert "failed at **model**" in last["server_state"] and "check the path" in last["server_state"]
    assert "FAILED at model" in last["server_log"]
    assert last["status"] == "status line asked again"


def test_start_before_setup_warns_to_set_up_first(tmp_path):
    only = list(logic_for(control_for(tmp_path / "server")).start())
    assert len(only) == 1 and "Set up" in only[0].warning


class NoUnload(QuietHandler):
    def do_POST(self):  # noqa: N802
        self.send(404, {"detail": "Not Found"})


def test_free_memory_on_a_server_without_unload_says_what_it_can_do_instead(tmp_path):
    """A stand-in for a server of another kind (any 404 to POST /unload)."""
    with LoopbackServer(NoUnload) as other:
        outcome = logic_for(control_for(tmp_path / "server", configured_url=other.url)).free_memory()
    assert "no /unload" in outcome.warning and "stop it instead" in outcome.warning


def test_free_memory_with_nothing_running_says_start_it(tmp_path):
    outcome = logic_for(control_for(tmp_path / "server", configured_url=f"http://127.0.0.1:{free_port()}")
                        ).free_memory()
    assert "cannot reach" in outcome.warning and "start it first" in outcome.warning


def test_the_panels_labels_have_chinese_translations():
    import json
    import re

    from tests.support import REPO
    keys = set(json.loads((REPO / "localizations" / "zh_CN.json").read_text(encoding="utf-8")))
    source = (REPO / "extension" / "server_panel.py").read_text(encoding="utf-8")
    labels = set(re.findall(r'(?:label|placeholder)="([^"{]+)"', source))
    labels |= set(re.findall(r'gr\.(?:Button|Accordion|Markdown)\("([^"{]+)"', source))
    assert labels and not labels - keys, sorted(labels - keys)
