# emofx: `make quickstart` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: quickstart test venv figures

venv: $(BIN)/emofx

# The installed entry point doubles as the "environment is ready" stamp.
$(BIN)/emofx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test,landmarks,dask,crowd,heic]"
	touch $@

quickstart: $(BIN)/emofx
	$(BIN)/emofx quickstart

test: $(BIN)/emofx
	$(BIN)/python -m pytest -n 2

# Every paper figure from scratch: papermill runs of the notebooks, then the figures from their records.
figures: $(BIN)/emofx
	$(BIN)/emofx batch --config experiments/synthetic_cultures.yaml --workers 2
	$(BIN)/emofx figures papermill_runs/synthetic_cultures --out figures/
