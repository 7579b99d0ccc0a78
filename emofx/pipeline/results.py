"""What a batch run leaves behind and how it is read: status markers, results written by notebooks, tables of runs.

``status.json`` is written last and atomically, so readers only ever see complete runs."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from emofx.data.paths import RecordError, atomic_write, read_json_record

STATUS_FILE = "status.json"
RESULTS_DIR = "results"
RESULTS_FILE = "results.json"
UNREADABLE = "unreadable"  # the status of a run whose status.json is damaged
PLAN_FILE = "plan.json"  # the runs of each notebook that the experiment file's configuration makes (emofx batch)
NOT_PLANNED = "not in plan"  # the status of a completed run that the experiment file no longer makes


# ----------------------------------------------------------------------------- state of a run


def run_state(run_dir: Path, expected_hash: str, expected_inputs: str = "") -> str:
    """``complete``, ``failed``, ``changed`` (other parameters or inputs), ``interrupted`` or ``new``."""
    status = read_status(run_dir)
    if status is None:
        return "interrupted" if run_dir.exists() else "new"
    if status.get("parameter_hash") != expected_hash or status.get("inputs", "") != expected_inputs:
        return "changed"
    return "complete" if status.get("status") == "ok" else "failed"


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's completion marker, or None when there is none (never run or interrupted) or it is damaged (a
    batch then runs it again; :func:`read_runs` reports it)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        return read_json_record(path) if path.is_file() else None
    except RecordError:
        return None


def _atomic_write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_results(output_dir: str | os.PathLike, **values: Any) -> Path:
    """Write a notebook's scalar results to ``output_dir/results.json`` (read back by :func:`read_runs`); NaN and
    infinities become null, so the file is standard JSON."""
    from emofx.study.comparison import json_ready

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    path = output / RESULTS_FILE
    _atomic_write_json(path, json_ready(values))
    return path


DATASET_FILE = "dataset.json"
DATASET_KEPT = "dataset.npz"  # the dataset notebook 02 keeps beside its run, the one its split.json indexes


def save_dataset(output_dir: str | os.PathLike, dataset: Any, **values: Any) -> Path:
    """Write how a notebook's dataset was made to ``output_dir/dataset.json``: counts, subjects, skipped
    inputs with their reasons, face detection and landmark method, alignment (``values`` added)."""
    info = dataset.info()
    reasons = pd.Series([s["reason"] for s in info.pop("skipped")], dtype=object).value_counts()
    record = {**info, "skipped": int(reasons.sum()), "skipped_reasons": {str(k): int(v) for k, v in reasons.items()},
              **{key: dataset.meta[key] for key in ("faces", "landmarks", "aligned", "face_options", "unrated")
                 if key in dataset.meta}, **values}
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(output / DATASET_FILE, record)
    return output / DATASET_FILE


# ----------------------------------------------------------------------------- reading results


def read_json(path: Path) -> dict[str, Any]:
    """A JSON record, or ``{}`` when the file is missing (a run that did not write it); a damaged one is a
    :class:`~emofx.data.paths.RecordError` that names it."""
    return read_json_record(path) if path.is_file() else {}


def read_runs(experiment_dir: str | os.PathLike, notebook: str | None = None) -> pd.DataFrame:
    """All recorded runs of an experiment: one row per run with its notebook, run name,
    status, seconds, error, run_dir, then its parameters, then the scalars of its results.json.

    Runs without a completion marker (running or interrupted) are left out; a run whose marker is damaged is
    a row of status ``unreadable`` (with a warning: readers of ``ok`` runs leave it out, and ``emofx batch``
    runs it again), and so is, as ``not in plan``, a completed run that the experiment file no longer makes
    (:func:`write_plan`). Result keys that clash with a column are prefixed ``result.``.
    """
    root = Path(experiment_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"experiment directory {root} not found; run `emofx batch` first")
    rows = []
    for status_path in sorted(root.glob(f"{notebook or '*'}/*/{STATUS_FILE}")):
        run_dir = status_path.parent
        try:
            status = read_json_record(status_path)
        except RecordError as err:
            warnings.warn(f"{err}: run {run_dir.parent.name}/{run_dir.name} is left out (`emofx batch` runs it "
                          "again)", stacklevel=2)
            rows.append({"notebook": run_dir.parent.name, "run": run_dir.name, "status": UNREADABLE,
                         "seconds": None, "error": str(err), "run_dir": str(run_dir)})
            continue
        row: dict[str, Any] = {
            "notebook": run_dir.parent.name,
            "run": run_dir.name,
            "status": status.get("status"),
            "seconds": status.get("seconds"),
            "error": (f"{status['error']['type']}: {status['error']['message']}" if status.get("error") else ""),
            "run_dir": str(run_dir),
        }
        row.update(status.get("parameters", {}))
        results_path = run_dir / RESULTS_DIR / RESULTS_FILE
        if status.get("status") == "ok" and results_path.is_file():
            try:
                recorded = read_json_record(results_path)
            except RecordError as err:
                raise RecordError(f"{err}; run that notebook again (`emofx batch ... --force`) or remove the run "
                                  "folder") from None
            for key, value in recorded.items():
                row[f"result.{key}" if key in row else key] = value
        rows.append(row)
    _mark_unplanned(root, rows)
    _fill_defaults(rows)
    return pd.DataFrame(rows, columns=None if rows else ["notebook", "run", "status", "seconds", "error", "run_dir"])


def write_plan(experiment_dir: str | os.PathLike, runs: dict[str, list[str]], source: str | os.PathLike) -> None:
    """Record which runs of each notebook the experiment file ``source`` makes (``{notebook stem: [run names]}``),
    so that readers leave out runs an earlier configuration left in the folder (:func:`read_runs`)."""
    root = Path(experiment_dir)
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(root / PLAN_FILE, {"runs": runs, "source": str(Path(source).absolute())})


def _mark_unplanned(root: Path, rows: list[dict[str, Any]]) -> None:
    """Give completed runs that the experiment's plan does not list (of its notebooks, or of notebooks it no longer
    runs) the status :data:`NOT_PLANNED` (in place), with one warning: a comparison or report would otherwise mix
    them with the runs of the configuration."""
    if not (root / PLAN_FILE).is_file():
        return  # an experiment run before plans were recorded, or by notebook and -p options (no file)
    try:
        plan = read_json_record(root / PLAN_FILE).get("runs", {})
    except RecordError as err:
        warnings.warn(f"{err}: every run is read (run `emofx batch --config ...` again to rewrite it)", stacklevel=3)
        return
    stray = [row for row in rows if row["run"] not in plan.get(row["notebook"], ()) and row["status"] == "ok"]
    for row in stray:
        row["status"] = NOT_PLANNED
    if stray:
        warnings.warn(f"{len(stray)} completed runs under {root} are not made by its experiment file's current "
                      f"configuration (e.g. {stray[0]['notebook']}/{stray[0]['run']}: an earlier configuration's, or "
                      "added by `emofx batch NOTEBOOK`): they are left out; delete their folders, or put their values "
                      "in the experiment file", stacklevel=3)


def _fill_defaults(rows: list[dict[str, Any]]) -> None:
    """Give each run the parameters its sweep left at the notebook's defaults (status.json records only the
    values passed), read from the parameters cell of the executed notebook of the notebook's first run, in place.
    Defaults that are not Python literals, and runs without an executed notebook, are left as they are."""
    import ast

    from emofx.pipeline.experiments import BatchError, notebook_parameters

    defaults: dict[str, dict[str, Any]] = {}
    for row in rows:
        stem = row["notebook"]
        if stem not in defaults:
            try:
                declared = notebook_parameters(Path(row["run_dir"]) / f"{stem}.ipynb")
            except (OSError, ValueError, BatchError):  # not executed yet (a failed start) or not a notebook
                declared = {}
            defaults[stem] = {}
            for name, text in declared.items():
                try:
                    defaults[stem][name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    continue
        for name, value in defaults[stem].items():
            row.setdefault(name, value)


def completed_runs(experiment_dir: str | os.PathLike, notebook: str) -> pd.DataFrame:
    """The ``ok`` runs of one notebook (see :func:`read_runs`); a clear error when there are none."""
    runs = read_runs(experiment_dir, notebook)
    ok = runs[runs["status"] == "ok"].reset_index(drop=True)
    if not ok.empty:
        return ok
    failed = runs[runs["status"] == "failed"]
    found = (f"its {len(failed)} runs failed (first, {failed['run'].iloc[0]}: {failed['error'].iloc[0]}); fix that, "
             "then " if len(failed) else "")
    plan = Path(experiment_dir) / PLAN_FILE
    source = read_json_record(plan).get("source") if plan.is_file() else None
    again = (f"`emofx batch --config {source}`" if source else f"`emofx batch notebooks/{notebook}.ipynb "
             f"--experiment {Path(experiment_dir).name} -p ...` (or the experiment file's `emofx batch --config`)")
    raise FileNotFoundError(f"no completed runs of {notebook} under {experiment_dir}: {found}run it with {again}")


def read_table(experiment_dir: str | os.PathLike, notebook: str, filename: str) -> pd.DataFrame:
    """Concatenate ``results/<filename>`` (a CSV) of every ``ok`` run of ``notebook``, each row
    prefixed with its run name and parameters."""
    runs = completed_runs(experiment_dir, notebook)
    frames = []
    for _, run in runs.iterrows():
        path = Path(run["run_dir"]) / RESULTS_DIR / filename
        if not path.is_file():
            continue
        table = pd.read_csv(path)
        status = read_status(Path(run["run_dir"])) or {}
        prefix = {"run": run["run"], **status.get("parameters", {})}
        for i, (key, value) in enumerate(prefix.items()):
            table.insert(i, key if key not in table.columns else f"param.{key}", [value] * len(table))
        frames.append(table)
    if not frames:
        raise FileNotFoundError(f"no run of {notebook} under {experiment_dir} wrote {RESULTS_DIR}/{filename}")
    return pd.concat(frames, ignore_index=True)
