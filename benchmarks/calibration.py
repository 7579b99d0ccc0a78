"""Calibration and power of the culture comparison (emofx.comparison) on synthetic cultures.

Three experiments, each with models trained from scratch on synthetic faces:

- ``planted``: ``eyes`` vs ``mouth`` dialects (5 trials each). The region tests should flag the
  eyes/brows (eyes culture higher) and the mouth (mouth culture higher) with adjusted p < 0.01.
- ``null``: pairs of independent samples of ONE dialect (``universal``). The fraction of pairs with
  any adjusted region-test p < 0.05 is the family-wise false-positive rate (target: <= 10%); the
  accuracy test's p-values should be roughly uniform. Images as the unit is measured beside trials.
  To fit two shared CPU cores, ``null_samples`` independent samples are trained (5 trials each)
  and ``null_pairs`` distinct pairs of them are compared: within a pair the samples are
  independent, so every pair is a true null; pairs share samples, which widens (does not bias)
  the uncertainty of the false-positive rate.
- ``imbalance``: the same dialect, one culture with 3x the images. Without matching, the accuracy
  test sees a "culture" difference; the matched protocol (equal per-class training counts) should not.

Trained models are cached (resumable) under ``--cache``; results go to ``--out`` as JSON/CSV.
Full run (what the report quotes)::

    .venv/bin/python benchmarks/calibration.py --out benchmarks/results/calibration

Quick run (minutes; a smoke test, not a measurement)::

    .venv/bin/python benchmarks/calibration.py --quick --out /tmp/calibration-quick
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emofx import comparison as cmp
from emofx.checkpoint import TrainedModel
from emofx.emotions import shared_classes
from emofx.model import ModelConfig
from emofx.synthetic import make_synthetic
from emofx.training import TrainConfig


@dataclass(frozen=True)
class Design:
    """Sizes of every experiment (the defaults are the measured design)."""

    trials: int = 5
    null_pairs: int = 20
    null_samples: int = 10
    null_per_class: int = 20
    planted_per_class: int = 30
    imbalance_per_class: int = 20
    imbalance_factor: int = 3
    imbalance_pairs: int = 1
    size: int = 24
    epochs: int = 20
    widths: tuple[int, ...] = (8, 16, 16)
    dense_units: int = 32
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0

    @classmethod
    def quick(cls) -> "Design":
        return cls(trials=5, null_pairs=2, null_samples=3, null_per_class=10, planted_per_class=12, imbalance_per_class=10,
                   imbalance_pairs=1, size=24, epochs=8)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=32, flip=False, rotation_degrees=0.0, seed=self.seed)

    def model_config(self) -> ModelConfig:
        return ModelConfig(num_classes=2, widths=self.widths, dense_units=self.dense_units)


def culture_pairs(design: Design) -> dict[str, list[tuple[tuple, tuple, bool]]]:
    """Every experiment's pairs as ((dialect, n_per_class, seed, name) x 2, matched)."""
    d = design
    pairs = {
        "planted": [(("eyes", d.planted_per_class, d.seed, "eyes"), ("mouth", d.planted_per_class, d.seed, "mouth"),
                     False)],
        "null": [(("universal", d.null_per_class, 100 + i, f"S{i}"), ("universal", d.null_per_class, 100 + j, f"S{j}"),
                  False) for i, j in null_pair_indices(d)],
        "imbalance": [],
    }
    for i in range(d.imbalance_pairs):
        big = ("universal", d.imbalance_per_class * d.imbalance_factor, 200 + i, "large")
        small = ("universal", d.imbalance_per_class, 200 + i, "small")
        pairs["imbalance"] += [(big, small, False), (big, small, True)]
    return pairs


def null_pair_indices(design: Design) -> list[tuple[int, int]]:
    """``null_pairs`` distinct pairs of the ``null_samples`` samples, drawn with the design's seed."""
    every = [(i, j) for i in range(design.null_samples) for j in range(i + 1, design.null_samples)]
    if design.null_pairs > len(every):
        raise ValueError(f"{design.null_samples} samples give only {len(every)} pairs; raise null_samples")
    chosen = np.random.default_rng(design.seed).choice(len(every), size=design.null_pairs, replace=False)
    return [every[k] for k in sorted(chosen)]


def trained_culture(cache: Path, spec: tuple, design: Design) -> cmp.CultureRuns:
    """Train (or read from ``cache``) one culture's trials, unmatched."""
    dialect, n, seed, name = spec
    dataset = make_synthetic(dialect, n_per_class=n, seed=seed, size=design.size, culture=name)
    folder = cache / f"{'-'.join(map(str, spec))}__{design.epochs}ep{design.size}px{design.trials}t"
    if (folder / "done").exists():
        return _load_culture(folder, dataset, name)
    splits = cmp.culture_splits(dataset, design.trials, "random", seed, design.fractions)
    runs = cmp.train_culture(dataset, name, splits, replace(design.train_config(), seed=seed), design.model_config(),
                             progress=False)
    _save_culture(folder, runs)
    (folder / "done").write_text("")
    return runs


def _save_culture(folder: Path, runs: cmp.CultureRuns) -> None:
    for trial, (model, test) in enumerate(zip(runs.models, runs.test_indices)):
        model.save(folder / f"trial{trial}")
        np.save(folder / f"trial{trial}" / "test.npy", test)


def trained_pair(cache: Path, spec_a: tuple, spec_b: tuple, matched: bool, design: Design
                 ) -> tuple[cmp.CultureRuns, cmp.CultureRuns]:
    """Train (or read from ``cache``) both cultures' trials for one pair."""
    datasets = [make_synthetic(dialect, n_per_class=n, seed=seed, size=design.size, culture=name)
                for dialect, n, seed, name in (spec_a, spec_b)]
    key = "__".join("-".join(map(str, s)) for s in (spec_a, spec_b)) + ("__matched" if matched else "")
    folder = cache / f"{key}__{design.epochs}ep{design.size}px{design.trials}t"
    if (folder / "done").exists():
        return tuple(_load_culture(folder / spec[3], data, spec[3]) for spec, data in zip((spec_a, spec_b), datasets))
    runs = cmp.train_pair(datasets[0], datasets[1], (spec_a[3], spec_b[3]), trials=design.trials, matched=matched,
                          split_kind="random", fractions=design.fractions, train_config=design.train_config(),
                          model_config=design.model_config(), progress=False)
    for culture in runs:
        _save_culture(folder / culture.name, culture)
    (folder / "done").write_text("")
    return runs


def _load_culture(folder: Path, dataset, name: str) -> cmp.CultureRuns:
    trials = sorted(folder.glob("trial*"), key=lambda p: int(p.name[5:]))
    return cmp.CultureRuns(name, dataset, tuple(TrainedModel.load(t) for t in trials),
                           tuple(np.load(t / "test.npy") for t in trials))


def analyse_pair(a: cmp.CultureRuns, b: cmp.CultureRuns, config: cmp.CompareConfig) -> tuple[dict, pd.DataFrame]:
    """The full comparison, and the smallest adjusted p of each family, for both units."""
    from emofx.regions import face_regions  # only the analysis needs regions

    result = cmp.compare(a, b, face_regions(a.dataset), face_regions(b.dataset), config)
    images = replace(config, unit="images", correction="holm")
    image_tests = cmp.measure_tests(result.tables["saliency_measures"], a.name, b.name,
                                    list(result.region_tests["region"].unique()), images)
    row = {
        "accuracy_p": result.accuracy["p_value"],
        "accuracy_diff": result.accuracy["diff"],
        "accuracy_a": result.accuracy["culture_a"],
        "accuracy_b": result.accuracy["culture_b"],
        "accuracy_ci_low": result.accuracy["ci_low"],
        "accuracy_ci_high": result.accuracy["ci_high"],
        "balanced_accuracy_p": result.tests["balanced_accuracy"]["p_value"],
        "region_min_p_adjusted": float(result.region_tests["p_adjusted"].min()),
        "region_min_p_adjusted_images_unit": float(image_tests["p_adjusted"].min()),
        "proximity_min_p_adjusted": float(result.tables["proximity_tests"]["p_adjusted"].min()),
        "pixel_min_p_fwer": float(result.pixel["p_fwer"].min()),
        "filter_p": result.tests["filters"]["p_value"],
        "class_error_min_p_adjusted": float(result.tables["class_error_tests"]["p_adjusted"].min()),
        "cka_between": float(result.tables["cka"].query("kind == 'between'")["cka"].mean()),
        "cka_within": float(result.tables["cka"].query("kind != 'between'")["cka"].mean()),
    }
    return row, result.region_tests


def accuracy_only(a: cmp.CultureRuns, b: cmp.CultureRuns, config: cmp.CompareConfig) -> dict:
    """H1 alone: the accuracy test of one pair."""
    classes = shared_classes(a.dataset.classes, b.dataset.classes)
    return cmp.accuracy_test(cmp.predictions_frame(a, classes=classes), cmp.predictions_frame(b, classes=classes),
                             config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration"))
    parser.add_argument("--cache", type=Path, default=Path(".emofx_cache/calibration"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the pipeline")
    parser.add_argument("--experiments", default="planted,imbalance,null")
    parser.add_argument("--stage", choices=("train", "analyse", "all"), default="all")
    args = parser.parse_args()
    design = Design.quick() if args.quick else Design()
    config = cmp.CompareConfig(n_permutations=1999, n_boot=1000, cka_images=100, progress=False)
    pairs = culture_pairs(design)
    wanted = [e for e in args.experiments.split(",") if e]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    todo = [(e, spec) for e in wanted for spec in pairs[e]]
    trained = {}
    for experiment, (spec_a, spec_b, matched) in tqdm(todo, desc="train pairs"):
        if experiment == "null":  # samples are shared between pairs: train each once
            runs = tuple(trained_culture(args.cache, spec, design) for spec in (spec_a, spec_b))
        else:
            runs = trained_pair(args.cache, spec_a, spec_b, matched, design)
        trained[(experiment, spec_a, spec_b, matched)] = runs
    print(f"trained/loaded {len(todo)} pairs in {time.perf_counter() - started:.0f}s", flush=True)
    if args.stage == "train":
        return

    report: dict = {"design": asdict(design), "compare_config": asdict(config)}
    if "planted" in wanted:
        (key,) = [k for k in trained if k[0] == "planted"]
        row, tests = analyse_pair(*trained[key], config)
        tests.to_csv(args.out / "planted_region_tests.csv", index=False)
        report["planted"] = {**row, **planted_verdict(tests)}
    if "imbalance" in wanted:
        rows = [{"pair": k[1][2], "matched": k[3], **accuracy_only(*runs, config)}
                for k, runs in trained.items() if k[0] == "imbalance"]
        frame = pd.DataFrame(rows)
        frame.to_csv(args.out / "imbalance_accuracy.csv", index=False)
        report["imbalance"] = frame[["pair", "matched", "culture_a", "culture_b", "diff", "p_value", "ci_low",
                                     "ci_high"]].to_dict(orient="records")
    if "null" in wanted:
        rows = [{"pair": k[1][2], **analyse_pair(*runs, config)[0]}
                for k, runs in tqdm(trained.items(), desc="analyse null pairs") if k[0] == "null"]
        frame = pd.DataFrame(rows)
        frame.to_csv(args.out / "null_pairs.csv", index=False)
        report["null"] = null_summary(frame)
    report["seconds"] = time.perf_counter() - started
    (args.out / "calibration.json").write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))


def planted_verdict(tests: pd.DataFrame, alpha: float = 0.01) -> dict:
    """Per emotion with a signal (not neutral): are eyes/brows higher for ``eyes`` and mouth higher for ``mouth``?"""
    expressive = tests[tests["emotion"] != "neutral"]
    up = expressive[expressive["region"].isin(["eyes", "brows"])]
    down = expressive[expressive["region"] == "mouth"]
    eye_flagged = up[(up["diff"] > 0) & (up["p_adjusted"] < alpha)].groupby("emotion").size()
    mouth_flagged = down[(down["diff"] < 0) & (down["p_adjusted"] < alpha)]
    emotions = sorted(expressive["emotion"].unique())
    return {
        "emotions": emotions,
        "eyes_or_brows_flagged": sorted(eye_flagged.index),
        "mouth_flagged": sorted(mouth_flagged["emotion"]),
        "wrong_direction_flagged": int(((expressive["p_adjusted"] < alpha) & (
            (expressive["region"].isin(["eyes", "brows"]) & (expressive["diff"] < 0))
            | ((expressive["region"] == "mouth") & (expressive["diff"] > 0)))).sum()),
    }


def null_summary(frame: pd.DataFrame, alpha: float = 0.05) -> dict:
    """False-positive rates per family and the accuracy p-value distribution."""
    families = ["region_min_p_adjusted", "region_min_p_adjusted_images_unit", "proximity_min_p_adjusted",
                "pixel_min_p_fwer", "filter_p", "class_error_min_p_adjusted", "accuracy_p", "balanced_accuracy_p"]
    return {
        "pairs": len(frame),
        "false_positive_rate": {f: float((frame[f] < alpha).mean()) for f in families},
        "any_region_or_accuracy": float(((frame["region_min_p_adjusted"] < alpha) | (frame["accuracy_p"] < alpha)).mean()),
        "accuracy_p_values": sorted(frame["accuracy_p"].round(4).tolist()),
        "accuracy_p_quantiles": frame["accuracy_p"].quantile([0.1, 0.25, 0.5, 0.75, 0.9]).round(3).to_dict(),
        "cka_between_mean": float(frame["cka_between"].mean()),
        "cka_within_mean": float(frame["cka_within"].mean()),
    }


if __name__ == "__main__":
    main()
