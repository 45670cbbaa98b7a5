# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: install install-dev serve demo test test-python test-apps-script lint typecheck browser bench test-container clean

# The virtualenv with the service installed; re-made when pyproject.toml changes.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed  ## create .venv and install the service

install-dev: $(BIN)/.installed-dev

serve: install  ## run the API on the embedded default (local file, Maildir, SQLite)
	@$(BIN)/invoice-collector init-env --port $(PORT)
	@echo "Serving on http://$(HOST):$(PORT)  (Ctrl-C stops)"
	exec $(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) --access-logfile - 'service.api.app:create_app()'

demo: install  ## one headless run over a copy of examples/invoices.csv into a Maildir
	$(BIN)/invoice-collector demo

# Debian's chromium for the sidebar's browser test; installed only where missing.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

lint: install-dev
	$(BIN)/ruff check service tests $(wildcard benchmarks) gunicorn.conf.py
	$(BIN)/ruff format --check service tests $(wildcard benchmarks) gunicorn.conf.py

typecheck: install-dev
	$(BIN)/mypy

test-python: install-dev
	$(BIN)/pytest -q

test-apps-script: browser
	cd apps_script && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm test

test: lint typecheck test-python test-apps-script  ## every suite: Python, Apps Script (Node), sidebar (Chromium)

# The image (deploy/Dockerfile) built with podman and smoke-tested: the API, two daily runs on one
# volume, a moved invoices file. Root: installs podman and debootstrap when missing.
test-container:  ## build the container image and smoke-test it (podman)
	bash deploy/test-container.sh

bench: install-dev  ## plan throughput vs the original, the sidebar chunk's latency: a section for benchmarks/RESULTS.md
	$(BIN)/python benchmarks/plan_throughput.py

clean:
	rm -rf $(VENV) apps_script/node_modules .pytest_cache .mypy_cache .ruff_cache
