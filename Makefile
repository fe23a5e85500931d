# Every target creates .venv when it is missing, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: help install test test-newest lint format gallery docs docs-check bench bench-full bench-env bench-sort \
	bench-ranking clean

help:
	@echo "make test      run the test suite (Python 3.11, the oldest supported jax, equinox, optax)"
	@echo "make test-newest  the test suite on the newest Python >= 3.12 and the newest jax"
	@echo "make gallery   run every example in quick mode; figures go to gallery-out/"
	@echo "make docs      build the documentation site into docs/_build/html"
	@echo "make docs-check open the built site in headless Chromium and check it"
	@echo "make bench     quick benchmarks, rewrites BENCHMARKS.md"
	@echo "make bench-sort / bench-ranking  soft sort against its peers (speed / ranking accuracy)"
	@echo "make lint      ruff check + format check + type check (basedpyright)"

# The default environment (.venv: python3, the lowest versions of jax, jaxlib, equinox, optax and
# diastatic-malt that pyproject.toml allows, pinned by the constraints file) and the newest one
# (.venv-newest: the newest Python >= 3.12 found here, with the newest releases pip resolves).
OLDEST := .ci/constraints-oldest.txt
NEWEST_VENV := .venv-newest
NEWEST_STAMP := $(NEWEST_VENV)/.installed

$(STAMP): pyproject.toml $(OLDEST)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(OLDEST) -e ".[examples,dev,docs]"
	touch $(STAMP)

install: $(STAMP)

# Compilation dominates the suite and runs on one core per process: one worker per core (the
# tests of a file share their compiled functions, so a file stays on one worker).
PYTEST_WORKERS ?= auto
PYTEST := -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/python $(PYTEST)

$(NEWEST_STAMP): pyproject.toml
	@python=$$(.ci/newest-python); \
	if [ -z "$$python" ]; then echo "no Python >= 3.12 found (pyenv install 3.13)"; exit 1; fi; \
	echo "newest environment: $$python"; \
	test -x $(NEWEST_VENV)/bin/python || $$python -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
		-e ".[examples,dev]"
	touch $@

# The test suite on the newest Python and the newest jax / equinox / optax (what users of
# Python >= 3.12 get from pip).
test-newest: $(NEWEST_STAMP)
	@$(NEWEST_VENV)/bin/python -c "import sys, jax; print('Python', sys.version.split()[0], 'jax', jax.__version__)"
	$(NEWEST_VENV)/bin/python $(PYTEST)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks docs
	$(BIN)/ruff format --check src tests examples benchmarks docs
	$(BIN)/basedpyright

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks docs
	$(BIN)/ruff check --fix src tests examples benchmarks docs

gallery: $(STAMP)
	SOFTFLOW_QUICK=1 $(BIN)/python examples/run_gallery.py --out gallery-out

# The docs run every example in quick mode; graphviz (Debian) draws the jaxpr graph and MathJax
# (npm) is served from the site itself, so the site works offline. Warnings are errors.
docs: $(STAMP)
	docs/_tools/ensure_apt.sh dot graphviz
	docs/_tools/fetch_mathjax.sh docs/_build/vendor/mathjax
	SOFTFLOW_QUICK=1 SOFTFLOW_GALLERY_OUT="$(CURDIR)/docs/_build/gallery-out" \
		$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# Opens the built site in headless Chromium (Debian's chromium + chromium-driver); run after docs.
docs-check: $(STAMP)
	docs/_tools/ensure_apt.sh chromium chromium
	docs/_tools/ensure_apt.sh chromedriver chromium-driver
	SOFTFLOW_DOCS_CHECK_REQUIRED=1 $(BIN)/python -m pytest tests/test_docs.py

# Benchmarks: the peers are optional. The bench extra brings AlgoVision + PyTorch (CPU) into .venv;
# softjax needs Python >= 3.12, so it gets .venv-softjax (same JAX version as .venv) when a
# python3.12 runs here. Whatever cannot be installed, the harness skips with a note.
SOFTJAX_VENV := .venv-softjax
BENCH_STAMP := $(VENV)/.bench-installed
PYTHON312 = $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),$(shell $(p) -c "" >/dev/null 2>&1 && echo $(p))))

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]" && touch $(BENCH_STAMP) \
		|| echo "bench extra not installed: the AlgoVision and diffsort comparisons will be skipped"

# torchsort compiles a C++ extension against the torch already installed, so it comes after the
# bench extra, without build isolation. Its setup also builds a CUDA extension whenever an `nvcc`
# runs, which a CPU build of torch cannot compile, so such an nvcc is kept off its PATH.
TORCHSORT_STAMP := $(VENV)/.torchsort-installed
$(TORCHSORT_STAMP): $(BENCH_STAMP)
	@set -e; path="$$PATH"; \
	if $(BIN)/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then \
		path=$$(echo "$$PATH" | tr : '\n' | while read -r d; do [ -x "$$d/nvcc" ] || printf '%s:' "$$d"; done); \
	fi; \
	PATH="$$path" $(BIN)/python -m pip install --quiet --no-build-isolation torchsort && touch $@ \
		|| echo "torchsort not installed: its rows of the sort benchmark will be skipped"

# softflow runs there from the source tree (PYTHONPATH), so its own dependencies come too.
MALT := "diastatic-malt>=2.15.3,<2.16"
$(SOFTJAX_VENV)/.installed:
	@if [ -z "$(PYTHON312)" ]; then echo "no python3.12: the softjax comparison will be skipped"; \
	else set -e; jax=$$($(BIN)/python -c "import jax; print(jax.__version__)"); \
		$(PYTHON312) -m venv $(SOFTJAX_VENV); \
		$(SOFTJAX_VENV)/bin/python -m pip install --quiet softjax equinox optax $(MALT) \
			"jax==$$jax" "jaxlib==$$jax" \
			|| $(SOFTJAX_VENV)/bin/python -m pip install --quiet softjax equinox optax $(MALT); \
		touch $@; fi

bench-env: $(STAMP) $(BENCH_STAMP)
	-@$(MAKE) --no-print-directory $(TORCHSORT_STAMP)
	-@$(MAKE) --no-print-directory $(SOFTJAX_VENV)/.installed

bench: bench-env
	$(BIN)/python benchmarks/run.py

bench-full: bench-env
	$(BIN)/python benchmarks/run.py --full

bench-sort: bench-env
	$(BIN)/python benchmarks/sorting.py

bench-ranking: bench-env
	$(BIN)/python benchmarks/ranking.py

clean:
	rm -rf gallery-out docs/_build docs/auto_examples .pytest_cache
