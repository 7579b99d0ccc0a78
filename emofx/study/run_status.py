"""Where run directories stand, from their files alone: finished (with test numbers), unfinished or interrupted
(resumable), or unreadable, for one run or every run below a folder (``emofx info``)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from emofx.nets.checkpoint import CheckpointError, TrainedModel
from emofx.nets.train_state import STATE_FILE, read_progress
from emofx.study.run_tables import SCALAR_METRICS
from emofx.study.runs import METRICS_FILE, Run, RunError, load_run


def holds_run(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` is a run directory, finished or not (it holds metrics.json or a training state)."""
    return any((Path(directory) / name).is_file() for name in (METRICS_FILE, STATE_FILE))


def interrupted_note(run: Run) -> str | None:
    """What a command using a run's model says when its training was interrupted (the model is not the last one)."""
    if run.metrics.get("stop_reason") != "interrupted":
        return None
    return (f"{run.directory} stopped before finishing (interrupted): its model is the best one saved so far; "
            "finish it with its `emofx train` command and --resume")


def run_status(directory: str | os.PathLike) -> dict[str, Any]:
    """Where a run directory stands, from its files alone (nothing is loaded onto a device).

    ``status``: ``unfinished`` (a training state and no metrics: training now, or killed; continue
    with the same command plus ``--resume``), ``interrupted`` (stopped early, state kept: resumable
    too), or the recorded ``stop_reason`` of a finished run (``completed``, ``early_stopping``,
    ``nan_loss``), or ``damaged checkpoint ...`` when its model cannot be read. Saved progress (step, epoch
    of the planned ``epochs``, best validation, seconds, ``saved_at``) comes from the training state; a finished
    run adds its test metrics and the ``data`` file it was trained on.
    """
    directory = Path(directory)
    state, metrics_file = directory / STATE_FILE, directory / METRICS_FILE
    if not holds_run(directory):
        raise RunError(f"{directory} holds no emofx run (neither {METRICS_FILE} nor {STATE_FILE}); "
                       "give a run directory written by `emofx train`")
    status: dict[str, Any] = {"directory": str(directory), "resumable": state.exists()}
    if state.exists():
        status.update(read_progress(state), status="unfinished",
                      saved_at=datetime.fromtimestamp(state.stat().st_mtime, timezone.utc).isoformat(
                          timespec="seconds"))
    if metrics_file.exists():
        run = load_run(directory)
        recorded = {key: run.metrics.get(key) for key in SCALAR_METRICS if key != "steps"}
        status.update(recorded, data=run.metrics.get("data", {}).get("path"), status=run.metrics.get("stop_reason"),
                      step=run.metrics.get("steps"),
                      epoch=float(run.history["epoch"].iloc[-1]) if len(run.history) else None)
        status.setdefault("epochs", run.metrics.get("config", {}).get("train", {}).get("epochs"))
        try:  # read from disk, as a later command would (nothing goes to a device)
            TrainedModel.load(directory)
        except CheckpointError as err:
            status["status"] = f"damaged checkpoint ({err}); train it again with --overwrite"
    return status


STATUS_COLUMNS = ("run", "status", "epoch", "epochs", "best_val_error", "test_accuracy", "seconds")


def runs_status(parent: str | os.PathLike) -> pd.DataFrame:
    """:func:`run_status` of every run at or below ``parent``, finished or not: one row each, ``run``
    relative to ``parent`` (columns :data:`STATUS_COLUMNS`); a damaged run's row says why it cannot be read
    (status ``unreadable: ...``) instead of hiding the others."""
    parent = Path(parent)
    if not parent.is_dir():
        raise RunError(f"{parent} is not a directory of runs")
    directories = sorted({p.parent for name in (METRICS_FILE, STATE_FILE) for p in parent.rglob(name)})
    if not directories:
        raise RunError(f"{parent} holds no emofx run (neither {METRICS_FILE} nor {STATE_FILE} at or below it); "
                       "give a run directory written by `emofx train`")
    rows = []
    for directory in directories:
        try:
            row = run_status(directory)
        except (ValueError, OSError) as err:  # RunError, or a file that cannot be read
            row = {"status": f"unreadable: {err}"}
        rows.append({**row, "run": str(directory.relative_to(parent))})
    return pd.DataFrame(rows).reindex(columns=STATUS_COLUMNS)
