# `make serve` and `make test` are all the set-up there is: the first target run
# creates .venv and installs requirements.txt into it (again whenever it changes),
# and installs the npm tools of package-lock.json (Lighthouse) into node_modules
# (again whenever the lock changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
export NO_MKDOCS_2_WARNING := 1

PY_OK := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null)
ifneq ($(PY_OK),1)
$(error this project needs Python 3.11 or later as '$(PYTHON)' (found: $(or $(shell $(PYTHON) --version 2>&1 | head -n 1),nothing)); install it or run make PYTHON=/path/to/python3.12)
endif

.PHONY: serve test build bench clean install

install: $(INSTALLED) $(NODE_INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# Without npm the Lighthouse test skips (and fails under CI=true), so say so here.
$(NODE_INSTALLED): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else \
	  echo "npm not found: the Lighthouse test will not run (install Node.js 20)" >&2; \
	fi

serve: $(INSTALLED) $(NODE_INSTALLED)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

build: $(INSTALLED)
	$(BIN)/mkdocs build --strict --site-dir site

test: $(INSTALLED) $(NODE_INSTALLED)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --cov --cov-report=term

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

clean:
	rm -rf site .pytest_cache .hypothesis .coverage .cache screenshots node_modules
