#!/usr/bin/env bash
# Real llama.cpp (PyPI `llama-cpp-python[server]`, built from its sdist) on this machine's CPU,
# plus the Hugging Face -> GGUF converter that ships inside that sdist.
#
# usage: setup.sh [DEST]        (DEST defaults to $HOME/harness/llamacpp)
# Result: DEST/venv             llama-cpp-python 0.3.36 with its OpenAI-compatible server
#         DEST/src/llama_cpp_python-0.3.36.tar.gz  the sdist: its vendor/llama.cpp/convert_hf_to_gguf.py
#                               is the HF -> GGUF converter `newspicgen gguf --converter` unpacks
#                               (PyPI's `gguf` has no converter; this one matches the build)
# Then:   NEWSPICGEN_LLAMACPP_PYTHON=DEST/venv/bin/python NEWSPICGEN_GGUF_CONVERTER=DEST/src/<the sdist> \
#           .venv/bin/python -m pytest tests/prompt_server/test_llamacpp_integration.py
# The build compiles llama.cpp (cmake + a C++ compiler): about 7 minutes on 2 cores.
set -euo pipefail
DEST="${1:-$HOME/harness/llamacpp}"
PY="${PYTHON:-python3}"   # 3.11
VERSION="${LLAMACPP_PYTHON_VERSION:-0.3.36}"
V="$DEST/venv"
mkdir -p "$DEST/src" "$DEST/logs"
if [ ! -x "$V/bin/python" ]; then "$PY" -m venv "$V"; fi
"$V/bin/pip" install -q -U pip setuptools wheel
SDIST="$DEST/src/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  "$V/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DEST/src"
fi
if ! "$V/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$V/bin/pip" install -v "$SDIST[server]" > "$DEST/logs/build.log" 2>&1 \
    || { tail -30 "$DEST/logs/build.log"; exit 1; }
fi
"$V/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('venv ok: llama-cpp-python', llama_cpp.__version__)"
echo "setup ok: NEWSPICGEN_LLAMACPP_PYTHON=$V/bin/python NEWSPICGEN_GGUF_CONVERTER=$SDIST"
