# Two set-up commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgres bench bench-forecast bench-bills bench-anomaly bench-schedule serve clean
.PHONY: demo test test-sqlite test-postgres bench bench-forecast bench-schedule serve clean

$(STAMP): pyproject.toml
	@echo "make: installing the project and its dependencies into $(VENV) (one to three minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar on -e '.[test,bench]'
	@echo "make: installed"
	touch $(STAMP)

## Import the steel plant, train, backtest, then serve the API on http://127.0.0.1:8000
DEMO_PORT ?= 8000
demo: $(STAMP)
	$(BIN)/digitaltwin demo --port $(DEMO_PORT)

## The whole suite: SQLite always, PostgreSQL/Redis/MQTT when reachable (see tests/conftest.py)
test: $(STAMP)
	$(BIN)/pytest -q -rs --durations=15

bench: $(STAMP)
	$(BIN)/python bench/import_throughput.py

## Forecasting benchmarks against the peer library mlforecast, which needs pandas < 3: own venv
BENCH_VENV ?= .venv-bench
bench-forecast:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench,peers]'
	$(BENCH_VENV)/bin/python bench/forecast_steel.py
	$(BENCH_VENV)/bin/python bench/forecast_cambridge.py
	$(BIN)/python bench/forecast_latency.py

## Bills against NREL SAM Utilityrate5 (nrel-pysam is in the test extra): annual-bill time and largest difference
bench-bills: $(STAMP)
	$(BIN)/python bench/bills_vs_sam.py

## Anomaly detection on the labelled LEAD buildings (../shared/data/lead_anomaly) against PyOD, which pulls in
## numba: own venv, so the product's .venv stays without it
BENCH_ANOMALY_VENV ?= .venv-bench-anomaly
bench-anomaly:
	test -x $(BENCH_ANOMALY_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_ANOMALY_VENV)
	$(BENCH_ANOMALY_VENV)/bin/pip install --quiet -e '.[anomaly-peers]'
	$(BENCH_ANOMALY_VENV)/bin/python bench/anomaly_lead.py
## Scheduler against EMHASS (own venv: its pins clash with ours) and an independent LP; solve times
EMHASS_VENV ?= .venv-emhass
bench-schedule: $(STAMP)
	test -x $(EMHASS_VENV)/bin/python || $(PYTHON) -m venv $(EMHASS_VENV)
	$(EMHASS_VENV)/bin/pip install --quiet 'emhass>=0.18,<0.19'
	$(BIN)/python bench/schedule_emhass.py --emhass $(EMHASS_VENV)/bin/python

clean:
	rm -rf $(VENV) data models logs .pytest_cache
