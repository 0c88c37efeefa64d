# lmtrain: set-up, tests, lint, benchmarks.  `make setup && make test` on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build here; on a CUDA machine use e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH ?= torch==2.13.0
# Data mirror beside the repository, when there is one (never required).
ifneq ($(wildcard ../shared/data),)
export LMTRAIN_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: setup test lint bench-prepare clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

bench-prepare: setup
	$(VENV)/bin/lmtrain bench prepare --data-dir $(or $(wildcard $(LMTRAIN_DATA_DIR)/wikitext-sample-raw),$(LMTRAIN_DATA_DIR)) --mb 300

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
