# Everything a new user or CI needs, idempotent: each target sets up what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synthclip-installed
export RAY_USAGE_STATS_ENABLED ?= 0
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup models demo test test-slow bench clean

setup: $(STAMP)

# torch is pinned here (not in pyproject) so GPU images can pick their own CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

models: setup
	$(BIN)/synthclip models build-tiny

demo: models
	$(BIN)/synthclip run configs/offline.yaml

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: models
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache
