# TaskPilot — every command a person or CI needs. `make help` lists them.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo ".tools/bin/uv")
PY := .venv/bin/python
export UV_LINK_MODE ?= copy

.PHONY: help install run chat test test-unit test-e2e chaos lint bench docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	@echo "uv not found: installing it from PyPI into .tools/ (a private venv)"
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

.venv/.synced: $(UV) pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced  ## create .venv with every service and dev tool (uv, one lock file)

run: install  ## start the whole system on the embedded default (NATS, PostgreSQL, Qdrant local)
	.venv/bin/taskpilot dev

chat: install  ## talk to the demo business as a WhatsApp lead (needs `make run` in another terminal)
	.venv/bin/taskpilot chat

test: install  ## unit, integration and end-to-end tests against real servers
	$(PY) -m pytest -q

test-unit: install  ## only the tests that need no server
	$(PY) -m pytest -q tests/unit

test-e2e: install  ## only the end-to-end tests (every service as its own process)
	$(PY) -m pytest -q tests/e2e

chaos: install  ## the long failure-injection runs
	$(PY) -m pytest -q -m chaos

lint: install  ## ruff and mypy on every member
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/*/src/taskpilot services/*/src/taskpilot src/taskpilot

bench: install  ## benchmarks; each prints its figures and writes bench/results/
	$(PY) bench/pipeline.py
	$(PY) bench/load.py

docs: install  ## the event catalogue: JSON Schemas and the AsyncAPI document (docs/contracts/)
	.venv/bin/taskpilot contracts export --out docs/contracts/schemas

clean:  ## remove the embedded default's data (.taskpilot) and caches
	rm -rf .taskpilot .tools .pytest_cache .mypy_cache .ruff_cache

.PHONY: validate-deploy
validate-deploy:  ## check Dockerfile, compose, Helm chart and dashboard offline (tools in .tools/deploy)
	bash deploy/validate.sh

# -- the web dashboard (web/): built when Node.js is present; the API works without it ---------
WEB_SOURCES := $(shell find web/src web/index.html web/vite.config.ts web/tsconfig.json web/package.json web/package-lock.json -type f 2>/dev/null)

.PHONY: web
web: web/dist/index.html  ## build the web dashboard into web/dist (needs Node.js 20+ and npm)

web/dist/index.html: $(WEB_SOURCES)
	@if command -v npm >/dev/null 2>&1; then \
	  cd web && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } \
	  && npm run build; \
	else \
	  echo "Node.js (npm) not found: the web dashboard is not built; the dashboard API works without it."; \
	  echo "To get the dashboard, install Node.js 20 or newer (https://nodejs.org/, or: apt-get install nodejs npm), then run: make web"; \
	fi

run: web
