"""Batch runs on Dask: a local cluster, a running scheduler, or SLURM/PBS jobs via dask-jobqueue.

Every run is one Dask task that executes its notebook with papermill on a worker and writes into
the run folder, which must therefore sit on a filesystem the workers share (at the same path).
The resumable semantics are those of :func:`emofx.pipeline.batch.run_sweep`: complete runs are
skipped, interrupted, failed or changed ones are redone, and a run is executed under its claim
(:mod:`emofx.pipeline.locking`). All sweeps are submitted at once: the runs of a sweep whose
notebook reads the experiment (it declares ``experiment_dir``) depend, in the task graph, on the
runs of every earlier sweep, so the scheduler starts them as soon as those are done; the
fingerprint of what they build on is then taken on the worker. A batch with nothing left to run
starts no cluster.

A worker that dies mid-run (a killed process restarted by its nanny, a job lost from the queue)
leaves the run without its completion marker; the scheduler re-runs the task on another worker
up to ``retries`` times (``distributed.scheduler.allowed-failures``), after which the run is
reported ``lost`` (not ``failed``, which means the notebook raised) and is redone by the next batch.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import uuid
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import yaml

from emofx.data.paths import install_command
from emofx.pipeline.batch import (
    BatchSummary,
    RunOutcome,
    RunSpec,
    claim_and_execute,
    ensure_kernel,
    progress_bar,
    record_plan,
    selected_sweeps,
    summarise,
    upstream_fingerprint,
)
from emofx.pipeline.experiments import (
    DEFAULT_KERNEL,
    BatchError,
    Experiment,
    Sweep,
)
from emofx.pipeline.plans import SweepPlan, plan_sweeps

if TYPE_CHECKING:
    from dask_jobqueue import JobQueueCluster
    from distributed import Client

CLUSTERS = ("local", "slurm", "pbs")
DEFAULT_RETRIES = 2
INSTALL_HINT = install_command("dask")


@dataclass(frozen=True)
class JobConfig:
    """One batch job of dask-jobqueue workers (names as in dask-jobqueue): ``jobs`` jobs of
    ``processes`` workers sharing ``cores`` and ``memory``. Each worker runs one notebook at a time."""

    cores: int = 1
    memory: str = "4GB"
    processes: int = 1
    walltime: str = "01:00:00"
    jobs: int = 1
    queue: str | None = None
    account: str | None = None
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    python: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("cores", "processes", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BatchError(f"cluster config: {name} must be a whole number >= 1; got {value!r}")
        for name in ("memory", "walltime"):
            if not isinstance(getattr(self, name), str):
                raise BatchError(f"cluster config: {name} must be text in quotes, e.g. memory: '16GB', "
                                 f"walltime: '04:00:00' (YAML reads 12:00:00 unquoted as a number)")
        if self.processes > self.cores:
            raise BatchError(f"cluster config: processes ({self.processes}) cannot exceed cores ({self.cores})")
        for name in ("job_extra_directives", "job_script_prologue"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise BatchError(f"cluster config: {name} must be a list of strings")
            object.__setattr__(self, name, tuple(value))

    def jobqueue_options(self) -> dict[str, Any]:
        """Keyword arguments of ``SLURMCluster``/``PBSCluster``: workers get one thread each
        (one notebook at a time; its kernel uses the job's cores)."""
        options = {k: v for k, v in asdict(self).items() if k != "jobs" and v is not None}
        options.update(job_extra_directives=list(self.job_extra_directives),
                       job_script_prologue=list(self.job_script_prologue),
                       worker_extra_args=["--nthreads", "1"])
        return options


def load_job_config(path: str | os.PathLike) -> JobConfig:
    """Read a cluster config YAML file (keys: the fields of :class:`JobConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cluster config {path} not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BatchError(f"{path} is not valid YAML: {err}") from None
    allowed = [f.name for f in fields(JobConfig)]
    if not isinstance(spec, dict):
        raise BatchError(f"{path} must map settings to values (allowed: {', '.join(allowed)})")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise BatchError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
    return JobConfig(**spec)


def jobqueue_cluster(kind: str, config: JobConfig, retries: int = DEFAULT_RETRIES) -> JobQueueCluster:
    """A dask-jobqueue cluster (not yet scaled: no job is submitted) whose scheduler runs here."""
    jobqueue = _import_dask("dask_jobqueue")
    classes = {"slurm": jobqueue.SLURMCluster, "pbs": jobqueue.PBSCluster}
    if kind not in classes:
        raise BatchError(f"--cluster {kind!r} is not a job queue; choose from {', '.join(classes)}")
    return classes[kind](**config.jobqueue_options(), scheduler_options={"allowed_failures": retries})


def job_script(cluster: str, cluster_config: str | os.PathLike) -> str:
    """The script each of ``cluster_config``'s jobs would run (``emofx batch --dry-run``), its scheduler's address
    ``tcp://SCHEDULER:8786``: made as dask-jobqueue makes it, with no scheduler started, no job submitted and no
    folder made (its log directory is a temporary one, named as configured in the script), so it can be read where
    ``sbatch``/``qsub`` is not installed."""
    jobqueue = _import_dask("dask_jobqueue")
    classes = {"slurm": jobqueue.SLURMCluster, "pbs": jobqueue.PBSCluster}
    if cluster not in classes:
        raise BatchError(f"only --cluster slurm or pbs submits job scripts; got {cluster!r}")
    options = load_job_config(cluster_config).jobqueue_options()
    logs = options.pop("log_directory", None)
    with tempfile.TemporaryDirectory() as scratch:
        script = classes[cluster].job_cls("tcp://SCHEDULER:8786", name="dry-run", log_directory=scratch,
                                          **options).job_script()
    return script.replace(scratch, logs) if logs else "\n".join(
        line for line in script.splitlines() if scratch not in line) + "\n"


def check_dask_options(*, scheduler: str | None = None, cluster: str = "local", workers: int = 1,
                       cluster_config: str | os.PathLike | None = None, retries: int | None = None) -> None:
    """Refuse options of :func:`dask_client` that do not go together, before anything starts (also ``--dry-run``)."""
    if cluster not in CLUSTERS:
        raise BatchError(f"--cluster must be one of {', '.join(CLUSTERS)}; got {cluster!r}")
    if workers < 1:
        raise BatchError(f"--workers must be at least 1; got {workers}")
    if retries is not None and retries < 0:
        raise BatchError(f"--retries must be 0 or more; got {retries}")
    if workers != 1 and (scheduler is not None or cluster != "local"):
        raise BatchError("--workers sets the processes of the local cluster; a running scheduler has its own workers "
                         "and --cluster slurm|pbs takes them from --cluster-config (processes, jobs)")
    if scheduler is not None:
        if cluster != "local" or cluster_config is not None or retries is not None:
            raise BatchError("--scheduler connects to a running scheduler: --cluster, --cluster-config and --retries "
                             "belong to the scheduler (retries: its distributed.scheduler.allowed-failures)")
    elif cluster == "local" and cluster_config is not None:
        raise BatchError("--cluster-config goes with --cluster slurm or pbs")
    elif cluster != "local" and cluster_config is None:
        raise BatchError(f"--cluster {cluster} needs --cluster-config FILE (cores, memory, walltime, queue, jobs)")


def dask_client(*, scheduler: str | None = None, cluster: str = "local", workers: int = 1,
                cluster_config: str | os.PathLike | None = None,
                retries: int | None = None) -> AbstractContextManager["Client"]:
    """A Dask client, checked now and connected when entered: to ``scheduler`` when given, else to
    a cluster started then (``local``: ``workers`` processes of one thread; ``slurm``/``pbs``: the
    jobs of ``cluster_config``). Prints the dashboard link; a started cluster is closed on exit."""
    distributed = _import_dask("distributed")
    check_dask_options(scheduler=scheduler, cluster=cluster, workers=workers, cluster_config=cluster_config,
                       retries=retries)
    if scheduler is not None:
        return _connected(lambda: _scheduler_client(distributed, scheduler))
    retries = DEFAULT_RETRIES if retries is None else retries
    if cluster == "local":
        return _connected(lambda: distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, scheduler_kwargs={"allowed_failures": retries}))
    config = load_job_config(cluster_config)
    _import_dask("dask_jobqueue")
    submit = {"slurm": "sbatch", "pbs": "qsub"}[cluster]
    if shutil.which(submit) is None:  # dask-jobqueue would log each failed submission and wait for workers forever
        raise BatchError(f"--cluster {cluster} submits its jobs with {submit}, which is not on this machine's PATH: "
                         "run emofx batch where jobs can be submitted (a login node)")

    def submit_jobs():
        started = jobqueue_cluster(cluster, config, retries)
        started.scale(jobs=config.jobs)
        return started

    return _connected(submit_jobs)


def _scheduler_client(distributed: Any, address: str) -> "Client":
    """A client of the scheduler at ``address``; an address it cannot reach is one line naming the option."""
    try:
        return distributed.Client(address, timeout="20s")
    except (OSError, ValueError, TypeError) as err:  # a timeout is an OSError; a malformed port a ValueError
        raise BatchError(f"--scheduler {address}: cannot connect ({err}); is a dask scheduler running there "
                         "(`dask scheduler` prints its tcp://HOST:PORT)?") from None


@contextmanager
def _connected(start: Callable[[], Any]) -> Iterator["Client"]:
    """A client of what ``start()`` gives: a client already, or a cluster (closed afterwards)."""
    from distributed import Client

    with ExitStack() as stack:
        started = stack.enter_context(start())
        client = started if isinstance(started, Client) else stack.enter_context(Client(started))
        _announce(client)
        yield client


def _announce(client: "Client") -> None:
    print(f"Dask dashboard: {client.dashboard_link}", flush=True)


def run_experiment_on_dask(experiment: Experiment, connect: Callable[[], AbstractContextManager["Client"]], *,
                           only: Iterable[str] = (), force: bool = False, kernel_name: str = DEFAULT_KERNEL,
                           cell_timeout: float | None = None, progress: bool = True) -> list[BatchSummary]:
    """Run the experiment's sweeps (``only``: notebook stems) as one Dask task graph; see the module doc.

    ``connect()`` gives the client (e.g. ``lambda: dask_client(workers=4)``); it is called only when
    some run is to be executed, so a batch with nothing left to do starts no cluster and submits no job.
    """
    from distributed import as_completed

    experiment = _absolute(experiment)
    selected_sweeps(experiment, only)  # a wrong --only is refused before the plan is recorded
    record_plan(experiment)
    # Runs that build on earlier runs still to be executed wait for them in the graph and decide on the worker.
    plans = plan_sweeps(experiment, only, force=force, kernel_name=kernel_name, cell_timeout=cell_timeout)
    outcomes: list[list[RunOutcome]] = [[] for _ in plans]
    if any(plan.todo for plan in plans):
        with connect() as client:
            futures = _submit(client, experiment, plans, force)
            bars = [progress_bar(f"{experiment.name}/{plan.sweep.stem}", len(plan.todo), progress, position=index)
                    for index, plan in enumerate(plans)]
            try:
                for future in as_completed(list(futures)):
                    index, spec = futures.pop(future)
                    done = outcomes[index]
                    done.append(_outcome(future, spec))
                    future.release()  # a result held here is a task Dask would redo when its worker dies
                    bars[index].update()
                    bars[index].set_postfix(ok=sum(o.status == "ok" for o in done),
                                            failed=sum(o.status in ("failed", "lost") for o in done))
            finally:
                for bar in bars:
                    bar.close()
    return [summarise(experiment, plan.sweep, plan.specs, [*plan.skipped, *done])
            for plan, done in zip(plans, outcomes)]


def _submit(client: "Client", experiment: Experiment, plans: list[SweepPlan],
            force: bool) -> dict[Any, tuple[int, RunSpec]]:
    """One task per run to execute; a waiting sweep's tasks depend on a gate over all earlier tasks."""
    futures: dict[Any, tuple[int, RunSpec]] = {}
    batch_id = uuid.uuid4().hex[:8]
    for index, plan in enumerate(plans):
        upstream: tuple[Any, ...] = ()
        if plan.waits:
            gate = client.submit(_after, *futures, key=f"{plan.sweep.stem}/after-earlier-sweeps-{batch_id}")
            upstream = (experiment, plan.sweep, gate)
        for spec in plan.todo:
            future = client.submit(run_on_worker, replace(spec, batch=batch_id), force, *upstream, pure=False,
                                   key=f"{plan.sweep.stem}/{spec.name}-{batch_id}")
            futures[future] = (index, spec)
    return futures


def run_on_worker(spec: RunSpec, force: bool, experiment: Experiment | None = None, sweep: Sweep | None = None,
                  after: None = None) -> RunOutcome:
    """The Dask task of one run: when it waited on earlier sweeps, first take the fingerprint of
    the runs it builds on (``after``: the gate on them, now done), then execute under the run's
    claim unless complete."""
    ensure_kernel(spec.kernel_name)
    if sweep is not None:
        spec = replace(spec, inputs=upstream_fingerprint(experiment, sweep))
    return claim_and_execute(spec, force, while_waiting=_seceded)


def _after(*_outcomes: RunOutcome) -> None:
    """A gate task: done when every task it is given is done."""


@contextmanager
def _seceded() -> Iterator[None]:
    """Leave the worker's thread pool while blocked on another process's claim (it runs other tasks)."""
    from distributed import rejoin, secede

    secede()
    try:
        yield
    finally:
        rejoin()


def _outcome(future: Any, spec: RunSpec) -> RunOutcome:
    """The run's outcome; a task whose worker (or whose earlier sweeps' worker) died is ``lost``."""
    from distributed import KilledWorker

    if future.cancelled():  # the scheduler went away (or the batch cancelled it): no result will come
        return RunOutcome(spec.name, Path(spec.run_dir), "lost", error="cancelled: the connection to the Dask "
                          "scheduler was lost (redone next batch)")
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, KilledWorker):
        attempts = error.allowed_failures + 1
        if error.task == future.key:
            message = (f"its worker died ({attempts} attempt{'s' if attempts > 1 else ''}; "
                       f"last on {error.last_worker.address})")
        else:
            message = f"not run: {error.task} of an earlier sweep lost its worker"
        return RunOutcome(spec.name, Path(spec.run_dir), "lost", error=message)
    return RunOutcome(spec.name, Path(spec.run_dir), "failed", error=f"{type(error).__name__}: {error}")


def _absolute(experiment: Experiment) -> Experiment:
    """The experiment with absolute paths (workers run elsewhere, in other folders)."""
    sweeps = tuple(replace(sweep, notebook=sweep.notebook.resolve()) for sweep in experiment.sweeps)
    return replace(experiment, sweeps=sweeps, runs_dir=experiment.runs_dir.resolve())


def _import_dask(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BatchError(f"--executor dask needs {module}, which is not installed: {INSTALL_HINT}") from None
