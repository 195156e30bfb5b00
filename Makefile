# Two commands for a newcomer (see README.md):
#   make serve   set up .venv and start the prompt server (NewsPicGen, engine picked for this machine)
#   make test    set up the test environments and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
MODEL  ?= blacker521/NewsPicGen
PORT   ?= 30000
# torch first, pinned: an unpinned torch pulls a multi-GB build; 2.13.0 has CPU and CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: setup serve test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e '.[server,test]'
	touch $@

setup: $(VENV)/.installed

serve: setup
	$(VENV)/bin/newspicgen serve --model $(MODEL) --port $(PORT)

test: setup
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .hypothesis
