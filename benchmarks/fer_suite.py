"""Every FER2013 and FER+ run of the accuracy tables, in one command that can be stopped and called again.

    python -m benchmarks.fer_suite --data ../shared/data --out runs/fer_suite           # a CPU: many hours
    python -m benchmarks.fer_suite --data /tmp/data --out /tmp/suite --bundle OUT/fer_suite.tar.gz   # a GPU

Steps, each a separate process whose output goes to ``OUT/logs/``:

1. ``emofx prepare DATA/fer2013 --format folder`` once (``OUT/data/fer2013.npz``);
2. ``emofx train`` on FER2013's own split (train on Training, select on PublicTest, test on
   PrivateTest) for each configuration of ``--configs`` (a recipe, ``+batch`` for batch
   normalisation) and seed of ``--seeds``, ``--epochs`` each, into
   ``OUT/runs/fer2013/<config>-e<epochs>/seed-<seed>``: a finished run is skipped and an interrupted
   one continued with ``--resume``, so the suite goes on where a stopped call left it;
3. ``python -m benchmarks.standard_splits`` over every run under ``OUT/runs/fer2013``
   (``OUT/results/fer2013``: runs.csv, summary.md, histories, curves);
4. ``python -m benchmarks.crowd_ferplus`` on all Training images with the ``strong`` recipe,
   ``--ferplus-arms`` (default: FER+ majority labels and vote distributions), ``--ferplus-epochs``
   (0 skips it), into ``OUT/results/ferplus``; skipped when ``DATA/ferplus`` is missing.

``OUT/suite.json`` records every step (command, status, seconds, and each run's test accuracy).
``--bundle FILE`` writes OUT's small files (metrics, histories, splits, tables, logs, suite.json;
no checkpoint, training state or prepared data) as one .tar.gz after every step, so that a machine
given back mid-suite still returns what it finished. To add the runs to the committed table:
``python -m benchmarks.standard_splits OUT/runs/fer2013/*/seed-* --out benchmarks/results/fer2013``.
A GPU machine that cannot reach the data gets it as one file: :mod:`benchmarks.device_data`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check import StepFailed, run_command
from emofx.nets.model import NORMS
from emofx.nets.recipes import RECIPES
from emofx.nets.train_state import STATE_FILE

DEFAULT_CONFIGS = ("strong", "strong+batch", "paper")
BUNDLE_SKIPS = ("checkpoint", "data", STATE_FILE)  # large, or the datasets' images


class SuiteError(ValueError):
    """Arguments the suite cannot run with (one-line message, exit status 2)."""


def train_options(config: str) -> list[str]:
    """``emofx train`` options of a configuration name: ``<recipe>`` or ``<recipe>+<norm>``."""
    recipe, _, norm = config.partition("+")
    if recipe not in RECIPES or (norm and norm not in NORMS):
        raise SuiteError(f"unknown configuration {config!r}: give a recipe ({', '.join(RECIPES)}), optionally "
                         f"with +<norm> ({', '.join(n for n in NORMS if n != 'none')}), e.g. strong+batch")
    return ["--recipe", recipe, *(["--norm", norm] if norm and norm != "none" else [])]


def run_status(run_dir: Path) -> str:
    """``finished`` (metrics.json, no training state), ``interrupted`` (training state) or ``new``."""
    if (run_dir / STATE_FILE).exists():
        return "interrupted"
    return "finished" if (run_dir / "metrics.json").exists() else "new"


def write_bundle(out: Path, bundle: Path) -> None:
    """OUT's small files as one .tar.gz (written to a temporary name, then renamed: never half a file)."""
    partial = bundle.with_name(bundle.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for path in sorted(out.rglob("*")):
            relative = path.relative_to(out)
            if (path.is_file() and not set(relative.parts) & set(BUNDLE_SKIPS)
                    and path.resolve() not in (bundle.resolve(), partial.resolve())):
                archive.add(path, arcname=str(Path(out.name) / relative))
    os.replace(partial, bundle)


def train_command(data: Path, run_dir: Path, config: str, epochs: int, seed: int, net: list[str]) -> list[str]:
    """The ``emofx train`` call of one run on the dataset's own split (``--resume`` when interrupted)."""
    return [sys.executable, "-m", "emofx", "train", str(data), "--out", str(run_dir), *train_options(config),
            "--epochs", str(epochs), "--seed", str(seed), "--split", "auto", "--quiet", *net,
            *(["--resume"] if run_status(run_dir) == "interrupted" else [])]


class Suite:
    """The steps of one call: each runs, is recorded in suite.json and, with a bundle, packed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out, self.steps = args, args.out, []
        (self.out / "logs").mkdir(parents=True, exist_ok=True)

    def step(self, name: str, command: list[str], skip: str = "") -> bool:
        """Run ``command`` (unless ``skip`` says why not); True when it ran and passed."""
        started = time.perf_counter()
        record: dict[str, Any] = {"step": name, "command": shlex.join(command)}
        if skip:
            record.update(status="skipped", message=skip)
        else:
            try:
                run_command(command, self.args.timeout, self.out / "logs" / f"{name}.log")
                record["status"] = "passed"
            except StepFailed as err:
                record.update(status="failed", message=str(err))
        record["seconds"] = round(time.perf_counter() - started, 1)
        self.steps.append(record)
        print(f"[{len(self.steps)}] {name}: {record['status']} in {record['seconds']:.0f} s"
              + (f" ({record['message']})" if record.get("message") else ""), flush=True)
        self.save()
        return record["status"] == "passed"

    def save(self) -> None:
        summary = {"command": "python -m benchmarks.fer_suite " + shlex.join(self.args.argv), "steps": self.steps}
        (self.out / "suite.json").write_text(json.dumps(summary, indent=1) + "\n")
        if self.args.bundle:
            write_bundle(self.out, self.args.bundle)


def run(args: argparse.Namespace) -> int:
    """All steps; returns the exit status (1 when a step failed)."""
    python, fer = sys.executable, args.data / "fer2013"
    net = [*(["--widths", args.widths] if args.widths else []),
           *(["--dense-units", str(args.dense_units)] if args.dense_units else [])]
    suite = Suite(args)
    data = args.out / "data" / "fer2013.npz"
    if not data.exists():
        limit = ["--limit", str(args.limit)] if args.limit else []
        if not suite.step("prepare", [python, "-m", "emofx", "prepare", str(fer), "--format", "folder", "--out",
                                      str(data), "--no-progress", *limit]):
            return 1
    for config in args.configs:
        for seed in args.seeds:
            run_dir = args.out / "runs" / "fer2013" / f"{config}-e{args.epochs}" / f"seed-{seed}"
            status = run_status(run_dir)
            suite.step(f"train-{config}-e{args.epochs}-seed-{seed}",
                       train_command(data, run_dir, config, args.epochs, seed, net),
                       skip="finished earlier" if status == "finished" else "")
            if run_status(run_dir) == "finished":
                suite.steps[-1]["test_accuracy"] = json.loads((run_dir / "metrics.json").read_text())["test_accuracy"]
                suite.save()
    finished = sorted(str(d) for d in (args.out / "runs" / "fer2013").glob("*/seed-*") if run_status(d) == "finished")
    suite.step("standard-splits", [python, "-m", "benchmarks.standard_splits", *finished, "--out",
                                   str(args.out / "results" / "fer2013"), "--title",
                                   "FER2013 PrivateTest (train on Training, select on PublicTest)"],
               skip="" if finished else "no finished run")
    ferplus = args.data / "ferplus"
    suite.step("ferplus", [python, "-m", "benchmarks.crowd_ferplus", "--data", str(args.data), "--limit",
                           str(args.limit or 0), "--val-limit", "0", "--epochs", str(args.ferplus_epochs),
                           "--recipe", "strong", "--arms", *args.ferplus_arms, "--out",
                           str(args.out / "results" / "ferplus"), *net],
               skip="--ferplus-epochs 0" if not args.ferplus_epochs else
               "" if ferplus.is_dir() else f"{ferplus} not found")
    return 1 if any(s["status"] == "failed" for s in suite.steps) else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fer_suite", description=__doc__.split("\n\n")[0],
                                     epilog="See the module's docstring (README: 'FER2013 on a GPU').")
    parser.add_argument("--data", type=Path, required=True, help="folder holding fer2013/ (and ferplus/)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the suite (runs, results, logs)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help=f"recipe[+norm] per configuration (default {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--ferplus-epochs", type=int, default=20, help="0 skips the FER+ step")
    parser.add_argument("--ferplus-arms", nargs="+", default=["majority", "soft"])
    parser.add_argument("--bundle", type=Path, help="a .tar.gz of OUT's small files, rewritten after every step")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds allowed per step")
    parser.add_argument("--limit", type=int, help="use at most N FER2013 images (a quick look, not a benchmark)")
    parser.add_argument("--widths", help=argparse.SUPPRESS)  # a reduced network, for the tests
    parser.add_argument("--dense-units", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    for config in args.configs:
        train_options(config)
    if not (args.data / "fer2013").is_dir():
        raise SuiteError(f"{args.data / 'fer2013'} not found: --data must hold FER2013's Kaggle folders "
                         "(on a machine without ../shared/data: python -m benchmarks.device_data unpack)")
    if min(args.epochs, *args.seeds) < 0 or args.epochs == 0 or args.ferplus_epochs < 0:
        raise SuiteError("--epochs must be positive, --seeds and --ferplus-epochs non-negative")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
