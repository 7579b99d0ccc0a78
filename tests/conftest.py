"""Shared fixtures: the real datasets (skipped with a message when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofx.data.paths import DATA_ENV, shared_data_root
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig, init_params


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


@pytest.fixture(scope="session")
def make_tiny_model():
    """A factory of randomly initialised 16x16 two-conv models: quick to compile, for method-level tests."""

    def make(classes: tuple[str, ...], seed: int) -> TrainedModel:
        config = ModelConfig(num_classes=len(classes), input_size=16, widths=(4, 8), dense_units=16)
        return TrainedModel(config, init_params(config, seed), tuple(classes))

    return make
