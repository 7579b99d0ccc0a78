"""Run a notebook for every combination of parameter values with papermill.

Either one sweep on the command line:

    emofx batch notebooks/02_train_culture.ipynb --experiment demo -p culture eyes mouth -p seed 0 1

or every sweep of an experiment file, in order:

    emofx batch --config experiments/synthetic_cultures.yaml

Each run goes to RUNS_DIR/EXPERIMENT/NOTEBOOK/PARAMETER-SET/ (the executed notebook, its
results/ and status.json). Completed runs with the same parameters are skipped; interrupted,
failed or changed ones are redone (those three replaced; other files in the folder stay).
Exit status 1 when any run failed or lost its worker.

With --executor dask every run is a Dask task: on a local cluster (--workers processes), on a
running scheduler (--scheduler ADDRESS), or on SLURM/PBS jobs (--cluster slurm --cluster-config
FILE); the run folders must be on a filesystem that the workers share. Needs emofx[dask].
Two batch processes on one experiment never execute the same run twice (runs are claimed).
--dry-run lists the runs a batch would execute and why, and the job script a SLURM/PBS cluster
would submit, doing nothing.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from emofx.pipeline import executors
from emofx.pipeline.batch import ensure_kernel, run_experiment
from emofx.pipeline.experiments import DEFAULT_KERNEL, BatchError, Experiment, Sweep, load_experiment, parse_value
from emofx.pipeline.plans import describe_plans, plan_sweeps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx batch` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("notebook", nargs="?", type=Path, help="the notebook to run (omit with --config)")
    parser.add_argument("--config", type=Path, help="an experiment YAML file (see experiments/)")
    parser.add_argument("--experiment", help="experiment name: the folder under --runs-dir")
    parser.add_argument("-p", "--param", nargs="+", action="append", default=[], metavar=("KEY", "VALUES"),
                        help="a parameter and the values to sweep (read as YAML: 3, 0.5, true, '[a, b]')")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a parameter with one fixed value (not part of the run names)")
    parser.add_argument("--only", nargs="+", default=[], metavar="NOTEBOOK",
                        help="with --config: run only these notebooks' sweeps (stems, e.g. 02_train_culture)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="where experiments live (default: a config's runs_dir, else ../papermill_runs beside "
                             "the config; papermill_runs for a notebook and -p)")
    parser.add_argument("--workers", type=int, default=1,
                        help="runs executed in parallel (process pool, or the workers of --cluster local; default 1)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local process pool (default) or Dask (needs emofx[dask])")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --executor dask: a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--cluster", choices=executors.CLUSTERS, default=None,
                        help="with --executor dask: the cluster to start (default local)")
    parser.add_argument("--cluster-config", type=Path, metavar="FILE",
                        help="with --cluster slurm|pbs: a YAML file (cores, memory, walltime, queue, jobs, ...)")
    parser.add_argument("--retries", type=int, default=None,
                        help=f"with --executor dask: times a run is retried after its worker died "
                             f"(default {executors.DEFAULT_RETRIES})")
    parser.add_argument("--force", action="store_true", help="redo completed runs too")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to execute with (default python3)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed per notebook cell (default: no limit)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs a batch would execute and why (new, interrupted, failed, changed), and "
                             "with --cluster slurm|pbs print the job script; execute, submit and write nothing")


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    """The experiment the command line describes (a config file or one sweep)."""
    if args.config is not None:
        if args.notebook is not None or args.param or args.set or args.experiment:
            raise BatchError("give either --config or NOTEBOOK with --experiment/-p/--set, not both")
        return load_experiment(args.config, runs_dir=args.runs_dir)
    if args.notebook is None or not args.experiment:
        raise BatchError("give NOTEBOOK and --experiment NAME (or --config FILE)")
    if args.only:
        raise BatchError("--only goes with --config")
    grid = {}
    for key, *values in args.param:
        if not values:
            raise BatchError(f"-p {key} needs at least one value")
        if key in grid:
            raise BatchError(f"-p {key} given twice; list all its values after one -p")
        grid[key] = [parse_value(v) for v in values]
    fixed = {key: parse_value(value) for key, value in args.set}
    return Experiment(args.experiment, (Sweep(args.notebook, grid, fixed),), args.runs_dir or Path("papermill_runs"))


def run(args: argparse.Namespace) -> int:
    """Run `emofx batch` with the parsed ``args``; returns the exit status."""
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        raise BatchError(f"--timeout must be a positive number of seconds per cell; got {args.timeout}")
    experiment = experiment_from_args(args)
    if args.executor != "dask":
        dask_only = {"--scheduler": args.scheduler, "--cluster": args.cluster, "--cluster-config": args.cluster_config,
                     "--retries": args.retries}
        given = [flag for flag, value in dask_only.items() if value is not None]
        if given:
            raise BatchError(f"{given[0]} goes with --executor dask")
    if args.dry_run:
        return dry_run(args, experiment)
    options = dict(only=args.only, force=args.force, kernel_name=args.kernel, cell_timeout=args.timeout,
                   progress=not args.no_progress)
    if args.executor == "dask":
        connection = executors.dask_client(scheduler=args.scheduler, cluster=args.cluster or "local",
                                           workers=args.workers, cluster_config=args.cluster_config,
                                           retries=args.retries)
        summaries = executors.run_experiment_on_dask(experiment, lambda: connection, **options)
    else:
        summaries = run_experiment(experiment, workers=args.workers, **options)
    for summary in summaries:
        print(summary.describe())
    print(f"runs in {experiment.directory}")
    return 1 if any(summary.failed or summary.lost for summary in summaries) else 0


def dry_run(args: argparse.Namespace, experiment: Experiment) -> int:
    """Print what ``run`` would do (:func:`emofx.pipeline.plans.describe_plans`), and the job script of a SLURM/PBS
    cluster; nothing is executed, submitted or written."""
    if args.executor == "dask":
        executors.check_dask_options(scheduler=args.scheduler, cluster=args.cluster or "local", workers=args.workers,
                                     cluster_config=args.cluster_config, retries=args.retries)
    elif args.workers < 1:
        raise BatchError(f"--workers must be at least 1; got {args.workers}")
    if args.kernel != DEFAULT_KERNEL:  # a missing python3 kernel a batch installs; another it refuses
        ensure_kernel(args.kernel)
    plans = plan_sweeps(experiment, args.only, force=args.force, kernel_name=args.kernel, cell_timeout=args.timeout)
    print("dry run: nothing is executed, submitted or written")
    print(describe_plans(experiment, plans, force=args.force))
    print(f"runs in {experiment.directory}")
    if args.cluster in ("slurm", "pbs"):
        script = executors.job_script(args.cluster, args.cluster_config)
        jobs = executors.load_job_config(args.cluster_config).jobs
        submit = {"slurm": "sbatch", "pbs": "qsub"}[args.cluster]
        print(f"\neach of the {jobs} job{'s' if jobs != 1 else ''} {submit} would submit (when a run is to be "
              f"executed) runs (SCHEDULER: the address of the scheduler emofx batch starts):\n{script}")
    return 0
