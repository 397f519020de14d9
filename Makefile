# Two commands for a fresh machine: `make demo` (embedded default, no servers) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

RECTOOLS_VENV ?= .venv-rectools
RECTOOLS_STAMP := $(RECTOOLS_VENV)/.installed

.PHONY: venv venv-rectools demo serve test lint notebook clean-data

venv: $(STAMP)

# RecTools pins numpy<2 / pandas<3, so it gets its own environment (metric agreement, baselines).
venv-rectools: $(RECTOOLS_STAMP)

$(RECTOOLS_STAMP): requirements-rectools.txt $(STAMP)
	@test -x $(RECTOOLS_VENV)/bin/python || $(PYTHON) -m venv $(RECTOOLS_VENV)
	$(BIN)/uv pip install --quiet --python $(RECTOOLS_VENV)/bin/python -r requirements-rectools.txt
	@touch $@

# uv installs the pinned stack in seconds; constraints.txt pins every transitive package.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		-r requirements.txt -r requirements-dev.txt -c constraints.txt -e .
	@touch $@

# Builds everything on the embedded default, then serves it on port 8081 (Ctrl+C stops).
# The demo trains the shipped configurations (no hyper-parameter search) to stay within minutes;
# set RECSYS_TUNING_MAX_TRIALS to search as the DAGs do.
demo: $(STAMP)
	OPENBLAS_NUM_THREADS=1 RECSYS_TUNING_MAX_TRIALS=$${RECSYS_TUNING_MAX_TRIALS:-0} $(BIN)/recsys demo
	$(MAKE) --no-print-directory serve

# The demo's storefront (/shop) records the clicks of its page: browser events are on here.
serve: $(STAMP)
	cd fast_api_service && OPENBLAS_NUM_THREADS=1 RECSYS_BROWSER_EVENTS_ENABLED=$${RECSYS_BROWSER_EVENTS_ENABLED:-true} \
		../$(BIN)/uvicorn recsys_app.recsys_app:app --port $${RECSYS_SERVICE_PORT:-8081} --host 0.0.0.0

test: $(STAMP) $(RECTOOLS_STAMP)
	sh dev_scripts/ensure_test_services.sh
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/shellcheck --shell=sh --external-sources dev_scripts/*.sh

# Refreshes research.executed.ipynb (the notebook run on the small twin, outputs kept) after editing research.ipynb.
notebook: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m recsys.experiments.notebook --scale $${NOTEBOOK_SCALE:-small}

clean-data:
	rm -rf data
