"""Time the paper's culture protocol: K trials x each culture, the paper's CNN, E epochs.

    python -m benchmarks.protocol DATA_A.npz DATA_B.npz --trials 5 --epochs 20 --out /tmp/protocol

Trains every (culture, trial) run with ``emofx.study.runs.train_run`` (subject-independent splits
where subjects are known) and prints, last, one JSON object: total wall seconds, seconds
inside the compiled training steps, the fraction outside them, seconds spent compiling (or
loading compiled programs from the persistent cache; they overlap the first steps of a shape),
and per-run rows. Run as a script, it first restarts itself with the C allocator settings the
``emofx`` command runs with (``emofx.nets.allocator``; ``EMOFX_TUNED_MALLOC=0`` leaves them out), so it times
what a study's ``emofx`` processes spend; the JSON records them (``malloc_tunables``). Data
preparation is excluded (pass prepared ``.npz`` files). Early stopping is off so that every run
trains all its epochs, as the protocol's time budget assumes. ``--lanes`` trains every run of
the same classes and image size side by side as one vmapped program
(``emofx.study.runs.train_runs``); the per-run times are then the whole batch's. Runs go to
``OUT/<dataset file stem>/trial-K``, so the datasets' file names must differ. ``--emulate-tf32`` (a CPU
only) trains as a GPU would at the precision in force, its TF32 products and its convolution path
emulated (``benchmarks/emulated_tf32.py``; 2.5-3x slower): what a study on a GPU would report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import jax

from emofx.cli.train import int_tuple, model_template
from emofx.data.dataset import FaceDataset
from emofx.data.splits import SPLIT_KINDS, SplitError
from emofx.nets.allocator import allocator_setting, restart_with_tuned_malloc
from emofx.nets.training import TrainConfig, TrainingError
from emofx.study.machine import cpu_shares, cpu_times
from emofx.study.runs import RunError, RunPlan, check_plans, train_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="prepared emofx datasets, one per culture")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--split", default="auto", choices=SPLIT_KINDS,
                        help="split kind (default auto: subject when subjects are known)")
    parser.add_argument("--lanes", action="store_true",
                        help="train all runs of one image size and class set as one vmapped program")
    parser.add_argument("--out", required=True, help="folder for the run directories (must not exist)")
    parser.add_argument("--emulate-tf32", action="store_true",
                        help="on a CPU: train with a GPU's TF32 products and convolution path, emulated")
    # Smaller networks for quick checks (benchmarks/gpu_check.py --quick), not the paper's.
    parser.add_argument("--widths", type=int_tuple, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dense-units", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} already exists; choose a new --out folder")
    if args.trials < 1:
        parser.error(f"--trials must be at least 1; got {args.trials}")
    device = jax.default_backend()
    if args.emulate_tf32 and device != "cpu":
        parser.error(f"--emulate-tf32 emulates a GPU on a CPU; JAX runs on {device} here: leave it out")
    stems = [Path(path).stem for path in args.datasets]
    if len(set(stems)) < len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        parser.error(f"datasets share the file name {', '.join(twice)} (runs go to --out/<file name>/); "
                     "rename or copy one of them")
    datasets = []
    for path in args.datasets:
        try:
            datasets.append(FaceDataset.load(path))
        except (OSError, ValueError) as err:
            parser.error(str(err))

    plans = [RunPlan(dataset, out / stem / f"trial-{trial}", trial, args.split)
             for stem, dataset in zip(stems, datasets) for trial in range(args.trials)]
    try:  # settings, splits and models the library refuses: one line, before any training
        config = TrainConfig(epochs=args.epochs, patience=0)
        for plan in plans:
            check_plans([plan], config, model_template(args.widths, args.dense_units, len(plan.dataset.classes)))
    except ValueError as err:
        parser.error(str(err))
    groups = [[plan] for plan in plans]
    if args.lanes:
        shapes: dict[tuple, list[RunPlan]] = {}
        for plan in plans:
            shapes.setdefault((plan.dataset.classes, plan.dataset.image_shape), []).append(plan)
        groups = list(shapes.values())
    rows, step_seconds, compile_seconds = [], 0.0, 0.0
    start, started = time.perf_counter(), cpu_times()
    with ExitStack() as emulation:
        if args.emulate_tf32:
            from benchmarks.emulated_tf32 import emulated_tf32

            emulation.enter_context(emulated_tf32(gpu_paths=True))
            device = "cpu, a GPU's TF32 products and convolution path emulated (benchmarks/emulated_tf32.py)"
        for group in groups:
            tick = time.perf_counter()
            model = model_template(args.widths, args.dense_units, len(group[0].dataset.classes))
            try:
                trained = train_runs(group, train_config=config, model_config=model, progress=False,
                                     side_by_side=args.lanes)
            except (TrainingError, SplitError, RunError) as err:
                parser.error(str(err))
            step_seconds += trained[0][1].step_seconds  # a group's runs share its times
            compile_seconds += trained[0][1].compile_seconds
            for plan, (run, result) in zip(group, trained):
                dataset = plan.dataset
                rows.append({
                    "culture": str(dataset.culture[0] or Path(plan.directory).parent.name), "trial": plan.trial,
                    "lanes": len(group), "n_train": run.metrics["n_train"],
                    "test_accuracy": run.metrics["test_accuracy"], "seconds": time.perf_counter() - tick,
                    "train_step_seconds": result.step_seconds, "compile_seconds": result.compile_seconds,
                })
                print(json.dumps(rows[-1]), flush=True)
    total = time.perf_counter() - start
    summary = {
        "runs": len(rows), "epochs": args.epochs, "lanes": args.lanes, "total_seconds": total,
        "train_step_seconds": step_seconds, "compile_seconds": compile_seconds,
        "outside_fraction": 1 - step_seconds / total, "device": device,
        "cpu_count": os.cpu_count(), "cpu_shares": cpu_shares(started), "malloc_tunables": allocator_setting(),
        "per_run": rows,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    restart_with_tuned_malloc()
    sys.exit(main())
