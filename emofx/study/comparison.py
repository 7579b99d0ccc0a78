"""Do cultures differ? Accuracy (H1) and features (H2) of two cultures' models, with calibrated tests.

The unit of every test is stated in its output:

- Accuracy (H1): the permutation test reassigns whole *trials* (each trial is a fresh split,
  initialisation and training, so trials are exchangeable under the null; 5 vs 5 trials is an
  exact test over 252 splits). Its confidence interval inverts that test (the shifts of one
  culture's trials it does not reject), so it has the same unit and agrees with the p-value. A
  second interval, the models fixed, redraws each trial's *test people* with all of their images
  (images per class where people are unknown): how precisely the given models are measured. It is
  narrower and answers a narrower question: under simulated nulls it excludes 0 far more often
  than 5% (benchmarks/calibration.py), since it leaves out how models vary between trainings.
- Which trials: the permutation over trials is exact only when every trial of both cultures
  is an exchangeable draw under the null. Trials that re-split one sample of people share
  those people (and models trained on them), so a sample's own people shift all its trials;
  ``split_kind="independent"`` (:func:`independent_splits`) gives every trial disjoint people,
  so the test speaks about new people of the culture, not only about new models.
- Confusions (H1, the paper's comparison of confusion matrices): for each pair of distinct
  emotions, the share of one emotion's test images given the other's label, per trial; trials
  are permuted and the pairs corrected as one family (max-T by default).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofx.data.emotions import shared_classes
from emofx.data.progress import tqdm
from emofx.data.regions import RegionMaps, images_digest
from emofx.study.accuracy import (
    accuracy_test,
    class_error_tests,
    class_errors,
    confusion_tests,
    person_accuracy,
    predictions_frame,
    transfer_matrix,
    trial_metrics,
)
from emofx.study import stats
from emofx.study.baselines import chance_flags, chance_notes, human_baseline
from emofx.study.cultures import CompareConfig, ComparisonError, CultureRuns
from emofx.study.features import (
    cka_table,
    filter_table,
    filter_test,
    measure_tests,
    pixel_difference,
    saliency_measures,
)


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
        """H1's test: the accuracy difference between the cultures, its p-value and intervals."""
        return self.tests["accuracy"]

    def accuracy_table(self, digits: int = 3) -> pd.DataFrame:
        """H1's test (:attr:`accuracy`) for reading in a notebook: one row per entry, numbers rounded to ``digits``
        decimals (the record keeps every digit; shown raw, each had 16), the units' sentences as they are."""
        rounded = {key: round(value, digits) if isinstance(value, float) else value
                   for key, value in self.accuracy.items()}
        return pd.Series(rounded, dtype=object).to_frame(f"{self.culture_a} vs {self.culture_b}")

    @property
    def region_tests(self) -> pd.DataFrame:
        """H2's tests: one row per (emotion, region) and per region pooled over emotions."""
        return self.tables["region_tests"]

    def significant(self, alpha: float = stats.ALPHA) -> pd.DataFrame:
        """Region tests whose corrected p-value is below ``alpha``."""
        return self.region_tests[self.region_tests["p_adjusted"] < alpha]

    def significant_counts(self, alpha: float = stats.ALPHA) -> dict[str, int]:
        """How many confusion tests and region tests have a corrected p-value below ``alpha``."""
        return {name: int((self.tables[name]["p_adjusted"] < alpha).sum())
                for name in ("confusion_tests", "region_tests")}

    @property
    def shared_classes(self) -> list[str]:
        """The emotions both cultures' models were compared on (sorted by name)."""
        return sorted(self.tables["class_errors"]["emotion"].unique())

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``emofx compare`` writes to summary.json)."""
        cka = self.tables["cka"].groupby("kind")["cka"].mean()
        return json_ready({
            "cultures": {"a": self.culture_a, "b": self.culture_b},
            "shared_classes": self.shared_classes,
            "config": asdict(self.config),
            "accuracy": self.tests["accuracy"],
            "balanced_accuracy": self.tests["balanced_accuracy"],
            "region_tests": self.region_tests[["emotion", "region", "diff", "effect_size", "p_value", "p_adjusted",
                                               "unit"]].to_dict(orient="records"),
            "proximity_tests": self.tables["proximity_tests"].to_dict(orient="records"),
            "class_error_tests": self.tables["class_error_tests"].to_dict(orient="records"),
            "confusion_tests": self.tables["confusion_tests"].to_dict(orient="records"),
            "pixelwise": {"unit": self.config.unit, "correction": "max-statistic (Welch t) permutation, FWER",
                          "min_p_fwer": float(self.pixel["p_fwer"].min()),
                          f"pixels_p_fwer_below_{stats.ALPHA}": int((self.pixel["p_fwer"] < stats.ALPHA).sum())},
            "filters": self.tests["filters"],
            "cka": {"between": cka.get("between"), "within_a": cka.get("within_a"), "within_b": cka.get("within_b")},
            "chance": {"alpha": self.config.chance_alpha, "excluded": self.config.exclude_chance,
                       "flagged":
                           self.tables["chance"].query("flagged")[["culture", "trial"]].to_dict(orient="records")},
            "human": list(self.tests.get("human", [])),
            "notes": list(self.notes),
        })

    def save(self, out: str | os.PathLike) -> list[Path]:
        """Write summary.json, one CSV per table and the pixel maps (.npz) into ``out``.

        Figures are drawn by :func:`emofx.plotting.comparison.save_comparison_figures`."""
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
        return written


def too_few_trials(n_a: int, n_b: int, config: CompareConfig, alpha: float = stats.ALPHA) -> list[str]:
    """A warning where the tests over trials cannot reach ``alpha`` whatever the models do (2 vs 2: p >= 0.33)."""
    smallest = stats.smallest_p(n_a, n_b, config.n_permutations)
    if smallest < alpha:
        return [] if n_a == n_b else [
            f"unequal trials ({n_a} and {n_b}): the tests over trials hold their level when both cultures' trials "
            "vary alike; where the smaller group varies more they reject too often (3 against 5, three times the "
            "spread: 15% at 0.05 in simulation), so read a p near the threshold with care"]
    over_trials = "the accuracy, per-class error and filter tests" + (
        ", and the region, proximity and pixel tests" if config.unit == "trials" else "")
    return [f"too few trials: with {n_a} and {n_b} trials a permutation test over trials cannot give p below "
            f"{smallest:.2g} ({over_trials}), so no difference can reach p < {alpha} however large; train at least "
            f"4 trials per culture (smallest p {stats.smallest_p(4, 4):.2g}; 5 each: {stats.smallest_p(5, 5):.2g})"]


def floor_note(p_values: Any, p_adjusted: Any, smallest: float, what: str = "region tests",
               alpha: float = stats.ALPHA) -> list[str]:
    """A warning where several tests over trials sit at ``smallest``, the least p the trials allow (each test's
    trials of the two cultures perfectly apart): the correction then tells them apart by their t statistics alone,
    which move from one training run to the next, so which of them pass is fragile (the KDEF/Taiwanese study rerun
    on a CPU of another vector width passed 1 of the same 6 region cells, its 40 differences correlating at 0.93:
    results/README.md)."""
    raw = np.asarray(p_values, dtype=float)
    at_floor = np.isclose(raw, smallest, rtol=1e-6, atol=0.0)
    if at_floor.sum() < 2 or not smallest < alpha:
        return []
    passed = int((at_floor & (np.asarray(p_adjusted, dtype=float) < alpha)).sum())
    return [f"{int(at_floor.sum())} of the {len(raw)} {what} sit at the smallest p the trials allow ({smallest:.2g}: "
            f"the cultures' trials perfectly apart), and {passed} of them pass{'es' if passed == 1 else ''} the "
            "correction, which tells them apart by their t statistics alone: a rerun whose training rounds otherwise "
            "can pass others among them (their signs and sizes are steadier); more trials per culture lower the floor"]


def confound_note(a: CultureRuns, b: CultureRuns) -> list[str]:
    """What else differs between two cultures of real faces than culture (none for synthetic dialects, which
    differ by construction): their datasets' studios and instructions, or the parts of one collection."""
    sources = [str(c.dataset.meta.get("source") or "") for c in (a, b)]
    if any("region_masks" in c.dataset.extras for c in (a, b)):  # synthetic faces, a merged file of them too
        return []
    if sources[0] != sources[1] or not sources[0]:
        return [f"culture is confounded with dataset here: {a.name}'s and {b.name}'s faces were photographed "
                "apart (studio, camera, lighting, framing, posing instructions), so any difference is between these "
                "datasets, not only between cultures"]
    return [f"{a.name} and {b.name} come from one collection ({sources[0]}): who photographed each part, and how, "
            "may differ as well as culture"]


def split_note(a: CultureRuns, b: CultureRuns) -> list[str]:
    """Where trials split images at random (a person's images may then be in training and test, and accuracy counts
    recognising people seen in training), or the two cultures were split in different ways, from each model's split."""
    splits = {c.name: [m.info.get("split", {}) for m in c.models] for c in (a, b)}
    kinds = {name: sorted({str(s.get("kind", "unrecorded")) for s in those}) for name, those in splits.items()}
    mixed = any(s.get("grouped") is False for those in splits.values() for s in those)  # not kept apart by person
    if not mixed and kinds[a.name] == kinds[b.name]:
        return []
    said = "; ".join(f"{name} {'/'.join(k)}" for name, k in kinds.items())
    return [f"the trials were split by kind ({said}): a split that does not keep each person in one part (random, or "
            "kfold/predefined without people) may put a person's images in training and test, so its accuracy "
            "includes recognising people seen in training, and cultures split in different ways are not measured "
            "alike; give every image its person and split by subject"]


def regions_notes(regions: dict[str, RegionMaps], gap: float = 0.1) -> list[str]:
    """How each culture's facial regions were found (per image), and a warning where the cultures' mixes differ by
    more than ``gap`` for some way: regions drawn from 68 points and from eye centres cover other pixels (brows
    0.062 against 0.033 of the face), so region shares would differ by how they were drawn."""
    counts = {name: pd.Series(r.image_method).value_counts() for name, r in regions.items()}
    ways = {name: ", ".join(f"{way} {n}" for way, n in count.items()) for name, count in counts.items()}
    notes = ["regions: " + ", ".join(f"{r.method} ({name}: {ways[name]})" for name, r in regions.items())]
    table = pd.DataFrame({name: c / c.sum() for name, c in counts.items()}).fillna(0.0)
    if len(table.columns) == 2 and (table.iloc[:, 0] - table.iloc[:, 1]).abs().max() > gap:
        notes.append("the cultures' facial regions were found in different ways (above): region shares and the tests "
                     "on them then differ by how the regions were drawn as well as by where the models look; "
                     "prepare both datasets with the same --landmarks (dlib68)")
    return notes


def check_comparable(a: CultureRuns, b: CultureRuns) -> tuple[str, ...]:
    """The classes two cultures' runs share; an error when they cannot be compared (one name, other image sizes,
    fewer than 2 shared classes or 2 trials a culture), told before any region of their faces is searched."""
    if a.name == b.name:
        raise ComparisonError(f"both cultures are named {a.name!r}; give them distinct names")
    if a.dataset.image_shape != b.dataset.image_shape:
        raise ComparisonError(f"the cultures' images differ in size ({a.dataset.image_shape} vs "
                              f"{b.dataset.image_shape}); prepare both datasets with the same --size")
    classes = shared_classes(a.dataset.classes, b.dataset.classes)
    if len(classes) < 2:
        raise ComparisonError(f"the cultures share fewer than 2 classes ({list(classes)}); nothing to compare")
    if min(a.n_trials, b.n_trials) < 2:
        raise ComparisonError(f"{a.name} has {a.n_trials} trial(s) and {b.name} {b.n_trials}: the tests over "
                              "trials need at least 2 per culture, and 4 to be able to reach p < 0.05 (emofx train "
                              "--trials 4)")
    return classes


def compare(a: CultureRuns, b: CultureRuns, regions_a: RegionMaps, regions_b: RegionMaps,
            config: CompareConfig = CompareConfig()) -> Comparison:
    """Compare two cultures' trial runs: H1 accuracy and confusions, transfer, H2 regions/proximity/pixels/filters,
    CKA."""
    classes = check_comparable(a, b)
    for runs, regions in ((a, regions_a), (b, regions_b)):
        if len(regions.masks) != len(runs.dataset):
            raise ComparisonError(f"the regions given for {runs.name} cover {len(regions.masks)} images but its "
                                  f"dataset has {len(runs.dataset)}; pass face_regions() of the culture's dataset")
        if regions.images_digest not in (None, images_digest(runs.dataset)):
            raise ComparisonError(f"the regions given for {runs.name} were found on other images than its dataset's "
                                  "(as many, but not these: the cultures' regions swapped?); pass face_regions() of "
                                  "the culture's dataset")
    if tuple(regions_a.region_names) != tuple(regions_b.region_names):
        raise ComparisonError(f"the cultures' region sets differ: {list(regions_a.region_names)} vs "
                              f"{list(regions_b.region_names)}")
    steps = tqdm(total=5, desc="compare", disable=not config.progress)

    predictions = [predictions_frame(c, classes=classes) for c in (a, b)]
    flags = chance_flags(pd.concat(predictions, ignore_index=True), config.chance_alpha, seed=config.seed)
    recorded_flags = b.relabel_trials(a.relabel_trials(flags))  # the tables name trials by their runs' trial ids
    if config.exclude_chance and flags["flagged"].any():
        kept = [flags.query("culture == @c.name and not flagged")["trial"].tolist() for c in (a, b)]
        if min(map(len, kept)) < 2:
            raise ComparisonError(f"excluding the trials not above chance leaves {min(map(len, kept))} trial(s) of a "
                                  "culture; at least 2 per culture are needed (train better models or more trials)")
        a, b = a.trials(kept[0]), b.trials(kept[1])
        predictions = [predictions_frame(c, classes=classes) for c in (a, b)]
    errors = pd.concat([class_errors(p) for p in predictions], ignore_index=True)
    tests = {"accuracy": accuracy_test(*predictions, config),
             "balanced_accuracy": accuracy_test(*predictions, config, metric="balanced_accuracy")}
    transfer = transfer_matrix([a, b])
    steps.update()

    on_shared = [c.on_classes(classes) for c in (a, b)]  # H2 and CKA, like H1, on the classes both cultures have
    measured = [saliency_measures(c, r, config) for c, r in zip(on_shared, (regions_a, regions_b))]
    measures = pd.concat([m[0] for m in measured], ignore_index=True)
    maps = np.concatenate([m[1] for m in measured])
    region_names = list(regions_a.region_names)
    steps.update()
    region_tests = measure_tests(measures, a.name, b.name, region_names, config)
    try:
        proximity_tests, proximity_notes = measure_tests(measures, a.name, b.name, ["landmark_distance"], config), ()
    except ComparisonError as err:  # e.g. maps without salient pixels (dead guided ReLUs) have no distance
        proximity_tests = region_tests.iloc[:0]
        proximity_notes = (f"landmark proximity not tested: {err} (a map without salient pixels has no distance)",)
    pixel = pixel_difference(measures, maps, a.name, b.name, config)
    steps.update()

    filters = pd.concat([filter_table(c, r, config) for c, r in zip(on_shared, (regions_a, regions_b))],
                        ignore_index=True)
    tests["filters"] = filter_test(filters, a.name, b.name, region_names, config)
    steps.update()
    cka = cka_table(a, b, config)
    steps.update()
    steps.close()

    smallest = stats.smallest_p(a.n_trials, b.n_trials, config.n_permutations)
    floors = [] if config.unit != "trials" else [  # tests over images have no such floor
        *floor_note(region_tests["p_value"], region_tests["p_adjusted"], smallest),
        *floor_note(proximity_tests["p_value"], proximity_tests["p_adjusted"], smallest, "landmark proximity tests")]
    humans = [h for h in (human_baseline(a, b), human_baseline(b, a)) if h is not None]
    tests["human"] = [h[1] for h in humans]
    notes = (*confound_note(a, b), *split_note(a, b), *regions_notes({a.name: regions_a, b.name: regions_b}),
             *proximity_notes,
             *chance_notes(recorded_flags, config.chance_alpha, config.exclude_chance),
             *too_few_trials(a.n_trials, b.n_trials, config), *floors)

    def recorded(table: pd.DataFrame, culture: str = "culture", trial: str = "trial") -> pd.DataFrame:
        return b.relabel_trials(a.relabel_trials(table, culture, trial), culture, trial)

    tables = {
        "trial_metrics": recorded(pd.concat([trial_metrics(p) for p in predictions], ignore_index=True),
                                  "train_culture"),
        "class_errors": recorded(errors),
        "person_accuracy": pd.concat([person_accuracy(p) for p in predictions], ignore_index=True),
        "class_error_tests": class_error_tests(errors, a.name, b.name, config),
        "confusion_tests": confusion_tests(*predictions, classes, config),
        "transfer": recorded(transfer, "train_culture"),
        "saliency_measures": recorded(measures),
        "region_tests": region_tests,
        "proximity_tests": proximity_tests,
        "filters": recorded(filters),
        "cka": recorded(recorded(cka, "culture_1", "trial_1"), "culture_2", "trial_2"),
        "chance": recorded_flags,
        "human_baseline": pd.concat([h[0] for h in humans], ignore_index=True) if humans else pd.DataFrame(
            columns=["culture", "emotion", "observer_agreement", "rated_images", "model_accuracy",
                     "model_accuracy_std", "model_confidence"]),
    }
    return Comparison(a.name, b.name, config, tables, tests, pixel, notes)


def json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
