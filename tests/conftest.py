"""Shared fixtures: the real datasets (skipped with a message when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofx.paths import DATA_ENV, shared_data_root


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
