# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# checkov pins old boto3/packaging that break the test venv: it lives in a venv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
PYTEST_ARGS ?=
# Options for `make demo`, e.g. DEMO_ARGS="--recordings 50 --json" (the demo ignores an exported QCFLOW_STORE).
DEMO_ARGS ?=

.PHONY: test check demo install bench importtime layer chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,sandbox,cli,report]'
	touch $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $(CHECKOV_STAMP)

# Headless Chromium for the report's browser tests: Debian's package (no Playwright browser download).
# CI runs as root; elsewhere sudo. Without apt-get it says so, and those tests skip (set CHROMIUM_BIN to run them).
CHROMIUM_BIN ?= /usr/bin/chromium

chromium:
	@if [ -x "$(CHROMIUM_BIN)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no apt-get here: install Chromium and set CHROMIUM_BIN, or the report's browser tests are skipped" >&2; exit 0; fi; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(STAMP) $(CHECKOV_STAMP)

# Lint, format and types of the runtime (the layer) and the handlers: clean, or the tests do not run.
CHECKED := shared/qcflow functions
check: $(STAMP)
	$(VENV)/bin/ruff check $(CHECKED)
	$(VENV)/bin/ruff format --check $(CHECKED)
	$(VENV)/bin/mypy

# pytest exits 5 when it collected no test: a run that tested nothing must not look green.
test: $(STAMP) $(CHECKOV_STAMP) chromium check
	@CHECKOV_BIN=$(CHECKOV_VENV)/bin/checkov CHROMIUM_BIN=$(CHROMIUM_BIN) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; fi; \
	exit $$rc

demo: $(STAMP)
	$(VENV)/bin/qcflow demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

# The FC layer: build/layer.zip (+ build/layer.id) for python3.10 / manylinux2014_x86_64.
# pyenv's 3.10 runs the script when there is one (the script finds a 3.10 itself otherwise).
LAYER_PYTHON ?= $(shell ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V | tail -n 1)

layer:
	$(or $(LAYER_PYTHON),$(PYTHON)) scripts/build_layer.py

importtime: $(STAMP)
	$(PY) benchmarks/importtime.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build .pytest_cache qcflow-data
