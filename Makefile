# Every target creates .venv when it is missing, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: help install test lint format gallery docs docs-check bench bench-full clean

help:
	@echo "make test      run the test suite"
	@echo "make gallery   run every example in quick mode; figures go to gallery-out/"
	@echo "make docs      build the documentation site into docs/_build/html"
	@echo "make bench     quick benchmarks, rewrites BENCHMARKS.md"
	@echo "make lint      ruff check + format check"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[examples,dev,docs]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks docs
	$(BIN)/ruff format --check src tests examples benchmarks docs

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks docs
	$(BIN)/ruff check --fix src tests examples benchmarks docs

gallery: $(STAMP)
	SOFTFLOW_QUICK=1 $(BIN)/python examples/run_gallery.py --out gallery-out

clean:
	rm -rf gallery-out docs/_build docs/auto_examples .pytest_cache
