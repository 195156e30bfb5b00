"""Pure parts of the setup: the torch choice per platform and WebUI torch, the Windows and POSIX
command lines and flags, the requirements read from pyproject.toml."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from prompt_server.setup.processes import (
    CREATE_NEW_PROCESS_GROUP,
    popen_options,
    serve_command,
    stop_plan,
    venv_python,
)
from prompt_server.setup.requirements import server_requirements
from prompt_server.setup.torch_choice import PYTORCH_INDEX, WebUITorch, choose_torch, webui_torch
from tests.support import REPO

CPU_INDEX = f"{PYTORCH_INDEX}/cpu"


@pytest.mark.parametrize(("version", "distributions", "expected"), [
    ("2.1.2+cu121", [], WebUITorch("2.1.2+cu121", cuda="121")),
    ("2.3.1+cpu", ["nvidia-cuda-runtime-cu12"], WebUITorch("2.3.1+cpu")),
    ("2.3.1+rocm6.0", [], WebUITorch("2.3.1+rocm6.0", rocm="6.0")),
    ("2.12.1", ["numpy", "nvidia-cuda-runtime-cu12"], WebUITorch("2.12.1", cuda="12")),
    ("2.12.1", ["nvidia_cuda_runtime"], WebUITorch("2.12.1", cuda="")),  # CUDA 13 wheels drop the suffix
    ("2.3.1", ["numpy"], WebUITorch("2.3.1")),  # macOS, or Windows' PyPI wheel: CPU
    (None, ["nvidia-cuda-runtime-cu12"], WebUITorch(None)),
])
def test_the_webuis_torch_is_read_from_its_version_and_distributions(version, distributions, expected):
    assert webui_torch(version, distributions) == expected


@pytest.mark.parametrize(("system", "machine", "torch", "gpu", "kind", "index"), [
    # A1111's usual install: torch from PyTorch's cu121 index, an NVIDIA GPU -> the same CUDA line
    ("Windows", "AMD64", WebUITorch("2.1.2+cu121", cuda="121"), True, "cuda", f"{PYTORCH_INDEX}/cu121"),
    ("Linux", "x86_64", WebUITorch("2.1.2+cu121", cuda="121"), True, "cuda", f"{PYTORCH_INDEX}/cu121"),
    # PyPI's Linux wheel is the CUDA build: PyPI again
    ("Linux", "x86_64", WebUITorch("2.12.1", cuda="12"), True, "cuda", None),
    # a CUDA build on a machine without a GPU (this project's harness): never the multi-GB build
    ("Linux", "x86_64", WebUITorch("2.12.1", cuda="12"), False, "cpu", CPU_INDEX),
    ("Windows", "AMD64", WebUITorch("2.1.2+cu121", cuda="121"), False, "cpu", CPU_INDEX),
    # CPU builds stay CPU
    ("Linux", "x86_64", WebUITorch("2.13.0+cpu"), False, "cpu", CPU_INDEX),
    ("Linux", "x86_64", WebUITorch("2.13.0+cpu"), True, "cpu", CPU_INDEX),
    ("Windows", "AMD64", WebUITorch("2.3.1"), False, "cpu", CPU_INDEX),
    ("Linux", "x86_64", WebUITorch(None), True, "cpu", CPU_INDEX),
    # PyPI's aarch64 Linux wheel is CPU-only already
    ("Linux", "aarch64", WebUITorch("2.3.1"), False, "cpu", None),
    # macOS: PyPI's wheel (Metal), whatever else
    ("Darwin", "arm64", WebUITorch("2.3.1"), False, "default", None),
    ("Darwin", "x86_64", WebUITorch(None), False, "default", None),
    # ROCm follows the WebUI's ROCm line
    ("Linux", "x86_64", WebUITorch("2.3.1+rocm6.0", rocm="6.0"), True, "rocm", f"{PYTORCH_INDEX}/rocm6.0"),
])
def test_torch_choice_per_platform_and_webui_torch(system, machine, torch, gpu, kind, index):
    choice = choose_torch(system, machine, torch, gpu)
    assert (choice.kind, choice.index_url) == (kind, index), choice.reason
    assert choice.pip_args() == ["torch"] + (["--index-url", index] if index else [])
    assert choice.reason


def test_a_cpu_machine_is_told_why_it_gets_the_cpu_wheel():
    choice = choose_torch("Linux", "x86_64", WebUITorch("2.12.1", cuda="12"), False)
    assert "no NVIDIA GPU is visible" in choice.reason and "CPU-only" in choice.reason


def test_windows_venv_python_is_scripts_python_exe():
    assert venv_python(Path("C:/server/venv"), "Windows") == Path("C:/server/venv/Scripts/python.exe")
    assert venv_python(Path("/srv/venv"), "Linux") == Path("/srv/venv/bin/python")
    assert venv_python(Path("/srv/venv"), "Darwin") == Path("/srv/venv/bin/python")


def test_windows_gets_a_new_process_group_and_no_setsid():
    windows = popen_options("Windows")
    assert "start_new_session" not in windows
    assert windows["creationflags"] == CREATE_NEW_PROCESS_GROUP, "keeps the console CTRL_BREAK_EVENT needs"
    assert popen_options("Linux") == {"start_new_session": True} == popen_options("Darwin")
    assert popen_options("Windows", detach=False) == {}


def test_windows_stops_with_ctrl_break_then_taskkill():
    plan = stop_plan(4242, "Windows")
    assert plan[0].kind == "signal" and plan[0].signal == getattr(signal, "CTRL_BREAK_EVENT", 1)
    assert plan[1].kind == "command" and list(plan[1].command) == ["taskkill", "/PID", "4242", "/T", "/F"]
    assert not any(step.kind == "group-signal" for step in plan), "no process groups to signal on Windows"


def test_posix_stops_its_process_group_with_sigterm_then_sigkill():
    plan = stop_plan(4242, "Linux")
    assert [(s.kind, s.signal) for s in plan] == [("group-signal", signal.SIGTERM), ("group-signal", signal.SIGKILL)]


def test_serve_command_runs_the_embedded_engine_owned_by_its_starter():
    command = serve_command(Path("C:/s/venv/Scripts/python.exe"), "C:/s/models/m", 30001, keep_alive="5m")
    assert command[:3] == [str(Path("C:/s/venv/Scripts/python.exe")), "-m", "prompt_server.setup.owned"]
    assert command[3:] == ["serve", "--engine", "local", "--model", "C:/s/models/m", "--host", "127.0.0.1",
                           "--port", "30001", "--keep-alive", "5m"]
    plain = serve_command(Path("/v/bin/python"), "/m", 30000, owned=False)
    assert plain[2] == "prompt_server" and "--keep-alive" not in plain


def test_server_requirements_are_pyprojects_dependencies_and_server_extra_without_torch():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML itself")
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    expected = [r for r in data["dependencies"] + data["optional-dependencies"]["server"] if not r.startswith("torch")]
    assert server_requirements(REPO / "pyproject.toml") == expected
    assert any(r.startswith("transformers") for r in expected)


def test_requirements_reader_ignores_comments_and_other_extras(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = [\n  "a>=1",  # why a\n  "b",\n]\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n# the server\nserver = [\n    "torch>=2",\n'
        '    "c[extra]>=3; python_version>\'3.9\'",\n]\n[tool.x]\nserver = ["no"]\n', encoding="utf-8")
    assert server_requirements(tmp_path / "pyproject.toml") == ["a>=1", "b", "c[extra]>=3; python_version>'3.9'"]
