"""What a culture's models are measured against: chance (is each trial clearly above it?) and human observers.

**Clearly above chance.** A trial is *above chance* when its balanced accuracy on its test images
is higher than every model whose predictions ignore the face could reach, at level ``alpha``:
the one-sided permutation test shuffles the true labels among the trial's test images (keeping
the predictions and the class sizes; among each person's images where the images name their people,
so that telling people apart does not count as telling their expressions apart) and counts how often
the shuffled balanced accuracy reaches the observed one; p = (1 + count) / (1 + permutations). Under
that null the expected balanced accuracy is exactly 1/K whatever the class balance, and a model that
predicts one class for everything gets p = 1. Trials with p >= alpha are *flagged*: an accuracy
difference (H1) built on them measures failed training rather than culture, and their saliency maps,
filters and representations (H2, CKA) describe no learned emotion features.

**Human observers.** When a dataset carries observers' agreement with the posed label
(``extras["agreement"]``, the Taiwanese set's Image_info.xls), the models' per-class accuracy is
set beside the observers' agreement, and each test image's observer agreement is correlated
(Spearman) with the models' probability of the posed class; a person's images are not independent, so
where the images name their people rho gets an interval over people, each redrawn with all of their
images (its p treats every image as independent and overstates the evidence). On the rated images the models'
accuracy is set beside two human references (:func:`against_observers`): one observer (the mean
share choosing the posed emotion: how often a single person, drawn at random, names it) and the
observers' plurality (how often their most chosen emotion is the posed one), the two ceilings a
model that learns what people see can be held to.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import emotion_order
from emofx.study import stats
from emofx.study.accuracy import names_people
from emofx.study.cultures import CultureRuns

CHANCE_ALPHA = 0.01
AGREEMENT = "agreement"
RATINGS = "ratings"


def balanced_accuracy_p_value(labels: np.ndarray, predicted: np.ndarray, n_permutations: int = 1999,
                              seed: int = 0, people: np.ndarray | None = None) -> tuple[float, float]:
    """Balanced accuracy of ``predicted`` and its one-sided permutation p-value against chance.

    With ``people`` (each image's person) the labels are shuffled among each person's images only: a model
    that tells people apart but not their expressions (naming the emotion a performer posed most) stays at
    chance, which shuffling across people would credit."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    people = None if people is None else np.asarray(people)
    for name, values in (("predicted", predicted), ("people", people)):
        if values is not None and values.shape != labels.shape:
            raise stats.StatsInputError(f"{name} holds {values.shape} values for {labels.shape} labels; give one per "
                                        "image")
    for name, each, values in (("labels", "label", labels), ("people", "person (or people=None)", people)):
        if values is not None and pd.isna(values).any():
            raise stats.StatsInputError(f"{name} holds missing values; give every image its {each}")
    classes, y = np.unique(labels, return_inverse=True)
    p = np.array([np.flatnonzero(classes == v)[0] if v in classes else -1 for v in predicted])
    sizes = np.bincount(y, minlength=len(classes))

    def balanced(truth: np.ndarray) -> np.ndarray:
        hits = truth == p
        return np.stack([(hits & (truth == c)).sum(axis=-1) / sizes[c] for c in range(len(classes))]).mean(axis=0)

    observed = float(balanced(y[None])[0])
    rng = np.random.default_rng([int(seed), 52711])
    if people is None:
        shuffled = rng.permuted(np.tile(y, (n_permutations, 1)), axis=1)
    else:
        shuffled = np.empty((n_permutations, len(y)), dtype=y.dtype)
        for person in np.unique(people):
            mine = np.flatnonzero(np.asarray(people) == person)
            shuffled[:, mine] = rng.permuted(np.tile(y[mine], (n_permutations, 1)), axis=1)
    reached = int((balanced(shuffled) >= observed - 1e-12).sum())
    return observed, (1 + reached) / (1 + n_permutations)


def confusion_p_value(confusion: np.ndarray, n_permutations: int = 1999, seed: int = 0) -> tuple[float, float]:
    """:func:`balanced_accuracy_p_value` from a confusion matrix of counts (rows true, columns predicted)."""
    confusion = np.asarray(confusion, dtype=int)
    rows, columns = np.nonzero(confusion)
    counts = confusion[rows, columns]
    return balanced_accuracy_p_value(np.repeat(rows, counts), np.repeat(columns, counts), n_permutations, seed)


def chance_flags(predictions: pd.DataFrame, alpha: float = CHANCE_ALPHA, n_permutations: int = 1999,
                 seed: int = 0) -> pd.DataFrame:
    """Per (culture, trial) on its own test images: balanced accuracy, chance level, p-value, ``flagged``.

    ``predictions``: :func:`emofx.study.accuracy.predictions_frame` rows (one culture or several); where they name
    the images' people, labels are shuffled within each person (:func:`balanced_accuracy_p_value`).
    """
    own = predictions[predictions["train_culture"] == predictions["test_culture"]]
    rows = []
    for (culture, trial), group in own.groupby(["train_culture", "trial"], sort=True):
        named = names_people(group)
        value, p_value = balanced_accuracy_p_value(group["emotion"].to_numpy(), group["predicted"].to_numpy(),
                                                   n_permutations, seed + int(trial),
                                                   group["subject"].to_numpy() if named else None)
        rows.append({"culture": culture, "trial": int(trial), "balanced_accuracy": value,
                     "chance": 1.0 / group["emotion"].nunique(), "n_images": len(group), "p_value": p_value,
                     "flagged": bool(p_value >= alpha)})
    return pd.DataFrame(rows, columns=["culture", "trial", "balanced_accuracy", "chance", "n_images", "p_value",
                                       "flagged"])


def chance_notes(flags: pd.DataFrame, alpha: float = CHANCE_ALPHA, excluded: bool = False) -> list[str]:
    """Plain sentences: which trials are not clearly above chance and which conclusions that undermines."""
    flagged = flags[flags["flagged"]]
    if flagged.empty:
        return [f"every trial is clearly above chance (balanced-accuracy permutation test, p < {alpha})"]
    names = ", ".join(f"{r.culture} trial {r.trial} (balanced accuracy {r.balanced_accuracy:.2f}, chance "
                      f"{r.chance:.2f}, p = {r.p_value:.3f})" for r in flagged.itertuples())
    effect = ("they were excluded from every test below" if excluded else
              "they are included: the H1 accuracy difference then partly measures failed training, and H2 "
              "(region shares, filters) and CKA include models that learned no emotion features; "
              "rerun with the exclusion to see the comparison without them")
    return [f"NOT clearly above chance (p >= {alpha}): {names}; {effect}"]


def against_observers(dataset: FaceDataset, correct: np.ndarray) -> dict[str, Any] | None:
    """The models' and the observers' accuracy on the posed labels of ``dataset``'s rated images.

    ``correct``: whether the model got each image of ``dataset`` right (or the share of several models, e.g. the
    trials that tested the image, that did). Returns ``rated_images``,
    ``model_accuracy`` (on those images), ``observer_accuracy`` (the mean share of observers choosing
    the posed emotion) and ``plurality_accuracy`` (share of images whose posed emotion the observers
    chose most often, ties included; NaN without per-emotion ``ratings`` and ``meta["rating_names"]``),
    or None when the dataset carries no agreement ratings. Unrated images (NaN agreement, e.g.
    neutral in the Taiwanese set, which observers could not choose) are left out of every number.
    """
    agreement = dataset.extras.get(AGREEMENT)
    if agreement is None:
        return None
    correct = np.asarray(correct, float)
    if correct.shape != (len(dataset),):
        raise ValueError(f"correct holds {correct.shape} values for {len(dataset)} images; give one per image")
    rated = np.isfinite(np.asarray(agreement, float))
    plurality = float("nan")
    names = list(dataset.meta.get("rating_names", ()))
    if RATINGS in dataset.extras and rated.any() and names:
        ratings = np.asarray(dataset.extras[RATINGS], float)[rated]
        posed = [names.index(e) if e in names else -1 for e in dataset.label_names[rated]]
        shares = np.array([row[j] if j >= 0 else np.nan for row, j in zip(ratings, posed)])
        plurality = float(np.mean(shares >= ratings.max(axis=1)))
    if not rated.any():
        return {"rated_images": 0, "model_accuracy": float("nan"), "observer_accuracy": float("nan"),
                "plurality_accuracy": plurality}
    return {"rated_images": int(rated.sum()), "model_accuracy": float(correct[rated].mean()),
            "observer_accuracy": float(np.asarray(agreement, float)[rated].mean()), "plurality_accuracy": plurality}


def human_baseline(runs: CultureRuns, other: CultureRuns | None = None) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """Observers' agreement beside the models, or None when the dataset has no agreement ratings.

    Returns the per-class table (observer agreement on the tested images, the models' accuracy
    mean and std over trials) and the image-level Spearman correlation between observer agreement
    and the models' probability of the posed class (mean over the trials that tested the image), with the
    models' and the observers' accuracy on the rated images (:func:`against_observers`), each image counted once
    (the models' score on an image tested by several trials: the share of them that got it right).
    With ``other`` (the other culture's runs), every tested image is also scored by each of its models:
    ``other_models_accuracy`` per class and, on the rated images, ``other_model_accuracy`` and the Spearman
    correlation of their mean probability of the posed class with the agreement (``other_rho``): whether
    models of another culture find the faces clear that this culture's observers do.
    """
    agreement = runs.dataset.extras.get(AGREEMENT)
    if agreement is None:
        return None
    confidence: dict[int, list[float]] = {}
    right: dict[int, list[bool]] = {}
    accuracy_rows = []
    for trial, model in enumerate(runs.models):
        indices = runs.test_indices[trial]
        data = runs.dataset.subset(indices)
        probabilities = model.predict_proba(data.images, flip_average=model.flip_average)
        columns = [model.classes.index(name) for name in data.label_names]
        posed = probabilities[np.arange(len(data)), columns]
        for index, value in zip(indices, posed):
            confidence.setdefault(int(index), []).append(float(value))
        correct = probabilities.argmax(axis=1) == np.asarray(columns)
        accuracy_rows += [{"trial": trial, "emotion": e, "correct": c} for e, c in zip(data.label_names, correct)]
        for index, value in zip(indices, correct):
            right.setdefault(int(index), []).append(bool(value))
    tested = np.array(sorted(confidence))
    mean_confidence = np.array([np.mean(confidence[i]) for i in tested])
    share_right = np.array([np.mean(right[i]) for i in tested])  # an image tested by several trials counts once
    rated = np.asarray(agreement, float)[tested]
    emotions = runs.dataset.label_names[tested]
    per_trial = pd.DataFrame(accuracy_rows).groupby(["emotion", "trial"])["correct"].mean().groupby("emotion")
    table = pd.DataFrame({
        "observer_agreement": pd.Series(rated, index=emotions).groupby(level=0).mean(),
        "rated_images": pd.Series(np.isfinite(rated), index=emotions).groupby(level=0).sum(),
        "model_accuracy": per_trial.mean(),
        "model_accuracy_std": per_trial.std(ddof=1),
        "model_confidence": pd.Series(mean_confidence, index=emotions).groupby(level=0).mean(),
    }).rename_axis("emotion")
    table = table.loc[sorted(table.index, key=emotion_order)].reset_index()  # the figures' order
    table.insert(0, "culture", runs.name)
    keep = np.isfinite(rated)
    others = _other_models(other, runs.dataset.subset(tested)) if other is not None else None
    if others is not None:
        right, probability = others
        table["other_models_accuracy"] = table["emotion"].map(pd.Series(right, index=emotions).groupby(level=0).mean())
    correlation: dict[str, Any] = {"culture": runs.name, "n_images": int(keep.sum()), "method": "Spearman",
                                   "what": "image's observer agreement vs the models' probability of the posed class",
                                   **against_observers(runs.dataset.subset(tested), share_right)}
    subjects = runs.dataset.subject[tested]
    people = subjects if (subjects != "").all() else None
    correlation.update(_spearman(rated[keep], mean_confidence[keep], people=_part(people, keep)))
    if others is not None:
        known = keep & np.isfinite(right)
        correlation.update(other_culture=other.name, other_model_accuracy=float(right[known].mean()) if known.any()
                           else float("nan"), **_spearman(rated[known], probability[known], "other_",
                                                          people=_part(people, known)))
    return table, correlation


def _part(people: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    return None if people is None else people[keep]


def _other_models(other: CultureRuns, images: FaceDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per image of ``images``: the share of ``other``'s models that name its posed emotion and their mean
    probability of it (NaN where the models do not know the emotion)."""
    right, probability = [], []
    for model in other.models:
        probabilities = model.predict_proba(images.images, flip_average=model.flip_average)
        known = np.array([name in model.classes for name in images.label_names])
        columns = np.array([model.classes.index(n) if n in model.classes else 0 for n in images.label_names])
        posed = probabilities[np.arange(len(images)), columns]
        right.append(np.where(known, probabilities.argmax(axis=1) == columns, np.nan))
        probability.append(np.where(known, posed, np.nan))
    return np.mean(right, axis=0), np.mean(probability, axis=0)


def _spearman(x: np.ndarray, y: np.ndarray, prefix: str = "", people: np.ndarray | None = None,
              n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman's rho and p of ``x`` and ``y`` as ``{prefix}rho``, ``{prefix}p_value`` (p as if every image were
    independent); NaN where either is constant or fewer than 3 pairs. With ``people`` (each image's person, at
    least :data:`emofx.study.stats.MIN_PEOPLE` of them) also the 95% percentile interval of rho over people
    redrawn with all of their images (``{prefix}rho_low``, ``{prefix}rho_high``): a person's images are not
    independent evidence."""
    if not (len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0):
        return {f"{prefix}rho": float("nan"), f"{prefix}p_value": float("nan")}
    result = scipy_stats.spearmanr(x, y)
    found = {f"{prefix}rho": float(result.statistic), f"{prefix}p_value": float(result.pvalue)}
    if people is not None and len(set(people)) >= stats.MIN_PEOPLE:
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy_stats.ConstantInputWarning)  # a draw of one person's equal ratings
            rhos = [scipy_stats.spearmanr(x[i], y[i]).statistic
                    for i in stats.cluster_resamples(people, n_boot, np.random.default_rng(seed))]
        interval = stats.percentile_interval(found[f"{prefix}rho"], np.asarray(rhos, float))
        found.update({f"{prefix}rho_low": interval.low, f"{prefix}rho_high": interval.high,
                      f"{prefix}people": int(len(set(people)))})
    return found
