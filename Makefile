# convostore: `make run` starts the service, `make test` runs every test. `make help` lists all.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@bash scripts/setup-venv.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install convostore with every extra and the dev tools

postgres: ## Start (or install) the local PostgreSQL the tests use, and install PgBouncer
	@bash scripts/ensure-postgres.sh
	@bash scripts/ensure-pgbouncer.sh

run: setup ## Migrate the embedded SQLite database and serve the REST API on http://$(HOST):$(PORT)
	$(BIN)/convostore serve --migrate --host $(HOST) --port $(PORT) $(if $(JWT_SECRET_KEY),,--dev)

chromium: ## Install Debian's Chromium if missing (the history browser's tests drive it)
	@bash scripts/ensure-chromium.sh

test: setup postgres chromium ## Run the whole test suite on SQLite and PostgreSQL
	$(BIN)/pytest

lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup postgres ## Benchmarks: convostore vs raw SQL and the alternatives (~10 min)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-scale: setup postgres ## Benchmarks: W4/W5/W7 stay flat as data grows to 1M rows (+ plot)
	$(BIN)/python -m benchmarks --scale $(BENCH_ARGS)

.PHONY: help setup postgres chromium run test lint format bench bench-scale
