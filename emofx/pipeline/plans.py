"""What a batch is about to do: each sweep's runs, which are complete and which will be executed and why.

:func:`plan_sweeps` is what the Dask executor submits; :func:`describe_plans` is ``emofx batch --dry-run``'s
answer, so a researcher sees, before a cluster is started or a job submitted, that a changed experiment file
redoes the runs it should and no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from emofx.pipeline.batch import RunOutcome, RunSpec, check_parameters, plan_runs, selected_sweeps, split_complete
from emofx.pipeline.experiments import DEFAULT_KERNEL, EXPERIMENT_PARAMETER, Experiment, Sweep, notebook_parameters
from emofx.pipeline.results import run_state

LISTED_RUNS = 10  # runs named per sweep in a description; the rest are counted


@dataclass(frozen=True)
class SweepPlan:
    """One sweep's runs: those complete (skipped) and those to execute. A sweep whose notebook reads the experiment
    ``waits`` when an earlier sweep has runs to execute: its runs then decide once those are done (a complete run
    is redone when a run it builds on was), so all of them are in ``todo``."""

    sweep: Sweep
    specs: list[RunSpec]
    skipped: list[RunOutcome]
    todo: list[RunSpec]
    waits: bool


def plan_sweeps(experiment: Experiment, only: Iterable[str] = (), *, force: bool = False,
                kernel_name: str = DEFAULT_KERNEL, cell_timeout: float | None = None) -> list[SweepPlan]:
    """The plan of every selected sweep (``only``: notebook stems), after checking every sweep's parameters
    (also those not selected: an experiment file is checked whole before anything runs)."""
    for sweep in experiment.sweeps:
        check_parameters(sweep)
    plans: list[SweepPlan] = []
    for sweep in selected_sweeps(experiment, only):
        specs = plan_runs(experiment, sweep, kernel_name=kernel_name, cell_timeout=cell_timeout)
        waits = EXPERIMENT_PARAMETER in notebook_parameters(sweep.notebook.resolve()) and any(p.todo for p in plans)
        skipped, todo = ([], specs) if waits else split_complete(specs, force)
        plans.append(SweepPlan(sweep, specs, skipped, todo, waits))
    return plans


def describe_plans(experiment: Experiment, plans: list[SweepPlan], *, force: bool = False) -> str:
    """For people: per sweep, how many runs are complete and which will be executed, each with its state
    (``new``, ``interrupted``, ``failed``, ``changed``: other parameters or inputs; ``complete`` under ``--force``
    or when it waits on earlier runs)."""
    lines = []
    for plan in plans:
        head = f"{experiment.name}/{plan.sweep.stem}: {len(plan.specs)} run{'s' if len(plan.specs) != 1 else ''}"
        states = [run_state(spec.run_dir, spec.parameter_hash, spec.inputs) for spec in plan.todo]
        counts = {state: states.count(state) for state in dict.fromkeys(states)}
        why = ", ".join(f"{n} {state}" for state, n in counts.items())
        if plan.waits:
            lines.append(f"{head}, decided once the earlier sweeps' runs are done (a run is redone when the completed "
                         f"runs it builds on change{', and all of them with --force' if force else ''}); now: {why}")
        elif force:
            lines.append(f"{head}: {len(plan.todo)} to execute (--force; now: {why})")
        else:
            lines.append(f"{head}: {len(plan.todo)} to execute" + (f" ({why})" if why else "")
                         + f", {len(plan.skipped)} complete (skipped)")
        lines += [f"  {state:<11} {spec.name}" for spec, state in zip(plan.todo[:LISTED_RUNS], states)]
        if len(plan.todo) > LISTED_RUNS:
            lines.append(f"  ... and {len(plan.todo) - LISTED_RUNS} more")
    return "\n".join(lines)
