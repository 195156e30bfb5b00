"""The SGLang command lines `serve` builds are accepted by SGLang's own argument parser.

Each SGLang version parses them with its own `ServerArgs.add_cli_args`:
- the SGLang installed for NEWSPICGEN_SGLANG_PYTHON;
- every folder in NEWSPICGEN_SGLANG_MORE_VERSIONS (os.pathsep-separated), each holding another
  version's unpacked wheel, parsed by that same python (e.g. for 0.5.23:
  `pip download --no-deps sglang==0.5.23 -d D && python -m zipfile -e D/sglang-0.5.23-*.whl D/site`).
Skipped without NEWSPICGEN_SGLANG_PYTHON (CI has no SGLang).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from prompt_server import sglang_launch
from tests.support.sglang import SGLANG_PYTHON, skip_without_sglang

pytestmark = skip_without_sglang()

PARSE = """
import argparse, json, sys
import sglang
from sglang.srt.server_args import ServerArgs
parser = argparse.ArgumentParser()
ServerArgs.add_cli_args(parser)
results = []
for argv in json.loads(sys.argv[1]):
    namespace = parser.parse_args(argv)   # exits 2 naming the flag SGLang does not know
    results.append({"device": namespace.device, "grammar_backend": namespace.grammar_backend})
print(json.dumps({"version": sglang.__version__, "results": results}))
"""


def command_lines(tmp_path):
    """The argv after `-m sglang.launch_server` for every shape serve builds."""
    small = tmp_path / "head16"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4}))
    shapes = [
        dict(model="blacker521/NewsPicGen", device="cuda", mem_fraction=0.3),
        dict(model="blacker521/NewsPicGen", device="cpu"),
        dict(model=str(small), device="cpu", api_key="k", extra=["--log-level", "warning"]),
    ]
    lines = []
    for shape in shapes:
        command = sglang_launch.sglang_command(host="127.0.0.1", port=30000, context_length=4096,
                                               python="python", **shape)
        lines.append(command[3:])
    return lines


def versions():
    more = [p for p in os.environ.get("NEWSPICGEN_SGLANG_MORE_VERSIONS", "").split(os.pathsep) if p]
    return [None, *more]


@pytest.mark.parametrize("pythonpath", versions(), ids=lambda p: "installed" if p is None else os.path.basename(p))
def test_every_command_line_parses_with_sglangs_own_server_args(tmp_path, pythonpath):
    lines = command_lines(tmp_path)
    env = dict(os.environ, SGLANG_USE_CPU_ENGINE="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([SGLANG_PYTHON, "-c", PARSE, json.dumps(lines)], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"SGLang {report['version']} accepted {len(lines)} command lines")
    assert [r["device"] for r in report["results"]] == [None, "cpu", "cpu"]  # on CUDA SGLang picks the GPU
    assert {r["grammar_backend"] for r in report["results"]} == {"llguidance"}
