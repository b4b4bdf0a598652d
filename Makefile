# wsmigrate: two commands on a fresh machine.
#   make run   - venv + install + the chat example on http://127.0.0.1:8000 (SQLite, in-memory bus);
#                `make run APP=boards` serves the boards example instead
#   make test  - venv + test dependencies + services the suite needs, then lint, types and the suite

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
APP    ?= chat
# the chat example keeps the files it always had; another example gets its own
ifeq ($(APP),chat)
APP_FILES := var/flags.toml sqlite:///./var/wsmigrate.db
else
APP_FILES := var/$(APP)-flags.toml sqlite:///./var/$(APP).db
endif

.PHONY: run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# Development defaults: a demo user whose token is kept in var/demo-token (printed at start and
# handed to the demo pages), probes on, the admin API on with a token kept in var/admin-token.
run: $(VENV)/.installed
	mkdir -p var
	@[ -s var/demo-token ] || $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > var/demo-token
	@[ -s var/admin-token ] || $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > var/admin-token
	WSMIGRATE_PROBES=$${WSMIGRATE_PROBES:-true} \
	WSMIGRATE_DEV_MODE=$${WSMIGRATE_DEV_MODE:-true} \
	WSMIGRATE_DEMO_TOKEN=$${WSMIGRATE_DEMO_TOKEN:-$$(cat var/demo-token)} \
	WSMIGRATE_ADMIN_TOKEN=$${WSMIGRATE_ADMIN_TOKEN:-$$(cat var/admin-token)} \
	WSMIGRATE_FLAGS_FILE=$${WSMIGRATE_FLAGS_FILE:-$(word 1,$(APP_FILES))} \
	WSMIGRATE_DATABASE_URL=$${WSMIGRATE_DATABASE_URL:-$(word 2,$(APP_FILES))} \
	  $(BIN)/wsmigrate serve --app examples.$(APP).app:app_from_env --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Two workers: most tests wait on real servers, sockets and browsers, so two share the 2 cores well.
pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2

# promtool + prometheus for tests/ops: Debian's `prometheus` package, installed only where missing
# (apt-get update runs only then). The tests start their own Prometheus on a free loopback port.
.PHONY: prometheus-tools
prometheus-tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }

pytest: prometheus-tools

# Chromium for tests/browser: Debian's `chromium` package (Playwright drives it through
# executable_path; `playwright install` is never used). Installed only where /usr/bin/chromium is
# missing, and apt-get update runs only then.
.PHONY: chromium
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

pytest: chromium

# redis-server for the bus tests: Debian's `redis-server` package, installed only where missing
# (apt-get update runs only then). Tests use 127.0.0.1:6379 when it answers, otherwise they start
# their own redis-server on a free loopback port and stop it afterwards.
.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; }

pytest: redis-server

# TypeScript for the declaration check of bridge/server/static/wsclient.d.ts (pinned by its lockfile).
.PHONY: typescript
typescript: tests/browser/typescript/node_modules/.bin/tsc
tests/browser/typescript/node_modules/.bin/tsc: tests/browser/typescript/package-lock.json
	cd tests/browser/typescript && npm ci --no-audit --no-fund --silent
	touch $@

pytest: typescript

# Benchmarks against the Python peers (bench/, results written to docs/benchmarks.md): the peers from
# the `bench` extra, the Node.js load generator from its lockfile, then the whole matrix (~20 min).
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--reps 1 --clients 200 --no-idle".
.PHONY: bench
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

bench/node_modules/.package-lock.json: bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund --silent

bench: $(VENV)/.installed-bench bench/node_modules/.package-lock.json
	$(BIN)/python bench/run.py $(BENCH_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
