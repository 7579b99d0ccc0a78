"""Every run of the accuracy tables (FER2013, FER+, pre-trained cultures) in one command that can be
stopped and called again.

    python -m benchmarks.accuracy_suite --data ../shared/data --out runs/accuracy_suite     # a CPU: many hours
    python -m benchmarks.accuracy_suite --data /tmp/data --cultures kdef.npz taiwanese.npz \
        --out /tmp/suite --bundle OUT/accuracy_suite.tar.gz                                     # a GPU: minutes

Steps, each a separate process whose output goes to ``OUT/logs/``:

1. ``emofx prepare DATA/fer2013 --format folder`` once (``OUT/data/fer2013.npz``);
2. ``emofx train`` on FER2013's own split (train on Training, select on PublicTest, test on
   PrivateTest) for each configuration of ``--configs`` (a recipe, ``+batch`` for batch
   normalisation, ``@E`` for E epochs instead of ``--epochs``, ``@E+M`` for M more epochs from
   each seed's E-epoch model, a warm restart at ``--restart-lr``) and seed of ``--seeds``, into
   ``OUT/runs/fer2013/<config>-e<epochs>/seed-<seed>`` (``-e<E>+<M>-lr<restart lr>`` for a second
   stage): a finished run is skipped and an interrupted one continued with ``--resume``, so the
   suite goes on where a stopped call left it; on a GPU (``--lanes auto``) a configuration's
   unfinished seeds train as one vmapped program instead (second stages: one run per seed);
3. ``python -m benchmarks.standard_splits`` over every run under ``OUT/runs/fer2013``
   (``OUT/results/fer2013``: runs.csv, summary.md, histories, curves);
4. for each prepared culture dataset of ``--cultures``, ``--culture-trials`` subject-independent
   trials trained two ways, as the paper's study and its pre-trained variant
   (``experiments/kdef_vs_taiwanese*.yaml``): ``paper-scratch`` (the paper's recipe from random
   weights, ``--culture-epochs``) and ``strong-from-fer2013`` (the strong recipe from the seed-0 model of
   step 2's first ``strong`` configuration, or ``--init-from``, convolutional layers at 0.1x the learning
   rate, its whole cosine schedule of ``--finetune-epochs`` without early stopping), into
   ``OUT/runs/cultures/<dataset>/<training>/trial-K``; the trials of one training run as one
   vmapped program on a GPU (a group stopped midway is trained again). ``OUT/results/cultures.md`` (and .csv):
   mean ± std test accuracy per culture and training, side by side;
5. ``python -m benchmarks.crowd_ferplus`` on all Training images with the ``strong`` recipe,
   ``--ferplus-arms`` (default: FER+ majority labels and vote distributions), ``--ferplus-epochs``
   (0 skips it), into ``OUT/results/ferplus``; skipped when ``DATA/ferplus`` is missing;
6. the same arms fine-tuned from the FER2013 model step 4 starts from (the same Training images
   with FER2013's labels; learning rate ``--ferplus-finetune-lr``, default 0.02, whole network;
   ``--ferplus-finetune-epochs``, default 10, 0 skips it), into ``OUT/results/ferplus_from_fer2013``.

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
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.gpu_check import StepFailed, run_command
from benchmarks.standard_splits import pm
from emofx.nets.model import NORMS
from emofx.nets.recipes import RECIPES
from emofx.nets.train_state import STATE_FILE

DEFAULT_CONFIGS = ("strong", "strong+batch", "paper")
# The two trainings of each culture: the paper's study (the options of experiments/kdef_vs_taiwanese.yaml),
# and its pre-trained variant (init-from is added). Fine-tuning runs its whole cosine schedule: with early
# stopping on ~100 validation images it stopped before the learning rate had decayed
# (benchmarks/results/finetune/).
CULTURE_TRAININGS = {
    "paper-scratch": ["--recipe", "paper", "--lr", "0.05"],
    "strong-from-fer2013": ["--recipe", "strong", "--lr", "0.05", "--conv-lr-scale", "0.1", "--patience", "0"],
}
BUNDLE_SKIPS = ("checkpoint", "data", STATE_FILE)  # large, or the datasets' images
# A second stage's peak learning rate: a fifth of strong's 0.05. Measured on FER2013 seed 0, 40 + 20 epochs at
# 0.01 gave 68.1% PrivateTest where 40 epochs gave 66.9% (benchmarks/results/fer2013/).
DEFAULT_RESTART_LR = 0.01


class SuiteError(ValueError):
    """Arguments the suite cannot run with (one-line message, exit status 2)."""


@dataclass(frozen=True)
class Configuration:
    """One FER2013 configuration of the table: a recipe, a normalisation and an epoch count, and
    optionally a second stage: ``more_epochs`` more from each seed's model of the first stage, a warm
    restart of the schedule at peak learning rate ``restart_lr`` (``emofx train --init-from``)."""

    recipe: str
    norm: str
    epochs: int
    more_epochs: int = 0
    restart_lr: float = DEFAULT_RESTART_LR

    @property
    def name(self) -> str:
        """The run folder's name, e.g. ``strong+batch-e60`` or ``strong-e40+20-lr0.01``."""
        stages = f"{self.epochs}+{self.more_epochs}-lr{self.restart_lr:g}" if self.more_epochs else str(self.epochs)
        return f"{self.recipe}{'' if self.norm == 'none' else '+' + self.norm}-e{stages}"

    @property
    def first_stage(self) -> Configuration | None:
        """The configuration whose models a second stage continues (None: a single stage)."""
        return Configuration(self.recipe, self.norm, self.epochs) if self.more_epochs else None

    def options(self) -> list[str]:
        """Its ``emofx train`` options (a second stage's: its own epochs and peak learning rate)."""
        epochs = ["--epochs", str(self.more_epochs), "--lr", f"{self.restart_lr:g}"] if self.more_epochs else [
            "--epochs", str(self.epochs)]
        return ["--recipe", self.recipe, *(["--norm", self.norm] if self.norm != "none" else []), *epochs]


def parse_configuration(text: str, default_epochs: int, restart_lr: float = DEFAULT_RESTART_LR) -> Configuration:
    """``<recipe>[+<norm>][@<epochs>[+<more epochs>]]`` (e.g. ``strong+batch@60``, ``strong@40+20``) as a
    :class:`Configuration`; a second stage restarts at ``restart_lr``."""
    spec, _, epochs = text.partition("@")
    recipe, _, norm = spec.partition("+")
    first, plus, more = epochs.partition("+")
    counts = [first] + ([more] if plus else [])
    if (recipe not in RECIPES or (norm and norm not in NORMS)
            or (epochs and not all(n.isdigit() and int(n) for n in counts))):
        raise SuiteError(f"unknown configuration {text!r}: give a recipe ({', '.join(RECIPES)}), optionally "
                         f"+<norm> ({', '.join(n for n in NORMS if n != 'none')}) and @<epochs>[+<more epochs>], "
                         "e.g. strong+batch@60 or strong@40+20")
    return Configuration(recipe, norm or "none", int(first) if first else default_epochs, int(more) if plus else 0,
                         restart_lr)


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


def train_command(data: Path, out: Path, config: Configuration, net: list[str]) -> list[str]:
    """The ``emofx train`` call of ``config`` on the dataset's own split, into ``out`` (seeds to add)."""
    return [sys.executable, "-m", "emofx", "train", str(data), "--out", str(out), *config.options(), "--split",
            "auto", "--quiet", *net]


class Suite:
    """The steps of one call: each runs, is recorded in suite.json and, with a bundle, packed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out, self.steps = args, args.out, []
        self.command = "python -m benchmarks.accuracy_suite " + shlex.join(args.argv)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)

    def step(self, name: str, command: list[str], skip: str = "") -> bool:
        """Run ``command`` (unless ``skip`` says why not); True when it ran and passed."""
        started = time.perf_counter()
        if skip:
            return self.record(name, "skipped", started, command=command, message=skip)
        try:
            run_command(command, self.args.timeout, self.out / "logs" / f"{name}.log")
        except StepFailed as err:
            return self.record(name, "failed", started, command=command, message=str(err))
        return self.record(name, "passed", started, command=command)

    def record(self, name: str, status: str, started: float, command: list[str] | None = None,
               message: str = "") -> bool:
        """Note a step's outcome (printed, in suite.json, in the bundle); True when it passed."""
        entry: dict[str, Any] = {"step": name, "status": status, "seconds": round(time.perf_counter() - started, 1)}
        if command:
            entry["command"] = shlex.join(command)
        if message:
            entry["message"] = message
        self.steps.append(entry)
        print(f"[{len(self.steps)}] {name}: {status} in {entry['seconds']:.0f} s"
              + (f" ({message})" if message else ""), flush=True)
        self.save()
        return status == "passed"

    def note_accuracy(self, run_dirs: list[Path]) -> None:
        """Add the finished runs' test accuracies to the last step's record."""
        scores = {d.name: json.loads((d / "metrics.json").read_text())["test_accuracy"]
                  for d in run_dirs if run_status(d) == "finished"}
        if scores:
            self.steps[-1]["test_accuracy"] = scores
            self.save()

    def save(self) -> None:
        summary = {"command": self.command, "steps": self.steps}
        (self.out / "suite.json").write_text(json.dumps(summary, indent=1) + "\n")
        if self.args.bundle:
            write_bundle(self.out, self.args.bundle)


def run(args: argparse.Namespace) -> int:
    """All steps; returns the exit status (1 when a step failed)."""
    net = [*(["--widths", args.widths] if args.widths else []),
           *(["--dense-units", str(args.dense_units)] if args.dense_units else [])]
    suite = Suite(args)
    lanes = args.lanes == "on" or (args.lanes == "auto" and jax_backend() != "cpu")
    if not fer2013_stage(suite, args, net, lanes):
        return 1
    if args.cultures:
        culture_stage(suite, args, net, lanes)
    ferplus_stage(suite, args, net)
    return 1 if any(s["status"] == "failed" for s in suite.steps) else 0


def ferplus_stage(suite: Suite, args: argparse.Namespace, net: list[str]) -> None:
    """Steps 5-6: the FER+ label arms from random weights, then fine-tuned from the FER2013 model."""
    ferplus = args.data / "ferplus"
    missing = "" if ferplus.is_dir() else f"{ferplus} not found"
    common = [sys.executable, "-m", "benchmarks.crowd_ferplus", "--data", str(args.data), "--limit",
              str(args.limit or 0), "--val-limit", "0", "--recipe", "strong", "--arms", *args.ferplus_arms, *net]
    suite.step("ferplus", [*common, "--epochs", str(args.ferplus_epochs), "--out",
                           str(args.out / "results" / "ferplus")],
               skip="--ferplus-epochs 0" if not args.ferplus_epochs else missing)
    init_from = args.init_from or pretrained_run(args)
    suite.step("ferplus-from-fer2013",
               [*common, "--epochs", str(args.ferplus_finetune_epochs), "--init-from", str(init_from),
                "--lr", str(args.ferplus_finetune_lr), "--out", str(args.out / "results" / "ferplus_from_fer2013")],
               skip="--ferplus-finetune-epochs 0" if not args.ferplus_finetune_epochs else missing or (
                   "" if run_status(init_from) == "finished" else f"no finished FER2013 model in {init_from}"))


def fer2013_stage(suite: Suite, args: argparse.Namespace, net: list[str], lanes: bool) -> bool:
    """Steps 1-3: prepare FER2013, train every configuration and seed (with ``lanes``, a
    configuration's unfinished seeds as one program), table them; False when FER2013 could not
    be prepared."""
    data = args.out / "data" / "fer2013.npz"
    if not data.exists():
        limit = ["--limit", str(args.limit)] if args.limit else []
        if not suite.step("prepare", [sys.executable, "-m", "emofx", "prepare", str(args.data / "fer2013"), "--format",
                                      "folder", "--out", str(data), "--no-progress", *limit]):
            return False
    for config in with_first_stages(args.configs):
        base = args.out / "runs" / "fer2013" / config.name
        todo = [seed for seed in args.seeds if run_status(base / f"seed-{seed}") != "finished"]
        if lanes and not config.more_epochs:  # a second stage continues each seed's own model: one run per seed
            suite.step(f"train-{config.name}-seeds",
                       [*train_command(data, base, config, net), "--seeds", *map(str, todo), "--overwrite"],
                       skip="" if todo else "finished earlier")
            suite.note_accuracy([base / f"seed-{seed}" for seed in args.seeds])
            continue
        for seed in args.seeds:
            run_dir = base / f"seed-{seed}"
            start, skip = [], "" if seed in todo else "finished earlier"
            if config.first_stage is not None:
                model = args.out / "runs" / "fer2013" / config.first_stage.name / f"seed-{seed}"
                start = ["--init-from", str(model)]
                if not skip and run_status(model) != "finished":
                    skip = f"no finished first stage in {model}"
            suite.step(f"train-{config.name}-seed-{seed}",
                       [*train_command(data, run_dir, config, net), "--seed", str(seed), *start,
                        *(["--resume"] if run_status(run_dir) == "interrupted" else [])], skip=skip)
            suite.note_accuracy([run_dir])
    finished = sorted(str(d) for d in (args.out / "runs" / "fer2013").glob("*/seed-*") if run_status(d) == "finished")
    suite.step("standard-splits", [sys.executable, "-m", "benchmarks.standard_splits", *finished, "--out",
                                   str(args.out / "results" / "fer2013"), "--title",
                                   "FER2013 PrivateTest (train on Training, select on PublicTest)"],
               skip="" if finished else "no finished run")
    return True


def with_first_stages(configs: list[Configuration]) -> list[Configuration]:
    """``configs`` in order, each second stage preceded by its first stage (every stage once, by name)."""
    ordered: list[Configuration] = []
    for config in configs:
        for stage in (config.first_stage, config):
            if stage is not None and stage.name not in {s.name for s in ordered}:
                ordered.append(stage)
    return ordered


def jax_backend() -> str:
    """JAX's default backend, asked in a child process: initialising a GPU here would take its
    memory from the training processes the suite starts."""
    done = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"], capture_output=True,
                          text=True)
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "cpu"


def culture_stage(suite: Suite, args: argparse.Namespace, net: list[str], lanes: bool) -> None:
    """Step 4: each culture's trials from scratch and fine-tuned from FER2013 (with ``lanes``, a
    training's trials as one program), then their table."""
    init_from = args.init_from or pretrained_run(args)
    trials = range(args.culture_trials)
    for data in args.cultures:
        for training, options in CULTURE_TRAININGS.items():
            base = args.out / "runs" / "cultures" / data.stem / training
            epochs = args.culture_epochs if training == "paper-scratch" else args.finetune_epochs
            if training != "paper-scratch":
                if run_status(init_from) != "finished":
                    suite.record(f"train-{data.stem}-{training}", "skipped", time.perf_counter(),
                                 message=f"no finished FER2013 model in {init_from} to start from")
                    continue
                options = [*options, "--init-from", str(init_from)]
            common = [sys.executable, "-m", "emofx", "train", str(data), "--split", "subject", "--seed", "0",
                      "--epochs", str(epochs), "--quiet", *options, *net]
            states = [run_status(base / f"trial-{k}") for k in trials]
            if lanes:
                suite.step(f"train-{data.stem}-{training}",
                           [*common, "--out", str(base), "--trials", str(len(trials)), "--trial", "0", "--overwrite"],
                           skip="finished earlier" if set(states) == {"finished"} else "")
                continue
            for k, state in zip(trials, states):
                suite.step(f"train-{data.stem}-{training}-trial-{k}",
                           [*common, "--out", str(base / f"trial-{k}"), "--trial", str(k),
                            *(["--resume"] if state == "interrupted" else [])],
                           skip="finished earlier" if state == "finished" else "")
    started = time.perf_counter()
    table = culture_table(args.out / "runs" / "cultures")
    if table.empty:
        suite.record("culture-table", "skipped", started, message="no finished culture run")
        return
    results = args.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "cultures.csv", index=False)
    (results / "cultures.md").write_text(culture_markdown(table, suite))
    suite.record("culture-table", "passed", started)


def pretrained_run(args: argparse.Namespace) -> Path:
    """The FER2013 run to fine-tune from: seed 0 of the first ``strong`` configuration without
    normalisation (the culture trainings keep the paper's architecture)."""
    strong = [c for c in args.configs if (c.recipe, c.norm) == ("strong", "none")]
    name = strong[0].name if strong else f"strong-e{args.epochs}"
    return args.out / "runs" / "fer2013" / name / "seed-0"


def culture_table(root: Path) -> pd.DataFrame:
    """Per culture dataset and training under ``root`` (``<dataset>/<training>/trial-K``): the
    finished trials' mean and std of test and balanced accuracy, wall seconds and device."""
    rows = []
    for metrics_path in sorted(root.glob("*/*/trial-*/metrics.json")):
        if run_status(metrics_path.parent) != "finished":
            continue
        m = json.loads(metrics_path.read_text())
        rows.append({"dataset": metrics_path.parents[2].name, "culture": m.get("culture", ""),
                     "training": metrics_path.parents[1].name, "trial": m["trial"],
                     "epochs": m["config"]["train"]["epochs"],
                     "test_accuracy": m["test_accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                     "seconds": m["seconds"], "device": m.get("device") or "unknown"})
    if not rows:
        return pd.DataFrame()
    runs = pd.DataFrame(rows)
    grouped = runs.groupby(["dataset", "culture", "training", "epochs"], sort=False)
    table = grouped.agg(trials=("trial", "count"), test_accuracy_mean=("test_accuracy", "mean"),
                        test_accuracy_std=("test_accuracy", "std"),
                        balanced_accuracy_mean=("balanced_accuracy", "mean"),
                        balanced_accuracy_std=("balanced_accuracy", "std"), seconds_mean=("seconds", "mean"),
                        device=("device", lambda d: "; ".join(sorted(set(d)))))
    return table.reset_index()


def culture_markdown(table: pd.DataFrame, suite: Suite) -> str:
    """The culture table with accuracies as mean ± std in %, and the suite's command."""
    shown = pd.DataFrame([{"dataset": r["dataset"], "culture": r["culture"], "training": r["training"],
                           "epochs": r["epochs"], "trials": r["trials"], "test accuracy %": pm(r, "test_accuracy"),
                           "balanced %": pm(r, "balanced_accuracy"), "wall s per run": round(r["seconds_mean"], 1),
                           "device": r["device"]} for _, r in table.iterrows()])
    return ("# Cultures, subject-independent trials: from scratch and fine-tuned from FER2013\n\n"
            f"{shown.to_markdown(index=False)}\n\nMade with:\n\n    {suite.command}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy_suite", description=__doc__.split("\n\n")[0],
                                     epilog="Steps and outputs: the module's docstring; README, 'Benchmarks'.")
    parser.add_argument("--data", type=Path, required=True, help="folder holding fer2013/ (and ferplus/)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the suite (runs, results, logs)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="recipe[+norm][@epochs[+more]] per configuration, e.g. strong+batch@60, or "
                             "strong@40+20 (40 epochs, then 20 more from each seed's model at --restart-lr; "
                             f"default {' '.join(DEFAULT_CONFIGS)}, --epochs each)")
    parser.add_argument("--restart-lr", type=float, default=DEFAULT_RESTART_LR,
                        help=f"peak learning rate of second stages (@E+M; default {DEFAULT_RESTART_LR:g})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="of configurations without @epochs (default 20)")
    parser.add_argument("--cultures", nargs="*", type=Path, default=[],
                        help="prepared culture datasets (emofx prepare ... --format kdef / taiwanese) for step 4")
    parser.add_argument("--culture-trials", type=int, default=5)
    parser.add_argument("--culture-epochs", type=int, default=30, help="of the from-scratch trainings (default 30)")
    parser.add_argument("--finetune-epochs", type=int, default=40, help="of the fine-tuned trainings (default 40)")
    parser.add_argument("--init-from", type=Path,
                        help="the FER2013 run to fine-tune from (default: this suite's strong seed-0 run)")
    parser.add_argument("--lanes", choices=("auto", "on", "off"), default="auto",
                        help="train a configuration's seeds and a culture's trials as one vmapped program each "
                             "(auto: on a GPU, not on a CPU, where it is slower)")
    parser.add_argument("--ferplus-epochs", type=int, default=20, help="0 skips the FER+ step")
    parser.add_argument("--ferplus-arms", nargs="+", default=["majority", "soft"])
    parser.add_argument("--ferplus-finetune-epochs", type=int, default=10,
                        help="FER+ arms fine-tuned from the FER2013 model (default 10; 0 skips them)")
    parser.add_argument("--ferplus-finetune-lr", type=float, default=0.02,
                        help="peak learning rate of the fine-tuned FER+ arms, every layer (default 0.02)")
    parser.add_argument("--bundle", type=Path, help="a .tar.gz of OUT's small files, rewritten after every step")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds allowed per step")
    parser.add_argument("--limit", type=int, help="use at most N FER2013 images (a quick look, not a benchmark)")
    parser.add_argument("--widths", help=argparse.SUPPRESS)  # a reduced network, for the tests
    parser.add_argument("--dense-units", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if not args.restart_lr > 0:
        raise SuiteError(f"--restart-lr must be positive, not {args.restart_lr:g}")
    args.configs = [parse_configuration(text, args.epochs, args.restart_lr) for text in args.configs]
    if not (args.data / "fer2013").is_dir():
        raise SuiteError(f"{args.data / 'fer2013'} not found: --data must hold FER2013's Kaggle folders "
                         "(on a machine without ../shared/data: python -m benchmarks.device_data unpack)")
    missing = [str(d) for d in args.cultures if not d.is_file()]
    if missing:
        raise SuiteError(f"culture datasets not found: {', '.join(missing)} (prepare them with emofx prepare)")
    if (min(args.epochs, args.culture_epochs, args.finetune_epochs, args.culture_trials) < 1
            or min(*args.seeds, args.ferplus_epochs, args.ferplus_finetune_epochs) < 0
            or not args.ferplus_finetune_lr > 0):
        raise SuiteError("--epochs, --culture-epochs, --finetune-epochs, --culture-trials and --ferplus-finetune-lr "
                         "must be positive, --seeds, --ferplus-epochs and --ferplus-finetune-epochs non-negative")
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
