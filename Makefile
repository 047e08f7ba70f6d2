# One entry point for set-up, the example run and every check.
# TORCH pins the CPU build where no torch is installed yet; an unpinned `torch`
# would pull a multi-GB CUDA build. Override: make setup TORCH="torch==2.13.0+cu128".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install setup browser postgres example test check lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What running nncli needs: torch (the CPU build where none is installed) and nncli itself.
install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .

# What the checks need besides: the test and lint tools, every optional extra, the
# browser the report tests open pages in, and the PostgreSQL a sweep's study is kept in.
setup: install browser postgres
	$(BIN)/python -m pip install --quiet -e ".[dev]"

# Debian's chromium for tests/report/test_browser.py, installed where missing when we are
# root on Debian (CI); elsewhere nothing is installed and those tests skip (fail if CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "chromium is missing and not installed here (root on Debian only): the browser tests skip"; \
	  fi; }

# Debian's PostgreSQL for tests/sweep/test_postgres.py (each test starts a throwaway server
# of its own), installed where missing when we are root on Debian (CI), as chromium is.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; \
	  else \
	    echo "PostgreSQL is missing and not installed here (root on Debian only): its tests skip"; \
	  fi; }

# Installs what the example needs (not the test tools), then trains it.
example: install
	$(BIN)/nncli train experiments/circles.yaml

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy nncli

# Sets up, then runs the whole suite: lint, types, tests (slow ones included).
test: setup lint typecheck
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/bench_memory.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
