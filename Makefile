# emofx: `make quickstart` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The extras installed with emofx (pyproject.toml). Where a platform has no wheel of one (dlib-bin: none for Intel
# macOS), leave it out: make quickstart EXTRAS=test,dask,crowd,heic
EXTRAS ?= test,landmarks,dask,crowd,heic

.PHONY: quickstart test venv figures lab

venv: $(BIN)/emofx

# The installed entry point doubles as the "environment is ready" stamp.
$(BIN)/emofx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $@

quickstart: $(BIN)/emofx
	$(BIN)/emofx quickstart

# The tests that compare implementations' numbers run a second time on an AVX-512 CPU, compiled by XLA as for an
# AVX2 CPU (another vector width, another summation order): a tolerance that holds for one width only fails here.
# Then, on any CPU, once more at the fast precision with a GPU's TensorFloat-32 products emulated, a GPU's
# convolution paths and its tolerances: a tolerance too tight for a GPU fails here, without a GPU.
NUMERICS := tests/test_ops.py tests/test_model.py tests/test_saliency.py tests/test_lanes.py

test: $(BIN)/emofx
	$(BIN)/python -m pytest -n 2
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
		echo "AVX-512 CPU: the numerics again as compiled for AVX2 (XLA_FLAGS=--xla_cpu_max_isa=AVX2)"; \
		XLA_FLAGS="$$XLA_FLAGS --xla_cpu_max_isa=AVX2" $(BIN)/python -m pytest -n 2 $(NUMERICS); \
	fi
	@echo "The numerics at the fast precision as a GPU computes it: TF32 products, emulated (benchmarks/emulated_tf32.py)"
	EMOFX_TEST_EMULATE_TF32=1 EMOFX_PRECISION=default $(BIN)/python -m pytest -n 2 $(NUMERICS)

# Every paper figure from scratch: papermill runs of the notebooks, then the figures from their records.
figures: $(BIN)/emofx
	$(BIN)/emofx batch --config experiments/synthetic_cultures.yaml --workers 2
	$(BIN)/emofx figures papermill_runs/synthetic_cultures --out figures/

# JupyterLab on the notebooks; its kernels start with the C allocator settings the emofx command runs with
# (emofx/nets/allocator.py; EMOFX_TUNED_MALLOC=0 leaves them out). LAB_ARGS go to jupyter lab, e.g. on a remote
# machine or in a container as root: make lab LAB_ARGS="--no-browser --port 8899 --allow-root"
LAB_ARGS ?=
lab: $(BIN)/emofx
	GLIBC_TUNABLES="$$($(BIN)/python -m emofx.nets.allocator)" $(BIN)/jupyter lab notebooks/ $(LAB_ARGS)
