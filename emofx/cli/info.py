"""Summarise a dataset (images, classes, cultures, subjects, splits, skipped inputs) or a run.

    emofx info kdef.npz            # a readable table
    emofx info kdef.npz --json     # exactly one JSON object (n, classes, counts, cultures,
                                   # subjects, image_shape, splits, skipped, ...)
    emofx info runs/fer2013        # a run directory: finished, or how far a long (or killed)
                                   # training got and how to continue it
    emofx info runs/               # every run below a folder, finished or not: one row each
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.faces import IMAGE_SUFFIXES
from emofx.data.overview import dataset_table
from emofx.study.run_status import holds_run, run_status, runs_status
from emofx.study.runs import RunError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx info` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("path", type=Path, help="a dataset file written by emofx prepare or merge, a run "
                        "directory written by emofx train, or a folder of runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_table(status: dict) -> str:
    """A run's status, progress, best validation and (once finished) test numbers, one fact a line."""
    epochs = f" of {status['epochs']}" if status.get("epochs") is not None else ""
    steps = f" of {status['steps']}" if status.get("steps") is not None else ""
    state = {"unfinished": "unfinished: training now, or killed; continue it with the same `emofx train` command "
                           "plus --resume",
             "interrupted": "interrupted; continue it with the same `emofx train` command plus --resume"}
    facts = [("run", status["directory"]), ("status", state.get(status["status"], status["status"]))]
    if status.get("recipe"):
        facts.append(("training", f"recipe {status['recipe']}, norm {status['norm']}, seed {status['seed']}, "
                                  f"trial {status['trial']}"))
    if status.get("data"):
        parts = f"{status['n_train']} train, {status['n_val']} validation, {status['n_test']} test"
        split = f"{status['split']} split: {parts}" if status.get("split") else parts
        facts.append(("data", f"{status['data']} ({status.get('culture') or 'no culture named'}; {split})"))
    if status.get("epoch") is not None:
        facts.append(("progress", f"epoch {status['epoch']:g}{epochs} (step {status['step']}"
                                  f"{steps})"))
    if status.get("best_val_error") is not None:
        facts.append(("best", f"validation error {status['best_val_error']:.4f} at step {status['best_step']}"))
    if status.get("test_accuracy") is not None:
        facts.append(("test", f"accuracy {status['test_accuracy']:.4f}, balanced {status['balanced_accuracy']:.4f}, "
                              f"macro F1 {status['macro_f1']:.4f} ({status['n_test']} images)"))
    trained = f"{status['seconds']:.0f} s"
    if status.get("device"):
        trained += f" on {status['device']}"
    if status.get("saved_at"):
        trained += f"; training state saved {status['saved_at']}"
    facts.append(("trained", trained))
    width = max(len(k) for k, _ in facts)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in facts)


def with_batch_status(frame: pd.DataFrame, parent: Path) -> pd.DataFrame:
    """``frame`` (:func:`runs_status`) with what ``emofx batch`` recorded of the notebook run that holds each
    training run, where that is not ``ok``: a notebook that failed after training, or a batch run stopped mid-way
    (which the next batch does again from the start, not with --resume)."""
    from emofx.pipeline.results import RESULTS_DIR, STATUS_FILE, read_status

    frame = frame.copy()
    for index, row in frame.iterrows():
        run_dir = (parent / row["run"]).absolute()
        notebook_run = run_dir.parent.parent if run_dir.parent.name == RESULTS_DIR else None
        if notebook_run is None or not (notebook_run / f"{notebook_run.parent.name}.ipynb").is_file():
            continue  # not a run made by a batch notebook
        recorded = read_status(notebook_run)
        if recorded is None and (notebook_run / STATUS_FILE).is_file():
            frame.at[index, "status"] = f"{row['status']}; its notebook run's {STATUS_FILE} is damaged (emofx batch " \
                                        "does it again)"
        elif recorded is None:
            frame.at[index, "status"] = (f"{row['status']}; its notebook run has not finished (running now, or "
                                         "stopped: emofx batch does it again)")
        elif recorded.get("status") != "ok":
            error = recorded.get("error") or {}
            frame.at[index, "status"] = (f"{row['status']}; its notebook run {recorded.get('status')}: "
                                         f"{error.get('type', '')} {error.get('message', '')}".rstrip()
                                         + " (emofx batch does it again)")
    return frame


def _with_footnotes(frame: pd.DataFrame, width: int = 40) -> str:
    """The runs' table as text, a status longer than ``width`` (why a run cannot be read) cut to its first words
    and given in full below the table, so that the other columns stay readable."""
    notes: list[str] = []

    def short(status: str) -> str:
        if len(status) <= width:
            return status
        notes.append(status)
        return f"{re.split(r'[:(]', status, maxsplit=1)[0].strip()} [{len(notes)}]"

    shown = frame.assign(status=frame["status"].astype(str).map(short))
    return shown.to_string(index=False, float_format=lambda x: f"{x:.4g}") + "".join(
        f"\n[{k}] {note}" for k, note in enumerate(notes, 1))


def run(args: argparse.Namespace) -> int:
    """Run `emofx info` with the parsed ``args``; returns the exit status."""
    if not args.path.exists():
        raise FileNotFoundError(f"nothing at {args.path}: give a dataset file (emofx prepare), a run directory "
                                "(emofx train; a new run's appears when its first epoch is saved) or a folder of runs")
    if args.path.is_dir() and holds_run(args.path):
        status = run_status(args.path)
        print(json.dumps(status) if args.json else run_table(status))
        return 0
    if args.path.is_dir():  # a folder of runs: one row each
        try:
            frame = runs_status(args.path)
        except RunError:  # no run at or below it: a folder of images is said to be one
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in args.path.rglob("*")):
                raise
            raise FileNotFoundError(f"{args.path} is a folder of images, not a dataset or a run: make a dataset of it "
                                    f"with `emofx prepare {args.path} --format FORMAT --out data.npz` (`emofx prepare "
                                    "--help` lists the formats)") from None
        frame = with_batch_status(frame, args.path)
        print(json.dumps({"runs": json.loads(frame.to_json(orient="records"))}) if args.json
              else _with_footnotes(frame))
        return 0
    dataset = FaceDataset.load(args.path)
    print(json.dumps(dataset.info()) if args.json else dataset_table(dataset))
    return 0
