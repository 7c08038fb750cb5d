# The commands of the README. Each creates the project venv on first use.
#   make repro   -> runs the default DVC pipeline (dvc repro)
#   make test    -> runs the test suite
#   make lint    -> ruff lint + format check (configured in pyproject.toml); `make format` applies the formatter
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

# dvc.yaml's stage commands run `python` from PATH (so `dvc exp run --temp` / `--queue`, which run in a copy of
# the repository without .venv, work too): the venv comes first here; outside make, activate it.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: repro test lint format install bench bench-sharded bench-gpu

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# dvc needs a git repo with at least one commit (dvc exp run); a fresh clone has both.
repro: $(STAMP)
	dvc repro

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.visual_features

bench-sharded: $(STAMP)
	$(VENV)/bin/python -m benchmarks.sharded_extraction

bench-gpu: $(STAMP)
	$(VENV)/bin/python -m benchmarks.gpu
