"""Papermill batch runs: one notebook for every combination of parameter values, resumable.

A *sweep* runs one notebook over the product of parameter values; an *experiment* is a
named list of sweeps run in order (later notebooks read the runs of earlier ones). Layout::

    <runs_dir>/<experiment>/<notebook-stem>/<parameter-set>/
        <notebook-stem>.ipynb   the executed notebook (partially executed when the run failed)
        results/                the notebook's machine-readable results (its ``output_dir``)
        status.json             written last, atomically: status, parameters, their hash, error

``status.json`` is the completion marker: a run whose marker says ``ok`` with the same parameter hash is skipped;
a run without a marker (interrupted) or with another hash is cleared and redone; a failed run is redone on the next
batch. A notebook that reads the experiment (it declares ``experiment_dir``) also records a fingerprint of the runs
it builds on (earlier sweeps of notebooks that do not read the experiment), so redoing one of those redoes the runs
built on it. Readers only look at runs with a marker, so a half-written run is never read. Runs are independent
tasks submitted to a :class:`concurrent.futures.Executor` (a process pool by default; Dask in
:mod:`emofx.pipeline.executors`). Whoever executes a run holds its claim (:mod:`emofx.pipeline.locking`) and
re-reads its state under it, so two batch processes on one experiment never execute the same run twice. Kernels
share emofx's persistent compilation cache (:func:`emofx.nets.compilation.compilation_cache_dir`), so runs after
the first skip most compilation.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from emofx.data.progress import text_progress_for_saved_notebooks, tqdm
from emofx.pipeline.experiments import (
    DEFAULT_KERNEL,
    EXPERIMENT_PARAMETER,
    OUTPUT_PARAMETER,
    BatchError,
    Experiment,
    Sweep,
    load_experiment,
    missing_language,
    notebook_parameters,
    notebook_tools,
    parameter_hash,
    parameter_set_name,
)
from emofx.pipeline.results import (NOT_PLANNED, RESULTS_DIR, RESULTS_FILE, STATUS_FILE, _atomic_write_json,
                                    completed_runs, read_json, read_runs, read_status, run_state, write_plan)
from emofx.pipeline.locking import run_claim

KERNEL_LOG_LEVEL = "CRITICAL"  # the kernel process's own log in batch runs (kernel_settings)


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
    batch: str = ""  # the Dask batch executing it, recorded in status.json: its task redone elsewhere runs it no more

    @property
    def parameter_hash(self) -> str:
        """The hash naming this run's parameter set (:func:`emofx.pipeline.experiments.parameter_hash`)."""
        return parameter_hash(self.parameters)


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``ok``, ``failed`` (the notebook raised), ``lost`` (the process
    running it died: no marker, redone next batch) or ``skipped`` (already complete)."""

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
        """How many runs ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> tuple[RunOutcome, ...]:
        """The runs that ended in an error."""
        return tuple(o for o in self.outcomes if o.status == "failed")

    @property
    def lost(self) -> tuple[RunOutcome, ...]:
        """The runs whose worker died before they finished."""
        return tuple(o for o in self.outcomes if o.status == "lost")

    def describe(self) -> str:
        """A few lines for people: counts, then each failed or lost run with its error."""
        redone = sum(o.previous in ("interrupted", "failed", "changed") and o.status != "skipped"
                     for o in self.outcomes)
        lines = [
            f"{self.experiment}/{self.notebook}: {self.count('ok')} ok, {self.count('failed')} failed, "
            + (f"{self.count('lost')} lost (worker died; redone next batch), " if self.lost else "")
            + f"{self.count('skipped')} skipped (already complete)"
            + (f"; {redone} redone (interrupted, failed before, or parameters or inputs changed)" if redone else "")
        ]
        lines += [f"  FAILED {o.name}: {o.error}  (see {o.run_dir})" for o in self.failed]
        lines += [f"  LOST {o.name}: {o.error}" for o in self.lost]
        return "\n".join(lines)



def plan_runs(experiment: Experiment, sweep: Sweep, *, kernel_name: str = DEFAULT_KERNEL,
              cell_timeout: float | None = None) -> list[RunSpec]:
    """One :class:`RunSpec` per parameter set, after checking the notebook declares every parameter."""
    notebook = sweep.notebook.resolve()
    declared = check_parameters(sweep)
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


def check_parameters(sweep: Sweep) -> dict[str, str]:
    """The notebook's declared parameters, after checking that ``sweep`` sets only those, and not the ones emofx
    batch sets itself."""
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
    for key, values in [*sweep.grid.items(), *((k, (v,)) for k, v in sweep.fixed.items())]:
        for value in values:
            _check_kind(notebook.name, key, declared[key], value)
    return declared


def _check_kind(notebook: str, key: str, default_text: str, value: Any) -> None:
    """Refuse a value of another kind than the parameter's default where the default is a number, a truth value or
    a list (the notebook would fail on it with a bare TypeError, or silently truncate it); None is left to the
    notebook (``limit = None`` takes every image), as are parameters whose default is text (a dataset name, or a
    mapping of them)."""
    import ast

    try:
        default = ast.literal_eval(default_text)
    except (ValueError, SyntaxError):
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    wanted = {bool: ("true or false", isinstance(value, bool)),
              int: ("a whole number", number and isinstance(value, int)),
              float: ("a number", number),
              list: ("a list", isinstance(value, (list, tuple)))}.get(type(default))
    if wanted is not None and not wanted[1] and value is not None:  # None: the notebook's "all" or "default"
        quoted = " (without quotes)" if isinstance(value, str) and wanted[0] != "a list" else ""
        raise BatchError(f"parameter {key!r} of {notebook} takes {wanted[0]}{quoted}, as its default "
                         f"{default_text} is; got {value!r}")


def upstream_fingerprint(experiment: Experiment, sweep: Sweep) -> str:
    """A hash of the completed runs that a notebook reading ``experiment_dir`` builds on: those of
    the earlier sweeps whose notebooks do not read the experiment themselves (e.g. the training
    runs under a saliency notebook). When one of them is redone, the runs built on it are redone too. An experiment
    file's runs are those it makes now (not its last batch's plan.json: a dry run reads what the batch will)."""
    earlier = {s.stem for s in experiment.sweeps[:experiment.sweeps.index(sweep)]
               if EXPERIMENT_PARAMETER not in notebook_parameters(s.notebook.resolve())}
    if not earlier or not experiment.directory.is_dir():
        return ""
    made = None if experiment.source is None else {(s.stem, parameter_set_name(v)) for s in experiment.sweeps
                                                   for v in s.parameter_sets()}  # its plan.json is to be rewritten
    marks = sorted((row.notebook, row.run, (read_status(Path(row.run_dir)) or {}).get("started", ""))
                   for row in read_runs(experiment.directory).itertuples() if row.notebook in earlier and (
                       row.status == "ok" if made is None else row.status in ("ok", NOT_PLANNED)
                       and (row.notebook, row.run) in made))
    return parameter_hash({"upstream": marks})


# ----------------------------------------------------------------------------- execution


def execute_run(spec: RunSpec) -> RunOutcome:
    """Execute one run from scratch (its earlier results/ and executed notebook replaced, other files in its
    folder kept); always ends by writing its status (unless killed).

    The old marker is removed first, so a crash at any later point leaves no marker and
    the run is redone next time. Errors in the notebook are recorded, not raised.
    """
    _, papermill = notebook_tools()
    from papermill.exceptions import PapermillExecutionError

    from emofx.data.paths import absolutize_path_env
    from emofx.nets.compilation import COMPILATION_CACHE_ENV, OFF_VALUES

    # Kernels inherit the environment and run elsewhere: relative $EMOFX_DATA, $EMOFX_CACHE and
    # $EMOFX_COMPILATION_CACHE must keep meaning the same folders. Importing emofx in each kernel points it
    # at the per-machine compilation cache the CLI uses.
    absolutize_path_env()
    cache_setting = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
    if cache_setting and cache_setting.lower() not in OFF_VALUES:
        os.environ[COMPILATION_CACHE_ENV] = str(Path(cache_setting).expanduser().resolve())
    run_dir = Path(spec.run_dir)
    (run_dir / STATUS_FILE).unlink(missing_ok=True)
    # what an earlier execution wrote goes (results/ is the notebook's); files of the user's beside them stay
    (run_dir / spec.notebook.name).unlink(missing_ok=True)
    if (run_dir / RESULTS_DIR).is_dir() and not (run_dir / RESULTS_DIR).is_symlink():
        shutil.rmtree(run_dir / RESULTS_DIR)
    (run_dir / RESULTS_DIR).unlink(missing_ok=True)  # a file or link of that name
    (run_dir / RESULTS_DIR).mkdir(parents=True)
    started = time.time()
    for attempt in range(2):  # a kernel that died while it started (a machine under load) gets a second start
        error: dict[str, Any] | None = None
        try:
            with text_progress_for_saved_notebooks():
                papermill.execute_notebook(
                    str(spec.notebook),
                    str(run_dir / spec.notebook.name),
                    parameters={**spec.parameters, **spec.injected},
                    kernel_name=spec.kernel_name,
                    language=missing_language(spec.notebook),
                    progress_bar=False,
                    # the kernel starts in the notebook's folder (its relative paths); papermill's `cwd` would
                    # chdir this whole process instead, which runs on threads of one process race on
                    resources={"metadata": {"path": str(spec.notebook.parent)}},
                    execution_timeout=spec.cell_timeout,
                    **kernel_settings(),
                )
        except PapermillExecutionError as err:
            error = {"type": err.ename, "message": _first_line(err.evalue), "cell": err.cell_index,
                     "traceback": _plain("\n".join(err.traceback))}
        except Exception as err:  # a dead kernel, a timeout: recorded so that the other runs go on
            error = {"type": type(err).__name__, "message": _first_line(str(err)),
                     "traceback": traceback.format_exc()}
            if attempt == 0 and "before replying to kernel_info" in str(err):  # no cell ran: start it again
                continue
        break
    seconds = time.time() - started
    if error is None and _interrupted(run_dir):
        error = {"type": "Interrupted", "message": "the notebook's training was interrupted (its kernel got SIGINT) "
                 "and it went on with the model so far; the run is done again next batch"}
    _atomic_write_json(run_dir / STATUS_FILE, {
        "status": "failed" if error else "ok",
        "notebook": spec.notebook.name,
        "run": spec.name,
        "parameters": dict(spec.parameters),
        "parameter_hash": spec.parameter_hash,
        "inputs": spec.inputs,
        "batch": spec.batch,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "error": error,
    })
    message = f"{error['type']}: {error['message']}" if error else ""
    return RunOutcome(spec.name, run_dir, "failed" if error else "ok", seconds, message)


def _interrupted(run_dir: Path) -> bool:
    """Whether the notebook recorded that its training was interrupted (``stop_reason`` in its results.json): a
    kernel that gets SIGINT stops training and finishes the notebook, which must not count as a complete run."""
    try:
        return read_json(run_dir / RESULTS_DIR / RESULTS_FILE).get("stop_reason") == "interrupted"
    except ValueError:  # a damaged results.json: readers name it
        return False


def claim_and_execute(spec: RunSpec, force: bool = False, *,
                      while_waiting: Callable[[], AbstractContextManager] = nullcontext) -> RunOutcome:
    """Execute ``spec`` under its claim unless, once the claim is held, the run is complete
    (another batch process may have done it while this one waited); ``previous`` is the state
    found under the claim. See :func:`emofx.pipeline.locking.run_claim` for ``while_waiting``."""
    with run_claim(spec.run_dir, while_waiting=while_waiting):
        state = run_state(Path(spec.run_dir), spec.parameter_hash, spec.inputs)
        if state == "complete" and not force:
            return RunOutcome(spec.name, Path(spec.run_dir), "skipped", previous=state)
        recorded = read_status(Path(spec.run_dir)) or {}
        if spec.batch and recorded.get("batch") == spec.batch:  # Dask redid a finished task (its worker died)
            error = recorded.get("error") or {}
            return RunOutcome(spec.name, Path(spec.run_dir), recorded.get("status", "failed"),
                              float(recorded.get("seconds", 0.0)), f"{error.get('type')}: {error.get('message')}"
                              if error else "", previous=state)
        return replace(execute_run(spec), previous=state)


def split_complete(specs: Iterable[RunSpec], force: bool = False) -> tuple[list[RunOutcome], list[RunSpec]]:
    """The runs already complete (as ``skipped`` outcomes) and those to execute (all with ``force``)."""
    skipped, todo = [], []
    for spec in specs:
        if not force and run_state(spec.run_dir, spec.parameter_hash, spec.inputs) == "complete":
            skipped.append(RunOutcome(spec.name, spec.run_dir, "skipped", previous="complete"))
        else:
            todo.append(spec)
    return skipped, todo


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours its tracebacks)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(text))


def _first_line(text: str) -> str:
    text = _plain(text).strip()
    return text.splitlines()[0] if text else ""


def kernel_settings() -> dict[str, Any]:
    """papermill's keyword arguments for the kernel of a run. Its own log (not the notebook's outputs) at
    CRITICAL only: jupyter_client sends every kernel SIGINT before asking it to shut down, and a kernel that is
    still handling a message then logs "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." on the
    terminal of a batch whose runs all succeeded (seen with 2 workers on 2 cores). Sockets encrypted with
    CurveZMQ keys that the kernel manager provisions (jupyter_client 8.10 and later, pyzmq with CurveZMQ,
    kernels that declare support, as ipykernel's do), which also spares every run ipykernel's warning about
    unencrypted TCP; none where jupyter_client or pyzmq cannot (plain TCP on this machine, as before)."""
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    settings: dict[str, Any] = {"extra_arguments": [f"--IPKernelApp.log_level={KERNEL_LOG_LEVEL}"]}
    if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve"):
        settings["config"] = Config({"KernelManager": {"transport_encryption": "auto"}})
    return settings


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
    skipped, todo = split_complete(specs, force)
    outcomes: list[RunOutcome] = []
    bar = progress_bar(f"{experiment.name}/{sweep.stem}", len(todo), progress)

    def record(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        bar.update()
        bar.set_postfix(ok=sum(o.status == "ok" for o in outcomes),
                        failed=sum(o.status in ("failed", "lost") for o in outcomes))

    try:
        if workers == 1 or len(todo) <= 1:
            for spec in todo:
                record(claim_and_execute(spec, force))
        else:
            with executor_factory(workers) as pool:
                futures = {pool.submit(claim_and_execute, spec, force): spec for spec in todo}
                for future in concurrent.futures.as_completed(futures):
                    spec = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as err:  # the worker itself died; the run has no marker and is redone next time
                        outcome = RunOutcome(spec.name, spec.run_dir, "lost", error=f"{type(err).__name__}: {err}")
                    record(outcome)
    finally:
        bar.close()
    return summarise(experiment, sweep, specs, [*skipped, *outcomes])


def progress_bar(description: str, total: int, progress: bool = True, **options: Any) -> Any:
    """The batch progress bar of one sweep (silent when there is nothing to run)."""
    return tqdm(total=total, desc=description, unit="run", disable=not progress or not total, **options)


def summarise(experiment: Experiment, sweep: Sweep, specs: list[RunSpec],
              outcomes: Iterable[RunOutcome]) -> BatchSummary:
    """The sweep's outcomes in the order of its parameter sets."""
    order = {spec.name: i for i, spec in enumerate(specs)}
    return BatchSummary(experiment.name, sweep.stem, tuple(sorted(outcomes, key=lambda o: order[o.name])))


def run_experiment(experiment: Experiment, *, only: Iterable[str] = (), **options: Any) -> list[BatchSummary]:
    """Run the experiment's sweeps in order (``only``: notebook stems to run); see :func:`run_sweep`."""
    sweeps = selected_sweeps(experiment, only)
    record_plan(experiment)
    return [run_sweep(experiment, sweep, **options) for sweep in sweeps]


def record_plan(experiment: Experiment) -> None:
    """For an experiment read from a file (which defines all of its runs), check every sweep's parameters before
    any run, and record the runs it makes (:func:`emofx.pipeline.results.write_plan`)."""
    if experiment.source is None:
        return  # `emofx batch NOTEBOOK -p ...` adds runs to an experiment one call at a time
    runs: dict[str, list[str]] = {}
    for sweep in experiment.sweeps:
        check_parameters(sweep)
        runs.setdefault(sweep.stem, []).extend(parameter_set_name(values) for values in sweep.parameter_sets())
    write_plan(experiment.directory, runs, experiment.source)


def selected_sweeps(experiment: Experiment, only: Iterable[str] = ()) -> list[Sweep]:
    """The experiment's sweeps in order, or those of the notebook stems in ``only``."""
    wanted = set(only)
    stems = {sweep.stem for sweep in experiment.sweeps}
    missing = sorted(wanted - stems)
    if missing:
        raise BatchError(f"experiment {experiment.name!r} has no sweep of {missing[0]!r}; "
                         f"it has: {', '.join(sorted(stems))}")
    return [sweep for sweep in experiment.sweeps if not wanted or sweep.stem in wanted]


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
