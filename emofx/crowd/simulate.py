"""Simulated crowds: answers from workers whose confusion matrices are known, for testing aggregation.

Good workers answer the true class with an accuracy drawn from ``good_accuracy`` and spread
their errors over the other classes by a Dirichlet draw (so each has its own systematic
confusions). Low-quality workers are spammers: half answer uniformly at random, half mostly
repeat one favourite class. Every image gets ``answers_per_image`` distinct workers. All
randomness comes from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GOOD, UNIFORM_SPAMMER, BIASED_SPAMMER = "good", "uniform_spammer", "biased_spammer"


@dataclass(frozen=True)
class CrowdConfig:
    """The crowd: its size, how many answer each image, and how good its workers are.

    Attributes:
        n_workers: workers in the pool.
        answers_per_image: distinct workers answering each image.
        low_quality_fraction: share of the pool that are spammers.
        good_accuracy: (low, high) range of the good workers' accuracies.
        error_concentration: Dirichlet concentration of a good worker's errors (small: few, systematic confusions).
        favourite_share: how often a biased spammer answers its favourite class.
    """

    n_workers: int = 50
    answers_per_image: int = 5
    low_quality_fraction: float = 0.3
    good_accuracy: tuple[float, float] = (0.55, 0.85)
    error_concentration: float = 0.3
    favourite_share: float = 0.8

    def __post_init__(self) -> None:
        if not 1 <= self.answers_per_image <= self.n_workers:
            raise ValueError(f"answers_per_image must lie in [1, n_workers={self.n_workers}]; "
                             f"got {self.answers_per_image}")
        if not 0 <= self.low_quality_fraction <= 1:
            raise ValueError(f"low_quality_fraction must lie in [0, 1]; got {self.low_quality_fraction}")
        low, high = self.good_accuracy
        if not 0 <= low <= high <= 1:
            raise ValueError(f"good_accuracy must be (low, high) within [0, 1]; got {self.good_accuracy}")
        if not 0 <= self.favourite_share <= 1 or self.error_concentration <= 0:
            raise ValueError(f"favourite_share must lie in [0, 1] and error_concentration be > 0; got "
                             f"{self.favourite_share} and {self.error_concentration}")


@dataclass(frozen=True, eq=False)
class SimulatedCrowd:
    """Answers and the workers that gave them.

    Attributes:
        answers: long format ``image`` (index into the truth), ``worker``, ``label`` (class name).
        confusions: float (W, C, C), row t = worker's answer distribution when the truth is class t.
        kinds: str (W,), ``good``, ``uniform_spammer`` or ``biased_spammer``.
        workers: the worker ids, in the order of ``confusions``.
    """

    answers: pd.DataFrame
    confusions: np.ndarray
    kinds: np.ndarray
    workers: tuple[str, ...]


def worker_confusions(config: CrowdConfig, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(W, C, C) confusion matrices and (W,) kinds for a pool drawn as :class:`CrowdConfig` says."""
    n_low = int(round(config.low_quality_fraction * config.n_workers))
    kinds = np.array([GOOD] * (config.n_workers - n_low)
                     + [UNIFORM_SPAMMER, BIASED_SPAMMER] * (n_low // 2) + [UNIFORM_SPAMMER] * (n_low % 2))
    kinds = kinds[rng.permutation(config.n_workers)]
    confusions = np.empty((config.n_workers, n_classes, n_classes))
    for w, kind in enumerate(kinds):
        if kind == GOOD:
            accuracy = rng.uniform(*config.good_accuracy, size=n_classes)
            errors = rng.dirichlet(np.full(n_classes - 1, config.error_concentration), size=n_classes)
            for t in range(n_classes):
                confusions[w, t] = np.insert(errors[t] * (1 - accuracy[t]), t, accuracy[t])
        elif kind == UNIFORM_SPAMMER:
            confusions[w] = 1.0 / n_classes
        else:
            favourite = rng.integers(n_classes)
            confusions[w] = (1 - config.favourite_share) / n_classes
            confusions[w, :, favourite] += config.favourite_share
    return confusions, kinds


def simulate_crowd(truth: np.ndarray, classes: tuple[str, ...], config: CrowdConfig = CrowdConfig(),
                   *, seed: int = 0) -> SimulatedCrowd:
    """Answers of a simulated crowd to images whose true class indices are ``truth``."""
    truth = np.asarray(truth, dtype=np.int64)
    if truth.size and (truth.min() < 0 or truth.max() >= len(classes)):
        raise ValueError(f"true labels must lie in [0, {len(classes)}); got {truth.min()}..{truth.max()}")
    rng = np.random.default_rng(seed)
    confusions, kinds = worker_confusions(config, len(classes), rng)
    k = config.answers_per_image
    chosen = np.argsort(rng.random((len(truth), config.n_workers)), axis=1)[:, :k]  # distinct workers per image
    cumulative = np.cumsum(confusions[chosen, truth[:, None]], axis=-1)  # (N, k, C)
    draws = rng.random((len(truth), k, 1))
    answers = np.minimum((draws > cumulative).sum(axis=-1), len(classes) - 1)
    workers = tuple(f"w{w:03d}" for w in range(config.n_workers))
    frame = pd.DataFrame({
        "image": np.repeat(np.arange(len(truth)), k),
        "worker": np.asarray(workers)[chosen.reshape(-1)],
        "label": np.asarray(classes)[answers.reshape(-1)],
    })
    return SimulatedCrowd(answers=frame, confusions=confusions, kinds=kinds, workers=workers)
