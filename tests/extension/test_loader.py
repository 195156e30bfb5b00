"""scripts/newspicgen.py loaded the way AUTOMATIC1111 1.10.1 loads scripts, in a fresh interpreter.

A1111's modules/script_loading.load_module does
`spec_from_file_location(os.path.basename(path), path)` + `exec_module`, with the
extension folder put in front of sys.path, and then registers every
`scripts.Script` subclass found in the module's namespace. There is no WebUI
here, so the `modules` package and `gradio` are stubs (hence "stub_webui" in the
test names); tests/test_webui_integration.py does the same in a real WebUI.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import REPO

STUBS = {
    "modules/__init__.py": "",
    "modules/scripts.py": """
        class Script:
            def elem_id(self, item_id):
                return item_id
        AlwaysVisible = object()
    """,
    "modules/script_callbacks.py": """
        registered = []
        def on_ui_settings(callback, *, name=None): registered.append(("ui_settings", callback))
        def on_ui_tabs(callback, *, name=None): registered.append(("ui_tabs", callback))
        def on_app_started(callback, *, name=None): registered.append(("app_started", callback))
    """,
    "modules/shared.py": """
        import types
        opts = types.SimpleNamespace()  # no NewsPicGen settings saved: defaults + environment
    """,
    "gradio/__init__.py": "__version__ = '3.41.2-stub'\n",
}

LOADER = """
import importlib.util, inspect, json, os, sys, types
ext_dir, script_path = sys.argv[1], sys.argv[2]
sys.modules["extension"] = types.ModuleType("extension")  # another extension's top-level module of that name
foreign = os.environ.get("FOREIGN_MODULE")
if foreign:  # another extension already owns one of our top-level names
    sys.modules[foreign] = types.ModuleType(foreign)
    sys.modules[foreign].__file__ = "/elsewhere/" + foreign + "/__init__.py"
from modules import scripts, script_callbacks

def load_like_a1111():
    saved = sys.path
    sys.path = [ext_dir] + sys.path
    try:
        spec = importlib.util.spec_from_file_location(os.path.basename(script_path), script_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path = saved
    return [c for c in module.__dict__.values() if inspect.isclass(c) and issubclass(c, scripts.Script)]

try:
    first = load_like_a1111()
except ImportError as exc:
    print(json.dumps({"import_error": str(exc)}))
    sys.exit(0)
second = load_like_a1111()  # "Reload UI" runs the file again after clearing callbacks
script = first[0]()
heavy = [m for m in ("torch", "transformers", "llguidance") if m in sys.modules]
p = types.SimpleNamespace(prompt="mine", negative_prompt="", seed=-1, extra_generation_params={})
script.before_process(p, False, "title", "content", "")
disabled_untouched = (p.prompt, p.extra_generation_params) == ("mine", {})
script.before_process(p, True, "标题", "内容", "")  # NEWSPICGEN_SERVER_URL points at a closed port
try:  # the WebUI logs and ignores hook exceptions; the refusal comes when it sets up the prompts
    p.setup_prompts()
    down_error, down_status, down_class = None, None, []
except Exception as exc:
    down_error, down_status = str(exc), getattr(exc, "status_code", None)
    down_class = [c.__module__ + "." + c.__name__ for c in type(exc).__mro__]
print(json.dumps({
    "classes": [c.__name__ for c in first], "same_class_on_reload": first == second,
    "title": script.title(), "always_visible": script.show(False) is scripts.AlwaysVisible,
    "callbacks": [kind for kind, _ in script_callbacks.registered],
    "glue": sorted(m for m in sys.modules if m.startswith("newspicgen_webui")),
    "origins": {m: os.path.relpath(sys.modules[m].__file__, ext_dir)
                for m in ("newspicgen", "prompt_server", "style_presets") if m in sys.modules},
    "foreign_extension_untouched": not hasattr(sys.modules["extension"], "__path__"),
    "heavy": heavy, "disabled_untouched": disabled_untouched, "down_error": down_error, "down_status": down_status,
    "down_class": down_class,
    "prompt_after_error": p.prompt,
}))
"""


def closed_port() -> int:
    import socket
    with socket.socket() as sock:  # nothing listens on a port just released
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_loader(tmp_path: Path, foreign_module: str = "") -> dict:
    for relative, text in STUBS.items():
        path = tmp_path / "stubs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    ext_dir = tmp_path / "extensions"
    ext_dir.mkdir()
    (ext_dir / "sd-webui-newspicgen").symlink_to(REPO)
    script = ext_dir / "sd-webui-newspicgen" / "scripts" / "newspicgen.py"
    result = subprocess.run([sys.executable, "-c", LOADER, str(ext_dir / "sd-webui-newspicgen"), str(script)],
                            cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "stubs"), "PATH": "/usr/bin:/bin",
                                 "NEWSPICGEN_SERVER_URL": f"http://127.0.0.1:{closed_port()}",
                                 "FOREIGN_MODULE": foreign_module},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_loader(tmp_path_factory.mktemp("a1111"))


def test_scripts_entry_loads_under_our_own_package_stub_webui(report):
    assert report["classes"] == ["NewsPicGenScript"], "exactly one Script subclass, and not the base class"
    assert report["same_class_on_reload"]
    assert report["title"] == "NewsPicGen" and report["always_visible"]
    # registered on each load: A1111 clears all callbacks before (re)loading scripts
    assert report["callbacks"] == ["ui_settings", "ui_tabs", "app_started"] * 2
    assert {"newspicgen_webui.webui", "newspicgen_webui.alwayson", "newspicgen_webui.config"} <= set(report["glue"])
    assert report["origins"] == {"newspicgen": "newspicgen/__init__.py", "prompt_server": "prompt_server/__init__.py",
                                 "style_presets": "style_presets/__init__.py"}, "our packages, from our folder"
    assert report["foreign_extension_untouched"], "another extension's `extension` module is left alone"
    assert report["heavy"] == []


def test_alwayson_script_with_the_server_down_stub_webui(report):
    assert report["disabled_untouched"], "a disabled script changes nothing"
    message = report["down_error"]
    # the WebUI shows "NewsPicGenError: <message>": no second prefix, no Markdown shown as typed
    assert message and message.startswith("cannot reach the prompt server")
    assert "`" not in message and "NewsPicGen:" not in message
    assert report["down_status"] == 503, "the WebUI's API answers with the exception's status_code"
    assert "fastapi.exceptions.HTTPException" in report["down_class"], \
        "the WebUI's API prints no traceback for an HTTPException: the caller already has a clean 503"
    assert "Prompt server panel" in message, "the error offers the tab's panel"
    assert "NEWSPICGEN_SERVER_URL" in message and "Settings → NewsPicGen" not in message, \
        "the URL comes from the environment here: the fix is there, not in a read-only setting"
    assert report["prompt_after_error"] == "mine", "nothing the user typed is lost"


def test_a_foreign_module_under_one_of_our_names_stops_loading_with_the_reason_stub_webui(tmp_path):
    report = run_loader(tmp_path, foreign_module="prompt_server")
    message = report["import_error"]
    assert "'prompt_server' is taken by /elsewhere/prompt_server" in message
    assert "Remove or rename the other one" in message
