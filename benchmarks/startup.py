"""Time a new process's start: `emofx train` processes of the same model shape, one after the other.

    python -m benchmarks.startup [DATA.npz] --epochs 1 --out benchmarks/results/startup/cpu.json

The first process starts with an empty persistent compilation cache (a fresh folder) and
compiles every program; each later one (``--later``, default 3), a new process with the same
settings, loads them from that cache. For each it reports ``ready_seconds`` from the run's
metrics.json (how long after the process started its first training step was dispatched: imports, loading the data, the
initial validation, and compiling or loading the step), ``compile_seconds`` and the process's
whole wall time. Without DATA.npz a synthetic 48-pixel dataset of 7 classes is made (the paper's
input and model shape). Prints one JSON object; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.outputs import refuse_existing
from emofx.data.synthetic import make_synthetic


def timed_train(data: Path, out: Path, cache: Path, epochs: int) -> dict:
    """One `emofx train` in a new process; its metrics' timings and the process's wall time."""
    env = {**os.environ, "EMOFX_COMPILATION_CACHE": str(cache)}
    command = [sys.executable, "-m", "emofx", "train", str(data), "--out", str(out), "--epochs", str(epochs),
               "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"ready_seconds": metrics["ready_seconds"], "compile_seconds": metrics["compile_seconds"],
            "train_seconds": metrics["seconds"], "process_seconds": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", help="a prepared emofx dataset (default: a synthetic one)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--later", type=int, default=3, help="new processes after the first (default 3)")
    parser.add_argument("--per-class", type=int, default=60, help="synthetic images per class (default 60)")
    parser.add_argument("--out", help="also write the JSON summary here (must not exist)")
    args = parser.parse_args(argv)
    if args.later < 0:
        parser.error(f"--later must be >= 0; got {args.later}")
    refuse_existing(parser, [args.out] if args.out else [], "--out")
    if args.data and not Path(args.data).is_file():
        parser.error(f"{args.data} is not a file; give a prepared emofx dataset (.npz), or none for a synthetic one")

    with tempfile.TemporaryDirectory(prefix="emofx-startup-") as tmp:
        folder = Path(tmp)
        data = Path(args.data) if args.data else make_synthetic(n_per_class=args.per_class,
                                                                  seed=0).save(folder / "synthetic.npz")
        try:
            first = timed_train(data, folder / "first", folder / "cache", args.epochs)
            later = [timed_train(data, folder / f"later-{i}", folder / "cache", args.epochs)
                     for i in range(args.later)]
        except subprocess.CalledProcessError as err:
            parser.exit(1, f"{parser.prog}: `emofx train` failed with exit status {err.returncode} "
                           "(its error is printed above)\n")
    summary = {"machine": platform.machine(), "cpus": os.cpu_count(), "data": str(args.data or "synthetic"),
               "epochs": args.epochs, "first_process": first, "later_processes": later,
               "later_ready_seconds_max": max((run["ready_seconds"] for run in later), default=None)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
