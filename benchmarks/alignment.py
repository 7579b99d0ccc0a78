"""Does aligning faces by their eyes change accuracy? KDEF and Taiwanese, aligned vs unaligned.

    python -m benchmarks.alignment --trials 5 --epochs 20 --out /tmp/alignment

Prepares each culture twice from ``$EMOFX_DATA`` (default ../shared/data) with dlib's 68 landmarks:
once aligned (eye centres on fixed positions) and once cropped from the face detector's box as
before; trains the paper's CNN with the paper's recipe on ``--trials`` subject-independent splits
of each (the same splits for both variants: they hold the same faces in the same order), and writes
``alignment.csv`` (one row per run), ``summary.csv``/``summary.md`` (per culture: mean and std of
test accuracy per variant, the difference, its permutation p-value over trials, exact for 5 vs 5)
and ``summary.json``. Finished runs are kept, so an interrupted call resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.loaders import load
from emofx.data.paths import shared_data_root
from emofx.nets.training import TrainConfig
from emofx.study import stats
from emofx.study.runs import load_run, train_run

CULTURES = {"kdef": "kdef/frontal", "taiwanese": "taiwanese"}
VARIANTS = {"aligned": True, "unaligned": False}


def prepared(culture: str, aligned: bool, folder: Path) -> FaceDataset:
    """The culture's faces with dlib68 landmarks, aligned or not (cached as .npz in ``folder``)."""
    path = folder / f"{culture}_{'aligned' if aligned else 'unaligned'}.npz"
    if path.exists():
        return FaceDataset.load(path)
    dataset = load(shared_data_root() / CULTURES[culture], culture, landmarks="dlib68", align=aligned, progress=True)
    dataset.save(path)
    return dataset


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per culture: accuracy per variant (mean, std), aligned minus unaligned, permutation p over trials."""
    out = []
    for culture, group in rows.groupby("culture", sort=False):
        acc = {v: group.loc[group["variant"] == v, "test_accuracy"].to_numpy() for v in VARIANTS}
        test = stats.permutation_test(acc["aligned"], acc["unaligned"])
        out.append({
            "culture": culture, "trials": len(acc["aligned"]),
            "aligned_mean": acc["aligned"].mean(), "aligned_std": acc["aligned"].std(ddof=1),
            "unaligned_mean": acc["unaligned"].mean(), "unaligned_std": acc["unaligned"].std(ddof=1),
            "difference": float(test.statistic), "p_value": float(test.p_value),
            "exact": bool(test.exact), "permutations": int(test.n_permutations),
        })
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", required=True, type=Path, help="folder for datasets, runs and tables")
    args = parser.parse_args(argv)
    if not shared_data_root().is_dir():
        parser.error(f"the shared data folder {shared_data_root()} is missing; set EMOFX_DATA")
    args.out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(epochs=args.epochs, patience=0)
    rows = []
    for culture in CULTURES:
        for variant, aligned in VARIANTS.items():
            dataset = prepared(culture, aligned, args.out / "data")
            for trial in range(args.trials):
                directory = args.out / "runs" / culture / variant / f"trial-{trial}"
                tick = time.perf_counter()
                if (directory / "metrics.json").exists():
                    run = load_run(directory)
                else:
                    run, _ = train_run(dataset, directory, split_kind="subject", trial=trial, train_config=config,
                                       progress=False)
                rows.append({"culture": culture, "variant": variant, "trial": trial,
                             "test_accuracy": run.metrics["test_accuracy"],
                             "balanced_accuracy": run.metrics["balanced_accuracy"],
                             "n_train": run.metrics["n_train"], "seconds": round(time.perf_counter() - tick, 1)})
                print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "alignment.csv", index=False)
    summary = summarise(frame)
    summary.to_csv(args.out / "summary.csv", index=False)
    (args.out / "summary.md").write_text(summary.to_markdown(index=False, floatfmt=".4f") + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary.to_dict(orient="records"), indent=2))
    print(summary.to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
