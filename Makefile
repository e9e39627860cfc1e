# `make serve` and `make test` are all the set-up there is: the first target run
# creates .venv and installs requirements.txt into it (again whenever it changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

PY_OK := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null)
ifneq ($(PY_OK),1)
$(error this project needs Python 3.11 or later as '$(PYTHON)' (found: $(or $(shell $(PYTHON) --version 2>&1 | head -n 1),nothing)); install it or run make PYTHON=/path/to/python3.12)
endif

.PHONY: serve test build bench clean install

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

serve: $(INSTALLED)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

build: $(INSTALLED)
	$(BIN)/mkdocs build --strict --site-dir site

test: $(INSTALLED)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --cov --cov-report=term

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

clean:
	rm -rf site .pytest_cache .hypothesis .coverage .cache screenshots
