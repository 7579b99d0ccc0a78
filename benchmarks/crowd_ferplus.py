r"""FER+ label schemes compared: hard majority, plurality, soft vote distribution, agreement weighting.

All arms train the paper's CNN (or a reduced one: ``--widths``, ``--dense-units``) with one
recipe (``--recipe``: ``paper``, the default, or ``strong``; ``--epochs`` as given) and one seed
on the same sample of FER2013 Training images (``--limit``), validate on PublicTest and are
tested on PrivateTest, both labelled by the FER+ majority rule (the standard FER+ metric).

- ``majority``: FER+ majority rule (single votes dropped, > half of the rest); images without a
  majority, or whose majority is unknown / not a face, are left out of training.
- ``plurality``: the most-voted emotion (crowd-kit-free majority vote), every image with an emotion plurality.
- ``soft``: the plurality images trained on their vote distributions (``--soft-targets``).
- ``plurality+agreement``: plurality labels, each image's loss weighted by its vote agreement.

``--init-from RUN_DIR`` starts every arm from a trained model (e.g. the FER2013 ``strong`` run:
the same Training images with FER2013's single labels): the output units of the seven shared classes
are kept and contempt's starts fresh; ``--lr`` and ``--conv-lr-scale`` set the fine-tuning's learning rates.
The table then begins with the starting model as it is (arm ``not fine-tuned``): its predictions
mapped to FER+'s classes by name, so it never predicts a class it does not know (contempt).
Every row is scored as the recipe says, with test-time flip averaging under ``strong``.
``--save-models DIR`` keeps each arm's trained model as ``DIR/ARM`` (``+`` written ``_``): a checkpoint
that ``emofx train --init-from`` reads, e.g. to fine-tune the cultures from FER+.

Writes a CSV table and a Markdown table (with the command) to ``--out`` (existing ones are refused
before any training unless ``--overwrite``):

    EMOFX_DATA=../shared/data python -m benchmarks.crowd_ferplus --limit 3000 --epochs 6 \
        --out benchmarks/results/crowd/ferplus_subset
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.outputs import refuse_existing
from emofx.cli.train import int_tuple
from emofx.crowd.aggregate import aggregate, apply_aggregation
from emofx.crowd.answers import attach_ferplus_votes
from emofx.data.dataset import FaceDataset
from emofx.study.evaluation import evaluate_probabilities
from emofx.data.loaders import load
from emofx.data.paths import shared_data_root
from emofx.nets.checkpoint import CheckpointError, TrainedModel, device_description
from emofx.nets.model import ModelConfig
from emofx.nets.optimisation import TrainingError
from emofx.nets.recipes import RECIPES, recipe_config
from emofx.nets.training import fit, training_targets

ARMS: tuple[str, ...] = ("majority", "plurality", "soft", "plurality+agreement")
NOT_FINE_TUNED = "not fine-tuned"


def _by_path(dataset: FaceDataset, paths: np.ndarray) -> FaceDataset:
    return dataset.subset(np.flatnonzero(np.isin(dataset.path, paths)))


def _spread(n: int, limit: int | None) -> np.ndarray:
    return np.arange(n) if limit is None or limit >= n else np.linspace(0, n - 1, limit).round().astype(np.int64)


def _folder(arm: str) -> str:
    return arm.replace("+", "_")


def _refuse_saved_models(save_models: Path | None, arms: list[str]) -> None:
    """An arm's model folder that exists already is refused before any training (nothing is overwritten)."""
    for arm in arms if save_models is not None else ():
        if (save_models / _folder(arm)).exists():
            raise CheckpointError(f"{save_models / _folder(arm)} already exists; choose another --save-models "
                                  "folder or remove it (nothing is overwritten)")


def _require_data(root: Path) -> None:
    """Refuse a --data folder without fer2013/ and ferplus/ before any work."""
    missing = [str(root / name) for name in ("fer2013", "ferplus") if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found; point --data (or EMOFX_DATA) at the folder "
                                "holding fer2013/ and ferplus/")


def label_schemes(data_root: Path, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """FER2013 with FER+ votes, labelled by the FER+ majority rule and by plurality."""
    fer = load(data_root / "fer2013", "folder", faces="cropped", progress=False)
    fer, _ = attach_ferplus_votes(fer, data_root / "ferplus")
    majority, _ = apply_aggregation(fer, aggregate(fer, "ferplus"), keep_unanswered=False)
    plurality, _ = apply_aggregation(fer, aggregate(fer, "mv", seed=seed), keep_unanswered=False)
    classes = tuple(c for c in majority.classes if c in plurality.classes)
    return majority.restrict_classes(classes), plurality.restrict_classes(classes)


def vote_cross_entropy(test_votes: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy of predicted probabilities against the test images' vote distributions."""
    return float(-np.mean(np.sum(test_votes * np.log(np.clip(probabilities, 1e-12, 1.0)), axis=1)))


def not_fine_tuned_row(init_from: TrainedModel, test: FaceDataset, flip_average: bool) -> dict:
    """The starting model scored as it is: its probabilities moved to the test's classes by name.

    A class it does not know (contempt) gets probability 0, so it is never predicted, and the
    cross-entropy against the votes is left out (any image with a contempt vote would make it infinite)."""
    started = time.perf_counter()
    probabilities = np.zeros((len(test), len(test.classes)))
    known = init_from.predict_proba(test.images, flip_average=flip_average)
    for column, label in enumerate(test.classes):
        if label in init_from.classes:
            probabilities[:, column] = known[:, init_from.classes.index(label)]
    scored = evaluate_probabilities(test.labels, probabilities, test.classes)
    return {"arm": NOT_FINE_TUNED, "train_images": 0, "epochs_run": 0.0, "best_val_error": float("nan"),
            "test_accuracy": round(scored.accuracy, 4), "test_balanced_accuracy": round(scored.balanced_accuracy, 4),
            "test_vote_cross_entropy": float("nan"), "seconds": round(time.perf_counter() - started, 1)}


def run(args: argparse.Namespace, record, init_from: TrainedModel | None = None) -> pd.DataFrame:
    majority, plurality = label_schemes(Path(args.data), args.seed)
    rng = np.random.default_rng(args.seed)
    pool = plurality.path[plurality.split == "Training"]
    chosen = np.sort(rng.choice(pool, size=min(args.limit or len(pool), len(pool)), replace=False))
    val = majority.subset(np.flatnonzero(majority.split == "PublicTest")[_spread(
        int(np.sum(majority.split == "PublicTest")), args.val_limit)])
    test = majority.subset(majority.split == "PrivateTest")
    test_votes = training_targets(test, soft=True)
    tuning = {k: v for k, v in (("learning_rate", args.lr), ("conv_lr_scale", args.conv_lr_scale)) if v is not None}
    config = recipe_config(args.recipe, epochs=args.epochs, seed=args.seed, **tuning)
    overrides = {k: v for k, v in (("widths", args.widths), ("dense_units", args.dense_units)) if v is not None}
    model = ModelConfig(num_classes=len(majority.classes), **overrides)
    train_sets = {
        "majority": (_by_path(majority, chosen), config),
        "plurality": (_by_path(plurality, chosen), config),
        "soft": (_by_path(plurality, chosen), replace(config, soft_targets=True)),
        "plurality+agreement": (_by_path(plurality, chosen), replace(config, weight_by_agreement=True)),
    }
    rows = []
    if init_from is not None:
        rows.append(not_fine_tuned_row(init_from, test, config.flip_average))
        record(pd.DataFrame(rows))
    for arm in args.arms:
        train, arm_config = train_sets[arm]
        started = time.perf_counter()
        result = fit(train, val, arm_config, model, init_from=init_from, progress=False)
        if args.save_models is not None:
            result.model.save(args.save_models / _folder(arm))
        # The arm's classes are the test's, so one prediction serves both scores.
        probabilities = result.model.predict_proba(test.images, flip_average=arm_config.flip_average)
        scored = evaluate_probabilities(test.labels, probabilities, test.classes)
        nll = vote_cross_entropy(test_votes, probabilities)
        rows.append({
            "arm": arm, "train_images": len(train), "epochs_run": round(result.steps * arm_config.batch_size
                                                                          / len(train), 2),
            "best_val_error": round(result.best_val_error, 4),
            "test_accuracy": round(scored.accuracy, 4), "test_balanced_accuracy": round(scored.balanced_accuracy, 4),
            "test_vote_cross_entropy": round(nll, 4), "seconds": round(time.perf_counter() - started, 1),
        })
        record(pd.DataFrame(rows))  # written after every arm, so a stopped run keeps what it finished
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(shared_data_root()), help="folder holding fer2013/ and ferplus/")
    parser.add_argument("--limit", type=int, default=3000, help="training images sampled (default 3000; 0: all)")
    parser.add_argument("--val-limit", type=int, default=1000,
                        help="PublicTest images for validation, evenly spread (default 1000; 0: all)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", choices=list(RECIPES), default="paper",
                        help="training recipe of every arm (default paper; strong: the accuracy recipe)")
    parser.add_argument("--widths", type=int_tuple, default=None,
                        help="conv widths, e.g. 16,32,64 (default: the paper's 64,128,256)")
    parser.add_argument("--dense-units", type=int, default=None, help="dense units (default: the paper's 300)")
    parser.add_argument("--init-from", type=Path, metavar="RUN_DIR",
                        help="start every arm from this run's weights (same layers; output units matched by "
                             "class name)")
    parser.add_argument("--lr", type=float, help="initial (peak) learning rate (default: the recipe's)")
    parser.add_argument("--conv-lr-scale", type=float, metavar="X",
                        help="the convolutional layers' learning rate times X (fine-tuning; default 1)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--save-models", type=Path, metavar="DIR",
                        help="keep each arm's trained model as DIR/ARM (a checkpoint folder, never overwritten)")
    parser.add_argument("--out", required=True, type=Path, help="output path without suffix (.csv and .md written)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .csv and .md")
    args = parser.parse_args(argv)
    if min(args.limit, args.val_limit) < 0 or args.epochs < 1:
        parser.error(f"--limit and --val-limit must be >= 0 (0: all) and --epochs >= 1; got {args.limit}, "
                     f"{args.val_limit}, {args.epochs}")
    refuse_existing(parser, [args.out.with_suffix(".csv"), args.out.with_suffix(".md")], "--out", args.overwrite)
    args.limit, args.val_limit = args.limit or None, args.val_limit or None
    started = time.perf_counter()
    command = "python -m benchmarks.crowd_ferplus " + " ".join(argv if argv is not None else sys.argv[1:])
    device = device_description()

    def record(table: pd.DataFrame) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out.with_suffix(".csv"), index=False)
        args.out.with_suffix(".md").write_text(
            f"# FER+ label schemes ({'subset of ' + str(args.limit) if args.limit else 'all'} training images, "
            f"{args.epochs} epochs, seed {args.seed}, {args.recipe} recipe, "
            f"{'fine-tuned from ' + str(args.init_from) + ', ' if args.init_from else ''}"
            f"{'the paper CNN' if args.widths is None and args.dense_units is None else 'a reduced CNN'})\n\n"
            f"Command: `{command}`\n\nDevice: {device}. Wall time so far {time.perf_counter() - started:.0f} s.\n\n"
            + table.to_markdown(index=False) + "\n")
        print(table.tail(1).to_markdown(index=False), flush=True)

    try:  # a wrong --init-from, setting, model folder or data folder: one line and exit status 2
        _refuse_saved_models(args.save_models, args.arms)
        init_from = TrainedModel.load(args.init_from) if args.init_from else None
        _require_data(Path(args.data))
        run(args, record, init_from)
    except (CheckpointError, TrainingError, FileNotFoundError) as error:
        print(f"crowd_ferplus: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
