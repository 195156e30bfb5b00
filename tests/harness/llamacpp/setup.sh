#!/usr/bin/env bash
# Real llama.cpp (PyPI `llama-cpp-python[server]`, built from its sdist) on this machine's CPU,
# plus the Hugging Face -> GGUF converter that ships inside that sdist.
#
# usage: setup.sh [DEST]        (DEST defaults to $HOME/harness/llamacpp)
# Result: DEST/venv             llama-cpp-python 0.3.36 with its OpenAI-compatible server
#         DEST/llama.cpp/       convert_hf_to_gguf.py and the gguf-py package beside it
#                               (PyPI's `gguf` has no converter; this is the one that matches the build)
# Then:   NEWSPICGEN_LLAMACPP_PYTHON=DEST/venv/bin/python \
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
# the converter (and its gguf-py) from the same sdist
rm -rf "$DEST/llama.cpp" && mkdir -p "$DEST/llama.cpp"
tar -xzf "$SDIST" -C "$DEST/llama.cpp" --strip-components=3 \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/gguf-py"
"$V/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('venv ok: llama-cpp-python', llama_cpp.__version__)"
echo "setup ok: NEWSPICGEN_LLAMACPP_PYTHON=$V/bin/python  converter: $DEST/llama.cpp/convert_hf_to_gguf.py"
