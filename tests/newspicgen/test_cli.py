"""The command-line surface scripts rely on: every entry point lists the same subcommands."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.parametrize("module, commands", [("newspicgen", ("serve", "prompt", "batch")),
                                               ("prompt_server", ("serve", "prompt"))])  # the model side's own
def test_every_entry_point_offers_its_commands(module, commands):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    for command in commands:
        assert command in result.stdout


def test_style_presets_entry_point_still_answers():
    result = subprocess.run([sys.executable, "-m", "style_presets", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("list", "show", "check", "compose", "export", "import"):
        assert command in result.stdout
