"""Do cultures differ? Accuracy (H1) and features (H2) of two cultures' models, with calibrated tests.

The unit of every test is stated in its output:

- Accuracy (H1): the permutation test reassigns whole *trials* (each trial is a fresh split,
  initialisation and training, so trials are exchangeable under the null; 5 vs 5 trials is an
  exact test over 252 splits). The confidence interval resamples *test images*, stratified by
  trial and class, so it shows how precisely the given models' accuracies are measured.
- Which trials: the permutation over trials is exact only when every trial of both cultures
  is an exchangeable draw under the null. Trials that re-split one sample of people share
  those people (and models trained on them), so a sample's own people shift all its trials;
  ``split_kind="independent"`` (:func:`independent_splits`) gives every trial disjoint people,
  so the test speaks about new people of the culture, not only about new models.
- Features (H2): region shares, landmark proximity and the pixel-wise map are tested with
  trials as the unit by default (each trial's mean over its test images): every image of a
  culture is explained by that culture's models, so model-to-model variation shifts all of a
  culture's images together and images as the unit is anti-conservative (on simulated nulls
  its false-positive rate grows with that variation; trials stay at the nominal level, see
  benchmarks/calibration.py). ``unit="images"`` is available for comparison. The family of
  emotion x region tests is corrected with the Westfall-Young max-T by default, which uses
  the same trial permutations for every test and so is not limited to m times the smallest
  exact p-value as Holm is (5 vs 5 trials: 2/252 per test). Region-level rows pooled over
  emotions (emotion ``"all"``) join the same family (``CompareConfig.pooled_emotions``).
- Filters: each model's distribution of filter regions is one unit; models are permuted.
- Representations: linear CKA between the two cultures' models on the same probe images, with
  CKA between trials of one culture as the baseline.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from functools import reduce
from itertools import combinations, product
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emofx import stats
from emofx.checkpoint import TrainedModel, as_unit_float
from emofx.dataset import FaceDataset
from emofx.emotions import shared_classes
from emofx.model import ModelConfig
from emofx.regions import RegionMaps
from emofx.saliency import attribute
from emofx.splits import Split, balanced_subsample, make_split
from emofx.training import TrainConfig, fit

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
        saliency_method: an :func:`emofx.saliency.attribute` method; maps explain each image's
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
        seed: every random choice (permutations, bootstrap, probe images) flows from it.
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
        if not 0 < self.top_fraction <= 1:
            raise ComparisonError(f"top_fraction must lie in (0, 1]; got {self.top_fraction}")


@dataclass(frozen=True, eq=False)
class CultureRuns:
    """One culture's trials: its dataset, and per trial a trained model and its test images."""

    name: str
    dataset: FaceDataset
    models: tuple[TrainedModel, ...]
    test_indices: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise ComparisonError(f"culture {self.name!r} has no trained runs")
        if len(self.models) != len(self.test_indices):
            raise ComparisonError(f"culture {self.name!r}: {len(self.models)} models but "
                                  f"{len(self.test_indices)} test index sets")
        for model in self.models:
            if model.config.input_size != self.dataset.image_shape[0]:
                raise ComparisonError(
                    f"culture {self.name!r}: a model expects {model.config.input_size}px images but the dataset has "
                    f"{self.dataset.image_shape}; pass the dataset the runs were trained on"
                )

    @property
    def n_trials(self) -> int:
        return len(self.models)

    def test_set(self, trial: int) -> FaceDataset:
        return self.dataset.subset(self.test_indices[trial])

    @classmethod
    def load(cls, runs_dir: str | os.PathLike, dataset: FaceDataset, name: str | None = None) -> "CultureRuns":
        """The trial runs under ``runs_dir`` (see :mod:`emofx.runs`), evaluated on ``dataset``."""
        from emofx.runs import load_runs

        runs = load_runs(runs_dir)
        if not runs:
            raise FileNotFoundError(f"no trained runs under {runs_dir}; train some with `emofx train ... --out`")
        models = tuple(run.model for run in runs)
        tests = tuple(np.asarray(run.split.test, dtype=int) for run in runs)
        for run in runs:
            if run.split.n_images != len(dataset):
                raise ComparisonError(
                    f"run {run.directory} was split from {run.split.n_images} images but the dataset has "
                    f"{len(dataset)}; pass the dataset the runs were trained on"
                )
        return cls(name or _culture_name(dataset, runs_dir), dataset, models, tests)


def _culture_name(dataset: FaceDataset, fallback: str | os.PathLike) -> str:
    names = sorted(set(dataset.culture) - {""})
    return names[0] if len(names) == 1 else Path(fallback).name


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


# ---------------------------------------------------------------------------- H1: accuracy
def predictions_frame(runs: CultureRuns, on: CultureRuns | None = None,
                      classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (trial, test image): label, prediction and correctness.

    ``on`` (default ``runs`` itself) gives the images: its own trials' test images when it is
    ``runs``, else every image of the other culture. ``classes`` restricts images and predictions
    to shared classes (the prediction is the arg-max over those classes' logits).
    """
    target = on or runs
    classes = tuple(classes or runs.dataset.classes)
    model_columns = [runs.models[0].classes.index(c) for c in classes]
    rows = []
    for trial, model in enumerate(runs.models):
        indices = runs.test_indices[trial] if target is runs else np.arange(len(target.dataset))
        data = target.dataset.subset(indices)
        keep = np.isin(data.label_names, classes)
        data, indices = data.subset(keep), indices[keep]
        logits = np.concatenate([np.asarray(model.logits(data.images[s:s + 512]))
                                 for s in range(0, len(data), 512)]) if len(data) else np.zeros((0, len(model.classes)))
        predicted = np.asarray(classes)[logits[:, model_columns].argmax(axis=1)] if len(data) else np.zeros(0, str)
        rows.append(pd.DataFrame({
            "train_culture": runs.name, "test_culture": target.name, "trial": trial, "image": indices,
            "emotion": data.label_names, "predicted": predicted,
        }))
    frame = pd.concat(rows, ignore_index=True)
    frame["correct"] = (frame["emotion"] == frame["predicted"]).astype(float)
    return frame


def trial_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and balanced accuracy per (train culture, test culture, trial)."""
    keys = ["train_culture", "test_culture", "trial"]
    per_class = predictions.groupby(keys + ["emotion"])["correct"].mean()
    return pd.DataFrame({
        "accuracy": predictions.groupby(keys)["correct"].mean(),
        "balanced_accuracy": per_class.groupby(level=keys).mean(),
        "n_images": predictions.groupby(keys).size(),
    }).reset_index()


def class_errors(predictions: pd.DataFrame) -> pd.DataFrame:
    """Error rate per (train culture, trial, emotion) on the culture's own test images."""
    own = predictions[predictions["train_culture"] == predictions["test_culture"]]
    errors = 1.0 - own.groupby(["train_culture", "trial", "emotion"])["correct"].mean()
    return errors.rename("error").reset_index().rename(columns={"train_culture": "culture"})


def _metric_weights(predictions: pd.DataFrame, metric: str) -> np.ndarray:
    """Per-image weights whose weighted mean of correctness is the mean over trials of ``metric``."""
    if metric == "accuracy":
        sizes = predictions.groupby("trial")["correct"].transform("size")
    else:
        n_classes = predictions.groupby("trial")["emotion"].transform("nunique")
        sizes = predictions.groupby(["trial", "emotion"])["correct"].transform("size") * n_classes
    return (len(predictions) / (sizes * predictions["trial"].nunique())).to_numpy()


def accuracy_test(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, config: CompareConfig,
                  metric: str = "accuracy") -> dict[str, Any]:
    """Difference in ``metric`` (a minus b): permutation over trials, bootstrap CI over test images."""
    if metric not in METRICS:
        raise ComparisonError(f"metric must be one of {METRICS}; got {metric!r}")
    per_trial = [trial_metrics(p)[metric].to_numpy() for p in (predictions_a, predictions_b)]
    test = stats.permutation_test(per_trial[0], per_trial[1], n_permutations=config.n_permutations, seed=config.seed)
    values = [p["correct"].to_numpy() * _metric_weights(p, metric) for p in (predictions_a, predictions_b)]
    strata = [(p["trial"].astype(str) + "/" + p["emotion"]).to_numpy() for p in (predictions_a, predictions_b)]
    interval = stats.bootstrap_difference(values[0], values[1], strata_a=strata[0], strata_b=strata[1],
                                          n_boot=config.n_boot, seed=config.seed)
    return {
        "metric": metric,
        "culture_a": float(per_trial[0].mean()),
        "culture_b": float(per_trial[1].mean()),
        "diff": float(per_trial[0].mean() - per_trial[1].mean()),
        "effect_size": float(stats.hedges_g(per_trial[0], per_trial[1])) if len(per_trial[0]) + len(per_trial[1]) > 2
        else float("nan"),
        "p_value": float(test.p_value),
        "p_unit": f"trials ({len(per_trial[0])} vs {len(per_trial[1])}; "
                  f"{'exact over' if test.exact else 'Monte-Carlo,'} {test.n_permutations} splits)",
        "ci_low": interval.low,
        "ci_high": interval.high,
        "ci_unit": f"test images, stratified by trial and class ({config.n_boot} resamples, "
                   f"{interval.confidence:.0%} percentile interval)",
    }


def class_error_tests(errors: pd.DataFrame, culture_a: str, culture_b: str, config: CompareConfig) -> pd.DataFrame:
    """Per-class error difference (a minus b) with a permutation test over trials, corrected over classes."""
    wide = errors.pivot_table(index=["culture", "trial"], columns="emotion", values="error")
    emotions = [e for e in wide.columns if wide[e].notna().all()]
    a, b = wide.loc[culture_a, emotions].to_numpy(), wide.loc[culture_b, emotions].to_numpy()
    test = stats.permutation_test(a, b, statistic="welch_t", n_permutations=config.n_permutations, seed=config.seed)
    adjusted = test.p_fwer if config.correction == "maxT" else stats.adjust(test.p_value, config.correction)
    return pd.DataFrame({
        "emotion": emotions, "error_a": a.mean(axis=0), "error_b": b.mean(axis=0), "diff": a.mean(axis=0) - b.mean(axis=0),
        "p_value": test.p_value, "p_adjusted": adjusted, "correction": config.correction, "unit": "trials",
    })


def transfer_matrix(cultures: Sequence[CultureRuns]) -> pd.DataFrame:
    """Accuracy of each culture's models on each culture's images, on the classes all share.

    A model is scored on its own culture's test images and on every image of another culture
    (none of which it saw). Rows: train_culture, test_culture, trial, accuracy, balanced_accuracy.
    """
    classes = reduce(shared_classes, [c.dataset.classes for c in cultures])
    if len(classes) < 2:
        raise ComparisonError(f"the cultures share fewer than 2 classes ({list(classes)}); nothing to transfer")
    frames = [trial_metrics(predictions_frame(train, test, classes)) for train, test in product(cultures, cultures)]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- H2: saliency
def normalised_saliency(maps: np.ndarray) -> np.ndarray:
    """|map| scaled to unit mass per image (a map with no mass becomes uniform)."""
    mass = np.abs(np.asarray(maps, dtype=np.float64))
    totals = mass.reshape(len(mass), -1).sum(axis=1)
    flat = np.full(mass.shape, 1.0 / np.prod(mass.shape[1:]))
    return np.where(totals[:, None, None] > 0, mass / np.where(totals > 0, totals, 1)[:, None, None], flat)


def region_shares(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each image's saliency mass (N, H, W) inside each region mask (N, R, H, W): (N, R)."""
    return np.einsum("nhw,nrhw->nr", normalised_saliency(maps), np.asarray(masks, dtype=np.float64))


def landmark_distance(maps: np.ndarray, landmarks: np.ndarray, top_fraction: float) -> np.ndarray:
    """Mean distance (pixels) from each image's top ``top_fraction`` most salient pixels to the nearest landmark.

    ``landmarks`` is (N, L, 2) in (x, y) pixel coordinates; NaN landmarks are skipped (an image
    with none gets NaN). The paper's proposed proximity measure (section 5): small when high
    gradients sit on facial landmarks.
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64))
    n, height, width = mass.shape
    k = max(1, int(round(top_fraction * height * width)))
    top = np.argpartition(-mass.reshape(n, -1), k - 1, axis=1)[:, :k]
    points = np.stack([top % width, top // width], axis=-1).astype(np.float64)  # (N, k, 2) as (x, y)
    distances = np.linalg.norm(points[:, :, None, :] - np.asarray(landmarks, np.float64)[:, None, :, :], axis=-1)
    distances = np.where(np.isnan(distances), np.inf, distances).min(axis=2)  # missing landmarks (NaN) are skipped
    return np.where(np.isinf(distances), np.nan, distances).mean(axis=1)


def saliency_measures(runs: CultureRuns, regions: RegionMaps, config: CompareConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Per (trial, test image): region shares and landmark proximity; plus every map (normalised).

    ``regions`` holds the masks and landmarks of every image of ``runs.dataset``.
    Returns the tidy table and the normalised maps in the table's row order.
    """
    frames, all_maps = [], []
    for trial in tqdm(range(runs.n_trials), desc=f"saliency {runs.name}", disable=not config.progress, leave=False):
        indices = runs.test_indices[trial]
        data = runs.dataset.subset(indices)
        maps = attribute(runs.models[trial], data.images, data.labels, method=config.saliency_method)
        shares = region_shares(maps, regions.masks[indices])
        frame = pd.DataFrame(shares, columns=list(regions.region_names))
        frame.insert(0, "emotion", data.label_names)
        frame.insert(0, "image", indices)
        frame.insert(0, "trial", trial)
        frame.insert(0, "culture", runs.name)
        frame["landmark_distance"] = landmark_distance(maps, regions.landmarks[indices], config.top_fraction)
        frames.append(frame)
        all_maps.append(normalised_saliency(maps).astype(np.float32))
    return pd.concat(frames, ignore_index=True), np.concatenate(all_maps)


def unit_values(measures: pd.DataFrame, columns: Sequence[str], unit: str, pooled: bool = False) -> pd.DataFrame:
    """Average ``columns`` per test unit: per (culture, trial, emotion) or per (culture, image, emotion).

    ``pooled`` adds one row per unit with emotion :data:`ALL_EMOTIONS`: the mean over that
    unit's emotions (each emotion weighted equally), i.e. the region-level measure.
    """
    key = "trial" if unit == "trials" else "image"
    values = measures.groupby(["culture", key, "emotion"], as_index=False)[list(columns)].mean()
    if not pooled:
        return values
    overall = values.groupby(["culture", key], as_index=False)[list(columns)].mean()
    return pd.concat([values, overall.assign(emotion=ALL_EMOTIONS)], ignore_index=True)


def measure_tests(measures: pd.DataFrame, culture_a: str, culture_b: str, columns: Sequence[str],
                  config: CompareConfig) -> pd.DataFrame:
    """Per emotion and measure: difference (a minus b), Hedges' g, permutation p and corrected p.

    The statistic is Welch's t, so that the max-statistic correction can compare measures of
    different spread. With trials as the unit every (emotion, measure) is tested on the same
    trial assignments, which gives the Westfall-Young max-T adjusted p-values; ``holm``/``bh``
    adjust the per-test permutation p-values instead. The family is every row of the table.
    """
    values = unit_values(measures, columns, config.unit, pooled=config.pooled_emotions)
    if config.unit == "trials":
        wide = values.pivot_table(index=["culture", "trial"], columns="emotion", values=list(columns))
        wide = wide.swaplevel(axis=1).dropna(axis=1)
        wide = wide[sorted(wide.columns, key=lambda c: (c[0] == ALL_EMOTIONS, c[0], list(columns).index(c[1])))]
        groups = [(wide.columns, wide.loc[culture].to_numpy()) for culture in (culture_a, culture_b)]
        tests = [(groups[0][0], groups[0][1], groups[1][1])]
    else:
        tests = []
        for emotion, group in values.groupby("emotion", sort=False):
            group = group.dropna(subset=list(columns))
            a = group.loc[group["culture"] == culture_a, list(columns)].to_numpy()
            b = group.loc[group["culture"] == culture_b, list(columns)].to_numpy()
            tests.append(([(emotion, c) for c in columns], a, b))
    rows = []
    for labels, a, b in tests:
        if len(a) < 2 or len(b) < 2:
            continue
        test = stats.permutation_test(a, b, statistic="welch_t", n_permutations=config.n_permutations,
                                      seed=config.seed)
        effect = stats.hedges_g(a, b)
        for j, (emotion, column) in enumerate(labels):
            rows.append({"emotion": emotion, "region": column, "mean_a": a[:, j].mean(), "mean_b": b[:, j].mean(),
                         "diff": a[:, j].mean() - b[:, j].mean(), "effect_size": effect[j],
                         "p_value": test.p_value[j], "p_max_t": test.p_fwer[j],
                         "unit": config.unit, "n_a": len(a), "n_b": len(b), "exact": test.exact})
    table = pd.DataFrame(rows)
    if table.empty:
        raise ComparisonError(f"no emotion has at least 2 {config.unit} per culture to test")
    max_t = table.pop("p_max_t").to_numpy()
    adjusted = max_t if config.correction == "maxT" else stats.adjust(table["p_value"].to_numpy(), config.correction)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", adjusted)
    table.insert(table.columns.get_loc("p_adjusted") + 1, "correction", config.correction)
    return table


def pixel_difference(measures: pd.DataFrame, maps: np.ndarray, culture_a: str, culture_b: str,
                     config: CompareConfig) -> dict[str, np.ndarray]:
    """Mean saliency difference map (a minus b) with a max-statistic (Welch t) FWER-corrected test per pixel.

    The unit follows ``config.unit``: each trial's mean map over its test images, or each image's
    map averaged over the trials that tested it.
    """
    key = "trial" if config.unit == "trials" else "image"
    groups = []
    for culture in (culture_a, culture_b):
        rows = measures.index[measures["culture"] == culture].to_numpy()
        labels = measures.loc[rows, key].to_numpy()
        units = np.unique(labels)
        groups.append(np.stack([maps[rows[labels == u]].mean(axis=0) for u in units]))
    test = stats.permutation_test(groups[0], groups[1], statistic="welch_t",
                                  n_permutations=min(config.n_permutations, 999), seed=config.seed)
    return {"difference": groups[0].mean(axis=0) - groups[1].mean(axis=0), "t": test.statistic,
            "p_fwer": test.p_fwer, "mean_a": groups[0].mean(axis=0), "mean_b": groups[1].mean(axis=0)}


# ---------------------------------------------------------------------------- H2: filters
def filter_regions(model: TrainedModel, images: np.ndarray, masks: np.ndarray, top_k: int) -> np.ndarray:
    """For every last-conv filter, the region (index into masks' R axis) where it fires hardest.

    A filter's ``top_k`` largest activations over all images and positions each vote with the
    region under its receptive-field centre in that image; dead filters (never active) get -1.
    """
    features = np.concatenate([
        np.asarray(model.module().apply({"params": model.params}, as_unit_float(images[s:s + 256]),
                                        method="conv_features"))
        for s in range(0, len(images), 256)
    ])  # (N, h, w, F)
    n, h, w, n_filters = features.shape
    height, width = images.shape[1:]
    flat = features.reshape(-1, n_filters)
    k = min(top_k, len(flat))
    top = np.argpartition(-flat, k - 1, axis=0)[:k]  # (k, F) positions in (N, h, w) order
    image, rest = np.divmod(top, h * w)
    row, col = np.divmod(rest, w)
    centre_y = ((row + 0.5) * height / h).astype(int).clip(0, height - 1)
    centre_x = ((col + 0.5) * width / w).astype(int).clip(0, width - 1)
    votes = masks[image, :, centre_y, centre_x]  # (k, F, R)
    winner = votes.sum(axis=0).argmax(axis=1)
    dead = flat.max(axis=0) <= 0
    return np.where(dead, -1, winner)


def filter_table(runs: CultureRuns, regions: RegionMaps, config: CompareConfig) -> pd.DataFrame:
    """Per (trial, filter): the face region of the filter's strongest responses on the trial's test images."""
    frames = []
    for trial in range(runs.n_trials):
        indices = runs.test_indices[trial]
        winners = filter_regions(runs.models[trial], runs.dataset.images[indices], regions.masks[indices],
                                 config.filter_top_k)
        names = np.asarray(list(regions.region_names) + ["dead"])[winners]
        frames.append(pd.DataFrame({"culture": runs.name, "trial": trial, "filter": np.arange(len(winners)),
                                    "region": names}))
    return pd.concat(frames, ignore_index=True)


def filter_test(filters: pd.DataFrame, culture_a: str, culture_b: str, region_names: Sequence[str],
                config: CompareConfig) -> dict[str, Any]:
    """Do the cultures' models place their filters in different regions? Units: models (trials)."""
    live = filters[filters["region"] != "dead"]
    shares = (live.groupby(["culture", "trial"])["region"].value_counts(normalize=True)
              .unstack(fill_value=0.0).reindex(columns=list(region_names), fill_value=0.0))
    distance, p = stats.distribution_test(shares.loc[culture_a].to_numpy(), shares.loc[culture_b].to_numpy(),
                                          n_permutations=config.n_permutations, seed=config.seed)
    return {"total_variation": distance, "p_value": p, "unit": "models (trials)",
            "share_a": shares.loc[culture_a].mean().to_dict(), "share_b": shares.loc[culture_b].mean().to_dict()}


# ---------------------------------------------------------------------------- representations
def probe_images(a: CultureRuns, b: CultureRuns, per_culture: int, seed: int) -> np.ndarray:
    """The same images for every model: up to ``per_culture`` from each culture, seeded."""
    rng = np.random.default_rng(seed)
    picks = [d.images[np.sort(rng.permutation(len(d))[:per_culture])] for d in (a.dataset, b.dataset)]
    return np.concatenate(picks)


def cka_table(a: CultureRuns, b: CultureRuns, config: CompareConfig) -> pd.DataFrame:
    """Linear CKA of penultimate activations for every pair of models: between and within cultures."""
    images = probe_images(a, b, config.cka_images, config.seed)
    activations = {}
    for culture in (a, b):
        for trial, model in enumerate(culture.models):
            penultimate = model.module().apply({"params": model.params}, as_unit_float(images), method="penultimate")
            activations[(culture.name, trial)] = np.asarray(jax.device_get(penultimate))
    keys = list(activations)
    rows = []
    for first, second in combinations(keys, 2):
        kind = "between" if first[0] != second[0] else f"within_{'a' if first[0] == a.name else 'b'}"
        try:
            value = stats.linear_cka(activations[first], activations[second])
        except stats.StatsInputError:
            value = float("nan")  # a model whose representation is constant on the probe images
        rows.append({"culture_1": first[0], "trial_1": first[1], "culture_2": second[0], "trial_2": second[1],
                     "kind": kind, "cka": value})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the whole comparison
@dataclass(frozen=True, eq=False)
class Comparison:
    """Everything measured between two cultures: tidy tables, test results and maps."""

    culture_a: str
    culture_b: str
    config: CompareConfig
    tables: dict[str, pd.DataFrame]
    tests: dict[str, Any]
    pixel: dict[str, np.ndarray] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def accuracy(self) -> dict[str, Any]:
        return self.tests["accuracy"]

    @property
    def region_tests(self) -> pd.DataFrame:
        return self.tables["region_tests"]

    def significant(self, alpha: float = 0.05) -> pd.DataFrame:
        """Region tests whose corrected p-value is below ``alpha``."""
        return self.region_tests[self.region_tests["p_adjusted"] < alpha]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``emofx compare`` writes to summary.json)."""
        cka = self.tables["cka"].groupby("kind")["cka"].mean()
        return _json_ready({
            "cultures": {"a": self.culture_a, "b": self.culture_b},
            "shared_classes": sorted(self.tables["class_errors"]["emotion"].unique()),
            "config": asdict(self.config),
            "accuracy": self.tests["accuracy"],
            "balanced_accuracy": self.tests["balanced_accuracy"],
            "region_tests": self.region_tests[["emotion", "region", "diff", "effect_size", "p_value", "p_adjusted",
                                               "unit"]].to_dict(orient="records"),
            "proximity_tests": self.tables["proximity_tests"].to_dict(orient="records"),
            "class_error_tests": self.tables["class_error_tests"].to_dict(orient="records"),
            "pixelwise": {"unit": self.config.unit, "correction": "max-statistic (Welch t) permutation, FWER",
                          "min_p_fwer": float(self.pixel["p_fwer"].min()),
                          "pixels_p_fwer_below_0.05": int((self.pixel["p_fwer"] < 0.05).sum())},
            "filters": self.tests["filters"],
            "cka": {"between": cka.get("between"), "within_a": cka.get("within_a"), "within_b": cka.get("within_b")},
            "notes": list(self.notes),
        })

    def save(self, out: str | os.PathLike, *, figures: bool = True) -> list[Path]:
        """Write summary.json, one CSV per table, the pixel maps (.npz) and figures into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, table in self.tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
            written.append(out / f"{name}.csv")
        np.savez_compressed(out / "pixel_difference.npz", **self.pixel)
        written.append(out / "pixel_difference.npz")
        (out / "summary.json").write_text(json.dumps(self.summary(), indent=2))
        written.append(out / "summary.json")
        if figures:
            from emofx.plotting.comparison import save_comparison_figures

            written += save_comparison_figures(self, out)
        return written


def compare(a: CultureRuns, b: CultureRuns, regions_a: RegionMaps, regions_b: RegionMaps,
            config: CompareConfig = CompareConfig()) -> Comparison:
    """Compare two cultures' trial runs: H1 accuracy, transfer, H2 regions/proximity/pixels/filters, CKA."""
    if a.name == b.name:
        raise ComparisonError(f"both cultures are named {a.name!r}; give them distinct names")
    if tuple(regions_a.region_names) != tuple(regions_b.region_names):
        raise ComparisonError(f"the cultures' region sets differ: {list(regions_a.region_names)} vs {list(regions_b.region_names)}")
    if a.dataset.image_shape != b.dataset.image_shape:
        raise ComparisonError(f"the cultures' images differ in size ({a.dataset.image_shape} vs "
                              f"{b.dataset.image_shape}); prepare both datasets with the same --size")
    classes = shared_classes(a.dataset.classes, b.dataset.classes)
    if len(classes) < 2:
        raise ComparisonError(f"the cultures share fewer than 2 classes ({list(classes)}); nothing to compare")
    steps = tqdm(total=5, desc="compare", disable=not config.progress)

    predictions = [predictions_frame(c, classes=classes) for c in (a, b)]
    errors = pd.concat([class_errors(p) for p in predictions], ignore_index=True)
    tests = {"accuracy": accuracy_test(*predictions, config),
             "balanced_accuracy": accuracy_test(*predictions, config, metric="balanced_accuracy")}
    transfer = transfer_matrix([a, b])
    steps.update()

    measured = [saliency_measures(c, r, config) for c, r in ((a, regions_a), (b, regions_b))]
    measures = pd.concat([m[0] for m in measured], ignore_index=True)
    maps = np.concatenate([m[1] for m in measured])
    region_names = list(regions_a.region_names)
    steps.update()
    region_tests = measure_tests(measures, a.name, b.name, region_names, config)
    proximity_tests = measure_tests(measures, a.name, b.name, ["landmark_distance"], config)
    pixel = pixel_difference(measures, maps, a.name, b.name, config)
    steps.update()

    filters = pd.concat([filter_table(c, r, config) for c, r in ((a, regions_a), (b, regions_b))], ignore_index=True)
    tests["filters"] = filter_test(filters, a.name, b.name, region_names, config)
    steps.update()
    cka = cka_table(a, b, config)
    steps.update()
    steps.close()

    notes = (f"regions: {regions_a.method} ({a.name}), {regions_b.method} ({b.name})",)
    tables = {
        "trial_metrics": pd.concat([trial_metrics(p) for p in predictions], ignore_index=True),
        "class_errors": errors,
        "class_error_tests": class_error_tests(errors, a.name, b.name, config),
        "transfer": transfer,
        "saliency_measures": measures,
        "region_tests": region_tests,
        "proximity_tests": proximity_tests,
        "filters": filters,
        "cka": cka,
    }
    return Comparison(a.name, b.name, config, tables, tests, pixel, notes)


def _json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
