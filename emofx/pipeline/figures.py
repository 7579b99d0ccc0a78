"""The paper's figures and tables, regenerated from recorded notebook runs without retraining.

The notebooks record what each figure needs in their results folder (the ``save_*``
functions here define those records); :func:`regenerate` reads an experiment folder
(``papermill_runs/<experiment>``, see :mod:`emofx.pipeline.batch`) and writes every figure (PNG and
PDF) and table (CSV and Markdown) whose records exist, under stable names:

| name | from | what |
|---|---|---|
| ``fig4_learning_curves`` | 01_benchmark folds (else 02_train_culture trials) | training/validation error, mean ± std |
| ``table2_confusion_<culture>`` | 02_train_culture | test confusion averaged over trials, with totals (Tables 2-3; \
rows true, columns predicted: the paper's tables are the transpose) |
| ``table4_misclassification`` | 02_train_culture | % misclassified per class and culture (Table 4; mean of the \
trials' rates) |
| ``fig5_saliency_<culture>`` | 03_saliency | rows = emotions, guided backprop maps (Figures 5-6); ``_<run>`` added \
where a culture has several runs |
| ``table_saliency_regions`` | 03_saliency | share of saliency mass per facial region, culture, method, run and \
emotion |
| ``fig7_modification`` | 04_emotion_modification | intensification and conversion panels (Figure 7) |
| ``fig_h1_accuracy``, ``fig_h2_regions``, ``fig_h2_pixel_difference``, ``fig_transfer_matrix``, ``fig_cka`` | \
05_compare_cultures | the culture comparison (``_<protocol>`` added where there are several: \
:func:`comparison_labels`) |
| ``table_h1_accuracy``, ``table_h2_region_tests``, ``table_transfer``, ``table_cka`` | 05_compare_cultures | \
its tables (named as its figures) |
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from emofx.data.emotions import emotion_order
from emofx.data.paths import read_json_record
from emofx.explain.modification import ModificationResult
from emofx.pipeline.figure_output import check_output, record_output
from emofx.pipeline.results import RESULTS_DIR, completed_runs, read_runs
from emofx.study.runs import Run, load_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BENCHMARK = "01_benchmark"
TRAINING = "02_train_culture"
SALIENCY = "03_saliency"
MODIFICATION = "04_emotion_modification"
COMPARISON = "05_compare_cultures"
RUN_DIR = "run"  # where 02_train_culture records its training run inside its results
FOLDS_DIR = "folds"  # where 01_benchmark records one run per fold
SALIENCY_FILE = "saliency.npz"
REGION_SHARES_FILE = "region_shares.csv"
MODIFICATION_FILE = "modification.npz"
COMPARISON_DIR = "comparison"  # where 05_compare_cultures saves emofx.study.comparison's tables
COLLECTED, MATCHED = "collected", "matched"  # 02_train_culture's protocols: the data as collected, or matched
FORMATS = ("png", "pdf")
COMPARISON_FIGURES = {"accuracy_by_culture": "fig_h1_accuracy", "confusion_differences": "fig_h1_confusions",
                      "accuracy_by_person": "fig_h1_people", "region_differences": "fig_h2_regions",
                      "pixel_difference": "fig_h2_pixel_difference", "transfer_matrix": "fig_transfer_matrix",
                      "cka": "fig_cka"}  # the comparison's figures (emofx.plotting.comparison) by their names here


class FiguresError(ValueError):
    """An experiment folder holds nothing to draw, or a record is unreadable."""


# ---------------------------------------------------------------------------- records written by notebooks


def save_saliency(output_dir: str | os.PathLike, images: np.ndarray, maps: np.ndarray, labels: np.ndarray,
                  classes: Sequence[str], culture: str, method: str) -> Path:
    """Record the maps behind a Figure 5-6 grid (images in [0, 1] or uint8, maps, class labels)."""
    path = Path(output_dir) / SALIENCY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.asarray(images), maps=np.asarray(maps, np.float32),
                        labels=np.asarray(labels, np.int32), classes=np.asarray(classes, dtype=str),
                        culture=np.asarray(culture), method=np.asarray(method))
    return path


def load_saliency(path: str | os.PathLike) -> dict[str, Any]:
    """A :func:`save_saliency` record as a dict (images, maps, labels, classes, culture, method)."""
    with np.load(path) as data:
        return {"images": data["images"], "maps": data["maps"], "labels": data["labels"],
                "classes": tuple(str(c) for c in data["classes"]), "culture": str(data["culture"]),
                "method": str(data["method"])}


def save_modification(output_dir: str | os.PathLike, result: ModificationResult, source_names: Sequence[str],
                      method: str = "", filename: str = MODIFICATION_FILE) -> Path:
    """Record a :class:`ModificationResult` (each row's source emotion, the gradient ``method``) behind a
    Figure 7 panel."""
    path = Path(output_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=result.images.astype(np.float16), probabilities=result.probabilities,
                        targets=result.targets, classes=np.asarray(result.classes, dtype=str),
                        source_names=np.asarray(source_names, dtype=str), method=np.asarray(method))
    return path


def modification_method(path: str | os.PathLike) -> str:
    """The gradient method recorded with a :func:`save_modification` record ("" when not recorded)."""
    with np.load(path) as data:
        return str(data["method"]) if "method" in data.files else ""


def load_modification(path: str | os.PathLike) -> tuple[ModificationResult, list[str]]:
    """A :func:`save_modification` record: the result and the rows' source emotions."""
    with np.load(path) as data:
        result = ModificationResult(images=data["images"].astype(np.float32), probabilities=data["probabilities"],
                                    targets=data["targets"], classes=tuple(str(c) for c in data["classes"]))
        return result, [str(s) for s in data["source_names"]]


# ---------------------------------------------------------------------------- reading an experiment


def training_runs(experiment_dir: str | os.PathLike, protocol: str = COLLECTED) -> dict[str, list[Run]]:
    """The completed 02_train_culture runs of an experiment under one ``protocol`` (``collected`` or
    ``matched``; runs that do not say are ``collected``), by culture (in trial order)."""
    runs = completed_runs(experiment_dir, TRAINING)
    recorded = runs["protocol"].fillna(COLLECTED) if "protocol" in runs else pd.Series(COLLECTED, index=runs.index)
    runs = runs[recorded == protocol]
    if runs.empty:
        raise FileNotFoundError(f"no completed {TRAINING} runs of the {protocol!r} protocol under {experiment_dir}")
    by_culture: dict[str, list[Run]] = {}
    for _, row in runs.iterrows():
        by_culture.setdefault(str(row["culture"]), []).append(load_run(Path(row["run_dir"]) / RESULTS_DIR / RUN_DIR))
    # in trial order (the run names sort trial=10 before trial=2), stable where trials repeat (other seeds)
    return {culture: sorted(culture_runs, key=lambda run: int(run.split.trial))
            for culture, culture_runs in by_culture.items()}


def chosen_run(runs_by_culture: dict[str, list[Run]], culture: str, trial_index: int) -> Run:
    """Notebooks 03 and 04's run to explain: ``culture``'s trained run number ``trial_index`` (in trial order),
    with an error naming what there is when either is not."""
    _require_runs(runs_by_culture, culture)
    trials = runs_by_culture[culture]
    if isinstance(trial_index, bool) or not isinstance(trial_index, int) or not 0 <= trial_index < len(trials):
        raise FiguresError(f"trial_index must be a whole number from 0 to {len(trials) - 1} ({culture} has "
                           f"{len(trials)} trained runs); got {trial_index!r}")
    return trials[trial_index]


def compared_pair(cultures: Sequence[str], runs_by_culture: dict[str, list[Run]]) -> tuple[str, str]:
    """Notebook 05's ``cultures``, checked before any work: two different cultures, each with training runs.
    More cultures are compared a pair at a time (one notebook run per pair)."""
    names = [cultures] if isinstance(cultures, str) else list(cultures)
    if len(names) != 2 or names[0] == names[1]:
        raise FiguresError(
            f"cultures must name two different cultures; got {names}. To compare more, run notebook 05 once per "
            "pair, e.g. in the experiment file: grid: {cultures: [[A, B], [A, C], [B, C]]}")
    for name in names:
        _require_runs(runs_by_culture, name)
    return names[0], names[1]


def _require_runs(runs_by_culture: dict[str, list[Run]], culture: str) -> None:
    """Raise :class:`FiguresError` naming the cultures that have runs when ``culture`` has none."""
    if culture not in runs_by_culture:
        raise FiguresError(f"no completed training runs of culture {culture!r}; cultures with runs: "
                           f"{', '.join(sorted(runs_by_culture)) or 'none'}")


def culture_runs(runs_by_culture: dict[str, list[Run]], culture: str) -> Any:
    """One culture's trials as :class:`emofx.study.comparison.CultureRuns` (models, test indices, dataset)."""
    from emofx.study.cultures import CultureRuns

    _require_runs(runs_by_culture, culture)
    runs = runs_by_culture[culture]
    return CultureRuns.from_runs(culture, runs, runs[0].dataset())


def culture_tables(runs_by_culture: dict[str, list[Run]]) -> dict[str, pd.DataFrame]:
    """Tables 2-4 from recorded runs: per culture the test confusion's mean and std over trials
    (with totals), and the % misclassified per class and culture (mean and std over trials)."""
    from emofx.study.evaluation import aggregate_confusions

    tables: dict[str, pd.DataFrame] = {}
    errors_mean, errors_std = {}, {}
    for culture, runs in runs_by_culture.items():
        tables[f"confusion_{culture}_mean"], tables[f"confusion_{culture}_std"] = aggregate_confusions(
            [run.confusion(totals=True) for run in runs])
        errors = pd.DataFrame([run.per_class_error() for run in runs])
        errors_mean[culture] = errors.mean()
        errors_std[culture] = errors.std(ddof=1) if len(errors) > 1 else errors.iloc[0] * 0.0
    for name, columns in (("misclassification_mean", errors_mean), ("misclassification_std", errors_std)):
        table = pd.DataFrame(columns).T
        table.index.name = "culture"
        tables[name] = table[[c for c in table.columns if c != "total"] + ["total"]]
    return tables


def benchmark_folds(experiment_dir: str | os.PathLike) -> dict[str, list[Run]]:
    """Every 01_benchmark run's fold runs, by run name."""
    runs = completed_runs(experiment_dir, BENCHMARK)
    return {row["run"]: [load_run(Path(p).parent)
                         for p in sorted((Path(row["run_dir"]) / RESULTS_DIR / FOLDS_DIR).rglob("metrics.json"))]
            for _, row in runs.iterrows()}


# ---------------------------------------------------------------------------- writing


def mean_std_text(mean: pd.DataFrame, std: pd.DataFrame, fmt: str = ".1f") -> pd.DataFrame:
    """Cells formatted ``mean ± std`` (for Markdown tables)."""
    cells = [[f"{m:{fmt}} ± {s:{fmt}}" if m == m else "—" for m, s in zip(means, stds)]  # NaN: a class it lacks
             for means, stds in zip(mean.to_numpy(float), std.to_numpy(float))]
    return pd.DataFrame(cells, index=mean.index, columns=mean.columns)


def markdown_table(frame: pd.DataFrame, index: bool = False, floatfmt: str = ".3f", numbers: bool = True) -> str:
    """``frame`` as a Markdown table (``_(empty)_`` for no rows); ``numbers=False`` leaves numeric-looking text
    as written (a run's settings: 30, not 30.000). p-value columns (``p_value``, ``p_adjusted``, ...) keep three
    significant digits: a permutation test's smallest p (1/2000 = 0.0005) is not rounded up to 0.001."""
    if not len(frame):
        return "_(empty)_"
    p_columns = [k for k, column in enumerate(frame.columns) if _is_p_column(frame[column])]
    if p_columns:
        frame = frame.assign(**{str(frame.columns[k]): frame.iloc[:, k].map(_p_text) for k in p_columns})
    as_written = [k + (frame.index.nlevels if index else 0) for k in p_columns]
    return frame.to_markdown(index=index, floatfmt=floatfmt, disable_numparse=as_written if numbers else True)


def _is_p_column(column: pd.Series) -> bool:
    return bool(re.fullmatch(r"p|p_(value|adjusted|fwer|raw)|.*_p", str(column.name))) and \
        pd.api.types.is_float_dtype(column)


def _p_text(value: float) -> str:
    return "" if value != value else f"{value:.3g}"


def write_table(frame: pd.DataFrame, path: str | os.PathLike, markdown: pd.DataFrame | None = None) -> list[Path]:
    """``frame`` as CSV and (``markdown`` or ``frame``) as Markdown beside it; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    csv, md = path.with_suffix(".csv"), path.with_suffix(".md")
    keep_index = not isinstance(frame.index, pd.RangeIndex)
    frame.to_csv(csv, index=keep_index)
    md.write_text(markdown_table(markdown if markdown is not None else frame, index=keep_index) + "\n")
    return [csv, md]


def _save(fig, path: Path) -> list[Path]:
    from emofx.plotting import save_figure

    return save_figure(fig, path, formats=FORMATS)


def _learning_curve_figure(groups: dict[str, list[Run]], what: str) -> Figure:
    """One panel per group, titled with the model its runs trained (a shrunken one said so)."""
    from emofx.nets.model import model_sentence
    from emofx.plotting.curves import learning_curve_panels

    panels = {}
    for name, runs in groups.items():
        shapes = sorted({(tuple(model["widths"]), model["dense_units"]) for run in runs
                         if (model := run.metrics.get("config", {}).get("model"))})
        words = "".join(f"\n{model_sentence(*shape)}" for shape in shapes)  # none recorded: no line
        panels[f"{name}: mean ± std over {len(runs)} {what}{words}"] = [run.history for run in runs]
    return learning_curve_panels(panels)


def trials_phrase(counts: dict[str, int]) -> str:
    """How many trials a figure of several cultures averages: ``5 trials``, or per culture where they differ
    (``trials (Swedish 5, Taiwanese 4)``)."""
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f"{n} trial" if n == 1 else f"{n} trials"
    return "trials (" + ", ".join(f"{culture} {n}" for culture, n in counts.items()) + ")"


def _training_figures(experiment_dir: Path, out: Path) -> list[Path]:
    from emofx.plotting.tables import confusion_heatmap, misclassification_heatmap

    runs = training_runs(experiment_dir)
    tables = culture_tables(runs)
    written: list[Path] = []
    for culture, trials in runs.items():
        mean, std = tables[f"confusion_{culture}_mean"], tables[f"confusion_{culture}_std"]
        name = f"table2_confusion_{culture}"
        written += write_table(mean, out / name, mean_std_text(mean, std))
        std.to_csv(out / f"{name}_std.csv")
        written.append(out / f"{name}_std.csv")
        written += _save(confusion_heatmap(mean, std, title=f"{culture}: test confusion, mean ± std over "
                                                            f"{len(trials)} trials"), out / name)
    mean, std = tables["misclassification_mean"], tables["misclassification_std"]
    written += write_table(mean, out / "table4_misclassification", mean_std_text(mean, std))
    std.to_csv(out / "table4_misclassification_std.csv")
    written.append(out / "table4_misclassification_std.csv")
    over = trials_phrase({culture: len(trials) for culture, trials in runs.items()})
    written += _save(misclassification_heatmap(mean, std, title=f"% misclassified, mean ± std over {over}"),
                     out / "table4_misclassification")
    return written


def _learning_curves(experiment_dir: Path, out: Path, notebooks: set[str]) -> list[Path]:
    if BENCHMARK in notebooks:
        groups, what = benchmark_folds(experiment_dir), "folds"
    else:
        groups, what = training_runs(experiment_dir), "trials"
    groups = {name: runs for name, runs in groups.items() if runs}
    if not groups:
        raise FiguresError("no learning histories recorded")
    return _save(_learning_curve_figure(groups, what), out / "fig4_learning_curves")


def _saliency_figures(experiment_dir: Path, out: Path, faces: bool = True) -> list[Path]:
    from emofx.plotting.saliency import saliency_grid

    runs = completed_runs(experiment_dir, SALIENCY).sort_values("run")
    records = [load_saliency(Path(run_dir) / RESULTS_DIR / SALIENCY_FILE) for run_dir in runs["run_dir"]]
    cultures = [str(record["culture"]) for record in records]
    written, summaries = [], []
    for run, run_dir, record, culture in zip(runs["run"], runs["run_dir"], records, cultures):
        if faces:  # one grid per culture, named by run where a culture has several runs (methods, seeds)
            name = f"fig5_saliency_{culture}" + ("" if cultures.count(culture) == 1 else f"_{run}")
            fig = saliency_grid(record["images"], record["maps"], record["labels"], record["classes"],
                                culture=culture, method=record["method"])
            written += _save(fig, out / name)
        shares = Path(run_dir) / RESULTS_DIR / REGION_SHARES_FILE
        if shares.is_file():
            means = pd.read_csv(shares).groupby("emotion").mean(numeric_only=True)  # in the vocabulary's order:
            summaries.append(means.loc[sorted(means.index, key=emotion_order)].reset_index()  # as figures list them
                             .assign(culture=culture, method=str(record["method"]), run=run))
    if summaries:
        table = pd.concat(summaries, ignore_index=True)
        first = ["culture", "method", "run"]
        written += write_table(table[[*first, *[c for c in table.columns if c not in first]]],
                               out / "table_saliency_regions")
    return written


def _modification_figures(experiment_dir: Path, out: Path) -> list[Path]:
    from emofx.plotting.saliency import modification_panel

    runs = completed_runs(experiment_dir, MODIFICATION)
    written = []
    for _, row in runs.iterrows():
        records = sorted((Path(row["run_dir"]) / RESULTS_DIR).glob("modification*.npz"))
        for record in records:
            result, sources = load_modification(record)
            method = modification_method(record)
            name = ("fig7_modification" + ("" if len(runs) == 1 else f"_{row['run']}")
                    + record.stem[len("modification"):])
            written += _save(modification_panel(result, source_names=sources, method=method), out / name)
    return written


def comparison_labels(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, figure-name suffix) of each completed comparison run in ``runs`` (in their order): the label
    is the run's protocol, or where runs share a protocol the protocol and the two cultures compared
    (``collected: eyes vs mouth``; the run's name where two runs compare the same cultures); the suffix is
    empty for a lone run, else ``_<label>`` made safe for a file name."""
    protocols = [p if isinstance(p, str) else COLLECTED for p in runs.get("protocol", [None] * len(runs))]
    pairs = [c if isinstance(c, (list, tuple)) and len(c) == 2 else None
             for c in runs.get("cultures", [None] * len(runs))]
    labels = [p if protocols.count(p) == 1 else f"{p}: {pair[0]} vs {pair[1]}" if pair else f"{p} {run}"
              for p, pair, run in zip(protocols, pairs, runs["run"])]
    labels = [label if labels.count(label) == 1 else f"{p} {run}"
              for label, p, run in zip(labels, protocols, runs["run"])]
    return [(label, "" if len(labels) == 1 else "_" + re.sub(r"[^A-Za-z0-9._+-]+", "-", label)) for label in labels]


def _warn_if_stale(experiment_dir: Path, run_dir: Path, trial_metrics: pd.DataFrame, cultures: tuple[str, str]
                   ) -> None:
    """Warn when a comparison's trials are no longer the completed training runs it stands for (a run failed,
    was removed or added since), so its tables would not describe the training tables drawn beside them."""
    try:  # advice only: a record it cannot read is another group's error to report
        record = Path(run_dir) / RESULTS_DIR / "results.json"
        protocol = read_json_record(record).get("protocol", COLLECTED) if record.is_file() else COLLECTED
        summary = read_json_record(Path(run_dir) / RESULTS_DIR / COMPARISON_DIR / "summary.json")
        current = training_runs(experiment_dir, protocol)
    except (OSError, ValueError):
        return
    excluded = bool(summary.get("config", {}).get("exclude_chance"))  # trials at chance left out by the comparison
    own = trial_metrics[trial_metrics["train_culture"] == trial_metrics["test_culture"]]
    for culture in cultures:
        compared = sorted(int(t) for t in own.loc[own["train_culture"] == culture, "trial"])
        recorded = [int(run.split.trial) for run in current.get(culture, [])]
        now = sorted(recorded) if len(set(recorded)) == len(recorded) else list(range(len(recorded)))  # as compared
        if not set(compared) <= set(now) if excluded else compared != now:
            warnings.warn(f"{run_dir.name} compared {culture}'s trials {compared}, but its completed {TRAINING} runs "
                          f"({protocol}) are now trials {now}: its tables and figures describe other models than "
                          f"the training tables; rerun it (`emofx batch --config ... --only {COMPARISON} --force`)",
                          stacklevel=2)


def _comparison_figures(experiment_dir: Path, out: Path) -> list[Path]:
    from emofx.plotting.comparison import comparison_figures

    runs = completed_runs(experiment_dir, COMPARISON).sort_values("run")
    written = []
    for (_, suffix), run_dir in zip(comparison_labels(runs), runs["run_dir"]):
        record = Path(run_dir) / RESULTS_DIR / COMPARISON_DIR
        summary = read_json_record(record / "summary.json")
        names = ("trial_metrics", "region_tests", "transfer", "cka") + tuple(  # the last two: none in older records
            name for name in ("confusion_tests", "person_accuracy") if (record / f"{name}.csv").is_file())
        tables = {name: pd.read_csv(record / f"{name}.csv") for name in names}
        with np.load(record / "pixel_difference.npz") as data:
            pixel = {key: data[key] for key in data.files}
        names = (summary["cultures"]["a"], summary["cultures"]["b"])
        _warn_if_stale(experiment_dir, Path(run_dir), tables["trial_metrics"], names)
        shared = len(summary.get("shared_classes", ())) or None  # older records may not name them
        for name, fig in comparison_figures(tables, summary["accuracy"], pixel, names, n_classes=shared).items():
            written += _save(fig, out / f"{COMPARISON_FIGURES[name]}{suffix}")
        h1 = pd.DataFrame([{"metric": metric, **{k: v for k, v in summary[metric].items()
                                                 if not isinstance(v, (dict, list))}}
                           for metric in ("accuracy", "balanced_accuracy") if metric in summary])
        written += write_table(h1, out / f"table_h1_accuracy{suffix}")
        if "confusion_tests" in tables:
            written += write_table(tables["confusion_tests"], out / f"table_h1_confusion_tests{suffix}")
        if len(tables.get("person_accuracy", ())):
            written += write_table(tables["person_accuracy"], out / f"table_h1_people{suffix}")
        written += write_table(tables["region_tests"], out / f"table_h2_region_tests{suffix}")
        written += write_table(tables["transfer"], out / f"table_transfer{suffix}")
        written += write_table(tables["cka"], out / f"table_cka{suffix}")
    return written


def regenerate(experiment_dir: str | os.PathLike, out: str | os.PathLike, faces: bool = True,
               overwrite: bool = False) -> pd.DataFrame:
    """Write every figure and table the experiment's records allow into ``out``.

    ``faces=False`` draws no figure that shows faces (saliency grids, modification panels).
    ``out`` may hold figures drawn from the same experiment before (they are regenerated, and those no longer
    drawn are removed); figures from another experiment, or of unknown origin (no manifest: written over by
    name only, never removed), are replaced only with ``overwrite``
    (:func:`emofx.pipeline.figure_output.check_output`). ``out/figures.json`` records the experiment and the files.

    Returns one row per group (``figure``, ``source``, ``status`` written/skipped, ``files``
    or the reason it was skipped); nothing is retrained.
    """
    import matplotlib

    matplotlib.use("Agg")
    experiment_dir, out = Path(experiment_dir), Path(out)
    runs = read_runs(experiment_dir)
    notebooks = set(runs.loc[runs["status"] == "ok", "notebook"]) if len(runs) else set()
    if not notebooks:
        raise FiguresError(f"{experiment_dir} holds no completed notebook runs; run `emofx batch` first")
    earlier = check_output(out, experiment_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    groups = [
        ("fig4_learning_curves", f"{BENCHMARK} or {TRAINING}", BENCHMARK in notebooks or TRAINING in notebooks,
         lambda: _learning_curves(experiment_dir, out, notebooks)),
        ("table2_confusion_*, table4_misclassification", TRAINING, TRAINING in notebooks,
         lambda: _training_figures(experiment_dir, out)),
        ("fig5_saliency_*, table_saliency_regions", SALIENCY, SALIENCY in notebooks,
         lambda: _saliency_figures(experiment_dir, out, faces)),
        ("fig7_modification", MODIFICATION, MODIFICATION in notebooks and faces,
         lambda: _modification_figures(experiment_dir, out)),
        ("fig_h1_*, fig_h2_*, fig_transfer_matrix, fig_cka, table_h1/h2/transfer/cka", COMPARISON,
         COMPARISON in notebooks, lambda: _comparison_figures(experiment_dir, out)),
    ]
    rows, written = [], set()
    for figure, source, available, draw in groups:
        if not available:
            rows.append({"figure": figure, "source": source, "status": "skipped",
                         "files": f"no completed {source} runs in {experiment_dir}"})
            continue
        try:
            files = draw()
        except (FileNotFoundError, KeyError, ValueError) as err:
            rows.append({"figure": figure, "source": source, "status": "failed",
                         "files": f"{type(err).__name__}: {err}"})
            continue
        written |= {p.name for p in files}
        rows.append({"figure": figure, "source": source, "status": "written",
                     "files": ", ".join(sorted({p.stem for p in files}))})
    report = pd.DataFrame(rows)
    record_output(out, experiment_dir, earlier, written, complete=not (report["status"] == "failed").any())
    return report
