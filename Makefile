# FuseVis: every target creates .venv and installs pinned dependencies when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
# Tests in one pytest-xdist worker per core, a module's tests together (its fixtures once);
# `make test PARALLEL=` runs them in one process.
PARALLEL ?= -n auto --dist loadscope
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint bench bench-viewer bench-analysis clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium for the viewer's browser tests (never a browser a tool downloads).
$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium fonts-dejavu-core

demo: $(STAMP)
	$(BIN)/fusevis demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PARALLEL) --durations=30

# The inner loop: no browser, no paper data, nothing marked slow (make test runs them all).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow and not browser and not paper"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/saliency.py

bench-viewer: $(STAMP) $(CHROMIUM)
	$(BIN)/python benchmarks/viewer.py
	$(BIN)/python benchmarks/viewer_load.py

bench-analysis: $(STAMP)
	$(BIN)/python benchmarks/analysis.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
