# One entry point for everything: each target creates .venv on first use.
# Another interpreter, in a venv of its own: make test PYTHON=python3.13 VENV=.venv313
# Without the long end-to-end runs: make test PYTEST_ARGS='-m "not slow"'
PYTHON ?= python3
PYTEST_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint typecheck check bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/riskpipe demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/riskpipe bench ingest --events 20000

clean:
	rm -rf $(VENV) .venv313 .pytest_cache .mypy_cache .ruff_cache .riskpipe
