# Two commands for a fresh machine; each creates the environment when missing.
#   make demo   - fedmer simulate on the built-in synthetic cohort
#   make test   - the test suite (make test-fast: unit tests only; make lint)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build: an unpinned torch would pull several GB of CUDA wheels.
# On a GPU machine, override: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX=...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.fedmer-installed

.PHONY: demo test test-fast lint flwr-run env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fedmer simulate

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# Unit tests only (tests/unit/), under two minutes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# What CI checks before the tests: lint, format, types, layer contracts.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

flwr-run: $(STAMP)
	$(BIN)/python -m simulations.flwr_local

clean:
	rm -rf $(VENV) runs .pytest_cache
