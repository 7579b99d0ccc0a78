"""Calibration and power of the culture comparison (emofx.study.comparison) on synthetic cultures.

Experiments, each with models trained from scratch on synthetic faces (one person poses one
image of each emotion by default, ``--images-per-person``, so a sample of n images per class
holds n different people):

- ``planted``: ``eyes`` vs ``mouth`` dialects (5 trials each). The region tests should flag the
  eyes/brows (eyes culture higher) and the mouth (mouth culture higher) with adjusted p < 0.01:
  per (emotion, region) cell and at region level (rows with emotion ``all``, pooled over
  emotions); both kinds of row share one max-T family. Writes planted_<split>.json/.csv.
- ``null``: ``null_pairs`` pairs of independent samples of ONE dialect (``universal``); with
  ``null_samples >= 2 x null_pairs`` (the default, 40) the pairs are disjoint. The fraction of
  pairs with any adjusted region-test p < 0.05 is the family-wise false-positive rate (target:
  <= 10%); the accuracy test's p-values should be roughly uniform. Images as the unit is
  measured beside trials. Writes null_<split>.json and null_<split>_pairs.csv (null_shared.*
  when pairs share samples). Null pairs get the accuracy, region, proximity and pixel-wise
  tests (each sample's maps are computed once); filters and CKA run on the planted pair.
- ``imbalance``: the same dialect, one culture with 3x the images. Without matching, the accuracy
  test sees a "culture" difference; the matched protocol (equal per-class training counts) should not.
- ``simulated``: no training; trial-level simulation of the null (each trial's model adds its own
  shift to every image's region shares, as retrained models do) to show why trials, not images,
  are the calibrated unit: the false-positive rate of both units as model-to-model spread grows.

How trials split a culture (``--split-kind``): ``subject`` re-splits the one sample by person
for every trial (trials share the sample's people); ``independent`` deals the people into
disjoint groups, one per trial, so every trial is an independent draw of people from the
culture and the permutation over trials is exact for the question "do new people of these
cultures differ?" (see emofx.study.comparison.independent_splits).

Options: ``--experiments`` (comma list of planted, imbalance, null, simulated), ``--stage train|analyse|all``
(``analyse`` only reads trained models and refuses missing ones), ``--size`` (px),
``--epochs``, ``--no-augment``, ``--split-kind``, ``--images-per-person``, ``--planted-per-class``,
``--null-per-class``, ``--null-samples``, ``--imbalance-pairs``, ``--widths``, ``--dense-units``, \
``--quick`` (tiny smoke test),
``--out`` (required: results, JSON/CSV; result files that exist already are refused before any
training unless ``--overwrite``) and ``--cache`` (trained models, resumable). Design defaults: 48 px,
widths (8, 16, 16), dense 32, 30 epochs, batch 32, flips and 5 degree rotations, 60/20/20 splits.
The exact commands behind every result file are in benchmarks/results/calibration/README.md (those
without ``--out`` wrote to ``benchmarks/results/calibration``, the former default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

if not __package__:  # run as `python benchmarks/calibration.py` (the commands in its results' README)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.outputs import refuse_existing
from emofx.cli.train import int_tuple
from emofx.data.emotions import shared_classes
from emofx.data.regions import face_regions
from emofx.data.synthetic import make_synthetic
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig
from emofx.study import accuracy, comparison, cultures, features

EXPERIMENTS = ("planted", "imbalance", "null", "simulated")


@dataclass(frozen=True)
class Design:
    """Sizes of every experiment (the defaults are the measured design)."""

    trials: int = 5
    null_pairs: int = 20
    null_samples: int = 40
    null_per_class: int = 30
    planted_per_class: int = 60
    imbalance_per_class: int = 20
    imbalance_factor: int = 3
    imbalance_pairs: int = 1
    images_per_person: int = 1
    split_kind: str = "subject"
    size: int = 48
    epochs: int = 30
    augment: bool = True
    widths: tuple[int, ...] = (8, 16, 16)
    dense_units: int = 32
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0

    @classmethod
    def quick(cls) -> "Design":
        return cls(trials=5, null_pairs=2, null_samples=4, null_per_class=10, planted_per_class=12,
                   imbalance_per_class=10, imbalance_pairs=1, size=24, epochs=8)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=32, flip=self.augment,
                           rotation_degrees=5.0 if self.augment else 0.0, seed=self.seed)

    def tag(self) -> str:
        """Cache-folder suffix naming everything that changes the trained models."""
        return (f"{self.epochs}ep{self.size}px{self.trials}t{self.images_per_person}ipp{self.split_kind}"
                f"{'aug' if self.augment else 'noaug'}w{'-'.join(map(str, self.widths))}d{self.dense_units}")

    def dataset(self, dialect: str, n_per_class: int, seed: int, name: str):
        """One synthetic culture: ``n_per_class`` images per emotion, one person per ``images_per_person`` images."""
        return make_synthetic(dialect, n_per_class=n_per_class, seed=seed, size=self.size, culture=name,
                              images_per_subject_class=self.images_per_person)

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
    """Disjoint pairs (0, 1), (2, 3), ... when there are samples enough; else ``null_pairs``
    distinct pairs of the ``null_samples`` samples, drawn with the design's seed."""
    if design.null_samples >= 2 * design.null_pairs:
        return [(2 * k, 2 * k + 1) for k in range(design.null_pairs)]
    every = [(i, j) for i in range(design.null_samples) for j in range(i + 1, design.null_samples)]
    if design.null_pairs > len(every):
        raise ValueError(f"{design.null_samples} samples give only {len(every)} pairs; raise null_samples")
    chosen = np.random.default_rng(design.seed).choice(len(every), size=design.null_pairs, replace=False)
    return [every[k] for k in sorted(chosen)]


def result_files(design: Design, experiment: str) -> tuple[str, ...]:
    """The names of the files ``experiment`` writes into ``--out`` (the report .json last)."""
    if experiment == "simulated":
        return ("simulated.json",)
    if experiment == "imbalance":
        return ("imbalance_accuracy.csv", "imbalance.json")
    if experiment == "planted":
        return (f"planted_{design.split_kind}_region_tests.csv", f"planted_{design.split_kind}.json")
    name = f"null_{design.split_kind}" if design.null_samples >= 2 * design.null_pairs else "null_shared"
    return (f"{name}_pairs.csv", f"{name}.json")


def cache_folder(cache: Path, design: Design, spec_a: tuple, spec_b: tuple | None = None, matched: bool = False
                 ) -> Path:
    """Where one culture's trials (``spec_b`` None) or one pair's are cached."""
    key = "__".join("-".join(map(str, s)) for s in (spec_a, spec_b) if s is not None) + ("__matched" if matched else "")
    return cache / f"{key}__{design.tag()}"


def cache_folders(cache: Path, design: Design, todo: list[tuple[str, tuple]]) -> list[Path]:
    """The cache folders the (experiment, pair) items of ``todo`` train into (null: one per sample)."""
    folders = []
    for experiment, (spec_a, spec_b, matched) in todo:
        folders += ([cache_folder(cache, design, spec) for spec in (spec_a, spec_b)] if experiment == "null"
                    else [cache_folder(cache, design, spec_a, spec_b, matched)])
    return list(dict.fromkeys(folders))


def trained_culture(cache: Path, spec: tuple, design: Design) -> cultures.CultureRuns:
    """Train (or read from ``cache``) one culture's trials, unmatched."""
    dialect, n, seed, name = spec
    dataset = design.dataset(dialect, n, seed, name)
    folder = cache_folder(cache, design, spec)
    if (folder / "done").exists():
        return _load_culture(folder, dataset, name)
    splits = cultures.culture_splits(dataset, design.trials, design.split_kind, seed, design.fractions)
    runs = cultures.train_culture(dataset, name, splits, replace(design.train_config(), seed=seed),
                                  design.model_config(), progress=False)
    _save_culture(folder, runs)
    (folder / "done").write_text("")
    return runs


def _save_culture(folder: Path, runs: cultures.CultureRuns) -> None:
    for trial, (model, test) in enumerate(zip(runs.models, runs.test_indices)):
        model.save(folder / f"trial{trial}", overwrite=True)  # an unfinished cache folder is trained again
        np.save(folder / f"trial{trial}" / "test.npy", test)


def trained_pair(cache: Path, spec_a: tuple, spec_b: tuple, matched: bool, design: Design
                 ) -> tuple[cultures.CultureRuns, cultures.CultureRuns]:
    """Train (or read from ``cache``) both cultures' trials for one pair."""
    datasets = [design.dataset(*spec) for spec in (spec_a, spec_b)]
    folder = cache_folder(cache, design, spec_a, spec_b, matched)
    if (folder / "done").exists():
        return tuple(_load_culture(folder / spec[3], data, spec[3]) for spec, data in zip((spec_a, spec_b), datasets))
    runs = cultures.train_pair(datasets[0], datasets[1], (spec_a[3], spec_b[3]), trials=design.trials, matched=matched,
                          split_kind=design.split_kind, fractions=design.fractions, train_config=design.train_config(),
                          model_config=design.model_config(), progress=False)
    for culture in runs:
        _save_culture(folder / culture.name, culture)
    (folder / "done").write_text("")
    return runs


def _load_culture(folder: Path, dataset, name: str) -> cultures.CultureRuns:
    trials = sorted(folder.glob("trial*"), key=lambda p: int(p.name[5:]))
    return cultures.CultureRuns(name, dataset, tuple(TrainedModel.load(t) for t in trials),
                           tuple(np.load(t / "test.npy") for t in trials))


def analyse_pair(a: cultures.CultureRuns, b: cultures.CultureRuns,
                 config: cultures.CompareConfig) -> tuple[dict, pd.DataFrame]:
    """The full comparison of one pair, and the smallest adjusted p of each family."""
    result = comparison.compare(a, b, face_regions(a.dataset), face_regions(b.dataset), config)
    row = {
        **_accuracy_row(result.accuracy),
        "balanced_accuracy_p": result.tests["balanced_accuracy"]["p_value"],
        **_saliency_row(result.tables["saliency_measures"], result.pixel, a.name, b.name,
                        list(result.region_tests["region"].unique()), config),
        "filter_p": result.tests["filters"]["p_value"],
        "class_error_min_p_adjusted": float(result.tables["class_error_tests"]["p_adjusted"].min()),
        "cka_between": float(result.tables["cka"].query("kind == 'between'")["cka"].mean()),
        "cka_within": float(result.tables["cka"].query("kind != 'between'")["cka"].mean()),
    }
    return row, result.region_tests


def _accuracy_row(test: dict) -> dict:
    """The accuracy test, its interval over trials and (the models fixed) over test people, where recorded."""
    return {"accuracy_p": test["p_value"], "accuracy_diff": test["diff"], "accuracy_a": test["culture_a"],
            "accuracy_b": test["culture_b"], "accuracy_ci_low": test["ci_low"], "accuracy_ci_high": test["ci_high"],
            "accuracy_measured_ci_low": test.get("measured_ci_low"),
            "accuracy_measured_ci_high": test.get("measured_ci_high")}


def _saliency_row(measures: pd.DataFrame, pixel: dict, name_a: str, name_b: str, regions: list[str],
                  config: cultures.CompareConfig) -> dict:
    """Smallest adjusted p of the region tests (trials, max-T; and images, Holm), proximity and pixels."""
    trials = features.measure_tests(measures, name_a, name_b, regions, config)
    images = features.measure_tests(measures, name_a, name_b, regions,
                                    replace(config, unit="images", correction="holm"))
    proximity = features.measure_tests(measures, name_a, name_b, ["landmark_distance"], config)
    return {"region_min_p_adjusted": float(trials["p_adjusted"].min()),
            "region_min_p_adjusted_images_unit": float(images["p_adjusted"].min()),
            "proximity_min_p_adjusted": float(proximity["p_adjusted"].min()),
            "pixel_min_p_fwer": float(pixel["p_fwer"].min())}


def null_rows(samples: dict[str, cultures.CultureRuns], pairs: list[tuple[str, str]], config: cultures.CompareConfig
              ) -> pd.DataFrame:
    """H1 and saliency tests of every null pair; each sample's predictions and maps are computed once."""
    measured, region_names = {}, []
    for name, runs in tqdm(samples.items(), desc="saliency of null samples"):
        regions = face_regions(runs.dataset)
        measures, maps = features.saliency_measures(runs, regions, config)
        measured[name] = (accuracy.predictions_frame(runs), measures, maps)
        region_names = list(regions.region_names)
    rows = []
    for name_a, name_b in pairs:
        (pred_a, meas_a, maps_a), (pred_b, meas_b, maps_b) = measured[name_a], measured[name_b]
        measures = pd.concat([meas_a, meas_b], ignore_index=True)
        pixel = features.pixel_difference(measures, np.concatenate([maps_a, maps_b]), name_a, name_b, config)
        rows.append({"pair": f"{name_a}-{name_b}", **_accuracy_row(accuracy.accuracy_test(pred_a, pred_b, config)),
                     "balanced_accuracy_p":
                         accuracy.accuracy_test(pred_a, pred_b, config, "balanced_accuracy")["p_value"],
                     **_saliency_row(measures, pixel, name_a, name_b, region_names, config)})
    return pd.DataFrame(rows)


def accuracy_only(a: cultures.CultureRuns, b: cultures.CultureRuns, config: cultures.CompareConfig) -> dict:
    """H1 alone: the accuracy test of one pair."""
    classes = shared_classes(a.dataset.classes, b.dataset.classes)
    return accuracy.accuracy_test(accuracy.predictions_frame(a, classes=classes),
                                  accuracy.predictions_frame(b, classes=classes), config)


def simulated_null(pairs: int, trials: int, images: int, model_spread: float, seed: int,
                   config: cultures.CompareConfig) -> dict:
    """False-positive rates of the region tests (trials vs images as unit) on simulated null pairs.

    Per culture and trial a model shift ~ N(0, model_spread) is added to every image's value of
    each (emotion, region); images vary with SD 1 around it. Both cultures share the truth.
    """
    rng = np.random.default_rng(seed)
    emotions, regions = ["afraid", "angry", "happy", "sad", "surprised"], ["eyes", "brows", "nose", "mouth"]
    hits = {"trials": 0, "images": 0}
    images_config = replace(config, unit="images", correction="holm", n_permutations=499)
    for _ in range(pairs):
        rows = []
        for culture in ("A", "B"):
            for trial in range(trials):
                shift = rng.normal(0, model_spread, (len(emotions), len(regions)))
                for e, emotion in enumerate(emotions):
                    values = shift[e] + rng.normal(0, 1, (images, len(regions)))
                    for i, value in enumerate(values):
                        rows.append({"culture": culture, "trial": trial, "image": f"{culture}{trial}-{e}-{i}",
                                     "emotion": emotion, **dict(zip(regions, value))})
        measures = pd.DataFrame(rows)
        hits["trials"] += features.measure_tests(measures, "A", "B", regions, config)["p_adjusted"].min() < 0.05
        hits["images"] += features.measure_tests(measures, "A", "B", regions, images_config)["p_adjusted"].min() < 0.05
    return {"model_spread": model_spread, "pairs": pairs, **{f"fpr_{k}_unit": v / pairs for k, v in hits.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the result JSON/CSV files (e.g. benchmarks/results/calibration)")
    parser.add_argument("--overwrite", action="store_true", help="replace result files that exist in --out")
    parser.add_argument("--cache", type=Path, default=Path(".emofx_cache/calibration"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the pipeline")
    parser.add_argument("--experiments", default="planted,imbalance,null",
                        help=f"comma-separated, of {','.join(EXPERIMENTS)} (default planted,imbalance,null)")
    parser.add_argument("--stage", choices=("train", "analyse", "all"), default="all")
    parser.add_argument("--null-samples", type=int, help="independent null samples (>= 2 x pairs: disjoint pairs)")
    parser.add_argument("--imbalance-pairs", type=int, help="replicate pairs of the imbalance experiment")
    parser.add_argument("--null-per-class", type=int, help="images per emotion in each null sample")
    parser.add_argument("--images-per-person", type=int, help="images of each emotion one synthetic person poses")
    parser.add_argument("--size", type=int, help="image side in pixels")
    parser.add_argument("--epochs", type=int, help="training epochs per model")
    parser.add_argument("--split-kind", choices=("subject", "random", cultures.INDEPENDENT),
                        help="how trials split a culture: re-split its people (subject, the default) or "
                             "give each trial its own people (independent)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                        help="train without flips and rotations")
    parser.add_argument("--widths", type=int_tuple,
                        help="conv widths, comma-separated (default 8,16,16)")
    parser.add_argument("--dense-units", type=int, help="units of the dense layer (default 32)")
    parser.add_argument("--planted-per-class", type=int, help="images per emotion of each planted culture")
    args = parser.parse_args(argv)
    design = Design.quick() if args.quick else Design()
    overrides = {"null_samples": args.null_samples, "imbalance_pairs": args.imbalance_pairs, "size": args.size,
                 "null_per_class": args.null_per_class, "images_per_person": args.images_per_person,
                 "epochs": args.epochs, "split_kind": args.split_kind, "planted_per_class": args.planted_per_class,
                 "augment": args.augment, "widths": args.widths, "dense_units": args.dense_units}
    design = replace(design, **{k: v for k, v in overrides.items() if v is not None})
    config = cultures.CompareConfig(n_permutations=1999, n_boot=1000, cka_images=100, progress=False)
    try:  # settings the library refuses (e.g. --epochs 0): one line, before any training
        pairs, _, _ = culture_pairs(design), design.train_config(), design.model_config()
    except ValueError as error:
        parser.error(str(error))
    wanted = list(dict.fromkeys(e for e in args.experiments.split(",") if e))
    unknown = sorted(set(wanted) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"--experiments: unknown {', '.join(unknown)}; choose from {','.join(EXPERIMENTS)}")
    written = [e for e in wanted if e == "simulated" or args.stage != "train"]
    refuse_existing(parser, [args.out / name for e in written for name in result_files(design, e)], "--out",
                    args.overwrite)
    todo = [(e, spec) for e in wanted if e != "simulated" for spec in pairs[e]]
    if args.stage == "analyse":
        missing = [str(f) for f in cache_folders(args.cache, design, todo) if not (f / "done").exists()]
        if missing:
            parser.error(f"--stage analyse: {len(missing)} trained models missing from --cache (e.g. {missing[0]}); "
                         "run --stage train with the same options first")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    header = {"design": asdict(design), "compare_config": asdict(config)}
    if "simulated" in wanted:
        spreads = (0.0, 0.5) if args.quick else (0.0, 0.25, 0.5, 1.0)
        sims = [simulated_null(10 if args.quick else 100, design.trials, 4, spread, design.seed, config)
                for spread in tqdm(spreads, desc="simulated null")]
        _write_report(args.out / result_files(design, "simulated")[-1], {**header, "simulated_null": sims})
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

    if "planted" in wanted:
        (key,) = [k for k in trained if k[0] == "planted"]
        row, tests = analyse_pair(*trained[key], config)
        table, report = result_files(design, "planted")
        tests.to_csv(args.out / table, index=False)
        _write_report(args.out / report, {**header, "planted": {**row, **planted_verdict(tests)}})
    if "imbalance" in wanted:
        rows = [{"pair": k[1][2], "matched": k[3], **accuracy_only(*runs, config)}
                for k, runs in trained.items() if k[0] == "imbalance"]
        frame = pd.DataFrame(rows)
        table, report = result_files(design, "imbalance")
        frame.to_csv(args.out / table, index=False)
        _write_report(args.out / report, {**header, "imbalance": frame[
            ["pair", "matched", "culture_a", "culture_b", "diff", "p_value",
             "ci_low", "ci_high"]].to_dict(orient="records")})
    if "null" in wanted:
        null = [runs for k, runs in trained.items() if k[0] == "null"]
        samples = {c.name: c for pair in null for c in pair}
        frame = null_rows(samples, [(a.name, b.name) for a, b in null], config)
        table, report = result_files(design, "null")
        frame.to_csv(args.out / table, index=False)
        _write_report(args.out / report, {**header, "null": null_summary(frame)})
    print(f"done in {time.perf_counter() - started:.0f}s")


def _write_report(path: Path, report: dict) -> None:
    """One JSON file per experiment (experiments may run as separate processes)."""
    path.write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float), flush=True)


def planted_verdict(tests: pd.DataFrame, alpha: float = 0.01) -> dict:
    """Which expected differences reach adjusted p < ``alpha``: eyes/brows higher for ``eyes`` (culture a),
    mouth higher for ``mouth`` (culture b); per expressive emotion (not neutral) and region-level (emotion "all")."""
    expected = {"eyes": 1, "brows": 1, "mouth": -1}
    rows = tests[tests["region"].isin(list(expected)) & (tests["emotion"] != "neutral")]
    direction = np.sign(rows["diff"]) * rows["region"].map(expected)
    flagged = rows[(rows["p_adjusted"] < alpha) & (direction > 0)]
    cells, pooled = rows[rows["emotion"] != cultures.ALL_EMOTIONS], flagged[flagged["emotion"] == cultures.ALL_EMOTIONS]
    flagged_cells = flagged[flagged["emotion"] != cultures.ALL_EMOTIONS]
    return {
        "alpha": alpha,
        "region_level_flagged": sorted(pooled["region"]),
        "region_level_expected": sorted(expected),
        "cells_flagged": len(flagged_cells),
        "cells_expected": len(cells),
        "cells_flagged_by_region": flagged_cells.groupby("region").size().to_dict(),
        "wrong_direction_flagged": int(((rows["p_adjusted"] < alpha) & (direction < 0)).sum()),
    }


def null_summary(frame: pd.DataFrame, alpha: float = 0.05) -> dict:
    """False-positive rates per family and the accuracy p-value distribution."""
    families = ["region_min_p_adjusted", "region_min_p_adjusted_images_unit", "proximity_min_p_adjusted",
                "pixel_min_p_fwer", "accuracy_p", "balanced_accuracy_p"]
    return {
        "pairs": len(frame),
        "false_positive_rate": {f: float((frame[f] < alpha).mean()) for f in families},
        "any_region_or_accuracy": float(((frame["region_min_p_adjusted"] < alpha)
                                         | (frame["accuracy_p"] < alpha)).mean()),
        "any_family": float((frame[["region_min_p_adjusted", "proximity_min_p_adjusted", "pixel_min_p_fwer",
                                    "accuracy_p"]] < alpha).any(axis=1).mean()),
        "accuracy_interval_excludes_0": {  # under the null a 95% interval should for about 5% of the pairs
            name: float(((frame[f"{prefix}_low"] > 0) | (frame[f"{prefix}_high"] < 0)).mean())
            for name, prefix in (("trials", "accuracy_ci"), ("test_people_models_fixed", "accuracy_measured_ci"))
            if f"{prefix}_low" in frame},
        "accuracy_p_values": sorted(frame["accuracy_p"].round(4).tolist()),
        "accuracy_p_quantiles": frame["accuracy_p"].quantile([0.1, 0.25, 0.5, 0.75, 0.9]).round(3).to_dict(),
    }


if __name__ == "__main__":
    main()
