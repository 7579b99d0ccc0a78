"""The main job on embedded synthetic data: two cultures, a model per culture and trial, tables.

Generates two synthetic cultures whose faces express emotions in different "dialects" (one
through the eyes and brows, one through the mouth), trains one CNN per culture for a few
trials (subject-independent splits), evaluates each on its own culture's test faces and on
the other culture's, and writes to DIR:

  data/<culture>.npz                        the generated datasets
  runs/<culture>/trial-<k>/                 one run directory per model (see `emofx train`)
  tables/confusion_<culture>_{mean,std}.csv test confusion counts averaged over trials (Tables 2-3)
  tables/misclassified_{mean,std}.csv       % misclassified per class and culture (Table 4)
  tables/transfer.csv                       accuracy of each culture's models on each culture
  tables/runs.csv                           one row of metrics per run
  figures/*.png                             the confusion and misclassification heatmaps, learning curves
  quickstart.json                           settings, seconds, test accuracy and transfer, for machines

The five emotions are those of the paper's pilot data (Tables 2-4). It uses a compact version
of the paper's CNN, batch 32 and learning rate 0.02 so that it finishes in a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARKER = "quickstart.json"
CULTURES = {"eyes": "eyes", "mouth": "mouth"}  # culture name -> synthetic dialect
CLASSES = ("angry", "afraid", "happy", "sad", "surprised")  # the paper's pilot classes


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the quickstart (defaults: under 3 minutes on a 2-core CPU)."""

    trials: int = 3
    n_per_class: int = 60
    epochs: int = 16
    batch_size: int = 32
    learning_rate: float = 0.02
    widths: tuple[int, ...] = (16, 32, 64)
    dense_units: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"the seed (--seed) must be a non-negative integer; got {self.seed}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx quickstart` to ``parser`` (the module docstring is its help)."""
    defaults = QuickstartConfig()
    parser.add_argument("--out", default="quickstart_out", metavar="DIR",
                        help="output directory (default ./quickstart_out)")
    parser.add_argument("--trials", type=int, default=defaults.trials,
                        help=f"models per culture (default {defaults.trials})")
    parser.add_argument("--n-per-class", type=int, default=defaults.n_per_class,
                        help=f"synthetic faces per emotion and culture (default {defaults.n_per_class})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a DIR that holds other files, replacing an earlier quickstart there (its "
                             "trials beyond --trials removed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run `emofx quickstart` with the parsed ``args``; returns the exit status."""
    config = QuickstartConfig(trials=args.trials, n_per_class=args.n_per_class, epochs=args.epochs, seed=args.seed)
    summary = quickstart(Path(args.out), config, overwrite=args.overwrite, progress=not args.quiet)
    print(summary["text"])
    return 0


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds files that are not a quickstart's; choose another --out "
                              "or pass --overwrite")


def _clear_other_trials(out: Path, cultures: list[str], trials: int, overwrite: bool) -> None:
    """An earlier quickstart's trials beyond ``trials`` would be read with the new ones (``emofx compare`` of its
    runs): refused, or with ``overwrite`` removed."""
    import shutil

    from emofx.data.paths import first_few

    kept = {f"trial-{trial}" for trial in range(trials)}
    other = [p for name in cultures for p in sorted((out / "runs" / name).glob("trial-*")) if p.name not in kept]
    if other and not overwrite:
        names = first_few([str(p.relative_to(out)) for p in other])
        raise FileExistsError(f"{out} holds trials of an earlier quickstart that this one would not replace "
                              f"({names}); pass --overwrite to remove them, or choose another --out")
    for path in other:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def quickstart(out: Path, config: QuickstartConfig = QuickstartConfig(), *, overwrite: bool = False,
               progress: bool = True) -> dict[str, Any]:
    """Run the quickstart into ``out``; returns a JSON-ready summary (with a printable ``text``)."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    from emofx.data.progress import tqdm

    from emofx.data.splits import SplitError
    from emofx.data.synthetic import make_synthetic
    from emofx.nets.model import ModelConfig
    from emofx.nets.training import TrainConfig
    from emofx.plotting import save_figure
    from emofx.plotting.curves import learning_curves
    from emofx.plotting.tables import confusion_heatmap, misclassification_heatmap
    from emofx.study.evaluation import aggregate_confusions, evaluate, misclassification_table
    from emofx.study.run_tables import runs_frame
    from emofx.study.runs import RunPlan, check_plans, train_run

    if config.trials < 1:
        raise ValueError(f"--trials must be at least 1; got {config.trials}")
    started = time.perf_counter()
    _check_output(out, overwrite)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                               learning_rate=config.learning_rate, seed=config.seed)
    datasets = {name: make_synthetic(dialect, n_per_class=config.n_per_class, seed=config.seed, culture=name,
                                     classes=CLASSES)
                for name, dialect in CULTURES.items()}
    models = {name: ModelConfig(num_classes=len(dataset.classes), widths=config.widths, dense_units=config.dense_units)
              for name, dataset in datasets.items()}
    for name, dataset in datasets.items():  # refuse (e.g. an earlier quickstart's other runs) before writing anything
        try:
            check_plans([RunPlan(dataset, out / "runs" / name / f"trial-{trial}", trial, "subject")
                         for trial in range(config.trials)], train_config, models[name], overwrite)
        except SplitError as err:
            people = len(set(dataset.subject))
            raise SplitError(f"--n-per-class {config.n_per_class} makes {people} synthetic people per culture, too "
                             "few for a subject split, whose training, validation and test parts each need people "
                             f"of every emotion; use a larger --n-per-class (the default is "
                             f"{QuickstartConfig.n_per_class})") from err
    _clear_other_trials(out, list(datasets), config.trials, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"status": "running",
                                          "config": {**asdict(config), "widths": list(config.widths)}}))
    data_paths = {name: ds.save(out / "data" / f"{name}.npz", overwrite=True) for name, ds in datasets.items()}

    runs: dict[str, list] = {name: [] for name in datasets}
    bar = tqdm(total=len(datasets) * config.trials, desc="quickstart", unit="model", disable=not progress)
    for name, dataset in datasets.items():
        for trial in range(config.trials):
            run, _ = train_run(dataset, out / "runs" / name / f"trial-{trial}", split_kind="subject", trial=trial,
                               train_config=train_config, model_config=models[name], data_path=data_paths[name],
                               overwrite=overwrite, progress=False)
            runs[name].append(run)
            bar.set_postfix(culture=name, acc=f"{run.metrics['test_accuracy']:.3f}")
            bar.update()
    bar.close()

    # a culture's models on its own trials' test images, and on every image of another culture (none of which
    # they learned from; as `emofx compare`'s transfer matrix)
    evaluations = {
        (trained, tested): [evaluate(run.model, datasets[tested].subset(run.split.test) if tested == trained
                                     else datasets[tested]) for run in runs[trained]]
        for trained in datasets for tested in datasets
    }
    tables, figures = out / "tables", out / "figures"
    tables.mkdir(exist_ok=True)
    for name in datasets:
        mean, std = aggregate_confusions([e.confusion() for e in evaluations[name, name]])
        mean.to_csv(tables / f"confusion_{name}_mean.csv")
        std.to_csv(tables / f"confusion_{name}_std.csv")
        save_figure(confusion_heatmap(mean, std, title=f"{name} culture: test confusion, mean ± std over "
                                                      f"{config.trials} trials"), figures / f"confusion_{name}")
        save_figure(learning_curves([r.history for r in runs[name]], title=f"{name} culture: learning curves"),
                    figures / f"learning_curves_{name}")
    miss_mean, miss_std = misclassification_table({name: evaluations[name, name] for name in datasets})
    miss_mean.to_csv(tables / "misclassified_mean.csv")
    miss_std.to_csv(tables / "misclassified_std.csv")
    save_figure(misclassification_heatmap(miss_mean, miss_std, title="% misclassified (mean ± std over trials)"),
                figures / "misclassified")
    transfer = pd.DataFrame({tested: {trained: sum(e.accuracy for e in evaluations[trained, tested]) / config.trials
                                      for trained in datasets} for tested in datasets})
    transfer.index.name, transfer.columns.name = "trained on", "tested on"
    transfer.to_csv(tables / "transfer.csv")
    metrics = runs_frame([r for rs in runs.values() for r in rs], relative_to=out)
    metrics.to_csv(tables / "runs.csv", index=False)

    accuracy = metrics.groupby("culture")["test_accuracy"].agg(["mean", "std", "min"])
    seconds = time.perf_counter() - started
    text = "\n".join([
        f"quickstart: {config.trials} models per culture on synthetic faces, {seconds:.0f} s -> {out}",
        "test accuracy per culture (mean, std, min over trials):",
        accuracy.round(3).to_string(),
        "% misclassified (mean over trials):",
        miss_mean.round(1).to_string(),
        "accuracy across cultures (rows trained on, columns tested on):",
        transfer.round(3).to_string(),
        f"tables: {tables}  figures: {figures}",
    ])
    summary = {
        "status": "done",
        "config": {**asdict(config), "widths": list(config.widths)},
        "seconds": seconds,
        "test_accuracy": {c: float(v) for c, v in accuracy["mean"].items()},
        "transfer": {k: {kk: float(vv) for kk, vv in v.items()} for k, v in transfer.to_dict(orient="index").items()},
    }
    (out / MARKER).write_text(json.dumps(summary, indent=2))
    return {**summary, "text": text}
