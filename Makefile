# Every target that runs Python depends on the virtual environment it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint format clean

install: $(STAMP)

# The CPU build of torch is installed first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[hf,experiments,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check lora experiments tests benchmarks
	$(PY) -m ruff format --check lora experiments tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format lora experiments tests benchmarks
	$(PY) -m ruff check --fix lora experiments tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun
