# kbroker developer entry points. `make cluster-up` and `make test` work on a fresh Debian 12
# machine: they install what is missing (Debian's zookeeper and a JRE, the venv and packages).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install system-deps test unit integration containers lint typecheck fmt \
        cluster-up cluster-down cluster-status cluster-logs cluster-clean images \
        bench bench-full chaos clean

help:
	@echo "make cluster-up     start 3 ZooKeeper nodes and 3 brokers (docker or local processes)"
	@echo "make cluster-down   stop them (data stays in .cluster; cluster-clean deletes it)"
	@echo "make cluster-status / cluster-logs"
	@echo "make test           the whole test suite (unit, integration, containers)"
	@echo "make lint           ruff and mypy --strict"
	@echo "make bench          quick benchmark (docs/benchmarks.md); bench-full: the full suite"
	@echo "make chaos          fault-injection soak (CHAOS_MINUTES=30)"
	@echo "make images         build the Docker images without a registry"

install: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): setup.cfg pyproject.toml
	@bash scripts/system-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

containers: install
	$(PY) -m pytest tests/containers $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: install
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

cluster-up: install
	@$(PY) -m kbroker.devcluster up

cluster-down: install
	@$(PY) -m kbroker.devcluster down

cluster-status: install
	@$(PY) -m kbroker.devcluster status

cluster-logs: install
	@$(PY) -m kbroker.devcluster logs

cluster-clean: install
	@$(PY) -m kbroker.devcluster down --wipe

images: install
	@$(PY) -m kbroker.images build

bench: install
	$(PY) -m bench.run --quick

bench-full: install
	$(PY) -m bench.run --full

chaos: install
	$(PY) -m kbroker.testing.chaos --minutes $${CHAOS_MINUTES:-30} $${CHAOS_ARGS:-}

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
