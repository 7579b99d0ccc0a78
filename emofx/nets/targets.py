"""What the network learns from: one-hot labels, crowd vote distributions (soft targets) and agreement weights."""

from __future__ import annotations

import numpy as np

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import ALIASES
from emofx.nets.optimisation import TrainConfig, TrainingError


def training_targets(dataset: FaceDataset, soft: bool = False) -> np.ndarray:
    """(N, C) float32 targets: one-hot labels, or the normalised vote distributions over the classes.

    Votes come from ``dataset.extras["votes"]`` with column names in ``meta["vote_names"]``;
    columns that are not among the dataset's classes are ignored, and an image with no vote for
    any class falls back to its hard label.
    """
    one_hot = np.eye(len(dataset.classes), dtype=np.float32)[dataset.labels]
    if not soft:
        return one_hot
    votes, names = dataset.extras.get("votes"), dataset.meta.get("vote_names")
    if votes is None or names is None:
        raise TrainingError("soft targets need vote counts (extras['votes'] and meta['vote_names']); "
                            "this dataset has none: train without --soft-targets")
    column = {ALIASES.get(str(name).lower()): j for j, name in enumerate(names)}
    missing = [c for c in dataset.classes if c not in column]
    if missing:
        raise TrainingError(f"the votes have no column for classes {missing} (vote columns: {list(names)})")
    chosen = np.asarray(votes, np.float32)[:, [column[c] for c in dataset.classes]]
    total = chosen.sum(axis=1, keepdims=True)
    return np.where(total > 0, chosen / np.maximum(total, 1e-12), one_hot).astype(np.float32)


def agreement_weights(dataset: FaceDataset) -> np.ndarray:
    """(N,) loss weights: ``extras["agreement"]`` (share of annotators agreeing) scaled to mean 1.

    Images without an agreement value (NaN) weigh 1. Scaling a target row scales that image's
    cross-entropy, so weighting needs no change to the loss.
    """
    agreement = dataset.extras.get("agreement")
    if agreement is None or not np.any(np.isfinite(agreement)):
        raise TrainingError("weighting by agreement needs extras['agreement']; compute it with "
                            "`emofx labels aggregate` (or train without --weight-by-agreement)")
    agreement = np.asarray(agreement, np.float64)
    weights = agreement / np.nanmean(agreement)
    return np.where(np.isfinite(weights), weights, 1.0).astype(np.float32)


def weighted_targets(train_set: FaceDataset, config: TrainConfig) -> np.ndarray:
    """The training targets (N, C): one-hot or vote distributions, weighted by agreement when asked."""
    targets = training_targets(train_set, config.soft_targets)
    return targets * agreement_weights(train_set)[:, None] if config.weight_by_agreement else targets
