"""Which torch the server's venv gets: a pure function of the platform and the WebUI's own torch.

The WebUI already made the hard choice (CUDA or not, which CUDA) for its torch;
the server follows it, except that a CUDA build is never installed where no
NVIDIA GPU is visible: it is several GB of libraries a CPU cannot use.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, List, Optional

PYTORCH_INDEX = "https://download.pytorch.org/whl"
# PyPI's Linux torch wheels are CUDA builds; these distributions come with them
_NVIDIA_RUNTIME = re.compile(r"^nvidia[-_]cuda[-_]runtime(?:[-_]cu(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class WebUITorch:
    """The torch of the WebUI's venv, as far as it can be told without importing it."""
    version: Optional[str]        # "2.1.2+cu121", "2.3.1", None when there is none
    cuda: Optional[str] = None    # "121", "12", ... when it is a CUDA build
    rocm: Optional[str] = None    # "6.0" when it is a ROCm build


@dataclass(frozen=True)
class TorchChoice:
    requirement: str              # what pip installs
    index_url: Optional[str]      # PyTorch's own index, or None for PyPI
    kind: str                     # "cuda" | "rocm" | "cpu" | "default"
    reason: str                   # one line for the log

    def pip_args(self) -> List[str]:
        return [self.requirement] + (["--index-url", self.index_url] if self.index_url else [])


def webui_torch(version: Optional[str], distributions: Iterable[str] = ()) -> WebUITorch:
    """Read a torch version string ("2.1.2+cu121") and the names of the installed distributions.

    A local suffix says the build (+cu121, +rocm6.0, +cpu); PyPI's Linux wheels have
    none but bring `nvidia-cuda-runtime-cu12` (or `nvidia-cuda-runtime` for CUDA 13).
    """
    if not version:
        return WebUITorch(None)
    local = version.partition("+")[2].lower()
    if local.startswith("cu"):
        return WebUITorch(version, cuda=local[2:])
    if local.startswith("rocm"):
        return WebUITorch(version, rocm=local[4:])
    if local == "cpu":
        return WebUITorch(version)
    for name in distributions:
        found = _NVIDIA_RUNTIME.match(name)
        if found:
            return WebUITorch(version, cuda=found.group(1) or "")
    return WebUITorch(version)


def choose_torch(system: str, machine: str, torch: WebUITorch, gpu_visible: bool) -> TorchChoice:
    """The torch to install for `system` ("Linux", "Windows", "Darwin") on `machine` ("x86_64", "arm64", ...).

    - macOS: PyPI's wheel (it has the Metal backend; there is no CUDA there).
    - the WebUI's torch is a CUDA build and a GPU is visible: the same CUDA line
      from PyTorch's index (cu121 → .../whl/cu121); PyPI's own Linux wheel when the
      WebUI's came from PyPI (no +cu suffix).
    - ROCm likewise.
    - anything else: the CPU-only wheel from PyTorch's CPU index (Linux, Windows),
      a few hundred MB instead of several GB.
    """
    if system == "Darwin":
        return TorchChoice("torch", None, "default", "macOS: PyPI's torch (Metal backend, no CUDA builds exist)")
    if torch.cuda is not None and gpu_visible:
        tag = torch.cuda
        if len(tag) >= 3:  # +cu121: the WebUI's torch came from PyTorch's index; take the same line
            return TorchChoice("torch", f"{PYTORCH_INDEX}/cu{tag}", "cuda",
                               f"the WebUI's torch {torch.version} is a CUDA {tag} build and a GPU is visible")
        if system == "Linux":  # PyPI's Linux wheel is the CUDA build the WebUI has too
            return TorchChoice("torch", None, "cuda",
                               f"the WebUI's torch {torch.version} is PyPI's CUDA build and a GPU is visible")
        return TorchChoice("torch", f"{PYTORCH_INDEX}/cu{tag or '128'}", "cuda",
                           f"the WebUI's torch {torch.version} is a CUDA build and a GPU is visible")
    if torch.rocm is not None and gpu_visible and system == "Linux":
        return TorchChoice("torch", f"{PYTORCH_INDEX}/rocm{torch.rocm}", "rocm",
                           f"the WebUI's torch {torch.version} is a ROCm {torch.rocm} build")
    if torch.cuda is not None:
        why = f"the WebUI's torch {torch.version} is a CUDA build but no NVIDIA GPU is visible"
    elif torch.version is None:
        why = "no torch in the WebUI's environment to follow"
    else:
        why = f"the WebUI's torch {torch.version} is a CPU build"
    if system == "Linux" and machine.lower() in ("aarch64", "arm64"):
        return TorchChoice("torch", None, "cpu", f"{why}: PyPI's aarch64 wheel is CPU-only")
    return TorchChoice("torch", f"{PYTORCH_INDEX}/cpu", "cpu", f"{why}: PyTorch's CPU-only wheel")


def installed_torch() -> WebUITorch:
    """The torch of the running interpreter (the WebUI's), read from package metadata, not imported."""
    from importlib import metadata

    try:
        version: Optional[str] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        version = None
    names = [(d.metadata["Name"] or "") for d in metadata.distributions()] if version else []
    return webui_torch(version, names)


def gpu_visible() -> bool:
    """A GPU driver answers (`nvidia-smi -L` lists a GPU, or `rocm-smi` runs); torch is not imported for this."""
    for tool, args, needle in (("nvidia-smi", ["-L"], "GPU"), ("rocm-smi", [], "GPU")):
        path = shutil.which(tool)
        if not path:
            continue
        try:
            result = subprocess.run([path, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        if result.returncode == 0 and needle in result.stdout:
            return True
    return False
