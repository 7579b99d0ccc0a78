"""Papermill batch runs: one notebook for every combination of parameter values, resumable.

A *sweep* runs one notebook over the product of parameter values; an *experiment* is a
named list of sweeps run in order (later notebooks read the runs of earlier ones). Layout::

    <runs_dir>/<experiment>/<notebook-stem>/<parameter-set>/
        <notebook-stem>.ipynb   the executed notebook (partially executed when the run failed)
        results/                the notebook's machine-readable results (its ``output_dir``)
        status.json             written last, atomically: status, parameters, their hash, error

``status.json`` is the completion marker: a run whose marker says ``ok`` with the same
parameter hash is skipped; a run without a marker (interrupted) or with another hash is
cleared and redone; a failed run is redone on the next batch. A notebook that reads the
experiment (it declares ``experiment_dir``) also records a fingerprint of the runs it builds on
(earlier sweeps of notebooks that do not read the experiment), so redoing one of those redoes
the runs built on it. Readers only look at runs
with a marker, so a half-written run is never read. Runs are independent tasks submitted
to a :class:`concurrent.futures.Executor` (a process pool by default), so a cluster
executor with the same interface can replace it. Kernels share JAX's persistent compilation cache
(``$JAX_COMPILATION_CACHE_DIR``, default ``<emofx cache>/jax``), so runs after the first skip
most compilation.
"""

from __future__ import annotations

import ast
import concurrent.futures
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import yaml
from tqdm.auto import tqdm

STATUS_FILE = "status.json"
RESULTS_DIR = "results"
RESULTS_FILE = "results.json"
OUTPUT_PARAMETER = "output_dir"
EXPERIMENT_PARAMETER = "experiment_dir"
DEFAULT_KERNEL = "python3"
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME_LENGTH = 120


class BatchError(ValueError):
    """An experiment, notebook or parameter that cannot be run as given."""


@dataclass(frozen=True)
class Sweep:
    """One notebook run for every combination of ``grid`` values, each with ``fixed`` added.

    ``grid`` keys name the parameter-set directories (in the given order); ``fixed`` values
    are passed unchanged (a list in ``fixed`` is one value, not a sweep).
    """

    notebook: Path
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notebook", Path(self.notebook))
        grid = {str(k): tuple(v) for k, v in dict(self.grid).items()}
        empty = [k for k, v in grid.items() if not v]
        if empty:
            raise BatchError(f"parameter {empty[0]!r} of {self.notebook.name} has no values to sweep")
        both = sorted(set(grid) & set(self.fixed))
        if both:
            raise BatchError(f"parameter {both[0]!r} of {self.notebook.name} is both swept and fixed")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "fixed", dict(self.fixed))

    @property
    def stem(self) -> str:
        return self.notebook.stem

    def parameter_sets(self) -> list[dict[str, Any]]:
        """The swept values of every run, in a stable order (the product of the grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]


@dataclass(frozen=True)
class Experiment:
    """A named list of sweeps whose runs live under ``runs_dir / name``."""

    name: str
    sweeps: tuple[Sweep, ...]
    runs_dir: Path = Path("papermill_runs")

    def __post_init__(self) -> None:
        if not self.name or _SAFE_CHARS.search(self.name):
            raise BatchError(
                f"experiment name {self.name!r} must be non-empty and use only letters, digits and ._+-"
            )
        object.__setattr__(self, "sweeps", tuple(self.sweeps))
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))

    @property
    def directory(self) -> Path:
        return self.runs_dir / self.name


@dataclass(frozen=True)
class RunSpec:
    """Everything one worker needs to execute one run (picklable, paths absolute)."""

    notebook: Path
    run_dir: Path
    name: str
    parameters: Mapping[str, Any]
    injected: Mapping[str, str]
    kernel_name: str = DEFAULT_KERNEL
    cell_timeout: float | None = None
    inputs: str = ""  # fingerprint of the earlier sweeps' runs this run reads ("" when it reads none)

    @property
    def parameter_hash(self) -> str:
        return parameter_hash(self.parameters)


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``ok``, ``failed`` or ``skipped`` (already complete)."""

    name: str
    run_dir: Path
    status: str
    seconds: float = 0.0
    error: str = ""
    previous: str = ""


@dataclass(frozen=True)
class BatchSummary:
    """Outcomes of one sweep."""

    experiment: str
    notebook: str
    outcomes: tuple[RunOutcome, ...]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> tuple[RunOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")

    def describe(self) -> str:
        """A few lines for people: counts, then each failed run with its error."""
        redone = sum(o.previous in ("interrupted", "failed", "changed") and o.status != "skipped"
                     for o in self.outcomes)
        lines = [
            f"{self.experiment}/{self.notebook}: {self.count('ok')} ok, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped (already complete)"
            + (f"; {redone} redone (interrupted, failed before, or parameters or inputs changed)" if redone else "")
        ]
        lines += [f"  FAILED {o.name}: {o.error}  (see {o.run_dir})" for o in self.failed]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- naming


def parameter_hash(parameters: Mapping[str, Any]) -> str:
    """A stable hash of parameter values (key order does not matter)."""
    text = json.dumps(dict(parameters), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def parameter_set_name(values: Mapping[str, Any]) -> str:
    """A readable, stable, filesystem-safe directory name, e.g. ``culture=eyes__seed=0``.

    Characters outside ``[A-Za-z0-9._+-]`` become ``-``; when that changed anything, or the
    name would be long, a short hash of the exact values is appended so names never collide.
    """
    if not values:
        return "default"
    raw = "__".join(f"{key}={_value_text(value)}" for key, value in values.items())
    safe = "__".join(
        f"{_SAFE_CHARS.sub('-', str(key))}={_SAFE_CHARS.sub('-', _value_text(value))}"
        for key, value in values.items()
    )
    if safe != raw or len(safe) > _MAX_NAME_LENGTH:
        safe = f"{safe[:_MAX_NAME_LENGTH]}__{parameter_hash(values)[:8]}"
    return safe


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: ``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[a, b]`` -> list."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


# ----------------------------------------------------------------------------- experiments


def load_experiment(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Experiment:
    """Read an experiment YAML file; relative paths in it are relative to the file.

    Format::

        name: synthetic_cultures
        runs_dir: ../papermill_runs            # optional
        sweeps:
          - notebook: ../notebooks/02_train_culture.ipynb
            grid: {culture: [eyes, mouth], seed: [0, 1]}
            fixed: {epochs: 4}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BatchError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("sweeps"), list) or not spec["sweeps"]:
        raise BatchError(f"{path} must be a mapping with 'name' and a non-empty list 'sweeps'")
    unknown = sorted(set(spec) - {"name", "runs_dir", "sweeps"})
    if unknown:
        raise BatchError(f"{path}: unknown key {unknown[0]!r} (allowed: name, runs_dir, sweeps)")
    base = path.parent
    sweeps = []
    for i, entry in enumerate(spec["sweeps"]):
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise BatchError(f"{path}: sweep {i + 1} needs a 'notebook'")
        extra = sorted(set(entry) - {"notebook", "grid", "fixed"})
        if extra:
            raise BatchError(f"{path}: sweep {i + 1} has unknown key {extra[0]!r} (allowed: notebook, grid, fixed)")
        for key in ("grid", "fixed"):
            if not isinstance(entry.get(key) or {}, dict):
                raise BatchError(f"{path}: sweep {i + 1}'s {key!r} must map parameter names to values")
        grid = {k: v if isinstance(v, list) else [v] for k, v in (entry.get("grid") or {}).items()}
        sweeps.append(Sweep(Path(os.path.normpath(base / entry["notebook"])), grid, entry.get("fixed") or {}))
    chosen_runs_dir = Path(runs_dir) if runs_dir is not None else Path(
        os.path.normpath(base / spec.get("runs_dir", "../papermill_runs")))
    return Experiment(str(spec.get("name") or path.stem), tuple(sweeps), chosen_runs_dir)


def plan_runs(experiment: Experiment, sweep: Sweep, *, kernel_name: str = DEFAULT_KERNEL,
              cell_timeout: float | None = None) -> list[RunSpec]:
    """One :class:`RunSpec` per parameter set, after checking the notebook declares every parameter."""
    notebook = sweep.notebook.resolve()
    declared = notebook_parameters(notebook)
    if OUTPUT_PARAMETER not in declared:
        raise BatchError(
            f"{notebook.name} has no '{OUTPUT_PARAMETER}' parameter: add `{OUTPUT_PARAMETER} = None` to its "
            "parameters cell and write its results there"
        )
    for key in [*sweep.grid, *sweep.fixed]:
        if key in (OUTPUT_PARAMETER, EXPERIMENT_PARAMETER):
            raise BatchError(f"'{key}' is set by emofx batch; do not pass it as a parameter")
        if key not in declared:
            raise BatchError(
                f"{notebook.name} has no parameter {key!r}; its parameters are: {', '.join(sorted(declared))}"
            )
    experiment_dir = experiment.directory.resolve()
    inputs = upstream_fingerprint(experiment, sweep) if EXPERIMENT_PARAMETER in declared else ""
    specs = []
    for values in sweep.parameter_sets():
        name = parameter_set_name(values)
        run_dir = experiment_dir / sweep.stem / name
        injected = {OUTPUT_PARAMETER: str(run_dir / RESULTS_DIR)}
        if EXPERIMENT_PARAMETER in declared:
            injected[EXPERIMENT_PARAMETER] = str(experiment_dir)
        specs.append(RunSpec(notebook, run_dir, name, {**sweep.fixed, **values}, injected,
                             kernel_name, cell_timeout, inputs))
    return specs


def upstream_fingerprint(experiment: Experiment, sweep: Sweep) -> str:
    """A hash of the completed runs that a notebook reading ``experiment_dir`` builds on: those of
    the earlier sweeps whose notebooks do not read the experiment themselves (e.g. the training
    runs under a saliency notebook). When one of them is redone, the runs built on it are redone too."""
    earlier = {s.stem for s in experiment.sweeps[:experiment.sweeps.index(sweep)]
               if EXPERIMENT_PARAMETER not in notebook_parameters(s.notebook.resolve())}
    if not earlier or not experiment.directory.is_dir():
        return ""
    runs = read_runs(experiment.directory)
    marks = sorted(
        (row.notebook, row.run, (read_status(Path(row.run_dir)) or {}).get("started", ""))
        for row in runs.itertuples() if row.notebook in earlier and row.status == "ok"
    )
    return parameter_hash({"upstream": marks})


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters declared in the notebook's cell tagged ``parameters`` (name -> default text)."""
    import nbformat
    import papermill

    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} not found")
    nb = nbformat.read(notebook, as_version=4)
    cells = [cell for cell in nb.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not cells:
        raise BatchError(f"{notebook.name} has no cell tagged 'parameters' (View > Cell Toolbar > Tags in Jupyter)")
    declared = {name: info["default"] for name, info in papermill.inspect_notebook(str(notebook)).items()}
    try:
        assigned = {target.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
    except SyntaxError as err:
        raise BatchError(f"{notebook.name}: its parameters cell is not valid Python ({err})") from None
    unreadable = sorted(assigned - set(declared))
    if unreadable:
        raise BatchError(
            f"{notebook.name}: papermill cannot read the parameter(s) {', '.join(unreadable)} in its parameters "
            "cell; write one `name = value` per line with no '=' inside comments"
        )
    return declared


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
    """The run's completion marker, or None when there is none (never run or interrupted)."""
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, default=_json_default)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_results(output_dir: str | os.PathLike, **values: Any) -> Path:
    """Write a notebook's scalar results to ``output_dir/results.json`` (read back by :func:`read_runs`)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    path = output / RESULTS_FILE
    _atomic_write_json(path, values)
    return path


# ----------------------------------------------------------------------------- execution


def execute_run(spec: RunSpec) -> RunOutcome:
    """Execute one run from scratch; always ends by writing its status (unless killed).

    The old marker is removed first, so a crash at any later point leaves no marker and
    the run is redone next time. Errors in the notebook are recorded, not raised.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from emofx.paths import cache_root

    # Kernels of one batch compile the same JAX programs: share them through JAX's on-disk cache.
    os.environ.setdefault(JAX_CACHE_ENV, str(cache_root() / "jax"))
    run_dir = Path(spec.run_dir)
    (run_dir / STATUS_FILE).unlink(missing_ok=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / RESULTS_DIR).mkdir(parents=True)
    started = time.time()
    error: dict[str, Any] | None = None
    try:
        papermill.execute_notebook(
            str(spec.notebook),
            str(run_dir / spec.notebook.name),
            parameters={**spec.parameters, **spec.injected},
            kernel_name=spec.kernel_name,
            progress_bar=False,
            cwd=str(spec.notebook.parent),
            execution_timeout=spec.cell_timeout,
        )
    except PapermillExecutionError as err:
        error = {"type": err.ename, "message": _first_line(err.evalue), "cell": err.cell_index,
                 "traceback": _plain("\n".join(err.traceback))}
    except Exception as err:  # a dead kernel, a timeout: recorded so that the other runs go on
        error = {"type": type(err).__name__, "message": _first_line(str(err)),
                 "traceback": traceback.format_exc()}
    seconds = time.time() - started
    _atomic_write_json(run_dir / STATUS_FILE, {
        "status": "failed" if error else "ok",
        "notebook": spec.notebook.name,
        "run": spec.name,
        "parameters": dict(spec.parameters),
        "parameter_hash": spec.parameter_hash,
        "inputs": spec.inputs,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "error": error,
    })
    message = f"{error['type']}: {error['message']}" if error else ""
    return RunOutcome(spec.name, run_dir, "failed" if error else "ok", seconds, message)


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours its tracebacks)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(text))


def _first_line(text: str) -> str:
    text = _plain(text).strip()
    return text.splitlines()[0] if text else ""


def ensure_kernel(kernel_name: str = DEFAULT_KERNEL) -> None:
    """Make sure papermill can start ``kernel_name``; installs this Python's ipykernel as
    ``python3`` into ``sys.prefix`` when no ``python3`` kernel exists (a fresh machine)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
        return
    except NoSuchKernel:
        if kernel_name != DEFAULT_KERNEL:
            available = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
            raise BatchError(
                f"no Jupyter kernel named {kernel_name!r} (available: {available}); install one with "
                f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}`"
            ) from None
    from ipykernel.kernelspec import install

    path = install(prefix=sys.prefix)
    print(f"emofx batch: installed the Jupyter kernel {DEFAULT_KERNEL!r} for {sys.executable} in {path}",
          file=sys.stderr)


def default_executor(workers: int) -> concurrent.futures.Executor:
    """A process pool of ``workers`` (spawned, so each worker starts clean)."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )


def run_sweep(
    experiment: Experiment,
    sweep: Sweep,
    *,
    workers: int = 1,
    executor_factory: Callable[[int], concurrent.futures.Executor] = default_executor,
    force: bool = False,
    kernel_name: str = DEFAULT_KERNEL,
    cell_timeout: float | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Run every parameter set of ``sweep`` not already complete; returns the outcomes.

    With ``workers`` > 1 the runs go to ``executor_factory(workers)`` (any
    :class:`concurrent.futures.Executor`); with 1 they run here, one after another.
    """
    if workers < 1:
        raise BatchError(f"--workers must be at least 1; got {workers}")
    specs = plan_runs(experiment, sweep, kernel_name=kernel_name, cell_timeout=cell_timeout)
    ensure_kernel(kernel_name)
    states = {spec.name: run_state(spec.run_dir, spec.parameter_hash, spec.inputs) for spec in specs}
    skipped = [RunOutcome(s.name, s.run_dir, "skipped", previous="complete")
               for s in specs if states[s.name] == "complete" and not force]
    todo = [s for s in specs if force or states[s.name] != "complete"]
    outcomes: list[RunOutcome] = []
    bar = tqdm(total=len(todo), desc=f"{experiment.name}/{sweep.stem}", unit="run", disable=not progress or not todo)

    def record(spec: RunSpec, outcome: RunOutcome) -> None:
        outcomes.append(RunOutcome(outcome.name, outcome.run_dir, outcome.status, outcome.seconds,
                                   outcome.error, states[spec.name]))
        bar.update()
        bar.set_postfix(ok=sum(o.status == "ok" for o in outcomes),
                        failed=sum(o.status == "failed" for o in outcomes))

    try:
        if workers == 1 or len(todo) <= 1:
            for spec in todo:
                record(spec, execute_run(spec))
        else:
            with executor_factory(workers) as pool:
                futures = {pool.submit(execute_run, spec): spec for spec in todo}
                for future in concurrent.futures.as_completed(futures):
                    spec = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as err:  # the worker itself died; the run has no marker and is redone next time
                        outcome = RunOutcome(spec.name, spec.run_dir, "failed", error=f"{type(err).__name__}: {err}")
                    record(spec, outcome)
    finally:
        bar.close()
    order = {spec.name: i for i, spec in enumerate(specs)}
    ordered = sorted([*skipped, *outcomes], key=lambda o: order[o.name])
    return BatchSummary(experiment.name, sweep.stem, tuple(ordered))


def run_experiment(experiment: Experiment, *, only: Iterable[str] = (), **options: Any) -> list[BatchSummary]:
    """Run the experiment's sweeps in order (``only``: notebook stems to run); see :func:`run_sweep`."""
    wanted = set(only)
    stems = {sweep.stem for sweep in experiment.sweeps}
    missing = sorted(wanted - stems)
    if missing:
        raise BatchError(f"experiment {experiment.name!r} has no sweep of {missing[0]!r}; it has: {', '.join(sorted(stems))}")
    return [run_sweep(experiment, sweep, **options)
            for sweep in experiment.sweeps if not wanted or sweep.stem in wanted]


# ----------------------------------------------------------------------------- reading results


def read_runs(experiment_dir: str | os.PathLike, notebook: str | None = None) -> pd.DataFrame:
    """All recorded runs of an experiment: one row per run with its notebook, run name,
    status, seconds, error, run_dir, then its parameters, then the scalars of its results.json.

    Runs without a completion marker (running or interrupted) are left out. Result keys that
    clash with a column are prefixed ``result.``.
    """
    root = Path(experiment_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"experiment directory {root} not found; run `emofx batch` first")
    rows = []
    for status_path in sorted(root.glob(f"{notebook or '*'}/*/{STATUS_FILE}")):
        status = read_status(status_path.parent)
        if status is None:
            continue
        run_dir = status_path.parent
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
            for key, value in json.loads(results_path.read_text()).items():
                row[f"result.{key}" if key in row else key] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["notebook", "run", "status", "seconds", "error", "run_dir"])


def completed_runs(experiment_dir: str | os.PathLike, notebook: str) -> pd.DataFrame:
    """The ``ok`` runs of one notebook (see :func:`read_runs`); a clear error when there are none."""
    runs = read_runs(experiment_dir, notebook)
    ok = runs[runs["status"] == "ok"].reset_index(drop=True)
    if ok.empty:
        raise FileNotFoundError(
            f"no completed runs of {notebook} under {experiment_dir}; run it first, e.g. "
            f"`emofx batch notebooks/{notebook}.ipynb --experiment {Path(experiment_dir).name} -p culture eyes mouth`"
        )
    return ok


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


def ensure_stage(experiment_dir: str | os.PathLike | None, notebook: str, *,
                 config: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The experiment folder holding completed runs of ``notebook``.

    ``experiment_dir`` when given (``emofx batch`` injects it); otherwise the experiment of the
    file ``config``, after running its missing runs of ``notebook``, so that a notebook that
    builds on another's runs also works top to bottom on a fresh clone.
    """
    if experiment_dir is None:
        if config is None:
            raise BatchError("give experiment_dir (a papermill_runs/<experiment> folder) or an experiment file")
        experiment = load_experiment(config)
        for summary in run_experiment(experiment, only=[notebook], progress=progress):
            print(summary.describe())
        experiment_dir = experiment.directory
    completed_runs(experiment_dir, notebook)
    return Path(experiment_dir)
