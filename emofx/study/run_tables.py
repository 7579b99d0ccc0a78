"""Tables over recorded runs: one row of scalar metrics per run, and the test error's mean and spread."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from emofx.study.runs import Run, load_runs

SCALAR_METRICS = ("culture", "split", "recipe", "norm", "seed", "trial", "test_accuracy", "balanced_accuracy",
                  "macro_f1", "n_train", "n_val", "n_test", "best_step", "best_val_error", "steps", "stop_reason",
                  "seconds", "device")


def test_error_summary(runs: Sequence[Run]) -> dict[str, float | None]:
    """Mean and std over ``runs`` (ddof 1, as every table of emofx) of the test error, 1 - test accuracy; the std
    is None for a single run (nothing to estimate it from)."""
    errors = 1.0 - np.array([run.metrics["test_accuracy"] for run in runs], dtype=np.float64)
    return {"test_error_mean": float(errors.mean()),
            "test_error_std": float(errors.std(ddof=1)) if len(errors) > 1 else None}


def runs_frame(runs: Sequence[Run] | str | os.PathLike, relative_to: str | os.PathLike | None = None) -> pd.DataFrame:
    """A tidy table of runs: one row each, with its directory, data fingerprint, the code that trained it (emofx's
    git commit, :func:`emofx.nets.checkpoint.source_revision`) and scalar metrics.

    ``runs`` may be a parent directory (read with :func:`load_runs`); ``run`` is the directory
    relative to ``relative_to`` (default: that parent) for readable grouping.
    """
    if isinstance(runs, (str, os.PathLike)):
        relative_to = runs if relative_to is None else relative_to
        runs = load_runs(runs)
    rows = []
    for run in runs:
        name = str(run.directory.relative_to(relative_to)) if relative_to is not None else str(run.directory)
        row = {"run": name, "directory": str(run.directory), "data": run.metrics.get("data", {}).get("fingerprint"),
               "code": run.metrics.get("versions", {}).get("emofx-commit")}
        row.update({key: run.metrics.get(key) for key in SCALAR_METRICS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "directory", "data", "code", *SCALAR_METRICS])
