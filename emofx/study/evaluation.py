"""Evaluating classifiers: metrics, confusion matrices and misclassification rates as DataFrames.

A model can be evaluated on any dataset: only the classes that model and data share are
scored (probabilities renormalised over them) and the dropped classes are named; this is
how cross-culture transfer is measured. Trials aggregate the way the paper reports them:
confusion counts averaged over trials (Tables 2-3) and per-class misclassification
percentages (Table 4), each with the standard deviation across trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.dedup import content_digest
from emofx.data.emotions import ordered_classes, shared_classes
from emofx.nets.checkpoint import TrainedModel, as_unit_float
from emofx.study.stats import (BootstrapInterval, PairedAccuracy, mcnemar_test, percentile_interval,
                               resampled_cluster_totals)

TOTAL = "total"


class EvaluationError(ValueError):
    """A model cannot be evaluated on the given data."""


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Predictions of a model on labelled images, over the classes it was scored on.

    Attributes:
        classes: the scored classes (shared by model and data), in canonical order.
        labels: true class index per image (N,), into ``classes``.
        probabilities: (N, C) probabilities over ``classes``.
        dropped_model_classes: model classes absent from the data (their probability mass removed).
        dropped_data_classes: data classes the model does not know -> number of images left out.
        images_digest: a 64-bit digest of the scored images' pixels (None where only labels were given), so
            that two evaluations compared image by image are known to have scored the same images.
        positions: each scored image's place in the dataset given to :func:`evaluate` (images of classes the
            model lacks are not scored; default 0..N-1), the index of :meth:`predictions_frame`.
    """

    classes: tuple[str, ...]
    labels: np.ndarray
    probabilities: np.ndarray
    dropped_model_classes: tuple[str, ...] = ()
    dropped_data_classes: Mapping[str, int] = field(default_factory=dict)
    images_digest: int | None = None
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.positions is None:
            object.__setattr__(self, "positions", np.arange(len(self.labels)))

    @property
    def predictions(self) -> np.ndarray:
        """The most probable class of each image."""
        return self.probabilities.argmax(axis=1) if len(self.labels) else np.zeros(0, int)

    @property
    def n(self) -> int:
        """How many images were scored."""
        return int(len(self.labels))

    @property
    def accuracy(self) -> float:
        """The share of images predicted right (NaN for none)."""
        return float(np.mean(self.predictions == self.labels)) if self.n else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes that have test images."""
        recall = self._recall()
        return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that occur in the truth or the predictions."""
        counts = self.confusion(totals=False).to_numpy()
        tp, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
        present = (support + predicted) > 0
        f1 = 2 * tp / np.maximum(support + predicted, 1)
        return float(f1[present].mean()) if present.any() else float("nan")

    def _recall(self) -> np.ndarray:
        counts = self.confusion(totals=False).to_numpy()
        support = counts.sum(axis=1)
        return np.where(support > 0, np.diag(counts) / np.maximum(support, 1), np.nan)

    def confusion(self, totals: bool = True) -> pd.DataFrame:
        """Counts with rows = true class, columns = predicted class (plus a ``total`` row and column)."""
        return confusion_counts(self.labels, self.predictions, self.classes, totals=totals)

    def per_class_error(self) -> pd.Series:
        """% of each class's images misclassified, and the overall % as ``total`` (the quantity of the
        paper's Table 4; see :func:`misclassification_table` for how the two average over trials)."""
        values = 100.0 * (1.0 - self._recall())
        return pd.Series([*values, 100.0 * (1.0 - self.accuracy)], index=[*self.classes, TOTAL],
                         name="misclassified_percent")

    def predictions_frame(self) -> pd.DataFrame:
        """One row per scored image, indexed by its place in the dataset (``image``, as
        :meth:`FaceDataset.to_frame`, so the two join): true and predicted emotion, then each class's probability."""
        names = np.asarray(self.classes)
        frame = pd.DataFrame({"true": names[self.labels], "predicted": names[self.predictions]},
                             index=pd.Index(self.positions, name="image"))
        for j, c in enumerate(self.classes):
            frame[f"p_{c}"] = self.probabilities[:, j].astype(np.float64)
        return frame

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics (what metrics.json and ``emofx evaluate --json`` report)."""
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "classes": list(self.classes),
            "confusion": self.confusion(totals=False).to_numpy().tolist(),
            "per_class_error": {k: _json_float(v) for k, v in self.per_class_error().items()},
            "dropped_model_classes": list(self.dropped_model_classes),
            "dropped_data_classes": dict(self.dropped_data_classes),
        }


def confusion_counts(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str],
                     totals: bool = True) -> pd.DataFrame:
    """Confusion counts as a DataFrame (rows true, columns predicted), optionally with totals."""
    k = len(classes)
    counts = np.bincount(np.asarray(labels) * k + np.asarray(predictions), minlength=k * k).reshape(k, k)
    frame = pd.DataFrame(counts, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))
    return with_totals(frame) if totals else frame


def with_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Add a ``total`` column (row sums) and a ``total`` row (column sums)."""
    out = frame.copy()
    out[TOTAL] = out.sum(axis=1)
    out.loc[TOTAL] = out.sum(axis=0)
    return out


def evaluate_probabilities(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> Evaluation:
    """An :class:`Evaluation` from true labels and predicted probabilities over ``classes``."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    if labels.size and labels.dtype.kind not in "iu":
        raise EvaluationError(f"labels must be class indices into classes (integers); got {labels.dtype} values (class "
                              "names: FaceDataset.labels holds the indices)")
    if probabilities.shape != (len(labels), len(classes)):
        raise EvaluationError(f"probabilities have shape {probabilities.shape}; expected {(len(labels), len(classes))}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise EvaluationError(f"labels must lie in [0, {len(classes)}) (one per class given); got "
                              f"{labels.min()}..{labels.max()}")
    if not np.isfinite(probabilities).all():
        raise EvaluationError(f"{int((~np.isfinite(probabilities)).any(axis=1).sum())} of {len(labels)} images have "
                              "probabilities that are not finite (NaN or infinite: a model that diverged?)")
    return Evaluation(tuple(classes), labels.astype(int), probabilities)


def average_evaluations(evaluations: Sequence[Evaluation]) -> Evaluation:
    """The evaluation of an ensemble: its members' probabilities averaged image by image.

    Averaging models trained from different starting points (seeds, pre-trained models) cancels part
    of what each learned by chance. The members must have scored the same images on the same
    classes (equal labels, in the same order), e.g. one run's test split evaluated by each model."""
    if not evaluations:
        raise EvaluationError("an ensemble needs at least one evaluation")
    first = evaluations[0]
    for k, other in enumerate(evaluations[1:], start=1):
        _require_same_images(first, other, f"ensemble member {k}", "member 0")
    dropped_model_classes = tuple(dict.fromkeys(c for e in evaluations for c in e.dropped_model_classes))
    members = np.stack([e.probabilities for e in evaluations])
    mean = np.sort(members, axis=0).mean(axis=0)  # each image's values summed in sorted order: any member order
    return Evaluation(first.classes, first.labels, mean, dropped_model_classes, first.dropped_data_classes,
                      first.images_digest, first.positions)


def compare_evaluations(a: Evaluation, b: Evaluation, confidence: float = 0.95,
                        people: np.ndarray | None = None) -> PairedAccuracy:
    """Whether ``a`` is more accurate than ``b`` on the images both scored (McNemar's test, image by image;
    :func:`emofx.study.stats.mcnemar_test`), e.g. two recipes, or a model and an ensemble, on one test split.
    ``people`` (each scored image's subject, :func:`people_of`) makes the test and interval count a person's
    images as one unit of evidence, not as many."""
    _require_same_images(a, b, "the second evaluation", "the first")
    return mcnemar_test(a.predictions == a.labels, b.predictions == b.labels, confidence, clusters=people)


@dataclass(frozen=True)
class ScoreInterval:
    """Wilson's score interval of a proportion of independent trials (an accuracy over images)."""

    estimate: float
    low: float
    high: float
    confidence: float


def wilson_interval(right: int, n: int, confidence: float = 0.95) -> ScoreInterval:
    """Wilson's score interval for ``right`` of ``n``: never of zero width, and near its nominal coverage also
    where the share is close to 0 or 1 (a model naming one class is all right on it and all wrong elsewhere)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    share = right / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return ScoreInterval(float(share), float(max(centre - half, 0.0)), float(min(centre + half, 1.0)), confidence)


def accuracy_interval(evaluation: Evaluation, people: np.ndarray | None = None, n_boot: int = 2000,
                      seed: int = 0) -> BootstrapInterval | ScoreInterval:
    """How precisely ``evaluation``'s accuracy is measured, the model fixed: the 95% percentile interval over
    its images' people redrawn with all of their images (``people``, :func:`people_of`), else Wilson's score
    interval over the images taken as independent (a percentile bootstrap has no width where each class is all
    right or all wrong)."""
    if not evaluation.n:
        raise EvaluationError("no image was scored: an accuracy needs at least one")
    if people is not None and np.shape(people) != (evaluation.n,):
        raise EvaluationError(f"people of shape {np.shape(people)}: give one person per scored image "
                              f"({evaluation.n}; evaluation.people_of)")
    if n_boot < 1:
        raise EvaluationError(f"n_boot must be at least 1; got {n_boot}")
    correct = evaluation.predictions == evaluation.labels
    if people is None:
        return wilson_interval(int(correct.sum()), evaluation.n)
    right, images = resampled_class_totals(correct, evaluation.labels, len(evaluation.classes), people, n_boot,
                                           np.random.default_rng(seed))
    return percentile_interval(evaluation.accuracy, right.sum(axis=1) / images.sum(axis=1))


def resampled_class_totals(correct: np.ndarray, labels: np.ndarray, n_classes: int, people: np.ndarray | None,
                           n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Right answers and images per class, (n_boot, n_classes) each, of ``n_boot`` resamples of the scored images:
    their people redrawn with all of their images (``people``), else the images of each class (counts kept)."""
    labels = np.asarray(labels)
    clusters = np.arange(len(labels)) if people is None else np.unique(people, return_inverse=True)[1]
    cells = np.zeros((clusters.max() + 1, 2 * n_classes))
    np.add.at(cells, (clusters, labels), np.asarray(correct, dtype=np.float64))
    np.add.at(cells, (clusters, n_classes + labels), 1.0)
    blocks = labels if people is None else np.zeros(len(cells), dtype=int)
    resampled = resampled_cluster_totals(cells, blocks, n_boot, rng)
    return resampled[:, :n_classes], resampled[:, n_classes:]


def scored_images(dataset: FaceDataset, evaluation: Evaluation) -> FaceDataset:
    """The images of ``dataset`` that ``evaluation`` scored, in its order: those of the classes the model knows."""
    return dataset.restrict_classes(evaluation.classes) if evaluation.dropped_data_classes else dataset


def people_of(dataset: FaceDataset, evaluation: Evaluation) -> np.ndarray | None:
    """Each scored image's subject, where every one is known and there are at least two people (else None:
    compare image by image)."""
    subjects = scored_images(dataset, evaluation).subject
    return subjects if len(subjects) and (subjects != "").all() and len(set(subjects)) > 1 else None


def _require_same_images(first: Evaluation, other: Evaluation, other_name: str, first_name: str) -> None:
    if other.classes != first.classes or not np.array_equal(other.labels, first.labels):
        raise EvaluationError(f"{other_name} scored other images or classes than {first_name} "
                              f"({other.n} images over {list(other.classes)} vs {first.n} over "
                              f"{list(first.classes)}); evaluate both on the same images")
    if None not in (first.images_digest, other.images_digest) and first.images_digest != other.images_digest:
        raise EvaluationError(f"{other_name} scored other images than {first_name}: the same {first.n} labels in the "
                              "same order, but other pixels; evaluate both on the same images")


def evaluate(model: TrainedModel, dataset: FaceDataset, batch_size: int = 512,
             flip_average: bool | None = None, progress: bool = False) -> Evaluation:
    """Evaluate ``model`` on ``dataset``, on the classes both have, naming the ones dropped.

    ``flip_average``: average each image's probabilities with its mirror image's (test-time
    augmentation, part of the ``strong`` recipe); ``None``: as the model's recipe evaluates.
    ``progress``: a bar while a large set is scored (:meth:`TrainedModel.predict_proba`)."""
    if not isinstance(model, TrainedModel) or not isinstance(dataset, FaceDataset):
        raise TypeError(f"evaluate takes a TrainedModel (a run's .model) and a FaceDataset (FaceDataset.load(path)); "
                        f"got {type(model).__name__} and {type(dataset).__name__}")
    side = model.config.input_size
    if dataset.image_shape != (side, side):
        h, w = dataset.image_shape
        raise EvaluationError(f"dataset images are {h}x{w} but the model takes {side}x{side}; "
                              f"prepare the dataset with --size {side}")
    scored = shared_classes(model.classes, dataset.classes)
    if not scored:
        raise EvaluationError(f"the model's classes {list(model.classes)} and the dataset's classes "
                              f"{list(dataset.classes)} share no class: nothing to evaluate")
    counts = dataset.counts()
    dropped_data = {c: counts[c] for c in dataset.classes if c not in scored}
    data = dataset.restrict_classes(scored) if dropped_data else dataset
    if not len(data):
        raise EvaluationError(f"no image of the dataset ({len(dataset)} images) shows a class the model knows "
                              f"({', '.join(scored)}): nothing to evaluate")
    probabilities = model.predict_proba(data.images, batch_size, flip_average=flip_average, progress=progress)
    columns = [model.classes.index(c) for c in scored]
    kept = probabilities[:, columns]
    kept = kept / np.maximum(kept.sum(axis=1, keepdims=True), 1e-30)
    return Evaluation(
        classes=scored,
        labels=data.labels,
        probabilities=kept,
        dropped_model_classes=tuple(c for c in model.classes if c not in scored),
        dropped_data_classes=dropped_data,
        images_digest=content_digest(np.ascontiguousarray(data.images)),
        positions=np.flatnonzero(np.isin(dataset.label_names, scored)),
    )


def dead_dense_units(model: TrainedModel, images: np.ndarray, batch_size: int = 512) -> float:
    """Share of the dense layer's units that never fire (ReLU output 0) on any of ``images``.

    A share near 1 explains a model stuck at the class prior: too large early steps push the
    dense units of a wide fan-in layer below zero for every input, and they never recover."""
    module, fired = model.module(), None
    for start in range(0, len(images), batch_size):
        batch = as_unit_float(images[start:start + batch_size])
        active = np.asarray(jax.device_get(module.apply(model.variables, batch, method="penultimate"))) > 0
        fired = active.any(axis=0) if fired is None else fired | active.any(axis=0)
    if fired is None:
        raise EvaluationError("no images to measure dead units on")
    return float(1.0 - fired.mean())


# ---------------------------------------------------------------------------- over trials


def aggregate_confusions(confusions: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and std (across trials) of confusion tables with the same rows and columns."""
    if not confusions:
        raise EvaluationError("no confusion matrices to aggregate")
    first = confusions[0]
    for other in confusions[1:]:
        if not (other.index.equals(first.index) and other.columns.equals(first.columns)):
            raise EvaluationError(f"cannot average confusion matrices over different classes: "
                                  f"{list(first.index)} vs {list(other.index)}")
    stack = np.stack([c.to_numpy(dtype=float) for c in confusions])
    std = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.zeros_like(stack[0])
    return (pd.DataFrame(stack.mean(axis=0), index=first.index, columns=first.columns),
            pd.DataFrame(std, index=first.index, columns=first.columns))


def misclassification_table(groups: Mapping[str, Sequence[Evaluation]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class and total misclassification % per group (e.g. culture): mean and std over trials.

    Rows are the groups, columns the classes (their union, in canonical order) plus ``total``.
    The paper's Table 4 is the same per-class error taken from its trial-averaged confusion matrix
    (a ratio of averages, which its Tables 2-3 give with the true class in columns: e.g. Korean afraid
    1 - 0.6 / 1.8 = 66.7%); here each trial's rate is averaged, so that a std over trials comes with it.
    """
    means, stds = {}, {}
    for name, evaluations in groups.items():
        table = pd.DataFrame([e.per_class_error() for e in evaluations])
        means[name] = table.mean(axis=0)
        stds[name] = table.std(axis=0, ddof=1) if len(table) > 1 else table.iloc[0] * 0.0
    mean, std = pd.DataFrame(means).T, pd.DataFrame(stds).T
    columns = list(ordered_classes([c for c in mean.columns if c != TOTAL])) + [TOTAL]
    mean.index.name = std.index.name = "group"
    return mean[columns], std[columns]


def metrics_table(groups: Mapping[str, Sequence[Evaluation]]) -> pd.DataFrame:
    """Tidy metrics: one row per (group, trial: the position in the group's list) with accuracy, balanced accuracy,
    macro F1 and n."""
    rows = [
        {"group": name, "trial": trial, "accuracy": e.accuracy, "balanced_accuracy": e.balanced_accuracy,
         "macro_f1": e.macro_f1, "n": e.n}
        for name, evaluations in groups.items() for trial, e in enumerate(evaluations)
    ]
    return pd.DataFrame(rows)


def _json_float(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def per_culture_accuracy(images: FaceDataset, evaluation: Evaluation) -> pd.DataFrame | None:
    """Accuracy (with its interval, as for the whole) and balanced accuracy per culture of the scored images where
    they hold several (None otherwise)."""
    scored = scored_images(images, evaluation)
    if len(set(scored.culture)) < 2:
        return None
    rows = {}
    for name in sorted(set(scored.culture)):
        part = scored.culture == name
        one = Evaluation(evaluation.classes, evaluation.labels[part], evaluation.probabilities[part])
        interval = accuracy_interval(one, people_of(scored.subset(part), one))
        rows[name or "(none)"] = {"accuracy": one.accuracy, "accuracy_low": interval.low,
                                  "accuracy_high": interval.high, "balanced_accuracy": one.balanced_accuracy,
                                  "n": one.n}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("culture")
