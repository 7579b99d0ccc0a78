"""Does aligning faces by their eyes change accuracy? KDEF and Taiwanese, aligned vs unaligned.

    python -m benchmarks.alignment --trials 5 --epochs 20 --out /tmp/alignment

Prepares each culture twice from ``$EMOFX_DATA`` (default ../shared/data) with dlib's 68 landmarks:
once aligned (eye centres on fixed positions) and once cropped from the face detector's box as
before; trains the paper's CNN with the paper's recipe on ``--trials`` subject-independent splits
of each (the same splits for both variants: they hold the same faces in the same order), and writes
``alignment.csv`` (one row per run), ``summary.csv``/``summary.md`` (per culture: mean and std of
test accuracy per variant, the difference, its permutation p-value over trials, exact for 5 vs 5)
and ``summary.json``. Finished runs are kept, so an interrupted call resumes where it stopped; a
finished run made with other settings (e.g. another ``--epochs``) is refused, and a kept run reports
the seconds it recorded when it was trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.loaders import load
from emofx.data.paths import shared_data_root
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig, TrainingError
from emofx.study import stats
from emofx.study.runs import Run, RunError, load_run, run_identity, train_run

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


def kept_run(directory: Path, dataset: FaceDataset, trial: int, config: TrainConfig) -> Run | None:
    """The finished run in ``directory`` if it is the run asked for (None where there is none yet);
    :class:`RunError` when it was made with other data or settings."""
    if not (directory / "metrics.json").exists():
        return None
    run = load_run(directory)
    asked = json.loads(json.dumps(run_identity(dataset, "subject", config.seed, trial, config,
                                               ModelConfig(num_classes=len(dataset.classes)), None)))
    if run.metrics.get("identity") != asked:
        old, new = (run.metrics.get("identity") or {}).get("train_config", {}), asked["train_config"]
        what = ", ".join(f"{k} {old.get(k)} (asked {new.get(k)})" for k in sorted(old.keys() | new.keys())
                         if old.get(k) != new.get(k))
        raise RunError(f"{directory} holds a run made with other settings ({what or 'other data, split or model'}); "
                       "ask for its settings again or choose another --out")
    return run


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
    if args.trials < 1:
        parser.error(f"--trials must be at least 1; got {args.trials}")
    try:
        config = TrainConfig(epochs=args.epochs, patience=0)
    except TrainingError as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for culture in CULTURES:
        for variant, aligned in VARIANTS.items():
            dataset = prepared(culture, aligned, args.out / "data")
            for trial in range(args.trials):
                directory = args.out / "runs" / culture / variant / f"trial-{trial}"
                try:
                    run = kept_run(directory, dataset, trial, config) or train_run(
                        dataset, directory, split_kind="subject", trial=trial, train_config=config, progress=False)[0]
                except (RunError, TrainingError) as err:
                    parser.error(str(err))
                rows.append({"culture": culture, "variant": variant, "trial": trial,
                             "test_accuracy": run.metrics["test_accuracy"],
                             "balanced_accuracy": run.metrics["balanced_accuracy"],
                             "n_train": run.metrics["n_train"], "seconds": round(run.metrics["seconds"], 1)})
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
