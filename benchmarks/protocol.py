"""Time the paper's culture protocol: K trials x each culture, the paper's CNN, E epochs.

    python -m benchmarks.protocol DATA_A.npz DATA_B.npz --trials 5 --epochs 20 --out /tmp/protocol

Trains every (culture, trial) run with ``emofx.study.runs.train_run`` (subject-independent splits
where subjects are known) and prints, last, one JSON object: total wall seconds, seconds
inside the compiled training steps, the fraction outside them, seconds spent compiling (or
loading compiled programs from the persistent cache; they overlap the first steps of a shape),
and per-run rows. Data
preparation is excluded (pass prepared ``.npz`` files). Early stopping is off so that every run
trains all its epochs, as the protocol's time budget assumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

from emofx.cli.train import _int_tuple, model_template
from emofx.data.dataset import FaceDataset
from emofx.nets.training import TrainConfig
from emofx.study.runs import train_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="prepared emofx datasets, one per culture")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--split", default="auto", help="split kind (default: subject when subjects are known)")
    parser.add_argument("--out", required=True, help="folder for the run directories (must not exist)")
    # Smaller networks for quick checks (benchmarks/gpu_check.py --quick), not the paper's.
    parser.add_argument("--widths", type=_int_tuple, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dense-units", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} already exists; choose a new --out folder")
    datasets = []
    for path in args.datasets:
        try:
            datasets.append(FaceDataset.load(path))
        except (OSError, ValueError) as err:
            parser.error(str(err))

    config = TrainConfig(epochs=args.epochs, patience=0)
    rows = []
    start = time.perf_counter()
    for path, dataset in zip(args.datasets, datasets):
        culture = dataset.culture[0] if len(dataset) and dataset.culture[0] else Path(path).stem
        for trial in range(args.trials):
            tick = time.perf_counter()
            run, result = train_run(dataset, out / f"{Path(path).stem}" / f"trial-{trial}", split_kind=args.split,
                                    trial=trial, train_config=config, progress=False,
                                    model_config=model_template(args.widths, args.dense_units, len(dataset.classes)))
            rows.append({
                "culture": str(culture), "trial": trial, "n_train": run.metrics["n_train"],
                "test_accuracy": run.metrics["test_accuracy"], "seconds": time.perf_counter() - tick,
                "train_step_seconds": result.step_seconds, "compile_seconds": result.compile_seconds,
            })
            print(json.dumps(rows[-1]), flush=True)
    total = time.perf_counter() - start
    steps = sum(r["train_step_seconds"] for r in rows)
    summary = {
        "runs": len(rows), "epochs": args.epochs, "total_seconds": total, "train_step_seconds": steps,
        "compile_seconds": sum(r["compile_seconds"] for r in rows),
        "outside_fraction": 1 - steps / total, "device": jax.default_backend(),
        "cpu_count": os.cpu_count(), "per_run": rows,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
