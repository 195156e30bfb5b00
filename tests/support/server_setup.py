"""Offline helpers for the server setup's tests.

The tests cannot reach PyPI or download.pytorch.org, so the server's venv is made
the way `python -m venv` makes it, plus a .pth line adding this test venv's
site-packages: with PIP_NO_INDEX=1 the setup's real pip run then finds every
requirement satisfied and installs nothing (it still runs, and takes its time).
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Dict

from prompt_server.setup.manager import Machine
from prompt_server.setup.torch_choice import WebUITorch

# This machine as the setup sees it from a WebUI with a CPU torch.
CPU_MACHINE = Machine("Linux", "x86_64", WebUITorch("2.13.0+cpu"), False)


def offline_venv(folder: Path) -> Path:
    """<folder>/venv: a real venv (without its own pip) that sees this venv's packages."""
    venv = Path(folder) / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=300)
    lib = venv / ("Lib" if os.name == "nt" else "lib")
    site_packages = next(lib.glob("python3*/site-packages"), None) or lib / "site-packages"
    (site_packages / "_newspicgen_test_venv.pth").write_text(site.getsitepackages()[0] + "\n", encoding="utf-8")
    return venv


def offline_environ(**extra: str) -> Dict[str, str]:
    """The environment for a setup in the tests: no package index, one torch thread."""
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def installed_shell(folder: Path, machine: Machine = CPU_MACHINE) -> Path:
    """`folder` with a venv shell and the packages step recorded as done (for tests of later steps)."""
    from prompt_server.setup.manager import ServerManager
    from prompt_server.setup.state import StateFile

    offline_venv(folder)
    manager = ServerManager(folder, environ=offline_environ(), machine=lambda: machine)
    StateFile(folder).update(done={"venv": str(manager.python), "packages": manager.packages_wanted()[2]})
    return folder
