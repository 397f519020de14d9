# Two commands for a fresh machine: `make demo` (embedded default, no servers) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: venv demo test lint typecheck clean-data

venv: $(STAMP)

# uv installs the pinned stack in seconds; constraints.txt pins every transitive package.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python \
		-r requirements.txt -r requirements-dev.txt -c constraints.txt -e .
	@touch $@

demo: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/recsys demo

test: $(STAMP)
	bash dev_scripts/ensure_test_services.sh
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-data:
	rm -rf data
