# Every target works on a fresh machine: the virtual environment is created and the
# pinned dependencies installed on first use (and again when the locks change).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: install test unit integration e2e chaos lint bench paper lock clean

$(STAMP): pyproject.toml requirements/runtime.lock requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

install: $(STAMP)

## test: every tier (unit, integration, e2e) against a real Redis and Postgres
test: $(STAMP)
	$(PYTEST) tests/unit tests/integration tests/e2e

unit: $(STAMP)
	$(PYTEST) tests/unit

integration: $(STAMP)
	$(PYTEST) tests/integration

e2e: $(STAMP)
	$(PYTEST) tests/e2e

## chaos: the long fault run (make test runs a short one): 24 seeded kill -9s, Redis killed
## and restarted from its append-only file, Postgres down 30 s, venue faults; LIVE on exchange-sim
CHAOS_SEED ?= 20261124
chaos: $(STAMP)
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_KILLS=24 CHAOS_PG_OUTAGE_S=30 $(PYTEST) tests/e2e/test_chaos.py

lint: $(STAMP)
	$(BIN)/ruff check shared services deploy tests
	$(BIN)/ruff format --check shared services deploy tests
	$(BIN)/mypy shared services deploy

## paper: the whole stack as local processes (PAPER, exchange-sim as the market); Ctrl-C stops
## it. Options go through ARGS, e.g. make paper ARGS="--history data/replay --speed 60"
paper: $(STAMP)
	$(BIN)/python -m deploy.local $(ARGS)

## bench: performance figures, one "BENCH <name> key=value ..." line per benchmark
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bench.lock
	$(BIN)/python -m tests.bench

## lock: re-resolve the pinned sets from the ranges in pyproject.toml
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e . && .lock-venv/bin/pip freeze --exclude-editable > .lock-runtime
	.lock-venv/bin/pip install --quiet -e '.[dev]' && .lock-venv/bin/pip freeze --exclude-editable > .lock-dev
	{ echo "# Exact versions of every runtime dependency (transitive), installed by make and the image."; \
	  echo "# Regenerate with: make lock"; cat .lock-runtime; } > requirements/runtime.lock
	{ echo "# Runtime plus test and lint tools, exact versions. Regenerate with: make lock"; \
	  echo "-r runtime.lock"; grep -vxF -f .lock-runtime .lock-dev; } > requirements/dev.lock
	rm -rf .lock-venv .lock-runtime .lock-dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
