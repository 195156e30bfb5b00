"""`python -m prompt_server`: the model side's own command line (serve is what the fixtures run)."""
from __future__ import annotations

import os
import subprocess
import sys

from prompt_server.schema import PicturePrompt
from tests.support import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "prompt_server", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def test_prompt_prints_the_json_of_one_article(local_server_url):
    done = run("prompt", "--title", "城市公园开放", "--content", "市民在新公园里散步。", "--server", local_server_url,
               "--seed", "3", "--mode", "regex")
    assert done.returncode == 0, done.stderr
    PicturePrompt.from_json(done.stdout.strip())


def test_empty_news_is_one_line_naming_the_cause(local_server_url):
    done = run("prompt", "--title", " ", "--content", "", "--server", local_server_url)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def test_help_names_serve_and_prompt_and_imports_no_core():
    done = run("--help")
    assert done.returncode == 0 and "serve" in done.stdout and "prompt" in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['x', '--help']\n"
                            "try: runpy.run_module('prompt_server', run_name='__main__')\n"
                            "except SystemExit: pass\n"
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('newspicgen', 'torch')))"],
                           cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                           timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "[]"
