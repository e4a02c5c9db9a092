# Two commands for a newcomer: `make run` (the pipeline, default preset) and `make test`.
# Both create .venv on first use from requirements.lock (exact versions, no dependency resolution).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/default.toml
ARGS   ?=

.PHONY: run quick test test-slow bench env clean-env

$(STAMP): requirements.lock setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version.split()[0]; sys.exit(0 if sys.version_info >= (3, 11) else "hybrid needs Python 3.11 or newer (tomllib; the lock pins numpy 2.4 and pandas 3), but $(PYTHON) is " + v + "; run make with PYTHON=python3.11 (or newer).")'
	@echo "creating $(VENV) from requirements.lock (first use only; about 1.5 min, 1.6 GB)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

env: $(STAMP)

run: $(STAMP)
	$(BIN)/python pipelines/run_all.py --config $(CONFIG) $(ARGS)

quick: $(STAMP)
	$(BIN)/python pipelines/run_all.py --config configs/quick.toml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/bench_backbone.py

clean-env:
	rm -rf $(VENV)
