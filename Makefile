# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when it is
# missing, installs bayescore with the extras it needs, then runs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs lint install clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"bayescore needs Python >= 3.12, found {sys.version.split()[0]} at {sys.executable}; set PYTHON=/path/to/python3.12"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras, so `make test` after `make demo` installs only what is new.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(subst +,$(comma),$*)]"
	@touch $@

comma := ,

install: $(VENV)/.installed-dev+docs+bench

demo: $(VENV)/.installed-bench
	$(BIN)/bayescore demo $(DEMO_ARGS)

# --reruns 1: a test that fails is run once more, on a fresh worker if it crashed its worker.
# The tests use fixed seeds, so a real failure fails twice. The crashes once seen about once
# per suite run (a worker out of memory mappings, dying inside XLA's compiler) are prevented
# by conftest.py; the rerun stays as insurance against a worker killed by its host.
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --reruns 1 $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/bayescore bench $(BENCH_ARGS)

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bayescore tests benchmarks examples docs/_ext
	$(BIN)/ruff format --check bayescore tests benchmarks examples docs/_ext

clean:
	rm -rf $(VENV) site bayescore-demo
