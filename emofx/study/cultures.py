"""The trials of each culture: configuration, trained runs, splits (independent, matched) and training.

Shared by the accuracy (H1) and feature (H2) tests of :mod:`emofx.study.comparison`."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from functools import reduce
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import shared_classes
from emofx.data.progress import tqdm
from emofx.data.splits import Split, balanced_subsample, make_split
from emofx.explain.saliency import METHODS as SALIENCY_METHODS
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig, fit

if TYPE_CHECKING:
    from emofx.study.runs import Run

UNITS = ("trials", "images")
ALL_EMOTIONS = "all"  # the emotion label of region-level rows pooled over emotions
INDEPENDENT = "independent"  # the split kind whose trials use disjoint people
METRICS = ("accuracy", "balanced_accuracy")
CORRECTIONS = ("maxT", "holm", "bh")


class ComparisonError(ValueError):
    """Two cultures' runs cannot be compared as asked."""


@dataclass(frozen=True)
class CompareConfig:
    """How to compare two cultures.

    Attributes:
        saliency_method: an :func:`emofx.explain.saliency.attribute` method; maps explain each image's
            true class and are compared as |map| normalised to unit mass per image.
        unit: ``"trials"`` or ``"images"`` for the region, proximity and pixel-wise tests.
        correction: over each family of tests (emotion x region, classes): ``"maxT"``
            (Westfall-Young max-statistic, FWER; needs ``unit="trials"``; unlike Holm it is not
            limited to m times the smallest exact p, 2/252 for 5 vs 5 trials), ``"holm"`` (FWER)
            or ``"bh"`` (FDR).
        n_permutations: permutations when exact enumeration would need more.
        n_boot: bootstrap resamples for confidence intervals.
        pooled_emotions: also test every measure pooled over emotions (rows with emotion
            ``"all"``: per unit, the mean over its emotions); these region-level rows join the
            same corrected family as the per-emotion rows.
        top_fraction: share of most salient pixels whose distance to the nearest landmark is measured.
        filter_top_k: strongest activations per filter that vote on its region.
        cka_images: probe images per culture for CKA.
        chance_alpha: a trial is flagged when its balanced accuracy is not above chance at this level
            (one-sided permutation test on its test images, :mod:`emofx.study.baselines`).
        exclude_chance: leave flagged trials out of every test (otherwise they are kept and flagged).
        seed: every random choice (permutations, bootstrap, probe images, smoothgrad noise) flows from it.
    """

    saliency_method: str = "guided"
    unit: str = "trials"
    correction: str = "maxT"
    n_permutations: int = 9999
    n_boot: int = 2000
    pooled_emotions: bool = True
    top_fraction: float = 0.05
    filter_top_k: int = 20
    cka_images: int = 300
    chance_alpha: float = 0.01
    exclude_chance: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ComparisonError(f"unit must be one of {UNITS}; got {self.unit!r}")
        if self.correction not in CORRECTIONS:
            raise ComparisonError(f"correction must be one of {CORRECTIONS}; got {self.correction!r}")
        if self.correction == "maxT" and self.unit != "trials":
            raise ComparisonError("the maxT correction needs unit='trials' (one set of assignments for all tests); "
                                  "use correction='holm' or 'bh' with unit='images'")
        if not 0 < self.chance_alpha < 1:
            raise ComparisonError(f"chance_alpha must lie in (0, 1); got {self.chance_alpha}")
        if not 0 < self.top_fraction <= 1:
            raise ComparisonError(f"top_fraction must lie in (0, 1]; got {self.top_fraction}")
        if self.filter_top_k < 1:
            raise ComparisonError(f"filter_top_k must be at least 1; got {self.filter_top_k}")
        if self.n_permutations < 1 or self.n_boot < 1 or self.cka_images < 1:
            raise ComparisonError(f"n_permutations, n_boot and cka_images must be at least 1; got "
                                  f"{self.n_permutations}, {self.n_boot}, {self.cka_images}")
        if self.saliency_method not in SALIENCY_METHODS:  # before any work, not after the accuracy tests
            raise ComparisonError(f"unknown saliency method {self.saliency_method!r}; choose one of "
                                  f"{', '.join(SALIENCY_METHODS)}")


@dataclass(frozen=True, eq=False)
class CultureRuns:
    """One culture's trials: its dataset, and per trial a trained model and its test images.

    ``trial_ids`` name the trials in the comparison's tables (the runs' recorded trial numbers when
    :meth:`load` finds them distinct; default 0, 1, ...); code indexes trials by position."""

    name: str
    dataset: FaceDataset
    models: tuple[TrainedModel, ...]
    test_indices: tuple[np.ndarray, ...]
    trial_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ComparisonError(f"culture {self.name!r} has no trained runs")
        if not self.trial_ids:
            object.__setattr__(self, "trial_ids", tuple(range(len(self.models))))
        if len(self.trial_ids) != len(self.models) or len(set(self.trial_ids)) != len(self.trial_ids):
            raise ComparisonError(f"culture {self.name!r}: trial ids {list(self.trial_ids)} must be distinct, "
                                  f"one per model ({len(self.models)})")
        if len(self.models) != len(self.test_indices):
            raise ComparisonError(f"culture {self.name!r}: {len(self.models)} models but "
                                  f"{len(self.test_indices)} test index sets")
        for trial, test in zip(self.trial_ids, self.test_indices):
            test = np.asarray(test)
            if test.size and (test.dtype.kind not in "iu" or test.min() < 0 or test.max() >= len(self.dataset)):
                raise ComparisonError(f"culture {self.name!r}, trial {trial}: test indices must be image indices in "
                                      f"[0, {len(self.dataset)}) of its dataset; pass the dataset the runs were "
                                      "trained on")
        for model in self.models:
            if model.config.input_size != self.dataset.image_shape[0]:
                raise ComparisonError(
                    f"culture {self.name!r}: a model expects {model.config.input_size}px images but the dataset has "
                    f"{self.dataset.image_shape}; pass the dataset the runs were trained on"
                )

    @property
    def n_trials(self) -> int:
        """How many trained models (trials) the culture has."""
        return len(self.models)

    def trials(self, keep: Sequence[int]) -> "CultureRuns":
        """The same culture with only the trials at positions ``keep``."""
        return CultureRuns(self.name, self.dataset, tuple(self.models[k] for k in keep),
                           tuple(self.test_indices[k] for k in keep), tuple(self.trial_ids[k] for k in keep))

    def on_classes(self, classes: Sequence[str]) -> "CultureRuns":
        """The same trials with each test set cut to the images of ``classes`` (those both cultures have)."""
        names = self.dataset.label_names
        return CultureRuns(self.name, self.dataset, self.models,
                           tuple(t[np.isin(names[t], list(classes))] for t in self.test_indices), self.trial_ids)

    def relabel_trials(self, table: pd.DataFrame, culture: str = "culture", trial: str = "trial") -> pd.DataFrame:
        """``table`` with this culture's trial positions in column ``trial`` replaced by its trial ids."""
        mine = table[culture] == self.name
        ids = np.asarray(self.trial_ids)
        return table.assign(**{trial: np.where(mine, ids[np.where(mine, table[trial], 0).astype(int)], table[trial])})

    def test_set(self, trial: int) -> FaceDataset:
        """The test images of trial ``trial``."""
        return self.dataset.subset(self.test_indices[trial])

    @classmethod
    def load(cls, runs_dir: str | os.PathLike, dataset: FaceDataset, name: str | None = None) -> "CultureRuns":
        """The trial runs under ``runs_dir`` (see :mod:`emofx.study.runs`), evaluated on ``dataset``."""
        from emofx.study.runs import load_runs

        runs = load_runs(runs_dir)
        if not runs:
            raise FileNotFoundError(f"no trained runs under {runs_dir}; train some with `emofx train ... --out`")
        dataset = runs[0].own_part(dataset, "the dataset given")  # runs of one culture of a file of several
        return cls.from_runs(name or _culture_name(dataset, runs_dir), runs, dataset)

    @classmethod
    def from_runs(cls, name: str, runs: Sequence["Run"], dataset: FaceDataset) -> "CultureRuns":
        """Trained runs of one culture on ``dataset``, refused unless each was trained on it (its size and
        fingerprint); trials are named by the runs' recorded trial numbers when those are distinct."""
        from emofx.study.runs import dataset_fingerprint

        if runs:  # runs of one culture of a file holding several (emofx train --culture): that culture's images
            dataset = runs[0].own_part(dataset, "the dataset given")
        fingerprint = dataset_fingerprint(dataset)
        for run in runs:
            if run.split.n_images != len(dataset):
                raise ComparisonError(
                    f"run {run.directory} was split from {run.split.n_images} images but the dataset has "
                    f"{len(dataset)}; pass the dataset the runs were trained on"
                )
            recorded = run.metrics.get("data", {}).get("fingerprint")
            if recorded is not None and recorded != fingerprint:
                raise ComparisonError(
                    f"run {run.directory} was trained on other images than this dataset's (fingerprint {recorded} "
                    f"against {fingerprint}; the run trained on {run.metrics['data'].get('path', '?')}); pass the "
                    "dataset the runs were trained on"
                )
        _check_trials(name, runs)
        recorded_trials = tuple(int(run.split.trial) for run in runs)
        ids = recorded_trials if len(set(recorded_trials)) == len(runs) else ()  # else positions (one trial, seeds)
        return cls(name, dataset, tuple(run.model for run in runs),
                   tuple(np.asarray(run.split.test, dtype=int) for run in runs), ids)


def _flat(record: Any, prefix: str = "") -> dict[str, Any]:
    """A nested record as ``{"train_config.epochs": 4, ...}``, for naming what differs."""
    if not isinstance(record, dict):
        return {prefix: record}
    return {k: v for key, value in record.items()
            for k, v in _flat(value, f"{prefix}.{key}" if prefix else str(key)).items()}


def trial_settings(identity: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded identity less what may differ between trials of one configuration (seed and split)."""
    return {k: v for k, v in _flat(identity).items()
            if k not in ("seed", "trial", "split_indices", "train_config.seed")}


def _other_settings(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between two :func:`trial_settings`, as ``key mine vs theirs``."""
    return [f"{k} {mine.get(k)} vs {theirs.get(k)}" for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)]


def _check_trials(name: str, runs: Sequence["Run"]) -> None:
    """Refuse runs that are not the trials of one experiment: one stopped before it finished, two of one seed and
    split (their test images would count twice), or settings other than the seed and split that differ (a trial
    test takes the trials as draws of one configuration). Runs recorded without an identity are not checked."""
    stopped = [str(run.directory) for run in runs if run.metrics.get("stop_reason") == "interrupted"]
    if stopped:
        raise ComparisonError(f"culture {name!r}: {', '.join(stopped)} stopped before finishing (interrupted); finish "
                              "it with its `emofx train` command and --resume, or move it out of the runs' folder")
    trials: dict[tuple, Path] = {}
    settings: dict[Path, dict[str, Any]] = {}
    for run in runs:
        identity = run.metrics.get("identity")
        if not isinstance(identity, dict):
            continue
        key = (identity.get("seed"), identity.get("trial"), identity.get("split_indices"))
        if key in trials:
            raise ComparisonError(f"culture {name!r}: {trials[key]} and {run.directory} are the same trial (seed "
                                  f"{key[0]}, trial {key[1]}): their test images would count twice; keep one")
        trials[key] = run.directory
        settings[run.directory] = trial_settings(identity)
    if settings:
        (first, mine), *others = settings.items()
        for directory, theirs in others:
            if differ := _other_settings(mine, theirs):
                raise ComparisonError(f"culture {name!r}: {first} and {directory} were trained with other settings "
                                      f"({'; '.join(differ[:3])}); a comparison's trials may differ only in seed "
                                      "and split: give the runs of one configuration")


def _culture_name(dataset: FaceDataset, fallback: str | os.PathLike) -> str:
    names = sorted(set(dataset.culture) - {""})
    return str(names[0]) if len(names) == 1 else Path(fallback).name


# ---------------------------------------------------------------------------- training trials
def culture_splits(dataset: FaceDataset, trials: int, split_kind: str, seed: int,
                   fractions: tuple[float, float, float]) -> list[Split]:
    """The split of every trial: ``make_split(dataset, split_kind, seed=seed, trial=k)``.

    ``split_kind="independent"`` gives every trial its own people (see :func:`independent_splits`).
    """
    if split_kind == INDEPENDENT:
        return independent_splits(dataset, trials, seed, fractions)
    return [make_split(dataset, split_kind, seed=seed, trial=k, fractions=fractions) for k in range(trials)]


def independent_splits(dataset: FaceDataset, trials: int, seed: int,
                       fractions: tuple[float, float, float]) -> list[Split]:
    """Trials on disjoint people: the subjects are dealt into ``trials`` groups, each split by subject.

    Trials that re-split one sample share its people, so under the null two samples' trials
    are not exchangeable (each sample's own people shift all of its trials, and so do models
    trained on them); trials drawn on disjoint people are independent draws from the culture,
    which makes the permutation over trials exact for a question about new people.
    """
    if not dataset.has_subjects:
        raise ComparisonError("independent trials need a subject id for every image (people are dealt to trials)")
    people = np.unique(dataset.subject)
    if len(people) < 3 * trials:
        raise ComparisonError(f"independent trials need at least 3 people per trial; {len(people)} people for "
                              f"{trials} trials (use fewer trials or a larger sample)")
    rng = np.random.default_rng([int(seed), 7919])
    group_of = dict(zip(rng.permutation(people), np.arange(len(people)) % trials))
    groups = np.array([group_of[s] for s in dataset.subject])
    splits = []
    for trial in range(trials):
        members = np.flatnonzero(groups == trial)
        inner = make_split(dataset.subset(members), "subject", seed=seed, trial=trial, fractions=fractions)
        splits.append(Split(members[inner.train], members[inner.val], members[inner.test], kind=INDEPENDENT,
                            seed=seed, trial=trial, fractions=fractions, n_images=len(dataset), grouped=True))
    return splits


def matched_training(datasets: Sequence[FaceDataset], splits: Sequence[Sequence[Split]], seed: int
                     ) -> list[list[np.ndarray]]:
    """The matched protocol: per trial, every culture's training part downsampled to one per-class count.

    The count is the smallest training count of any class in any culture for that trial, so
    size and class balance are identical across cultures (datasets must share their classes).
    """
    if len({d.classes for d in datasets}) != 1:
        raise ComparisonError("the matched protocol needs datasets with the same classes; restrict them to the "
                              "shared classes first (FaceDataset.restrict_classes)")
    chosen: list[list[np.ndarray]] = [[] for _ in datasets]
    for trial in range(len(splits[0])):
        parts = [split[trial].train for split in splits]
        count = min(int(np.bincount(d.labels[part], minlength=len(d.classes)).min())
                    for d, part in zip(datasets, parts))
        for c, (dataset, part) in enumerate(zip(datasets, parts)):
            chosen[c].append(balanced_subsample(dataset, part, count, seed=seed * 1009 + trial))
    return chosen


def matched_splits(datasets: Sequence[FaceDataset], split_kind: str, seed: int, trial: int,
                   fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[Split]:
    """The matched protocol's split of one trial for every culture (datasets with the same classes).

    Every culture keeps as many people as the culture with the fewest (drawn at random, per trial),
    is split by ``split_kind`` among them, and its training part is downsampled to the same per-class
    count (:func:`matched_training`): size, class balance and number of people are equal, so an
    accuracy difference cannot come from them. A pure function of the datasets, seed and trial, so
    each culture's run computes the same splits on its own.
    """
    if not all(d.has_subjects for d in datasets):
        raise ComparisonError("the matched protocol equalises people: every image needs a subject id")
    n_people = min(len(np.unique(d.subject)) for d in datasets)
    splits = []
    for c, dataset in enumerate(datasets):
        people = np.random.default_rng([int(seed), int(trial), c, 4111]).permutation(np.unique(dataset.subject))
        members = np.flatnonzero(np.isin(dataset.subject, people[:n_people]))
        inner = make_split(dataset.subset(members), split_kind, seed=seed, trial=trial, fractions=fractions)
        splits.append(Split(members[inner.train], members[inner.val], members[inner.test], kind=inner.kind,
                            seed=seed, trial=trial, fractions=fractions, n_images=len(dataset), grouped=inner.grouped))
    trains = matched_training(datasets, [[s] for s in splits], seed * 1009 + trial)
    return [replace(s, train=t[0]) for s, t in zip(splits, trains)]


def prepare_culture(sources: Mapping[str, str], culture: str, protocol: str = "collected", split_kind: str = "subject",
                    seed: int = 0, trial: int = 0, prepare: Mapping[str, Any] | None = None
                    ) -> tuple[FaceDataset, Split | None]:
    """One culture's dataset for a trial, and under the ``matched`` protocol the trial's matched split.

    ``sources`` maps every culture of the study to its :func:`emofx.data.sources.load_source` name;
    ``prepare`` holds that function's options (face size, landmarks, synthetic count and seed).
    ``collected`` returns the data as they are (the split is then made by the trainer); ``matched`` loads
    every culture, keeps the shared classes and returns this culture's part of :func:`matched_splits`.
    """
    from emofx.data.sources import load_source

    prepare = dict(prepare or {})
    if culture not in sources:
        raise ComparisonError(f"no dataset named for culture {culture!r}; the datasets name: {', '.join(sources)}")
    if protocol == "collected":
        return load_source(sources[culture], culture, **prepare), None
    if protocol != "matched":
        raise ComparisonError(f"protocol must be 'collected' or 'matched'; got {protocol!r}")
    if len(sources) < 2:
        raise ComparisonError("the matched protocol matches cultures: name the dataset of every culture, e.g. "
                              f"dataset: {{{culture}: {sources[culture]}, OTHER: ...}} (one file may serve several)")
    names = sorted(sources)
    datasets = [load_source(sources[name], name, **prepare) for name in names]
    classes = reduce(shared_classes, [d.classes for d in datasets])
    datasets = [d.restrict_classes(classes) for d in datasets]
    splits = matched_splits(datasets, split_kind, seed, trial)
    return datasets[names.index(culture)], splits[names.index(culture)]


def train_culture(dataset: FaceDataset, name: str, splits: Sequence[Split], train_config: TrainConfig,
                  model_config: ModelConfig | None = None, train_indices: Sequence[np.ndarray] | None = None,
                  progress: bool = True) -> CultureRuns:
    """Train one model per split (trial k uses ``train_config.seed`` and k); test on each split's test part.

    ``train_indices`` replaces each split's training part (e.g. the matched protocol's subsample).
    """
    models = []
    for trial in tqdm(range(len(splits)), desc=f"train {name}", disable=not progress, leave=False):
        train = splits[trial].train if train_indices is None else train_indices[trial]
        result = fit(dataset.subset(train), dataset.subset(splits[trial].val), train_config, model_config,
                     trial=trial, progress=False)
        models.append(result.model)
    return CultureRuns(name, dataset, tuple(models), tuple(np.asarray(s.test) for s in splits))


def train_pair(data_a: FaceDataset, data_b: FaceDataset, names: tuple[str, str], *, trials: int = 5,
               matched: bool = False, split_kind: str = "auto", fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               train_config: TrainConfig = TrainConfig(), model_config: ModelConfig | None = None,
               progress: bool = True) -> tuple[CultureRuns, CultureRuns]:
    """Train ``trials`` models per culture, optionally with the matched protocol.

    Culture b uses seed ``train_config.seed + 1`` (splits and training), so the cultures' trials
    are independent. With ``matched=True`` both datasets are restricted to their shared classes
    and every trial's training parts are downsampled to the same per-class count.
    """
    if matched:
        classes = shared_classes(data_a.classes, data_b.classes)
        data_a, data_b = data_a.restrict_classes(classes), data_b.restrict_classes(classes)
    configs = [train_config, replace(train_config, seed=train_config.seed + 1)]
    splits = [culture_splits(d, trials, split_kind, c.seed, fractions) for d, c in zip((data_a, data_b), configs)]
    indices = matched_training((data_a, data_b), splits, train_config.seed) if matched else [None, None]
    return tuple(train_culture(d, n, s, c, model_config, i, progress)  # type: ignore[return-value]
                 for d, n, s, c, i in zip((data_a, data_b), names, splits, configs, indices))

