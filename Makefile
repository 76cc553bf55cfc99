# The two commands that matter: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck deps unit bench bench-engine bench-api bench-audit bench-dispatch clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
## SoftHSM2 for the vault's PKCS#11 tests.
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
	@command -v chromium >/dev/null 2>&1 && command -v runsc >/dev/null 2>&1 && \
	  command -v bwrap >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	      chromium runsc bubblewrap; \
	  else \
	    echo "runner tools are missing: run 'sudo apt-get install chromium runsc bubblewrap'" >&2; \
	    exit 1; \
	  fi

unit: install deps
	$(BIN)/python -m pytest

## test: install, then lint, type-check and run the whole suite.
test: lint typecheck unit

## bench: every benchmark; each prints ratios against a baseline measured in the same run.
bench: bench-engine bench-api bench-audit bench-dispatch

bench-engine: install
	$(BIN)/python bench/engine.py

bench-api: install
	$(BIN)/python bench/api.py

bench-audit: install deps
	$(BIN)/python bench/audit.py

bench-dispatch: install
	$(BIN)/python bench/dispatch.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
