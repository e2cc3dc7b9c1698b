# rluf — two commands on a fresh machine: `make demo` and `make test` (both install first).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RLUF := $(BIN)/rluf
# pip prints one warning per missing local index directory on these machines; hide only those.
QUIET_PIP := grep -v -E "is ignored: it is neither a file nor a directory" || true
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
export PYTHONDONTWRITEBYTECODE := 1
# DeepSpeed JIT-builds one small CPU op on first use (~30 s); keep it with the venv.
export TORCH_EXTENSIONS_DIR := $(abspath $(VENV))/torch_extensions
DEMO_HOME := .rluf/demo
# The browser test drives Debian's Chromium with Playwright's Python client (never `playwright install`).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup browser demo test test-unit test-integration bench lint clean

help:
	@echo "make setup   - create $(VENV) and install everything (idempotent)"
	@echo "make demo    - install, then run the whole pipeline end to end on the embedded defaults"
	@echo "make test    - install, then run unit + integration tests (starts its own broker)"
	@echo "make bench   - run the benchmarks in bench/"
	@echo "make lint    - ruff, mypy and the import contracts"

setup: $(STAMP)

# torch first, alone and pinned: any other spec pulls GBs of CUDA wheels (../shared/notes/deps.md).
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: ~3 min)"
	$(BIN)/pip install -q -U pip 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install -q -r requirements.txt 2>&1 | $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(QUIET_PIP)
	$(BIN)/pip check
	@touch $(STAMP)

# Chromium for tests/integration/gateway/test_chat_page_e2e.py, from the distribution's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (apt) for the browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

demo: setup
	@rm -rf $(DEMO_HOME) && mkdir -p $(DEMO_HOME)
	RLUF_DATA_HOME=$(DEMO_HOME) $(RLUF) demo

test: setup browser
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

bench: setup
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.features
	$(BIN)/python -m bench.reward
	$(BIN)/python -m bench.gateway
	@echo "longer paper checks: python -m bench.appendix_e, python -m bench.plove_oasst (docs/paper-checks.md)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy rluf streams features training validation deploy
	$(BIN)/lint-imports

clean:
	rm -rf .rluf reports build .pytest_cache .mypy_cache .ruff_cache
