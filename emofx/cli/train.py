"""Train the paper's CNN on an emofx dataset and record the run in a directory.

Splits the dataset (seeded by --seed and --trial; by default the source's own split when it
defines one, else subject-independent when subjects are known), trains with a recipe
(--recipe paper: the reference implementation; strong: warm-up + cosine schedule, weight
decay on every layer, stronger augmentation, label smoothing, test-time flip averaging),
keeps the parameters with the best validation error, evaluates them on the test part, and
writes RUN_DIR/metrics.json, history.csv, split.json and checkpoint/. The training state is
saved at the first validation and then at the first validation after every minute: a killed
run continues with --resume to the numbers of an uninterrupted one. Ctrl-C stops training
early and still records the best model so far.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from emofx.data.splits import SPLIT_KINDS
from emofx.nets.model import NORMS
from emofx.nets.precision import PRECISIONS
from emofx.nets.recipes import RECIPES

if TYPE_CHECKING:
    from emofx.nets.model import ModelConfig
    from emofx.nets.training import TrainConfig

EXIT_NAN = 1
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx train` to ``parser`` (the module docstring is its help)."""
    defaults = RECIPES["paper"]
    parser.add_argument("data", metavar="DATA.npz", help="an emofx dataset (from `emofx prepare`)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="directory for the run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training (default 0)")
    parser.add_argument("--trial", type=int, default=0,
                        help="trial number: another trial gives another split and initialisation (default 0)")
    parser.add_argument("--trials", type=int, default=1, metavar="N",
                        help="train N trials (--trial, --trial + 1, ...), each run in RUN_DIR/trial-K with the "
                             "numbers of a separate run (see --side-by-side) (default 1)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="train these seeds instead of --seed, each run in RUN_DIR/seed-S with the numbers of "
                             "a separate run with --seed S (see --side-by-side)")
    parser.add_argument("--side-by-side", choices=("auto", "yes", "no"), default="auto",
                        help="train --trials or --seeds as one vmapped program (yes: one dispatch for all, numbers "
                             "within float tolerance of separate runs) or one after another (no); default auto: "
                             "side by side on a GPU, one after another on a CPU, where the vmapped program runs "
                             "about 3x slower per image")
    parser.add_argument("--culture", metavar="NAME",
                        help="train on this culture's images of a file holding several (from emofx merge, or a "
                             "culture-labelled collection); recorded, so evaluation, saliency and comparison given "
                             "the same file use the culture's images")
    parser.add_argument("--split", choices=SPLIT_KINDS, default="auto",
                        help="how to split: subject-independent, random, the dataset's predefined split, "
                             "or k-fold with --trial as the test fold (default auto: the source's own split when "
                             "every image has one, e.g. FER2013/FER+ Training/PublicTest/PrivateTest; else subject "
                             "when every image names its person; else random when none does; images naming some "
                             "people but not all are refused)")
    parser.add_argument("--recipe", default="paper", metavar="NAME",
                        help=f"training recipe: {', '.join(RECIPES)} (default paper, the reference implementation); "
                             "the options below override its settings")
    parser.add_argument("--norm", default="none", metavar="NORM",
                        help=f"normalisation after each convolution and the dense layer: {', '.join(NORMS)} "
                             "(default none, the paper's)")
    parser.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument("--lr", type=float, help=f"initial (peak) learning rate (default {defaults.learning_rate})")
    parser.add_argument("--patience", type=int,
                        help="stop after this many validations without improvement; 0 never "
                             f"(default {defaults.patience})")
    parser.add_argument("--eval-every", type=int, help="validate every this many steps (default 0: once per epoch)")
    parser.add_argument("--rotation", type=float,
                        help=f"largest random rotation in degrees (paper {defaults.rotation_degrees}, "
                             f"strong {RECIPES['strong'].rotation_degrees})")
    parser.add_argument("--no-augment", action="store_true", help="train without any augmentation")
    parser.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="evaluate on the mean of each image's and its mirror image's probabilities "
                             "(default: as the recipe; strong does)")
    parser.add_argument("--soft-targets", action="store_true",
                        help="train on the normalised vote distributions (datasets with votes, e.g. FER+)")
    parser.add_argument("--weight-by-agreement", action="store_true",
                        help="weigh each image's loss by its annotators' agreement (from `emofx labels aggregate`)")
    parser.add_argument("--init-from", metavar="RUN", help="start from another run's weights "
                        "(when the class sets differ, the output units of shared classes are kept, the others "
                        "start fresh)")
    tuning = parser.add_mutually_exclusive_group()
    tuning.add_argument("--freeze-conv", action="store_true",
                        help="keep the convolutional layers fixed (fine-tuning with --init-from)")
    tuning.add_argument("--conv-lr-scale", type=float, metavar="X",
                        help="multiply the convolutional layers' learning rate by X (fine-tuning, e.g. 0.1)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in RUN_DIR (same command otherwise; a finished one is "
                             "kept); with --trials or --seeds, continue where they stand: complete runs kept, the "
                             "interrupted one resumed, the rest trained")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different run already in RUN_DIR (earlier runs there of other settings that "
                             "this training would not replace are still refused)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="matmul/convolution precision: the backend's fast default (TF32 on recent GPUs), "
                             "high, or highest (full float32) (default $EMOFX_PRECISION or default)")
    parser.add_argument("--compile-cache", metavar="DIR|off", default=None,
                        help="folder of the persistent compilation cache, or off (default $EMOFX_COMPILATION_CACHE "
                             "or ~/.cache/emofx/jax/<machine>)")
    # Smaller networks for tests and quick experiments (not the paper's architecture).
    parser.add_argument("--widths", type=int_tuple, default=None, metavar="W1,W2,W3",
                        help="convolution widths of another model than the paper's, e.g. 16,32,64 for a quick "
                             "look (default: the paper's 64,128,256)")
    parser.add_argument("--dense-units", type=int, default=None, help="units of the dense layer (default: the "
                        "paper's 300)")


def int_tuple(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated integers (``--widths 64,128,256``), for every command that takes widths."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 64,128,256; got {text!r}")


def model_template(widths: tuple[int, ...] | None, dense_units: int | None, num_classes: int,
                   norm: str = "none") -> ModelConfig:
    """The architecture to train: the paper's (with ``norm``), unless widths or dense units are given."""
    from emofx.nets.model import ModelConfig

    overrides = {k: v for k, v in (("widths", widths), ("dense_units", dense_units)) if v is not None}
    return ModelConfig(num_classes=num_classes, norm=norm, **overrides)


def train_config(args: argparse.Namespace, precision: str | None = None) -> TrainConfig:
    """The recipe's configuration with the options given on the command line (and ``precision``)."""
    from emofx.nets.augment import NO_AUGMENTATION
    from emofx.nets.recipes import recipe_config

    given = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
             "patience": args.patience, "eval_every": args.eval_every, "rotation_degrees": args.rotation,
             "flip_average": args.flip_average,
             "conv_lr_scale": 0.0 if args.freeze_conv else args.conv_lr_scale}
    overrides = {k: v for k, v in given.items() if v is not None}
    if args.freeze_conv and not args.init_from:
        raise ValueError("--freeze-conv keeps pre-trained convolutional layers fixed: give --init-from RUN (for "
                         "fixed random ones, a baseline, say so with --conv-lr-scale 0)")
    if args.no_augment and args.rotation:
        raise ValueError(f"--no-augment turns rotation off, --rotation {args.rotation} turns it on: give one of them")
    if args.no_augment:
        overrides.update(vars(NO_AUGMENTATION))
    return recipe_config(args.recipe, **overrides, soft_targets=args.soft_targets,
                         weight_by_agreement=args.weight_by_agreement, seed=args.seed,
                         precision=precision)


def run(args: argparse.Namespace) -> int:
    """Run `emofx train` with the parsed ``args``; returns the exit status."""
    from emofx.data.dataset import FaceDataset
    from emofx.nets.compilation import enable_compilation_cache
    from emofx.nets.precision import set_precision
    from emofx.data.sources import culture_part
    from emofx.study.runs import RunComplete, RunPlan, run_identity, train_run, train_runs

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in RUN_DIR and --overwrite replaces it: give one of them")
    if args.norm not in NORMS:
        raise ValueError(f"unknown --norm {args.norm!r}; choose one of {', '.join(NORMS)}")
    if args.compile_cache is not None:
        enable_compilation_cache(args.compile_cache)
    config = train_config(args, precision=set_precision(args.precision))  # also the test evaluation's precision
    dataset = FaceDataset.load(args.data)
    cultures = dataset.info()["cultures"]
    if args.culture is not None and len(cultures) < 2:
        raise ValueError(f"--culture {args.culture}: {args.data} holds one culture "
                         f"({next(iter(cultures), 'unnamed')}); train on the whole file without --culture")
    if args.culture is not None:
        dataset = culture_part(dataset, args.culture, args.data)
    elif len(cultures) > 1:
        counts = ", ".join(f"{c or '(none)'} {n}" for c, n in cultures.items())
        print(f"note: {args.data} holds {len(cultures)} cultures ({counts}): one model learns them pooled; for one "
              "culture's model, add --culture NAME")
    model = model_template(args.widths, args.dense_units, len(dataset.classes), args.norm)
    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1; got {args.trials}")
    if (args.trials > 1 or args.seeds) and args.resume and args.side_by_side == "yes":
        raise ValueError("runs trained side by side start afresh; --resume continues --trials or --seeds trained one "
                         "after another (--side-by-side no)")
    if args.seeds and args.trials > 1:
        raise ValueError("give --trials or --seeds, not both")
    if args.seeds and len(set(args.seeds)) < len(args.seeds):
        raise ValueError(f"--seeds repeats a seed: {args.seeds}")
    if args.seeds:
        plans = [RunPlan(dataset, Path(args.out) / f"seed-{seed}", args.trial, args.split, data_path=args.data,
                         seed=seed, culture=args.culture) for seed in args.seeds]
    elif args.trials > 1:
        plans = [RunPlan(dataset, Path(args.out) / f"trial-{trial}", trial, args.split, data_path=args.data,
                         culture=args.culture) for trial in range(args.trial, args.trial + args.trials)]
    else:
        plans = []
    if args.overwrite:
        init_path = str(Path(args.init_from).resolve()) if args.init_from else None
        settings = run_identity(dataset, args.split, config.seed, args.trial, config, model, init_path)
        _refuse_runs_left_beside(Path(args.out), [plan.directory for plan in plans], settings)
    if plans:
        side_by_side = False if args.resume else {"auto": None, "yes": True, "no": False}[args.side_by_side]
        trained = train_runs(plans, train_config=config, model_config=model, init_from=args.init_from,
                             overwrite=args.overwrite, progress=not args.quiet, side_by_side=side_by_side,
                             resume=args.resume)
        if args.resume:
            done = {Path(run_.directory).resolve() for run_, _ in trained}
            for plan in plans:
                if Path(plan.directory).resolve() not in done:
                    print(f"{plan.directory}: already complete, kept as it is")
    else:
        try:
            trained = [train_run(dataset, args.out, split_kind=args.split, trial=args.trial, train_config=config,
                                 model_config=model, init_from=args.init_from, data_path=args.data,
                                 overwrite=args.overwrite, progress=not args.quiet, resume=args.resume,
                                 culture=args.culture)]
        except RunComplete as complete:  # --resume of a run that finished: as --trials --resume keeps it
            print(complete)
            return 0
    for number, (run_, result) in enumerate(trained):
        m = run_.metrics
        for note in m.get("notes", []):
            print(f"note: {note}")
        print(result.stop_message)
        print(f"recipe {m['recipe']}, norm {m['norm']}: test accuracy {m['test_accuracy']:.4f} "
              f"(balanced {m['balanced_accuracy']:.4f}, macro F1 "
              f"{m['macro_f1']:.4f}) on {m['n_test']} test images of {'/'.join(m['classes'])}; "
              f"{m['n_train']} train, {m['n_val']} val ({m['split']} split); {m['seconds']:.1f} s "
              f"({m['compile_seconds']:.1f} s compiling, summed over programs compiled side by side"
              f"{_ready(m) if number == 0 else ''}) -> {run_.directory}")
    reasons = {result.stop_reason for _, result in trained}
    if "nan_loss" in reasons:
        for _, result in trained:
            if result.stop_reason == "nan_loss":
                print(f"emofx train: {result.stop_message}", file=sys.stderr)
        return EXIT_NAN
    return EXIT_INTERRUPTED if "interrupted" in reasons else 0


def _refuse_runs_left_beside(out: Path, replaced: Sequence[str | os.PathLike], identity: dict) -> None:
    """--overwrite replaces the runs it trains (``replaced``; none: one run into ``out`` itself); earlier runs under
    --out that it would not replace are refused where they were trained otherwise than these (compare and info would
    read them with the new ones; trials of the same settings, e.g. the first of two batches of trials, stay), and
    so is any run inside a single run's folder."""
    from emofx.data.paths import first_few
    from emofx.study.cultures import trial_settings
    from emofx.study.runs import RunError, find_runs, load_run

    kept = {Path(p).resolve() for p in replaced or [out]}
    as_recorded = json.loads(json.dumps(identity))  # tuples as lists, as metrics.json holds it

    def other(directory: Path) -> bool:
        if not replaced:  # runs inside a run's own folder
            return True
        try:
            recorded = load_run(directory).metrics.get("identity")
        except RunError:
            return True
        return not isinstance(recorded, dict) or trial_settings(recorded) != trial_settings(as_recorded)

    left = [p for p in (find_runs(out) if out.is_dir() else []) if p.resolve() not in kept and other(p)]
    if left:
        names = first_few([p.relative_to(out).as_posix() if p != out else f"{out} itself" for p in left])
        raise RunError(f"{out} holds {len(left)} earlier run(s){' trained with other settings' if replaced else ''} "
                       f"that this training would not replace ({names}); `emofx compare` and `emofx info` "
                       "would read them with the new ones: remove them, or choose another --out")


def _ready(metrics: dict) -> str:
    """When the first step was ready after the process started: the cost of a new process, said of its first run."""
    ready = metrics.get("ready_seconds")
    return "" if ready is None else f"; first step {ready:.1f} s after the process started"
