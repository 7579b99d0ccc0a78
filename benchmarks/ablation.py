"""Ablation of the training recipes on a dataset with its own split (FER2013: Training / PublicTest / PrivateTest).

    python -m benchmarks.ablation fer2013.npz --out benchmarks/results/ablation --runs /tmp/ablation-runs \\
        --train 2000 --val 800 --epochs 6

Trains the paper's CNN under ``paper``, each change of ``strong`` alone on top of ``paper``,
``strong``, ``strong`` minus each change, and batch normalisation (on ``paper`` and on
``strong``), all with one seed on the same images: ``--train`` images drawn at random from
the source's training part, ``--val`` from its validation part (model selection), and the
whole test part (or ``--test`` images of it) for the reported accuracy. Changes that only
affect evaluation (test-time flip averaging) re-score the trained model instead of training
again; ``strong`` without early stopping is trained only if ``strong`` stopped early (else it
is the same run). Writes ``ablation.csv``, ``ablation.md`` (both rewritten after every variant, so an
interrupted ablation leaves the rows it finished), each run's history as
``history/<variant>.csv``, ``command.txt`` and ``settings.json`` into ``--out``; the run
directories (with checkpoints) go to ``--runs``, outside the repository. ``--only`` re-runs some
variants and keeps the other rows of an earlier table made with the same settings (it refuses
other settings). ``dead_dense_units`` is the share of the dense layer's units that fire on no
validation image (a model stuck at the class prior has lost them all).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from emofx.cli.train import int_tuple
from emofx.data.dataset import FaceDataset
from emofx.study.evaluation import dead_dense_units, evaluate
from emofx.nets.model import ModelConfig
from emofx.nets.recipes import CHANGES, PAPER, STRONG, with_change
from emofx.study.runs import train_run
from emofx.data.splits import make_split
from emofx.nets.training import TrainConfig

LABELS = {"schedule": "warm-up + cosine schedule", "weight_decay": "weight decay on every layer",
          "augmentation": "strong augmentation", "label_smoothing": "label smoothing 0.1",
          "flip_average": "test-time flip averaging", "early_stopping": "early stopping", "norm": "batch norm"}


# Run first (the table is written after every variant, so a cut-short ablation keeps these).
PRIORITY = ("paper", "paper+flip_average", "strong", "strong-flip_average", "strong-early_stopping", "strong+norm",
            "paper+augmentation", "strong-augmentation", "paper+schedule", "strong-schedule")


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: a training configuration, its architecture switch, and what it is."""

    name: str
    description: str
    config: TrainConfig
    norm: str = "none"
    rescore_of: str | None = None  # evaluation-only change: re-score this variant's model


def variants(epochs: int, seed: int, batch_size: int, unroll_steps: int = TrainConfig.unroll_steps) -> list[Variant]:
    """paper, paper + each change, strong, strong - each change, and batch norm on both."""
    run = dict(epochs=epochs, seed=seed, batch_size=batch_size, unroll_steps=unroll_steps)
    paper, strong = replace(PAPER, **run), replace(STRONG, **run)
    rows = [Variant("paper", "paper (reference)", paper)]
    for change in CHANGES:
        config = with_change(paper, change, strong, label=f"paper+{change}")
        rescore = "paper" if change == "flip_average" else None
        rows.append(Variant(f"paper+{change}", f"paper + {LABELS[change]}", config, rescore_of=rescore))
    rows.append(Variant("strong", "strong", strong))
    for change in CHANGES:
        config = with_change(strong, change, paper, label=f"strong-{change}")
        rescore = "strong" if change == "flip_average" else None
        rows.append(Variant(f"strong-{change}", f"strong - {LABELS[change]}", config, rescore_of=rescore))
    rows.append(Variant("strong-early_stopping", f"strong - {LABELS['early_stopping']}",
                        replace(strong, patience=0, recipe="strong-early_stopping"), rescore_of="strong"))
    rows.append(Variant("strong+norm", f"strong + {LABELS['norm']}", replace(strong, recipe="strong+norm"),
                        norm="batch"))
    rows.append(Variant("paper+norm", f"paper + {LABELS['norm']}", replace(paper, recipe="paper+norm"), norm="batch"))
    return sorted(rows, key=lambda v: PRIORITY.index(v.name) if v.name in PRIORITY else len(PRIORITY))


def subset(dataset: FaceDataset, n_train: int | None, n_val: int | None, n_test: int | None, seed: int) -> FaceDataset:
    """The dataset restricted to random images of each part of its own split (all of a part when None)."""
    split = make_split(dataset, "predefined", seed=seed)
    rng = np.random.default_rng(seed)
    pick = lambda part, n: (part if n is None or n >= len(part)  # noqa: E731
                            else np.sort(rng.choice(part, n, replace=False)))
    return dataset.subset(np.concatenate([pick(split.train, n_train), pick(split.val, n_val),
                                          pick(split.test, n_test)]))


def earlier_rows(out: Path, rerun: set[str]) -> pd.DataFrame:
    """The rows of an earlier ``ablation.csv`` in ``out`` that this (``--only``) run does not redo."""
    path = out / "ablation.csv"
    if not path.exists():
        return pd.DataFrame()
    frame = pd.read_csv(path)
    return frame[~frame["variant"].isin(rerun)].drop(columns=["vs_paper", "vs_strong"], errors="ignore")


def write_tables(out: Path, done: list[Variant], results: dict[str, dict], earlier: pd.DataFrame, split,
                 args: argparse.Namespace, seconds: float) -> str:
    """Write ablation.csv and ablation.md for the variants done so far and the ``earlier`` rows
    kept from a previous run (in the order of :func:`variants`); returns the Markdown."""
    fresh = pd.DataFrame([{"variant": v.name, "description": v.description,
                           **{k: val for k, val in results[v.name].items() if k != "model"}} for v in done])
    order = {v.name: i for i, v in enumerate(variants(args.epochs, args.seed, args.batch_size))}
    frame = pd.concat([earlier, fresh], ignore_index=True) if len(earlier) else fresh
    frame = frame.sort_values("variant", key=lambda names: names.map(order), kind="stable", ignore_index=True)
    reference = frame.set_index("variant")["test_accuracy"]
    frame["vs_paper"] = frame["test_accuracy"] - reference.get("paper", np.nan)
    frame["vs_strong"] = frame["test_accuracy"] - reference.get("strong", np.nan)
    frame.to_csv(out / "ablation.csv", index=False)
    counts = {part: len(getattr(split, part)) for part in ("train", "val", "test")}
    network = f"widths {args.widths or '64,128,256'}, dense {args.dense_units or 300}"
    header = (f"{Path(args.data).name}: {counts['train']} training, {counts['val']} validation (model selection), "
              f"{counts['test']} test images; {network}; {args.epochs} epochs, batch {args.batch_size}, "
              f"seed {args.seed}; {len(done)} variants in {seconds:.0f} s"
              + (f" (+ {len(earlier)} kept from an earlier run)" if len(earlier) else "")
              + "\n\n")
    shown = frame.reindex(columns=["variant", "description", "test_accuracy", "balanced_accuracy", "vs_paper",
                                   "vs_strong", "best_val_error", "best_step", "stop_reason", "dead_dense_units",
                                   "trained", "seconds"])
    text = header + shown.to_markdown(index=False, floatfmt=".4f") + "\n"
    (out / "ablation.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="a prepared emofx dataset whose split column names train/val/test parts")
    parser.add_argument("--out", required=True, help="folder for the tables and histories (created)")
    parser.add_argument("--runs", required=True, help="folder for the run directories (checkpoints; created)")
    parser.add_argument("--train", type=int, help="training images drawn from the training part (default all)")
    parser.add_argument("--val", type=int, help="validation images drawn from the validation part (default all)")
    parser.add_argument("--test", type=int, help="test images drawn from the test part (default all)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unroll-steps", type=int, default=TrainConfig.unroll_steps,
                        help="training steps per compiled program (1 compiles faster but runs slower on a CPU; "
                             f"default {TrainConfig.unroll_steps})")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants (and what they re-score)")
    parser.add_argument("--widths", type=int_tuple,
                        help="conv widths, e.g. 16,32,64 (default the paper's 64,128,256): a smaller "
                             "network where the CPU cannot afford the paper's")
    parser.add_argument("--dense-units", type=int, help="dense units (default the paper's 300)")
    args = parser.parse_args(argv)

    try:  # settings the library refuses (e.g. --epochs 0) and unreadable data: one line, before any training
        table = variants(args.epochs, args.seed, args.batch_size, args.unroll_steps)
        dataset = subset(FaceDataset.load(args.data), args.train, args.val, args.test, args.seed)
        architecture = {"num_classes": len(dataset.classes),
                        **{k: v for k, v in (("widths", args.widths), ("dense_units", args.dense_units)) if v}}
        ModelConfig(**architecture)  # refuses impossible widths now rather than at the first variant
    except (OSError, ValueError) as err:
        parser.error(str(err))
    if args.widths:
        args.widths = ",".join(map(str, args.widths))  # as settings.json and the table's header record them
    if args.only:
        unknown = sorted(set(args.only) - {v.name for v in table})
        if unknown:
            parser.error(f"unknown variants {unknown}; known: {', '.join(v.name for v in table)}")
        wanted = set(args.only) | {v.rescore_of for v in table if v.name in args.only and v.rescore_of}
        table = [v for v in table if v.name in wanted]
    out, runs_dir = Path(args.out), Path(args.runs)
    (out / "history").mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("train", "val", "test", "epochs", "batch_size", "seed", "unroll_steps",
                                              "widths", "dense_units")}
    settings["data"] = Path(args.data).name
    recorded = out / "settings.json"
    if args.only and recorded.exists() and json.loads(recorded.read_text()) != settings:
        parser.error(f"{out} holds an ablation made with other settings ({recorded.read_text().strip()}); "
                     "re-run with those settings or choose another --out")
    recorded.write_text(json.dumps(settings) + "\n")
    command = "python -m benchmarks.ablation " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    earlier = earlier_rows(out, {v.name for v in table}) if args.only else pd.DataFrame()
    with open(out / "command.txt", "a" if len(earlier) else "w") as commands:  # every command behind the kept rows
        commands.write(command + "\n")
    split = make_split(dataset, "predefined", seed=args.seed)
    test_set, val_set = dataset.subset(split.test), dataset.subset(split.val)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for variant in table:
        tick = time.perf_counter()
        base = results.get(variant.rescore_of) if variant.rescore_of else None
        if base is not None and (variant.name != "strong-early_stopping" or base["stop_reason"] != "early_stopping"):
            evaluation = evaluate(base["model"], test_set, flip_average=variant.config.flip_average)
            row = {**base, "test_accuracy": evaluation.accuracy, "balanced_accuracy": evaluation.balanced_accuracy,
                   "trained": f"= {variant.rescore_of} (re-scored)", "seconds": time.perf_counter() - tick}
        else:
            model = ModelConfig(**architecture, norm=variant.norm)
            run, result = train_run(dataset, runs_dir / variant.name, split_kind="predefined", trial=0,
                                    train_config=variant.config, model_config=model, data_path=args.data,
                                    overwrite=True, progress=False)
            run.history.to_csv(out / "history" / f"{variant.name}.csv", index=False)
            row = {"model": result.model, "test_accuracy": run.metrics["test_accuracy"],
                   "balanced_accuracy": run.metrics["balanced_accuracy"], "best_val_error": result.best_val_error,
                   "best_step": result.best_step, "steps": result.steps, "stop_reason": result.stop_reason,
                   "dead_dense_units": dead_dense_units(result.model, val_set.images),
                   "trained": "yes", "seconds": time.perf_counter() - tick}
        results[variant.name] = row
        print(json.dumps({"variant": variant.name, **{k: v for k, v in row.items() if k != "model"}}), flush=True)
        shown = write_tables(out, [v for v in table if v.name in results], results, earlier, split, args,
                             time.perf_counter() - started)
    print(shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
