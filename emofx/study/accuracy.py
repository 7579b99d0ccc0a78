"""H1: does accuracy depend on culture? Per-trial metrics, the trial permutation test with the interval
that inverts it (and a bootstrap over test people: how precisely the given models are measured),
per-class errors, which emotions the cultures' models confuse, the train-culture x test-culture
transfer matrix, whether the gap between two cultures changes between two experiments (another
training), and each trial's two models of two experiments compared image by image."""

from __future__ import annotations

import warnings
from functools import reduce
from itertools import product
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emofx.data.emotions import emotion_order, shared_classes
from emofx.study import stats
from emofx.study.cultures import METRICS, CompareConfig, ComparisonError, CultureRuns
from emofx.study.evaluation import compare_evaluations, people_of, resampled_class_totals
from emofx.study.runs import RunError, evaluate_runs, load_run, shared_test_images


def predictions_frame(runs: CultureRuns, on: CultureRuns | None = None,
                      classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (trial, test image): label, prediction, correctness and the image's subject ("" if unknown).

    ``on`` (default ``runs`` itself) gives the images: its own trials' test images when it is
    ``runs``, else every image of the other culture. ``classes`` restricts images and predictions
    to shared classes (the prediction is the arg-max over those classes' probabilities). Each model
    scores as its recipe says (flip averaging under ``strong``), as its run's metrics.json does.
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
        probabilities = model.predict_proba(data.images, flip_average=model.flip_average)
        predicted = np.asarray(classes)[probabilities[:, model_columns].argmax(axis=1)]
        rows.append(pd.DataFrame({
            "train_culture": runs.name, "test_culture": target.name, "trial": trial, "image": indices,
            "emotion": data.label_names, "predicted": predicted, "subject": data.subject,
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


def _trial_metric(totals_right: np.ndarray, totals: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` from per-class totals (..., classes) of right answers and images; classes without
    images are left out of the balanced accuracy."""
    if metric == "accuracy":
        return totals_right.sum(axis=-1) / totals.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(totals > 0, totals_right / totals, np.nan), axis=-1)


def person_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per test person on their culture's own test images, pooled over the trials that tested them
    (a subject split tests each person in some trials): whether a culture's accuracy is carried by most of its
    people or by a few. Rows: culture, subject, images, trials, accuracy; none where people are unknown."""
    own = predictions[predictions["train_culture"] == predictions["test_culture"]]
    if not len(own) or not names_people(own):
        return pd.DataFrame(columns=["culture", "subject", "images", "trials", "accuracy"])
    grouped = own.groupby(["train_culture", "subject"])
    return pd.DataFrame({"images": grouped.size(), "trials": grouped["trial"].nunique(),
                         "accuracy": grouped["correct"].mean()}).reset_index().rename(
        columns={"train_culture": "culture"})


def names_people(predictions: pd.DataFrame) -> bool:
    """Whether every row of ``predictions`` names its image's person (``subject``)."""
    return "subject" in predictions and bool((predictions["subject"].astype(str) != "").all())


def _measured_metric(predictions: pd.DataFrame, metric: str, by_person: bool, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    """The mean over trials of ``metric`` for ``n_boot`` resamples of the test set, the models fixed: the
    culture's test people redrawn with all of their images (``by_person``), one draw for every trial (a subject
    split tests a person in several trials, and redrawing each trial's people apart took those trials as
    independent: 86% coverage for a 95% interval), else each trial's images of each class."""
    if not by_person:
        per_trial = []
        for _, trial in predictions.groupby("trial"):
            labels, classes = pd.factorize(trial["emotion"], sort=True)
            totals = resampled_class_totals(trial["correct"].to_numpy(), labels, len(classes), None, n_boot, rng)
            per_trial.append(_trial_metric(*totals, metric))
        return np.mean(per_trial, axis=0)
    people, person = np.unique(predictions["subject"].astype(str).to_numpy(), return_inverse=True)
    labels, classes = pd.factorize(predictions["emotion"], sort=True)
    draws = rng.multinomial(len(people), np.full(len(people), 1 / len(people)), size=n_boot)  # (n_boot, people)
    per_trial = []
    for trial in np.unique(predictions["trial"].to_numpy()):
        rows = np.flatnonzero(predictions["trial"].to_numpy() == trial)
        cells = np.zeros((len(people), 2 * len(classes)))
        np.add.at(cells, (person[rows], labels[rows]), predictions["correct"].to_numpy(float)[rows])
        np.add.at(cells, (person[rows], len(classes) + labels[rows]), 1.0)
        totals = draws @ cells  # a trial none of whose test people was drawn has no images: NaN, left out
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a class-less draw: NaN, as meant
            per_trial.append(_trial_metric(totals[:, :len(classes)], totals[:, len(classes):], metric))
    per_trial = np.asarray(per_trial)
    counted = np.isfinite(per_trial).sum(axis=0)
    return np.where(counted > 0, np.nansum(per_trial, axis=0) / np.maximum(counted, 1), np.nan)


def accuracy_test(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, config: CompareConfig,
                  metric: str = "accuracy") -> dict[str, Any]:
    """Difference in ``metric`` (a minus b): permutation test over trials and the interval that inverts it,
    and how precisely the given models' difference is measured (a bootstrap over test people)."""
    if metric not in METRICS:
        raise ComparisonError(f"metric must be one of {METRICS}; got {metric!r}")
    per_trial = [trial_metrics(p)[metric].to_numpy() for p in (predictions_a, predictions_b)]
    test = stats.permutation_test(per_trial[0], per_trial[1], n_permutations=config.n_permutations, seed=config.seed)
    interval = stats.permutation_interval(per_trial[0], per_trial[1], n_permutations=config.n_permutations,
                                          seed=config.seed)
    rng = np.random.default_rng([config.seed, 1])
    people = names_people(predictions_a) and names_people(predictions_b)
    fewest = min(p["subject"].nunique() for p in (predictions_a, predictions_b)) if people else None
    if people and fewest < stats.MIN_PEOPLE:  # e.g. a subject split that tests one synthetic person a trial
        measured = stats.BootstrapInterval(interval.estimate, float("nan"), float("nan"), 0.95, 0)
    else:
        measured = stats.percentile_interval(
            interval.estimate, _measured_metric(predictions_a, metric, people, config.n_boot, rng)
            - _measured_metric(predictions_b, metric, people, config.n_boot, rng))
    units = _permuted_units("trials", test, len(per_trial[0]), len(per_trial[1]))
    return {
        "metric": metric,
        "culture_a": float(per_trial[0].mean()),
        "culture_b": float(per_trial[1].mean()),
        "diff": float(per_trial[0].mean() - per_trial[1].mean()),
        "effect_size": float(stats.hedges_g(per_trial[0], per_trial[1])) if len(per_trial[0]) + len(per_trial[1]) > 2
        else float("nan"),
        "p_value": float(test.p_value),
        "p_unit": units,
        "smallest_p": stats.smallest_p(len(per_trial[0]), len(per_trial[1]), config.n_permutations),
        "ci_low": interval.low,
        "ci_high": interval.high,
        "ci_unit": f"{units}: the shifts the permutation test does not reject ({interval.confidence:.0%} interval)",
        "measured_ci_low": measured.low,
        "measured_ci_high": measured.high,
        "measured_ci_unit": (f"not measured: {fewest} test people, too few to redraw" if measured.n_boot == 0 else
                             ("test people, redrawn with all of their images (one draw for every trial)" if people
                              else "test images, redrawn within each trial and class")
                             + f", the models fixed ({config.n_boot} resamples, {measured.confidence:.0%} percentile "
                             "interval)"),
    }


def gap_change(first: pd.DataFrame, second: pd.DataFrame, culture_a: str, culture_b: str, *,
               metric: str = "test_accuracy", n_permutations: int = 9999, seed: int = 0) -> dict[str, Any]:
    """Does the gap between two cultures (a minus b) change from experiment ``second`` to ``first``?

    Each frame has one row per training run (columns ``culture``, ``trial`` and ``metric``), such as
    two experiments that differ only in how the models were trained. Per culture, every trial both
    ran gets its change (first minus second; trials of one index share their subject split when
    both experiments use the same seed and split); the gap's change is culture a's mean change minus
    culture b's. If training moved both cultures alike, a's and b's trial changes are exchangeable:
    the permutation test reassigns them between the cultures (exact over 252 splits at 5 vs 5).
    """
    changes = {}
    for culture in (culture_a, culture_b):
        pair = [f.loc[f["culture"] == culture].set_index("trial")[metric] for f in (first, second)]
        both = pd.concat(pair, axis=1, keys=["first", "second"], join="inner").dropna()
        if len(both) < 2:
            raise ComparisonError(f"{culture}: {len(both)} trial(s) in both experiments; the gap's change needs "
                                  "at least 2 per culture (run the same trials in both)")
        changes[culture] = both
    a, b = changes[culture_a], changes[culture_b]
    delta_a, delta_b = (a["first"] - a["second"]).to_numpy(), (b["first"] - b["second"]).to_numpy()
    test = stats.permutation_test(delta_a, delta_b, n_permutations=n_permutations, seed=seed)
    return {
        "culture_a": culture_a, "culture_b": culture_b,
        "gap_first": float(a["first"].mean() - b["first"].mean()),
        "gap_second": float(a["second"].mean() - b["second"].mean()),
        "change": float(delta_a.mean() - delta_b.mean()),
        "effect_size": float(stats.hedges_g(delta_a, delta_b)),
        "p_value": float(test.p_value),
        "p_unit": _permuted_units("trials' changes", test, len(delta_a), len(delta_b)),
    }


def _permuted_units(units: str, test: stats.PermutationTest, n_a: int, n_b: int) -> str:
    """What a permutation p-value was computed over, e.g. ``trials (5 vs 5; exact over 252 splits)``."""
    return f"{units} ({n_a} vs {n_b}; {'exact over' if test.exact else 'Monte-Carlo,'} {test.n_permutations} splits)"


UNTESTED = "untested: some trials have no test image of the emotion"  # the unit of a class the tests leave out


def class_error_tests(errors: pd.DataFrame, culture_a: str, culture_b: str, config: CompareConfig) -> pd.DataFrame:
    """Per-class error difference (a minus b) with a permutation test over trials, corrected over classes. An
    emotion that some trial of either culture has no test image of is not tested (its row says so, the error
    rates the mean over the trials that have it): its missing rates are not errors of 0. Emotions in the
    vocabulary's order, as the confusion matrices and the region tests list them."""
    emotions = sorted(set(errors["emotion"]), key=emotion_order)
    a_all, b_all = (errors[errors["culture"] == c].pivot_table(index="trial", columns="emotion", values="error")
                    .reindex(columns=emotions) for c in (culture_a, culture_b))  # each culture's own trials
    tested = [e for e in emotions if a_all[e].notna().all() and b_all[e].notna().all()]
    a, b = a_all[tested].to_numpy(), b_all[tested].to_numpy()
    test = stats.permutation_test(a, b, statistic="welch_t", n_permutations=config.n_permutations, seed=config.seed)
    adjusted = test.p_fwer if config.correction == "maxT" else stats.adjust(test.p_value, config.correction)
    frame = pd.DataFrame({
        "emotion": tested, "error_a": a.mean(axis=0), "error_b": b.mean(axis=0),
        "diff": a.mean(axis=0) - b.mean(axis=0), "p_value": test.p_value, "p_adjusted": adjusted,
        "correction": config.correction, "unit": "trials",
    })
    untested = [e for e in emotions if e not in tested]
    if not untested:
        return frame
    error_a, error_b = a_all[untested].mean().to_numpy(), b_all[untested].mean().to_numpy()
    left = pd.DataFrame({"emotion": untested, "error_a": error_a, "error_b": error_b, "diff": error_a - error_b,
                         "p_value": np.nan, "p_adjusted": np.nan, "correction": config.correction, "unit": UNTESTED})
    return pd.concat([frame, left[frame.columns]], ignore_index=True)


def confusion_rates(predictions: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Each trial's confusion matrix on its own culture's test images, rows normalised: (trials, C, C), entry
    [t, i, j] the share of emotion ``classes[i]``'s images that trial t's model labelled ``classes[j]`` (NaN where
    the trial has no test image of ``classes[i]``)."""
    own = predictions[predictions["train_culture"] == predictions["test_culture"]]
    matrices = []
    for _, trial in own.groupby("trial", sort=True):
        counts = pd.crosstab(trial["emotion"], trial["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
        totals = counts.to_numpy(float).sum(axis=1, keepdims=True)
        matrices.append(np.where(totals > 0, counts.to_numpy(float) / np.maximum(totals, 1), np.nan))
    return np.stack(matrices)


def confusion_tests(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, classes: Sequence[str],
                    config: CompareConfig) -> pd.DataFrame:
    """Which confusions differ between the cultures: the paper's comparison of confusion matrices, tested.

    For each pair of distinct emotions of ``classes`` (true, predicted), the share of the true emotion's test
    images that a trial's model gave the other label, a minus b, with a permutation test over trials (Welch t)
    corrected over the pairs (maxT, Holm or BH as ``config.correction``). Pairs that no model of either
    culture ever confused are left out; a pair whose true emotion some trial has no test image of is not tested
    (its row says so). A culture recognised less accurately has more confusions overall:
    read a pair beside its emotion's error difference (:func:`class_error_tests`)."""
    a, b = confusion_rates(predictions_a, classes), confusion_rates(predictions_b, classes)
    true, predicted = np.nonzero(~np.eye(len(classes), dtype=bool))
    confused = np.nan_to_num(np.r_[a, b][:, true, predicted]).max(axis=0) > 0
    true, predicted = true[confused], predicted[confused]
    columns = ["true", "predicted", "rate_a", "rate_b", "diff", "p_value", "p_adjusted", "correction", "unit"]
    if not len(true):
        return pd.DataFrame(columns=columns)
    cells_a, cells_b = a[:, true, predicted], b[:, true, predicted]
    tested = ~(np.isnan(cells_a).any(axis=0) | np.isnan(cells_b).any(axis=0))  # a trial without the true emotion
    p_value, adjusted = np.full(len(true), np.nan), np.full(len(true), np.nan)
    if tested.any():
        test = stats.permutation_test(cells_a[:, tested], cells_b[:, tested], statistic="welch_t",
                                      n_permutations=config.n_permutations, seed=config.seed)
        p_value[tested] = test.p_value
        adjusted[tested] = test.p_fwer if config.correction == "maxT" else stats.adjust(test.p_value, config.correction)
    rate_a, rate_b = _mean_of_present(cells_a), _mean_of_present(cells_b)
    return pd.DataFrame({
        "true": np.asarray(classes)[true], "predicted": np.asarray(classes)[predicted],
        "rate_a": rate_a, "rate_b": rate_b, "diff": rate_a - rate_b, "p_value": p_value, "p_adjusted": adjusted,
        "correction": config.correction, "unit": np.where(tested, "trials", UNTESTED),
    }, columns=columns)


def _mean_of_present(values: np.ndarray) -> np.ndarray:
    """Column means over the rows that are not NaN (NaN for a column with none), without NumPy's warning."""
    present = (~np.isnan(values)).sum(axis=0)
    return np.where(present > 0, np.nansum(values, axis=0) / np.maximum(present, 1), np.nan)


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


def trial_pairs(first: pd.DataFrame, second: pd.DataFrame, keys: Sequence[str] = ("culture", "trial")) -> pd.DataFrame:
    """Each trial's runs in two experiments compared image by image.

    ``first`` and ``second`` have one row per run (``keys`` and ``run``, its directory); rows with equal keys
    pair up. Both runs of a pair are scored on the trial's test images, which they must share (the same data and
    split, as two studies with the same seeds have), and compared by McNemar's test
    (:func:`emofx.study.evaluation.compare_evaluations`; clustered by person where the images name theirs, as a
    trial's test images are a few people's, ``people`` of them): more sensitive within a trial than the
    trial-level test of :func:`gap_change`, but each trial says only what its own ~100 test images can.
    ``p_holm`` corrects over the table; a pair whose runs saw other images says why in ``note``.
    """
    rows = []
    for _, pair in first.merge(second, on=list(keys), suffixes=("_first", "_second")).iterrows():
        row = {key: pair[key] for key in keys}
        try:
            members = [load_run(pair["run_first"])], [load_run(pair["run_second"])]
            images = shared_test_images(members[0] + members[1])
        except RunError as err:
            rows.append({**row, "note": str(err)})
            continue
        first_run, second_run = (evaluate_runs(runs, images) for runs in members)
        result = compare_evaluations(first_run, second_run, people=people_of(images, first_run))
        rows.append({**row, "n": result.n, "people": result.clusters if result.clusters < result.n else None,
                     "accuracy_first": result.accuracy_a, "accuracy_second": result.accuracy_b,
                     "only_first": result.only_a, "only_second": result.only_b, "p_value": result.p_value})
    columns = [*keys, "n", "people", "accuracy_first", "accuracy_second", "only_first", "only_second", "p_value",
               "p_holm", "note"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    tested = table["p_value"].notna()
    table.loc[tested, "p_holm"] = stats.holm(table.loc[tested, "p_value"].to_numpy(float))
    return table
