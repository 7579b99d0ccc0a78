r"""Aggregation methods on simulated crowds: accuracy of the aggregated labels against the truth.

7 classes with uniform true labels, 5 answers per image from a pool of 50 workers, 30% of them
low-quality (half uniform spammers, half answering one favourite class 80% of the time); good
workers are right 55-85% of the time with their own systematic confusions
(:class:`emofx.crowd.simulate.CrowdConfig` defaults). One crowd per seed. An existing ``--out``
.csv or .md is refused unless ``--overwrite``. The committed table:

    python -m benchmarks.crowd_simulated --images 2000 --seeds 0 1 2 3 4 --methods mv ds wawa \
        --out benchmarks/results/crowd/simulated
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.outputs import refuse_existing
from emofx.crowd.aggregate import METHODS, accuracy_against, aggregate_votes
from emofx.crowd.answers import tabulate_answers
from emofx.crowd.simulate import CrowdConfig, simulate_crowd
from emofx.data.emotions import EMOTIONS

CLASSES = EMOTIONS[:7]


def measure(n_images: int, seed: int, methods: list[str], config: CrowdConfig) -> list[dict]:
    truth = np.random.default_rng(seed + 1000).integers(len(CLASSES), size=n_images)
    crowd = simulate_crowd(truth, CLASSES, config, seed=seed)
    table = tabulate_answers(crowd.answers, crowd.answers["image"].to_numpy(), n_images, CLASSES)
    rows = []
    for method in methods:
        started = time.perf_counter()
        result = aggregate_votes(table.votes, table.vote_names, table.long(), method, seed=seed)
        rows.append({"seed": seed, "method": method, "accuracy": accuracy_against(result, np.asarray(CLASSES)[truth]),
                     "seconds": time.perf_counter() - started})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", choices=[m for m in METHODS if m != "ferplus"],
                        default=["mv", "ds", "glad", "mace", "wawa"])
    parser.add_argument("--out", required=True, type=Path, help="output path without suffix (.csv and .md)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .csv and .md")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1; got {args.images}")
    refuse_existing(parser, [args.out.with_suffix(".csv"), args.out.with_suffix(".md")], "--out", args.overwrite)
    started = time.perf_counter()
    runs = pd.DataFrame([row for seed in args.seeds for row in measure(args.images, seed, args.methods, CrowdConfig())])
    summary = runs.groupby("method", sort=False).agg(accuracy_mean=("accuracy", "mean"),
                                                     accuracy_sd=("accuracy", "std"),
                                                     accuracy_min=("accuracy", "min"), seconds_mean=("seconds", "mean"))
    mv = runs[runs["method"] == "mv"].set_index("seed")["accuracy"]
    summary["gain_over_mv_min"] = [float((runs[runs["method"] == m].set_index("seed")["accuracy"] - mv).min())
                                   for m in summary.index]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out.with_suffix(".csv"), index=False)
    command = "python -m benchmarks.crowd_simulated " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.with_suffix(".md").write_text(
        f"# Aggregation on simulated crowds ({args.images} images, 7 classes, 5 answers per image, "
        f"30% low-quality workers; seeds {args.seeds})\n\nCommand: `{command}`\n\n"
        f"Wall time {time.perf_counter() - started:.0f} s (shared 2-core machine; seconds are per aggregation).\n\n"
        + summary.round(4).to_markdown() + "\n")
    print(summary.round(4).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
