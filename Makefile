# Two commands for a newcomer (see README.md):
#   make serve   set up .venv and start the prompt server (NewsPicGen, engine picked for this machine)
#   make test    set up the test environments and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
MODEL  ?= blacker521/NewsPicGen
PORT   ?= 30000
# torch first, pinned: an unpinned torch pulls a multi-GB build; 2.13.0 has CPU and CUDA wheels.
TORCH  ?= torch==2.13.0
# The tab is tested against AUTOMATIC1111 1.10's own pins (requirements_versions.txt).
GRADIO3_PINS = 'gradio==3.41.2' 'fastapi==0.94.0' 'pydantic>=1.10,<2' 'httpx==0.24.1' \
               'numpy==1.26.2' 'Pillow==9.5.0' 'huggingface_hub<0.26' requests tqdm

.PHONY: setup setup-test serve test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e '.[server,test,dev,eval]'
	touch $@

.venv-gradio3/.installed: Makefile
	$(PYTHON) -m venv .venv-gradio3
	.venv-gradio3/bin/pip install -q $(GRADIO3_PINS)
	touch $@

# The browser test uses Debian's Chromium (test tools cannot download browsers here).
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: install Chromium (apt-get install chromium) to run the browser test; it is skipped without it"; fi

setup: $(VENV)/.installed

setup-test: setup .venv-gradio3/.installed /usr/bin/chromium

# modelscope:ID models need the modelscope package, installed on first use of that route.
serve: setup
	@case "$(MODEL)" in modelscope:*) $(VENV)/bin/python -c "import modelscope" 2>/dev/null || \
	  $(VENV)/bin/pip install -q modelscope;; esac
	$(VENV)/bin/newspicgen serve --model $(MODEL) --port $(PORT)

# ruff (lint + import order), mypy (types), import-linter (layers, no WebUI below extension/)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup-test lint
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .hypothesis
