# fleetrun: the commands the README names. Every target installs what it needs, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# setup.py and the C source too: pip builds schemas._fastrow (the sink's decoder) in place.
$(STAMP): pyproject.toml setup.py schemas/_fastrow.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@PYTHONPATH=. $(PY) -m stack.buildtools
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install fleetrun with its dev tools (pip, pinned versions)

stack-up: setup  ## start Kafka, PostgreSQL and the sshd test hosts (installs them if missing)
	$(PY) -m stack up

stack-down: setup  ## stop what stack-up started (data kept)
	$(PY) -m stack down

stack-status: setup  ## what runs, where, and its log file
	$(PY) -m stack status

stack-reset: setup  ## stop the stack and delete its data, keys and logs
	$(PY) -m stack reset

lint: setup  ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: setup  ## the fast tier: no services needed
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup  ## the real-services tier (needs `make stack-up`)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# lint and unit tests first (no services), then the stack, the integration tier, the demo as a
# user runs it, and the stack is stopped whatever happened (KEEP_STACK=1 leaves it running).
test: setup  ## lint + unit + integration + demo against a real stack it starts and stops
	$(MAKE) --no-print-directory lint test-unit
	@rc=0; $(PY) -m stack up || rc=$$?; \
	if [ $$rc -eq 0 ]; then $(MAKE) --no-print-directory test-integration || rc=$$?; fi; \
	if [ $$rc -eq 0 ]; then $(PY) -m stack up --apps && $(PY) -m fleetrun.demo || rc=$$?; fi; \
	if [ "$(KEEP_STACK)" != "1" ]; then $(PY) -m stack down || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc

demo: setup  ## the local stack + collector + sink, a real command on the demo hosts, rows in PostgreSQL
	$(PY) -m stack up --apps
	$(PY) -m fleetrun.demo

# The benchmarks bring up their own stack and stop it afterwards (KEEP_STACK=1 keeps it);
# results land in bench/results/ and bench/REPORT.md. BENCH_ARGS passes e.g. `--only warm`.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## fleetrun vs its peers on a simulated fleet (≤ 10 min): JSON, REPORT.md, plots
	@rc=0; $(PY) -m stack up || rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) -m bench.run $(BENCH_ARGS) || rc=$$?; fi; \
	if [ "$(KEEP_STACK)" != "1" ]; then $(PY) -m stack down || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc

bench-full: $(BENCH_STAMP)  ## bench plus 5,000 hosts and the 1,000,000-row sink backlog
	@rc=0; $(PY) -m stack up || rc=$$?; \
	if [ $$rc -eq 0 ]; then $(PY) -m bench.run --full $(BENCH_ARGS) || rc=$$?; fi; \
	if [ "$(KEEP_STACK)" != "1" ]; then $(PY) -m stack down || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc

docs: setup  ## regenerate the README's configuration reference from the settings objects
	$(PY) -m fleetrun.docs

format: setup  ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: docs help setup stack-up stack-down stack-status stack-reset lint test-unit test-integration test demo bench bench-full format
