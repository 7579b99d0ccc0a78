"""Compare two cultures' trained runs: accuracy and confusions (H1), saliency regions, landmark
proximity, pixel-wise maps, filters (H2) and representations (CKA), with calibrated tests.

RUNS_A and RUNS_B are directories holding each culture's trial runs (made by `emofx train`);
--data-a/--data-b are the datasets those runs were trained on. OUT receives summary.json,
one CSV per table and the figures. Accuracy is tested with trials as the unit (permutation)
and given the confidence interval that inverts that test (and one over test people with the models fixed:
a bootstrap); see `emofx.study.comparison`.
Region tests have one row per (emotion, region) plus region-level rows pooled over emotions
(emotion "all"), all in one corrected family. The trials are exchangeable draws of a
culture's people only when each trial used its own people (split kind "independent" in
`emofx.study.cultures.culture_splits`); trials that re-split one sample answer for that sample.
Every trial whose balanced accuracy is not clearly above chance (one-sided permutation test on its
test images, p >= --chance-alpha) is flagged on stderr with the hypotheses it undermines;
--exclude-chance leaves such trials out of every test. Which emotions the models take for which is
tested per pair of distinct emotions over trials (confusion_tests.csv, confusion_differences.png).
With too few trials for any test over trials to reach p < 0.05 (2 or 3 per culture), stderr says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emofx.cli.saliency import at_least_one, clear_outputs, refuse_to_overwrite
from emofx.data.dataset import FaceDataset
from emofx.data.paths import given_twice
from emofx.data.regions import METHODS as REGION_METHODS
from emofx.data.regions import face_regions
from emofx.explain.saliency import METHODS as SALIENCY_METHODS
from emofx.plotting.comparison import FIGURE_NAMES, save_comparison_figures
from emofx.study.comparison import check_comparable, compare, json_ready
from emofx.study.cultures import CORRECTIONS, UNITS, CompareConfig, CultureRuns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx compare` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("runs_a", type=Path, help="directory of culture A's trial runs")
    parser.add_argument("runs_b", type=Path, help="directory of culture B's trial runs")
    parser.add_argument("--data-a", type=Path, required=True, help="dataset (.npz) culture A's runs were trained on")
    parser.add_argument("--data-b", type=Path, required=True, help="dataset (.npz) culture B's runs were trained on")
    parser.add_argument("--out", type=Path, required=True, help="output directory (summary.json, CSVs, PNGs)")
    parser.add_argument("--name-a", help="culture A's name (default: the dataset's culture)")
    parser.add_argument("--name-b", help="culture B's name (default: the dataset's culture)")
    parser.add_argument("--saliency", default="guided", choices=list(SALIENCY_METHODS),
                        help="attribution method (default guided)")
    parser.add_argument("--regions", default="auto", choices=list(REGION_METHODS),
                        help="facial regions (default auto: ground truth on synthetic data, else the 68 "
                             "landmarks where the data has them, else the eye cascade)")
    parser.add_argument("--unit", default="trials", choices=list(UNITS),
                        help="unit of the saliency tests (default trials)")
    parser.add_argument("--correction", default="maxT", choices=list(CORRECTIONS),
                        help="multiple-comparison correction (default maxT, which needs --unit trials)")
    parser.add_argument("--permutations", type=int, default=9999,
                        help="Monte-Carlo permutations when not exact (default 9999)")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples of the test people for the accuracy interval with the models fixed "
                             "(default 2000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of permutations, bootstrap and probe images (default 0)")
    parser.add_argument("--chance-alpha", type=float, default=0.01,
                        help="flag trials whose balanced accuracy is not above chance at this level (default 0.01)")
    parser.add_argument("--exclude-chance", action="store_true", help="leave flagged trials out of every test")
    parser.add_argument("--no-figures", action="store_true", help="write tables and summary only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing comparison in --out")


def run(args: argparse.Namespace) -> int:
    """Run `emofx compare` with the parsed ``args``; returns the exit status."""
    refuse_to_overwrite(args.out, ("summary.json",), args.overwrite)
    if given_twice([args.runs_a, args.runs_b]) is not None:
        raise ValueError(f"{args.runs_a} and {args.runs_b} are the same folder of runs: a comparison sets two "
                         "cultures' runs side by side; give each culture's own")
    for flag, value in (("--permutations", args.permutations), ("--bootstrap", args.bootstrap)):
        at_least_one(value, flag)
    config = CompareConfig(saliency_method=args.saliency, unit=args.unit, correction=args.correction,
                           n_permutations=args.permutations, n_boot=args.bootstrap, seed=args.seed,
                           chance_alpha=args.chance_alpha, exclude_chance=args.exclude_chance)
    a, b = (CultureRuns.load(runs_dir, FaceDataset.load(data_path), name)  # of several cultures: the runs' own part
            for runs_dir, data_path, name in ((args.runs_a, args.data_a, args.name_a),
                                              (args.runs_b, args.data_b, args.name_b)))
    if a.name == b.name:
        raise ValueError(f"both cultures are named {a.name!r}; name them with --name-a/--name-b")
    check_comparable(a, b)  # before the regions of every face are searched (minutes on FER2013)
    regions_a, regions_b = (face_regions(runs.dataset, args.regions, progress=True) for runs in (a, b))
    result = compare(a, b, regions_a, regions_b, config)
    clear_outputs(Path(args.out), [*(f"{name}.png" for name in FIGURE_NAMES),
                                   *(f"{name}.csv" for name in result.tables),
                                   "pixel_difference.npz", "summary.json"])  # an earlier comparison's, figures too
    result.save(args.out)
    if not args.no_figures:
        save_comparison_figures(result, args.out)
    accuracy = result.accuracy
    for note in result.notes:
        print(f"emofx compare: {note}", file=sys.stderr)
    print(json.dumps({
        "cultures": [a.name, b.name],
        "accuracy": json_ready({k: accuracy[k] for k in ("culture_a", "culture_b", "diff", "p_value", "ci_low",
                                                          "ci_high", "measured_ci_low", "measured_ci_high")}),
        **{f"significant_{name}": count for name, count in result.significant_counts().items()},
        "trials_not_above_chance": result.summary()["chance"]["flagged"],
        "out": str(args.out),
    }, indent=2))
    return 0
