# fhir-gateway — developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test test-sqlite test-postgres test-long test-midnight lint typecheck bench migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start the gateway on its embedded defaults (SQLite file, built-in OAuth server)
	$(BIN)/fhir-gateway serve

migrate: $(STAMP)
	$(BIN)/fhir-gateway migrate

test: $(STAMP)  ## the whole suite, on SQLite then on PostgreSQL
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP)
	FHIR_GATEWAY_TEST_DATABASE=sqlite $(BIN)/pytest -m "not long" $(PYTEST_ARGS)

test-postgres: $(STAMP)
	FHIR_GATEWAY_TEST_DATABASE=postgresql FHIR_GATEWAY_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -m "not long" $(PYTEST_ARGS)

test-long: $(STAMP)
	FHIR_GATEWAY_TEST_DATABASE=postgresql FHIR_GATEWAY_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -m long $(PYTEST_ARGS)

FAKETIME_LIB ?= /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1

test-midnight: $(STAMP)  ## the SQLite suite, each test started just before midnight (needs Debian's faketime)
	clock=$$(mktemp) && echo +0s > $$clock && \
	PYTHONPATH=. FAKETIME_TIMESTAMP_FILE=$$clock FAKETIME_NO_CACHE=1 LD_PRELOAD=$(FAKETIME_LIB) \
	FHIR_GATEWAY_TEST_DATABASE=sqlite $(BIN)/pytest -p tests.support.midnight_clock -m "not long" $(PYTEST_ARGS); \
	status=$$?; rm -f $$clock; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check fhir_gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)  ## issue 9's run: PostgreSQL, a partner client bound by 1,000 Consents, vs the floor
	$(BIN)/python bench/run_bench.py --engine postgresql --client partner

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache fhir-gateway.db*
