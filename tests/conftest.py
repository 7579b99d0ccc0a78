"""Shared fixtures: the real datasets (skipped with a message when absent), tiny models, and the
numerical precision of the suite with the tolerances that follow from it.

The suite checks numerics that claim exactness (fast convolutions against ``lax.conv``,
gradients against finite differences, Integrated Gradients' completeness, batched against
unbatched maps), so it runs at full float32 matmul/convolution precision (``highest``) unless
``EMOFX_PRECISION`` says otherwise: GPUs otherwise multiply in TensorFloat-32, and CPUs' Winograd
layers take their faster, less exact tiles. Run
``EMOFX_PRECISION=default pytest`` to test the fast default; comparisons then widen by
:func:`float32_rtol`. With ``EMOFX_TEST_EMULATE_TF32=1`` as well, a CPU multiplies at ``default`` and
``high`` as a GPU does, in TensorFloat-32 (``benchmarks/emulated_tf32.py``), takes a GPU's paths and tolerances,
and so checks them without a GPU (``make test`` runs the numerics so).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The suite compiles some 1,600 small programs, and on a fresh machine (CI, no compilation cache yet) compiling is
# much of its time. LLVM's optimisation level 0 instead of XLA's default 3 compiles them fastest (a tiny model's
# training run, compile time summed: 4.2 s at level 0, 7.0 at 1, 12.0 at 3 on a 2-core Zen 3); the programs then run
# slower (that run, cache warm: 5.7 s against 4.7), but the suite as CI runs it, from an empty cache, took 1073 s
# against 1175 at level 1. Their numbers differ from level 3's in the last bits, as from one CPU to another, which
# every tolerance allows. Set before JAX starts its backend, and inherited by the commands and notebook kernels the
# tests start. A level in XLA_FLAGS is kept: run XLA_FLAGS=--xla_backend_optimization_level=3 pytest to test with
# the code exactly as users' runs compile it.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from emofx.nets.precision import FAST_PRECISIONS, PRECISION_ENV, precision_in_force, set_precision

os.environ.setdefault(PRECISION_ENV, "highest")  # also for the CLI and notebook processes the tests start
set_precision()

from emofx.data.paths import CACHE_ENV, DATA_ENV, shared_data_root  # noqa: E402  (after the precision is set)
from emofx.nets.checkpoint import TrainedModel  # noqa: E402
from emofx.nets.compilation import COMPILATION_CACHE_ENV, compilation_cache_dir  # noqa: E402
from emofx.nets.model import ModelConfig, init_params  # noqa: E402


def _use_a_faces_cache_of_the_suites_own() -> None:
    """Faces the tests prepare (and those the commands they start prepare) go to a cache folder of this
    process's own, removed at its end: a test never reads faces that other code prepared into the user's
    cache (``~/.cache/emofx`` or ``$EMOFX_CACHE``), nor leaves files there. Compiled programs still go to the
    user's compilation cache (JAX keys each by program and versions), named explicitly so that the
    commands keep finding it."""
    compiled = compilation_cache_dir()
    os.environ[COMPILATION_CACHE_ENV] = str(compiled) if compiled is not None else "off"
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="emofx-tests-cache-")
    atexit.register(shutil.rmtree, os.environ[CACHE_ENV], ignore_errors=True)


_use_a_faces_cache_of_the_suites_own()

EMULATE_TF32_ENV = "EMOFX_TEST_EMULATE_TF32"
EMULATING_TF32 = os.environ.get(EMULATE_TF32_ENV, "") not in ("", "0")


def pytest_configure(config) -> None:
    """Under ``$EMOFX_TEST_EMULATE_TF32``, for the whole session: TF32 products at ``default``/``high`` and a
    GPU's paths and tolerances (``benchmarks/emulated_tf32.py``). Meant for the in-process numerics (the
    Makefile's NUMERICS): across the whole suite, commands run in subprocesses compute in plain float32 on
    the CPU and benchmarks look for a GPU, so four tests that set those beside in-process results fail for
    that reason alone."""
    if not EMULATING_TF32:
        return
    from benchmarks.emulated_tf32 import cpu_lowering_table, emulated_tf32

    try:
        cpu_lowering_table()
    except RuntimeError as error:
        pytest.exit(f"TF32 emulation skipped, a GPU's tolerances are not checked in this run: {error}", returncode=0)
    config.emofx_tf32 = emulated_tf32(gpu_paths=True)
    config.emofx_tf32.__enter__()


def pytest_unconfigure(config) -> None:
    """Undo :func:`pytest_configure`."""
    if hasattr(config, "emofx_tf32"):
        config.emofx_tf32.__exit__(None, None, None)


def float32_rtol(precision: str | None = None, backend: str | None = None) -> float:
    """Relative tolerance (to the largest magnitude compared) between two float32 computations of one
    quantity by different programs: another formulation (Winograd vs direct convolution), summation
    order (AVX2 vs AVX-512 vector widths, batch sizes, fusion) or framework.

    Why these values: float32 rounds at u = 2**-24 (6e-8). A dot product of K terms errs by about
    sqrt(K) u (K = 25 x 128 = 3200 in the paper's third layer: 3e-6), Winograd F(4, 5)'s transforms
    (points 0, +-1, +-2, +-1/2, inf) amplify rounding by up to ~20, and a loss gradient passes
    through about eight such contractions: 1e-4 covers that with margin, and is what CPUs (any
    instruction set; XLA's CPU backend always multiplies in float32) at ``high``/``highest`` and GPUs
    at ``highest`` give. At ``default`` a CPU's Winograd layers take tiles of 6 (points up to +-2 and
    +-3/2), whose per-layer error is 5-6x that of tiles of 4 (1.2-2.3e-5 vs 2.7-4.2e-6 against a
    float64 reference, ``emofx/nets/winograd.py``): 5e-4. At ``default``/``high`` a GPU multiplies in
    TensorFloat-32 (operands cut to 10 mantissa bits: 2**-11 relative if rounded, 2**-10 if truncated),
    a TPU in bfloat16 passes (``default``: u = 2**-8). TF32's 1e-2 is measured, with TF32 emulated on a
    CPU by truncation (``benchmarks/emulated_tf32.py``; ``make test`` runs the numerics so): one layer, output and
    both gradients, errs by 6-10e-4 of the output's scale by the direct convolution and by 1.4-7.7e-3 by
    Winograd F(4, k), the tile it takes there, so the two stay within 8.5e-3 of each other on every
    shape of ``tests/test_ops.py``; comparisons through whole models run at ``highest``. bfloat16's 1e-1
    is the TF32 one scaled by the ratio of the two roundings (4x-8x): not measured.
    """
    precision = precision or precision_in_force()
    backend = backend or jax.default_backend()
    if precision in ("highest", "float32"):
        return 1e-4
    if backend == "cpu":
        return 5e-4 if precision in FAST_PRECISIONS else 1e-4
    if backend == "tpu" and precision in ("default", "bfloat16"):
        return 1e-1
    return 1e-2


@pytest.fixture(scope="session")
def float32_tolerance() -> float:
    """:func:`float32_rtol` for the precision and backend of this test session."""
    return float32_rtol()


@pytest.fixture(scope="session")
def rtol_at():
    """:func:`float32_rtol` itself, for tests that trace at a precision of their own."""
    return float32_rtol


@pytest.fixture(scope="session")
def assert_close_to_scale():
    """``check(actual, expected, rtol, what)``: equal within ``rtol`` relative to the expected values'
    largest magnitude (at least 1): rounding errors scale with the largest terms of the sums, not
    with each element, so near-zero elements get the same absolute tolerance as the rest."""

    def check(actual, expected, rtol: float, what: str = "") -> None:
        expected = np.asarray(expected)
        scale = max(float(np.abs(expected).max()), 1.0)
        np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * scale, err_msg=what)

    return check


def pytest_collection_modifyitems(items) -> None:
    """Every test that reads the real datasets (through these fixtures) carries the ``shared_data`` marker,
    so ``-m "not shared_data"`` leaves them all out."""
    for item in items:
        if {"shared_data", "shared_dataset", "ferplus_slice"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def write_notebook():
    """A factory of papermill-ready notebooks: ``write(path, parameters, body)`` writes a cell tagged
    ``parameters`` and one body cell (Python 3 kernel) and returns ``path``."""
    import nbformat

    def write(path: Path, parameters: str, body: str) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell, nbformat.v4.new_code_cell(body)]
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    return write


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test's figures closed after it: pyplot keeps them otherwise, and a worker running many plotting tests
    warned of more than 20 open figures (memory held for nothing)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:  # no test that draws nothing pays for importing matplotlib
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A cache folder of the test's own (``$EMOFX_CACHE``): prepared faces neither come from nor go to the
    user's cache. Files that prepare faces use it for every test (``pytestmark``)."""
    monkeypatch.setenv("EMOFX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data (or $EMOFX_DATA); skips the test when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root}; set {DATA_ENV} to their folder to run this test")
    return root


@pytest.fixture(scope="session")
def shared_dataset(shared_data):
    """Path of one shared dataset folder, skipping when that folder is missing."""

    def get(name: str) -> Path:
        path = shared_data / name
        if not path.exists():
            pytest.skip(f"{path} not found; set {DATA_ENV} to a folder holding {name}/")
        return path

    return get


FERPLUS_EMOTIONS = 8  # FER+ vote columns 0-7: the emotions; 8-9 are unknown / not a face
FERPLUS_SLICE_PER_SPLIT = {"Training": 10, "PublicTest": 3, "PrivateTest": 3}


@pytest.fixture(scope="session")
def ferplus_slice(shared_dataset):
    """A factory of small FER2013 + FER+ data roots: ``make(root)`` links, per split and FER+ majority
    emotion and per split and FER2013 class, the first few images (:data:`FERPLUS_SLICE_PER_SPLIT`)
    that have a FER+ majority emotion, with their votes, and returns the chosen rows of
    ferplus_to_fer2013.csv (with ``winner``, the majority emotion's column)."""
    import pandas as pd

    from emofx.data.loaders import FERPLUS_VOTE_COLUMNS
    from emofx.data.loaders.fer2013 import NO_MAJORITY, ferplus_majority

    def make(root: Path):
        fer, ferplus = shared_dataset("fer2013"), shared_dataset("ferplus")
        votes = pd.read_csv(ferplus / "fer2013new.csv", dtype=str, keep_default_na=False)
        mapping = pd.read_csv(ferplus / "ferplus_to_fer2013.csv", dtype=str, keep_default_na=False)
        counts = votes[list(FERPLUS_VOTE_COLUMNS)].replace("", "0").astype(int).to_numpy()
        mapping["winner"] = ferplus_majority(counts)[mapping["row"].astype(int)]
        mapping = mapping[(mapping.winner != NO_MAJORITY) & (mapping.winner < FERPLUS_EMOTIONS)]
        mapping = mapping.drop_duplicates("fer2013_file")
        mapping["folder_class"] = mapping.fer2013_file.str.split("/").str[-2]
        chosen = pd.concat([group.head(FERPLUS_SLICE_PER_SPLIT[usage]) for by in ("winner", "folder_class")
                            for (usage, _), group in mapping.groupby(["usage", by])]).drop_duplicates("fer2013_file")
        for name in chosen.fer2013_file:
            (root / "fer2013" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "fer2013" / name).symlink_to(fer / name)
        (root / "ferplus").mkdir()
        votes.to_csv(root / "ferplus" / "fer2013new.csv", index=False)
        chosen.drop(columns=["winner", "folder_class"]).to_csv(root / "ferplus" / "ferplus_to_fer2013.csv", index=False)
        return chosen

    return make


@pytest.fixture(scope="session")
def make_tiny_model():
    """A factory of randomly initialised 16x16 two-conv models: quick to compile, for method-level tests."""

    def make(classes: tuple[str, ...], seed: int) -> TrainedModel:
        config = ModelConfig(num_classes=len(classes), input_size=16, widths=(4, 8), dense_units=16)
        return TrainedModel(config, init_params(config, seed), tuple(classes))

    return make
