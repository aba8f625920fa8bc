# Qamqor — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_DIR := var/demo
DEMO_HOUSEHOLDS ?= 20000
DEMO_SEED ?= 2026
# synth writes extracts as of 2026-10-01: profiles use the quarter before it
DEMO_AS_OF ?= 2026-10-01

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install Qamqor with its test extras

.PHONY: demo
demo: $(STAMP) ## Generate a 20,000-household population, ingest it and start the server
	$(BIN)/qamqor db upgrade
	@if [ ! -f $(DEMO_DIR)/extracts/manifest.json ]; then \
		$(BIN)/qamqor synth --households $(DEMO_HOUSEHOLDS) --seed $(DEMO_SEED) --out $(DEMO_DIR)/extracts; \
	fi
	$(BIN)/qamqor ingest $(DEMO_DIR)/extracts
	$(BIN)/qamqor accounts seed-demo
	$(BIN)/qamqor profiles build --as-of $(DEMO_AS_OF)
	$(BIN)/qamqor decide
	$(BIN)/qamqor demo-birth
	$(BIN)/qamqor worker --once
	$(BIN)/qamqor offers outbox
	$(BIN)/qamqor wallet demo
	@echo
	@echo "Open http://127.0.0.1:8000/ (API docs at /docs, batches at /api/v1/registry/batches)."
	@echo "Ground truth and defects injected: $(DEMO_DIR)/extracts/truth/. Stop the server with Ctrl-C."
	$(BIN)/qamqor serve

.PHONY: test
test: $(STAMP) lint ## Run the whole test suite on SQLite and PostgreSQL (plus ruff and mypy)
	$(BIN)/pytest

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check) and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format and auto-fix with ruff
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

.PHONY: bench
bench: $(STAMP) ## Synth + ingest benchmark at 100k and 1M households (see benchmarks/README)
	$(BIN)/python benchmarks/ingest_bench.py --households 100000 1000000

.PHONY: clean
clean: ## Remove var/ (embedded database, staging, demo data)
	rm -rf var
