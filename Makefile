# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgres bench serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

## Import the steel plant, train, backtest, then serve the API on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/digitaltwin demo

## The whole suite: SQLite always, PostgreSQL/Redis/MQTT when reachable (see tests/conftest.py)
test: $(STAMP)
	$(BIN)/pytest -q -rs

bench: $(STAMP)
	$(BIN)/python bench/import_throughput.py

clean:
	rm -rf $(VENV) data models logs .pytest_cache
