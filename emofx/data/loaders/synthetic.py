"""The embedded procedural faces as a source format."""

from __future__ import annotations

import os

from emofx.data.dataset import FaceDataset


def load_synthetic(
    source: str | os.PathLike = "synthetic",
    *,
    dialect: str = "universal",
    n_per_class: int = 100,
    seed: int = 0,
    culture: str | None = None,
    size: int = 48,
) -> FaceDataset:
    """The embedded procedural faces (:func:`emofx.data.synthetic.make_synthetic`); ``source`` is ``synthetic``."""
    if str(source) != "synthetic":
        raise ValueError(f"the synthetic format takes the source 'synthetic' (no files); got {source!r}")
    from emofx.data.synthetic import make_synthetic  # generator lives in its own module

    return make_synthetic(dialect=dialect, n_per_class=n_per_class, seed=seed, size=size, culture=culture or None)
