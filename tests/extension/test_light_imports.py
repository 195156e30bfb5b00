"""Importing the extension's non-UI modules pulls in nothing heavy (WebUI start-up time)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO

HEAVY = ("torch", "transformers", "llguidance", "gradio", "tokenizers", "numpy")
MODULES = ("extension.config", "extension.settings", "extension.api_models", "extension.api",
           "extension.rewrite", "extension.webui_hooks", "newspicgen.pipeline", "newspicgen.batch",
           "extension.server_control", "extension.server_routes", "extension.server_panel_logic",
           "extension.server_access", "prompt_server.setup.manager", "prompt_server.setup.command")


def test_non_ui_modules_import_nothing_heavy():
    code = (f"import importlib, json, sys\n"
            f"for name in {MODULES!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
