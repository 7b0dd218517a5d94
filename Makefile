# tuneflow — the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK := deploy/local/stack
PYTEST_ARGS ?=
SECTIONS ?=

.PHONY: help venv demo test test-unit lint stack-up stack-down stack-status bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed  ## create or refresh the virtualenv (.venv)

demo: venv  ## the main job on embedded defaults (no services needed)
	$(BIN)/tuneflow demo

stack-up:  ## install (cached) and start Kafka, FerretDB, PostgreSQL, MariaDB, Prometheus, Kubernetes on 127.0.0.1
	$(STACK) up

stack-down:  ## stop what stack-up started
	$(STACK) down

stack-status:  ## up/down per service
	$(STACK) status

test: venv stack-up  ## start the real services, then run every test (unit + integration)
	eval "$$($(STACK) env)" && $(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv  ## fast unit tests only (no services)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: venv  ## ruff
	$(BIN)/ruff check .

bench: venv stack-up  ## measure the machine's raw ceilings and tuneflow's numbers into benchmarks/results/
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'  # the peers: faust-streaming, Debezium embedded
	eval "$$($(STACK) env)" && TUNEFLOW_BENCH_SECTIONS="$(SECTIONS)" $(BIN)/python -m benchmarks.run

clean:  ## remove the virtualenv and caches (the service stack keeps its data; see stack-down)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
