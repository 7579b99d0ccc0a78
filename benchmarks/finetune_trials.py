"""Fine-tuning arms on the cultures: one row per trial, ensembles of arms, and mean ± std per arm.

Each arm trains 5 subject-independent trials per culture into ``ROOT/<dataset>/<arm>/trial-<k>``
(the commands are in ``benchmarks/results/finetune/README.md``); then

    python -m benchmarks.finetune_trials runs/finetune --out benchmarks/results/finetune \\
        --arms fer40+20s1 fer40+20s2 --ensemble fer40+20s1,fer40+20s2

writes to ``--out``: ``trials.csv`` (dataset, arm, trial, train and test images, test and balanced
accuracy, best validation error, epochs run, wall seconds, device), ``ensembles.csv`` (dataset,
members, trial, test images, test and balanced accuracy: each trial's test images scored with the
members' probabilities averaged, as ``emofx evaluate RUN...`` does) and ``summary.md`` (mean ± std
over trials of every arm and ensemble). On a dataset with observers' ratings (the Taiwanese set) each
row also scores the rated test images against the observers (``rated_images``, ``rated_accuracy``,
``observer_accuracy``: one observer on average, ``plurality_accuracy``: the observers' most chosen
emotion; :func:`emofx.study.baselines.against_observers`), and the summary pools them over trials.
With ``--pooled ARM`` the runs in ``ROOT/pooled/ARM/trial-<k>``, trained on the cultures pooled with each
culture's own split of arm ARM (``python -m benchmarks.pooled_cultures``), are scored on each culture's
test images as rows of arm ``pooled ARM``.
Run directories do not last as the committed tables do: rows already in the CSVs are kept, and a
trial collected again replaces its row.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

from emofx.data.dataset import DatasetError, FaceDataset
from emofx.study.baselines import AGREEMENT, against_observers
from emofx.study.evaluation import Evaluation
from emofx.study.runs import RunError, evaluate_runs, load_run, shared_test_images

TRIAL = re.compile(r"trial-(\d+)$")
TRIAL_KEY = ["dataset", "arm", "trial"]
ENSEMBLE_KEY = ["dataset", "members", "trial"]
MEMBERS = " & "  # arm names may hold "+" (e.g. fer40+20s1)
POOLED = "pooled"  # ROOT/pooled/<arm>/trial-<k>: trained on the cultures pooled, rows of arm "pooled <arm>"
DIGITS = {"test_accuracy": 6, "balanced_accuracy": 6, "best_val_error": 4, "epochs_run": 1, "seconds": 1,
          "rated_images": 0, "rated_accuracy": 6, "observer_accuracy": 6, "plurality_accuracy": 6}
OBSERVER_COLUMNS = {"rated_accuracy": "model", "observer_accuracy": "one observer",
                    "plurality_accuracy": "observers' plurality"}


def trial_directories(root: Path, dataset: str, arm: str) -> dict[int, Path]:
    """Trial number -> finished run directory of one arm on one dataset."""
    found = {}
    for directory in sorted((root / dataset / arm).glob("trial-*")):
        match = TRIAL.search(directory.name)
        if match and (directory / "metrics.json").is_file():
            found[int(match.group(1))] = directory
    return found


def observer_columns(images: FaceDataset, evaluation: Evaluation) -> dict:
    """The rated test images' scores against the observers as row columns (none without ratings)."""
    scores = against_observers(images, evaluation.predictions == evaluation.labels)
    if scores is None:
        return {}
    return {"rated_images": scores["rated_images"], "rated_accuracy": scores["model_accuracy"],
            "observer_accuracy": scores["observer_accuracy"], "plurality_accuracy": scores["plurality_accuracy"]}


def trial_row(dataset: str, arm: str, trial: int, directory: Path) -> dict:
    """One finished trial as a row of ``trials.csv``."""
    run = load_run(directory)
    metrics = run.metrics
    images = shared_test_images([run])
    # metrics.json holds the accuracies; the model is scored again only where observers rated the images.
    observers = observer_columns(images, evaluate_runs([run], images)) if AGREEMENT in images.extras else {}
    return {"dataset": dataset, "arm": arm, "trial": trial, "n_train": metrics["n_train"], "n_test": metrics["n_test"],
            "test_accuracy": metrics["test_accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
            **_training_columns(metrics), **observers}


def pooled_row(dataset: str, arm: str, trial: int, pooled: Path, reference: Path) -> dict:
    """A run trained on the cultures pooled (``benchmarks.pooled_cultures``), scored on one culture's test images.

    ``reference`` is that culture's trial of the arm whose splits the pooled set kept: its test images
    must be among the pooled run's."""
    run, images = load_run(pooled), shared_test_images([load_run(reference)])
    tested = {image.tobytes() for image in run.dataset().subset(run.split.test).images}
    if not all(image.tobytes() in tested for image in images.images):
        raise RunError(f"{pooled} was not tested on the test images of {reference}: make its dataset with "
                       f"python -m benchmarks.pooled_cultures from arm {arm}")
    evaluation = evaluate_runs([run], images)
    return {"dataset": dataset, "arm": f"{POOLED} {arm}", "trial": trial, "n_train": run.metrics["n_train"],
            "n_test": evaluation.n, "test_accuracy": evaluation.accuracy,
            "balanced_accuracy": evaluation.balanced_accuracy, **_training_columns(run.metrics),
            **observer_columns(images, evaluation)}


def _training_columns(metrics: dict) -> dict:
    """What a row says of a run's training: best validation error, epochs, wall time, device."""
    steps_per_epoch = math.ceil(metrics["n_train"] / metrics["config"]["train"]["batch_size"])
    return {"best_val_error": metrics["best_val_error"], "epochs_run": metrics["steps"] / steps_per_epoch,
            "seconds": metrics["seconds"], "device": metrics.get("device", "unknown")}


def ensemble_row(dataset: str, members: list[str], trial: int, directories: list[Path]) -> dict:
    """One trial's test images scored by the members' averaged probabilities."""
    runs = [load_run(d) for d in directories]
    images = shared_test_images(runs)
    evaluation = evaluate_runs(runs, images)
    return {"dataset": dataset, "members": MEMBERS.join(members), "trial": trial, "n_test": evaluation.n,
            "test_accuracy": evaluation.accuracy, "balanced_accuracy": evaluation.balanced_accuracy,
            **observer_columns(images, evaluation)}


def merged(new_rows: list[dict], path: Path, key: list[str]) -> pd.DataFrame:
    """``path``'s rows with ``new_rows`` added; a new row replaces an earlier one with the same key."""
    new = pd.DataFrame(new_rows)
    if not path.is_file():
        return new
    earlier = pd.read_csv(path)
    if new.empty:
        return earlier
    kept = earlier.merge(new[key], on=key, how="left", indicator=True)["_merge"] == "left_only"
    return pd.concat([earlier[kept.to_numpy()], new], ignore_index=True)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as CSV with fixed digits per column (earlier rows keep their look; missing cells empty)."""
    formatted = table.copy()
    for column, digits in DIGITS.items():
        if column in formatted:
            formatted[column] = formatted[column].map(lambda value: "" if pd.isna(value) else f"{value:.{digits}f}")
    formatted.to_csv(path, index=False)


def summary_markdown(trials: pd.DataFrame, ensembles: pd.DataFrame) -> str:
    """Mean ± std over trials of every arm and ensemble, one table per dataset."""
    lines = ["# Fine-tuning arms on the cultures: mean ± std over subject-independent trials", "",
             "Written by `python -m benchmarks.finetune_trials` from `trials.csv` and `ensembles.csv`; "
             "the arms and their commands are in `README.md`.", ""]
    groups = [(table, column) for table, column in ((trials, "arm"), (ensembles, "members")) if not table.empty]
    for dataset in sorted(set(trials.get("dataset", [])) | set(ensembles.get("dataset", []))):
        lines += [f"## {dataset}", "", "| arm or ensemble | trials | test accuracy | balanced accuracy |",
                  "|---|---|---|---|"]
        for table, column in groups:
            rows = table[table["dataset"] == dataset]
            for name, arm in rows.groupby(column, sort=False):
                label = name if column == "arm" else f"ensemble of {name}"
                lines.append(f"| {label} | {len(arm)} | {_pm(arm['test_accuracy'])} | "
                             f"{_pm(arm['balanced_accuracy'])} |")
        lines += ["", *_observer_lines(groups, dataset)]
    return "\n".join(lines)


def _observer_lines(groups: list[tuple[pd.DataFrame, str]], dataset: str) -> list[str]:
    """Each arm's and ensemble's rated test images against the observers, pooled over trials."""
    lines = []
    for table, column in groups:
        if "rated_images" not in table:
            continue
        rows = table[(table["dataset"] == dataset) & table["rated_images"].notna()]
        for name, arm in rows.groupby(column, sort=False):
            weights = arm["rated_images"] / arm["rated_images"].sum()
            cells = " | ".join(f"{100 * (arm[c] * weights).sum():.1f}%" for c in OBSERVER_COLUMNS)
            label = name if column == "arm" else f"ensemble of {name}"
            lines.append(f"| {label} | {len(arm)} | {int(arm['rated_images'].sum())} | {cells} |")
    if not lines:
        return []
    return ["Against the observers: the rated test images (those the observers could label) pooled over trials; "
            "the share each names the posed emotion:", "",
            "| arm or ensemble | trials | rated images | " + " | ".join(OBSERVER_COLUMNS.values()) + " |",
            "|---|---|---|---|---|---|", *lines, ""]


def _pm(values: pd.Series) -> str:
    spread = f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else ""
    return f"{100 * values.mean():.1f}%{spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder holding <dataset>/<arm>/trial-<k> run directories")
    parser.add_argument("--out", type=Path, required=True, help="folder for trials.csv, ensembles.csv, summary.md")
    parser.add_argument("--datasets", nargs="+", default=["kdef", "taiwanese"])
    parser.add_argument("--arms", nargs="*", default=[], help="arms whose trials to collect (default: none)")
    parser.add_argument("--ensemble", action="append", default=[], metavar="ARM,ARM[,...]",
                        help="score each trial with these arms' models averaged (repeatable)")
    parser.add_argument("--pooled", nargs="*", default=[], metavar="ARM",
                        help=f"score ROOT/{POOLED}/ARM/trial-<k> (trained on the cultures pooled with "
                             "benchmarks.pooled_cultures, keeping ARM's splits) on each dataset's test images")
    args = parser.parse_args(argv)
    ensembles = [[m for m in spec.split(",") if m] for spec in args.ensemble]
    for spec, members in zip(args.ensemble, ensembles):
        if len(set(members)) != len(members):
            parser.error(f"--ensemble {spec} names an arm twice; its models would count twice in the ensemble")
    trial_rows, ensemble_rows = [], []
    pooled = {arm: trial_directories(args.root, POOLED, arm) for arm in args.pooled}
    for arm in [arm for arm, found in pooled.items() if not found]:
        print(f"no finished trials of arm {arm} in {args.root / POOLED / arm}", file=sys.stderr)
    try:
        for dataset in args.datasets:
            for arm in args.arms:
                found = trial_directories(args.root, dataset, arm)
                if not found:
                    print(f"no finished trials of arm {arm} in {args.root / dataset / arm}", file=sys.stderr)
                trial_rows += [trial_row(dataset, arm, k, d) for k, d in found.items()]
            for arm, runs in pooled.items():
                found = trial_directories(args.root, dataset, arm)
                for k in sorted(runs):
                    if k not in found:
                        print(f"pooled trial {k} of arm {arm} has no finished trial in {args.root / dataset / arm} "
                              "to take the test images from; left out", file=sys.stderr)
                        continue
                    trial_rows.append(pooled_row(dataset, arm, k, runs[k], found[k]))
            for members in ensembles:
                found = [trial_directories(args.root, dataset, m) for m in members]
                for k in sorted(set.intersection(*(set(f) for f in found))):
                    ensemble_rows.append(ensemble_row(dataset, members, k, [f[k] for f in found]))
    except (RunError, DatasetError, OSError) as err:  # a run or its dataset file changed or gone
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    trials = merged(trial_rows, args.out / "trials.csv", TRIAL_KEY)
    ensembles = merged(ensemble_rows, args.out / "ensembles.csv", ENSEMBLE_KEY)
    if trials.empty and ensembles.empty:
        print("nothing collected: no finished trials of the given arms and no earlier rows", file=sys.stderr)
        return 2
    for table, name in ((trials, "trials.csv"), (ensembles, "ensembles.csv")):
        if not table.empty:
            write_table(table, args.out / name)
    (args.out / "summary.md").write_text(summary_markdown(trials, ensembles))
    print(f"{len(trial_rows)} trials and {len(ensemble_rows)} ensemble trials collected -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
