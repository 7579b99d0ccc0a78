"""`emofx report`: one self-contained document about an experiment's recorded runs (Markdown and HTML).

The report reads ``papermill_runs/<experiment>`` (nothing is retrained): the figures and tables of
:func:`emofx.pipeline.figures.regenerate` are written beside it under ``figures/``, and every
section of :data:`SECTIONS` is present (a section whose runs are missing says so). The HTML
embeds its figures, so it is one file to send. ``faces=False`` draws no figure that shows a face
(saliency grids, modification panels): the datasets' terms forbid publishing them, so the
committed results folder is written that way.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofx.data.paths import first_few
from emofx.nets.checkpoint import cpu_vector_width, source_revision
from emofx.pipeline import report_text
from emofx.pipeline.html import markdown_to_html
from emofx.pipeline.figures import MODIFICATION, RUN_DIR, SALIENCY, mean_std_text, regenerate
from emofx.pipeline.figures import markdown_table as _md
from emofx.pipeline.figure_output import foreign_files
from emofx.pipeline.report_beside import beside_section
from emofx.pipeline.report_records import Experiment, protocol_of
from emofx.pipeline.results import NOT_PLANNED, RESULTS_DIR, read_json
from emofx.study.baselines import CHANCE_ALPHA, confusion_p_value

REPORT_MD, REPORT_HTML, FIGURES_DIR = "report.md", "report.html", "figures"
CONFUSIONS_SHOWN = 8  # confusion pairs listed in the H1 section (largest differences); the CSV has them all
SECTIONS = (
    "Datasets and preparation", "Models and recipe", "Accuracy per culture (Tables 2-3)", "Models above chance",
    "Misclassification (Table 4)", "Saliency (Figures 5-6)", "Emotion modification (Figure 7)",
    "H1: accuracy by culture", "Transfer between cultures", "H2: where the models look", "Filters' regions",
    "Representations (CKA)", "Human baseline", "What the numbers say", "Wall time per stage", "Library versions",
)
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "pandas", "opencv-python-headless", "dlib-bin",
             "papermill", "markdown")


def _plain(value: Any) -> str:
    """A table cell as written in the configuration: 30, not 30.0 (a column with gaps turns ints into floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _figure(out: Path, name: str, caption: str) -> str:
    path = out / FIGURES_DIR / f"{name}.png"
    return f"![{caption}]({FIGURES_DIR}/{name}.png)\n\n_{caption}_" if path.is_file() else ""


def _table_file(out: Path, name: str) -> str:
    path = out / FIGURES_DIR / f"{name}.md"
    return path.read_text().strip() if path.is_file() else ""


# ----------------------------------------------------------------------------- sections


def _datasets(exp: Experiment) -> str:
    if exp.training.empty:
        return "No completed 02_train_culture runs: no dataset was prepared."
    rows = []
    for (protocol, culture), info in exp.datasets.items():
        landmarks = info.get("landmarks", {})
        rows.append({
            "culture": culture, "protocol": protocol, "source": info.get("source", ""), "images": info.get("n"),
            "subjects": info.get("subjects"),
            "per class": ", ".join(f"{k} {v}" for k, v in info.get("counts", {}).items()),
            "skipped": info.get("skipped", 0),
            "skipped because": "; ".join(f"{k} ({v})" for k, v in info.get("skipped_reasons", {}).items()) or "-",
            "face boxes": ", ".join(f"{k} {v}" for k, v in info.get("faces", {}).items()) or "-",
            "landmarks": landmarks.get("method", "-") + (" (" + ", ".join(
                f"{k} {v}" for k, v in landmarks.get("quality", {}).items()) + ")" if landmarks.get("quality") else ""),
            "aligned": landmarks.get("aligned", "-"),
            "unrated (observers)": info.get("unrated", "-"),
        })
    sizes = (exp.training.groupby(["protocol", "culture"])[["n_train", "n_val", "n_test"]].mean().round(1)
             .reset_index())
    people = exp.people_per_part()
    if len(people):
        sizes = sizes.merge(people, on=["protocol", "culture"], how="left")
    regions = exp.notebook(SALIENCY)
    region_text = ""
    if not regions.empty and "region_method" in regions:
        region_text = "\n\nFacial regions for the saliency statistics: " + ", ".join(
            f"{r['culture']}: {r['region_method']}" for _, r in regions.iterrows()) + "."
    rated = any("unrated" in info for info in exp.datasets.values())
    unrated = ("\n\nunrated (observers): images the ratings file lists without observers; images whose posed emotion "
               "was not among the observers' choices (the Taiwanese set's neutral) have no agreement score either and "
               "are left out of the human baseline." if rated else "")
    return (_md(pd.DataFrame(rows)) + unrated + "\n\nTraining, validation and test images and people per trial (mean "
            "over trials; a protocol may use fewer of a dataset's people); the matched protocol keeps the same number "
            "of people per culture and downsamples every training part to one per-class count:\n\n"
            + _md(sizes, floatfmt=".1f")
            + region_text)


def _models(exp: Experiment) -> str:
    if exp.training.empty:
        return "No completed training runs."
    settings = ("split", "seed", "epochs", "patience", "batch_size", "learning_rate", "recipe", "norm", "init_from",
                "conv_lr_scale")
    keys = [k for k in settings if k in exp.training]
    recipe = exp.training[keys].astype(object).fillna("none").map(_plain).drop_duplicates()  # unset: none
    models = sorted(set(exp.training["model"].dropna())) if "model" in exp.training else ["not recorded"]
    stops = exp.training.groupby(["protocol", "culture"])["stop_reason"].agg(lambda s: ", ".join(sorted(set(s))))
    people = min(((info["subjects"], culture) for (_, culture), info in exp.datasets.items() if info.get("subjects")),
                 default=None)
    caveat = ("\n\nEvery trial re-splits the same people of a culture by subject (no person in two parts of a trial), "
              "so the trial-level tests speak about these people and new models, not about new people of the culture "
              "(that needs `independent` splits: disjoint people per trial" +
              (f"; the smallest culture here has {people[0]} people, {people[1]})." if people else ").")
              if "split" in recipe and (recipe["split"] == "subject").any() else "")
    return ("Model: " + "; ".join(models) + ".\n\nRecipe and split:\n\n" + _md(recipe, numbers=False) + caveat +
            "\n\nHow training ended:\n\n" + _md(stops.reset_index()))


def _accuracy(exp: Experiment, out: Path) -> str:
    if exp.training.empty:
        return "No completed training runs."
    metrics = ["test_accuracy", "balanced_accuracy", "macro_f1"]
    grouped = exp.training.groupby(["protocol", "culture"])[metrics]
    table = mean_std_text(grouped.mean(), grouped.std(ddof=1).fillna(0.0), ".3f")
    table["trials"] = exp.training.groupby(["protocol", "culture"]).size()
    parts = ["Test metrics, mean ± std over trials:\n\n" + _md(table.reset_index())]
    for culture in sorted(set(exp.training["culture"])):
        name = f"table2_confusion_{culture}"
        parts.append(f"**{culture}** (as collected), test confusion, mean ± std over trials (rows true, columns "
                     f"predicted):\n\n{_table_file(out, name)}\n\n" + _figure(out, name, f"{culture}: test confusion"))
    parts.append(_figure(out, "fig4_learning_curves", "Learning curves, mean ± std over trials"))
    return "\n\n".join(p for p in parts if p)


def _per_protocol(exp: Experiment, body, out: Path | None = None, figures: tuple[tuple[str, str], ...] = ()) -> str:
    """One subsection per comparison: ``body(record)``, then its ``figures`` ((name, caption) in ``out``)."""
    if not exp.comparisons:
        return "No completed 05_compare_cultures run."
    parts = []
    for label, record in exp.comparisons.items():
        drawn = [_figure(out, name + record["suffix"], f"{caption} ({label})") for name, caption in figures]
        parts.append("\n\n".join([f"### {report_text.heading(label)}\n\n{body(record)}", *filter(None, drawn)]))
    return "\n\n".join(parts)


def _chance(exp: Experiment) -> str:
    def body(record: dict[str, Any]) -> str:
        table = record["tables"].get("chance", pd.DataFrame())
        notes = [n for n in record["summary"].get("notes", []) if "chance" in n]
        chance = record["summary"].get("chance", {})
        return (f"alpha = {chance.get('alpha')}, flagged trials excluded: {chance.get('excluded')}\n\n" + _md(table) +
                "\n\n" + "\n".join(f"- {n}" for n in notes))

    own = _uncompared_runs_chance(exp)
    if len(exp.training) == 0:
        listed = ""
    elif own.empty:
        listed = "Every training run is tested in a comparison, below.\n\n"
    else:
        listed = ("The training runs no comparison tested, on their own test images (alpha = "
                  f"{CHANCE_ALPHA}; labels shuffled among all of a run's test images: a run's record holds its "
                  "confusion matrix, not which person each image shows):\n\n" + _md(own) + "\n\n")
        if own["flagged"].any():
            listed += f"**{int(own['flagged'].sum())} of {len(own)} of these runs are NOT clearly above chance.**\n\n"
    return ("A trial is clearly above chance when its balanced accuracy beats every predictor that ignores the face: "
            "one-sided permutation test shuffling the true labels among each person's test images where the images "
            "name their people (so that telling people apart does not count as recognising their expressions), "
            "else among all of the trial's test images, p < alpha (`CompareConfig.chance_alpha`, given per protocol "
            "below). Flagged trials undermine H1 (the difference then measures failed training) and H2 and CKA (their "
            "maps and features describe no emotion); `exclude_chance` in notebook 05 leaves them out.\n\n" + listed
            + _per_protocol(exp, body))


def _uncompared_runs_chance(exp: Experiment) -> pd.DataFrame:
    """The chance test of each training run that no comparison's chance table covers, from its confusion matrix."""
    covered = {(record["protocol"], str(row.culture), int(row.trial)) for record in exp.comparisons.values()
               for row in record["tables"].get("chance", pd.DataFrame(columns=["culture", "trial"])).itertuples()}
    rows = []
    training = exp.training.sort_values(["protocol", "culture", "trial"]) if len(exp.training) else exp.training
    for _, row in training.iterrows():
        if (row["protocol"], str(row["culture"]), int(row["trial"])) in covered:
            continue
        confusion = read_json(Path(row["run_dir"]) / RESULTS_DIR / RUN_DIR / "metrics.json").get("confusion")
        if confusion:
            value, p_value = confusion_p_value(np.asarray(confusion), seed=int(row["trial"]))
            rows.append({"protocol": row["protocol"], "culture": row["culture"], "trial": int(row["trial"]),
                         "balanced_accuracy": value, "chance": 1 / len(confusion), "n_images": int(np.sum(confusion)),
                         "p_value": p_value, "flagged": p_value >= CHANCE_ALPHA})
    return pd.DataFrame(rows)


def _saliency(exp: Experiment, out: Path, faces: bool) -> str:
    runs = exp.notebook(SALIENCY)
    if runs.empty:
        return "No completed 03_saliency run."
    grids = [_figure(out, p.stem, f"{p.stem[len('fig5_saliency_'):]}: saliency per emotion")
             for p in sorted((out / FIGURES_DIR).glob("fig5_saliency_*.png"))]
    text = "\n\n".join(grids) if faces else (
        "Saliency grids show faces and are not included here (the datasets' terms); `emofx report` without "
        "`--no-faces` draws them locally.")
    return text + f"\n\nShare of saliency mass per facial region, mean over the test images of the one model each " \
        f"saliency run explains ({_explained_models(runs)}; the H2 tests below use every trial's models):\n\n" + \
        _table_file(out, "table_saliency_regions")


def _explained_models(runs: pd.DataFrame) -> str:
    """Which training run each saliency run explained, on how many images (from its results.json)."""
    explained = []
    for _, row in runs.iterrows():
        model = row.get("result.run")
        trained = Path(model).parent.parent.name if isinstance(model, str) else "its model"
        images = row.get("n_images")
        count = f", {int(images)} images" if isinstance(images, (int, float)) and images == images else ""
        explained.append(f"{row['culture']}: {trained}{count}")
    return "; ".join(explained)


def _modification(exp: Experiment, out: Path, faces: bool) -> str:
    runs = exp.notebook(MODIFICATION)
    if runs.empty:
        return "No completed 04_emotion_modification run."
    columns = [c for c in runs.columns if c == "method" or c.endswith("target_probability")]
    table = runs[["culture", *columns]]
    panels = "\n\n".join(_figure(out, p.stem, p.stem.replace("_", " ")) for p in sorted(
        (out / FIGURES_DIR).glob("fig7_modification*.png"))) if faces else (
        "The panels show faces and are not included here (the datasets' terms).")
    return ("Gradient ascent on the image toward a target class. The default steps follow the vanilla gradient of "
            "the target probability (the method that raises it); guided-backprop steps are shown beside them. A "
            "vanilla step that would lower an image's objective (its target log-probability, less any L2 pull) is not "
            "taken (its step is halved). Mean target probability before and after the steps:\n\n" + _md(table)
            + "\n\n" + panels)


def _scored_on(exp: Experiment, summary: dict[str, Any], protocol: str | None = None) -> str:
    """Where a culture has emotions the other lacks: the comparison scores both on the shared ones only (so its
    accuracies differ from the culture's own tables), said with what is left out."""
    shared = set(summary.get("shared_classes", []))
    names = (summary["cultures"]["a"], summary["cultures"]["b"])
    own = {name: set(info.get("classes", [])) for (of, name), info in exp.datasets.items()
           if name in names and protocol in (None, of)}  # matched datasets hold the shared emotions only
    left = {name: sorted(classes - shared) for name, classes in own.items() if shared and classes - shared}
    return (f", on the {len(shared)} emotions both have ({', '.join(sorted(shared))}; left out: " + "; ".join(
        f"{name}'s {', '.join(classes)}" for name, classes in left.items()) + ")") if left else ""


def _h1(exp: Experiment, out: Path) -> str:
    def body(record: dict[str, Any]) -> str:
        s = record["summary"]
        rows = [{k: v for k, v in s[m].items() if not isinstance(v, (dict, list))}
                for m in ("accuracy", "balanced_accuracy")]
        errors = record["tables"].get("class_error_tests", pd.DataFrame())
        scored = _scored_on(exp, s, record.get("protocol"))
        text = (f"{s['cultures']['a']} minus {s['cultures']['b']}{scored}:\n\n" + _md(pd.DataFrame(rows)) +
                "\n\nPer-class error (a minus b), permutation over trials, corrected over classes:\n\n" + _md(errors))
        confusions = record["tables"].get("confusion_tests")
        if confusions is not None and len(confusions):
            order = confusions["diff"].abs().sort_values(ascending=False).index
            largest = confusions.reindex(order).head(CONFUSIONS_SHOWN)
            text += (f"\n\nConfusions (the share of the true emotion's test images given the predicted label, a minus "
                     f"b; permutation over trials, corrected over the {len(confusions)} pairs ever confused), the "
                     f"{len(largest)} largest differences (every pair in "
                     f"`figures/table_h1_confusion_tests{record['suffix']}.csv`):\n\n" + _md(largest))
        people = record["tables"].get("person_accuracy")
        if people is not None and len(people):
            text += "\n\n" + report_text.people_sentence(people)
        return text

    return _per_protocol(exp, body, out, (("fig_h1_accuracy", "Accuracy per trial and culture"),
                                          ("fig_h1_confusions", "Which emotions each culture's models confuse"),
                                          ("fig_h1_people", "Accuracy per test person")))


def _transfer_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    table = record["tables"].get("transfer", pd.DataFrame())
    rows = []
    for culture, group in table.groupby("train_culture"):
        own = group[group["test_culture"] == culture]["accuracy"].mean()
        rows.append({"train_culture": culture, "own": own,
                     "other": group[group["test_culture"] != culture]["accuracy"].mean()})
    return rows


def _transfer(exp: Experiment, out: Path) -> str:
    def body(record: dict[str, Any]) -> str:
        table = record["tables"].get("transfer", pd.DataFrame())
        grouped = table.groupby(["train_culture", "test_culture"])[["accuracy", "balanced_accuracy"]]
        return ("Train culture (rows) x test culture, mean ± std over trials (own culture: its test images; other: "
                "all its images), on the shared classes:\n\n" +
                _md(mean_std_text(grouped.mean(), grouped.std(ddof=1).fillna(0.0), ".3f").reset_index()))

    rows = {label: _transfer_rows(r) for label, r in exp.comparisons.items()}
    text = report_text.transfer_paragraph(rows, exp.sources()) if exp.comparisons else ""
    return _per_protocol(exp, body, out, (("fig_transfer_matrix", "Transfer matrix"),)) + "\n\n" + text


def _h2(exp: Experiment, out: Path) -> str:
    def body(record: dict[str, Any]) -> str:
        s, tables = record["summary"], record["tables"]
        regions = tables.get("region_tests", pd.DataFrame())
        columns = [c for c in ("emotion", "region", "diff", "effect_size", "p_value", "p_adjusted", "unit")
                   if c in regions]
        top = regions.sort_values("p_adjusted")[columns].head(12) if len(regions) else regions
        pixel = s.get("pixelwise", {})
        return (f"Share of saliency mass per emotion and region, {s['cultures']['a']} minus {s['cultures']['b']}, "
                f"the 12 smallest corrected p-values of {len(regions)} tests (correction: {s['config']['correction']}, "
                f"unit: {s['config']['unit']}; all in `figures/table_h2_region_tests{record['suffix']}.csv`):\n\n" +
                _md(top) +
                "\n\nDistance of the most salient pixels to the nearest landmark:\n\n" +
                _md(tables.get("proximity_tests", pd.DataFrame())) +
                f"\n\nPixel-wise map ({pixel.get('correction', '')}): smallest p = "
                f"{report_text.format_p(pixel.get('min_p_fwer'))}, "
                f"{pixel.get('pixels_p_fwer_below_0.05')} pixels below 0.05.")

    return _per_protocol(exp, body, out, (("fig_h2_regions", "Region differences"),
                                          ("fig_h2_pixel_difference", "Pixel-wise saliency difference")))


def _filters(exp: Experiment) -> str:
    def body(record: dict[str, Any]) -> str:
        s = record["summary"]
        f = s["filters"]
        shares = pd.DataFrame({s["cultures"]["a"]: f["share_a"],
                               s["cultures"]["b"]: f["share_b"]}).rename_axis("region")
        return ("Share of last-layer filters whose strongest responses fall in each region (mean over models): \n\n" +
                _md(shares.reset_index()) + f"\n\nTotal variation {f['total_variation']:.3f}, permutation p = "
                f"{f['p_value']:.3g} ({f['unit']}).")

    return _per_protocol(exp, body)


def _cka(exp: Experiment, out: Path) -> str:
    def body(record: dict[str, Any]) -> str:
        table = record["tables"].get("cka", pd.DataFrame())
        return "Linear CKA of the penultimate layer on the same probe images:\n\n" + _md(
            table.groupby("kind")["cka"].agg(["mean", "std", "count"]).reset_index())

    return _per_protocol(exp, body, out, (("fig_cka", "CKA between and within cultures"),))


def _human(exp: Experiment) -> str:
    def body(record: dict[str, Any]) -> str:
        table = record["tables"].get("human_baseline", pd.DataFrame())
        if table.empty:
            return report_text.human_paragraph([])
        return ("Per class: the share of observers choosing the posed emotion on the tested images, beside the "
                "models' accuracy (mean ± std over trials) and mean probability of the posed class:\n\n" + _md(table)
                + "\n\n" + report_text.human_paragraph(record["summary"].get("human", [])))

    return _per_protocol(exp, body)


def _conclusions(exp: Experiment) -> str:
    if not exp.comparisons:
        return "No comparison was run, so no hypothesis is answered."
    summaries = {label: r["summary"] for label, r in exp.comparisons.items()}
    protocols = {label: r["protocol"] for label, r in exp.comparisons.items()}
    sources = exp.sources()
    return ("### H1: does accuracy depend on culture?\n\n" + report_text.h1_paragraph(summaries, protocols, sources)
            + "\n\n### H2: do the learnt features depend on culture?\n\n"
            + report_text.h2_paragraph(summaries, sources))


def _wall_time(exp: Experiment) -> str:
    runs = exp.runs.copy()
    runs["protocol"] = [protocol_of(row) for _, row in runs.iterrows()]
    table = runs.groupby(["notebook", "protocol"]).agg(
        runs=("run", "size"), ok=("status", lambda s: int((s == "ok").sum())),
        failed=("status", lambda s: int((s == "failed").sum())), seconds=("seconds", "sum"),
        mean_per_run=("seconds", "mean")).reset_index()
    extra = ""
    if {"prepare_seconds", "train_seconds"} <= set(exp.training.columns):
        extra = (f"\n\nInside 02_train_culture: preparing data {exp.training['prepare_seconds'].sum():.0f} s, training "
                 f"{exp.training['train_seconds'].sum():.0f} s (the rest is kernel start, evaluation and recording).")
    return ("Seconds of each notebook run as recorded by `emofx batch` (each run's status.json in the experiment "
            "folder), summed per stage; "
            f"total {runs['seconds'].sum():.0f} s:\n\n" + _md(table, floatfmt=".1f") + extra)


def _versions(exp: Experiment) -> str:
    from importlib import metadata

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    metrics = [read_json(Path(run) / RESULTS_DIR / RUN_DIR / "metrics.json") for run in exp.training.get("run_dir", [])]
    runs = [m.get("versions", {}) for m in metrics]
    commits = ", ".join(sorted({run.get("emofx-commit") or "not recorded" for run in runs}))
    recorded = {**(runs or [{}])[0], "emofx-commit": commits}
    now = {"emofx-commit": source_revision() or "not a git checkout", "python": platform.python_version(),
           **{name: installed(name) for name in LIBRARIES}}
    rows = [{"library": name, "report": version, "training runs": recorded.get(name, "")}
            for name, version in now.items()]
    width = cpu_vector_width()
    machine = f"Machine of the report: {platform.platform()}, {os.cpu_count()} CPUs{f' ({width})' if width else ''}."
    if metrics:  # a CPU of another vector width trains the same seeds to other numbers
        devices = ", ".join(sorted({m.get("device") or "not recorded" for m in metrics}))
        machine += f" Training runs' devices: {devices} (a CPU of another vector width trains the seeds otherwise)."
    return _md(pd.DataFrame(rows)) + "\n\n" + machine


# ----------------------------------------------------------------------------- writing


def write_report(experiment_dir: str | os.PathLike, out: str | os.PathLike, *, faces: bool = True,
                 beside: str | os.PathLike | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and ``figures/`` for an experiment folder; returns the two reports.

    An earlier report's ``figures/`` is replaced whole (kept aside until the new report is written,
    and put back if writing fails), so no figure of it stays behind: with ``faces=False`` no face
    figure of an earlier run with faces survives into a folder that gets published. A ``figures/``
    holding files no report drew (by its manifest) is refused: they would be lost with it."""
    experiment_dir, out = Path(experiment_dir), Path(out)
    exp = Experiment(experiment_dir)
    other = Experiment(Path(beside)) if beside is not None else None
    figures, previous = out / FIGURES_DIR, out / f".{FIGURES_DIR}.previous"
    if figures.exists() and not figures.is_dir():
        raise FileExistsError(f"{figures} exists and is not a folder: the report writes its figures there; move it "
                              "or choose another --out")
    if foreign := foreign_files(figures):
        shown = first_few(foreign)
        raise FileExistsError(f"{figures} holds files no emofx report drew ({shown}); a report replaces that folder "
                              "whole, so move them elsewhere or choose another --out")
    shutil.rmtree(previous, ignore_errors=True)
    if figures.exists():
        figures.rename(previous)
    try:
        reports = _write_report(exp, other, out, faces)
    except BaseException:
        shutil.rmtree(figures, ignore_errors=True)
        if previous.exists():
            previous.rename(figures)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    return reports


def _write_report(exp: Experiment, other: Experiment | None, out: Path, faces: bool) -> list[Path]:
    experiment_dir = exp.directory
    regenerate(experiment_dir, out / FIGURES_DIR, faces=faces)
    bodies = [_datasets(exp), _models(exp), _accuracy(exp, out), _chance(exp),
              (_table_file(out, "table4_misclassification") + "\n\n" + _figure(out, "table4_misclassification",
                                                                                "% misclassified per class")),
              _saliency(exp, out, faces), _modification(exp, out, faces), _h1(exp, out), _transfer(exp, out),
              _h2(exp, out), _filters(exp), _cka(exp, out), _human(exp), _conclusions(exp), _wall_time(exp),
              _versions(exp)]
    title = (f"# {experiment_dir.name}: report\n\nFrom the recorded runs in `{experiment_dir}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nothing retrained). What else differs between "
             "the cultures than culture: see *What the numbers say*." + _left_out(exp))
    sections = [f"## {heading}\n\n{body.strip() or '_(nothing recorded)_'}" for heading, body in zip(SECTIONS, bodies)]
    if other is not None:
        sections.append(f"## Beside {other.directory.name}\n\n{beside_section(exp, other)}")
    text = "\n\n".join([title, *sections]) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MD).write_text(text)
    (out / REPORT_HTML).write_text(markdown_to_html(text, out, title=f"{experiment_dir.name}: report"))
    return [out / REPORT_MD, out / REPORT_HTML]


def _left_out(exp: Experiment) -> str:
    """A warning under the title where runs are missing from every table and figure (failed, unreadable, or no
    longer made by the experiment file)."""
    missing = exp.runs[exp.runs["status"] != "ok"]
    if missing.empty:
        return ""
    named = ", ".join(f"{row.notebook}/{row.run} ({row.status})" for row in missing.itertuples())
    again = ("" if (missing["status"] == NOT_PLANNED).all() else
             " `emofx batch` with the experiment's configuration runs the failed or unreadable ones again.")
    unplanned = (" Runs not in plan are not made by the experiment file's current configuration." if
                 (missing["status"] == NOT_PLANNED).any() else "")
    return (f"\n\n**{len(missing)} of {len(exp.runs)} recorded runs are left out of every table and figure:** "
            f"{named}.{again}{unplanned}")


def results_exist(out: Path) -> bool:
    """Whether ``out`` already holds a report (the CLI refuses to write over one without --overwrite)."""
    return (out / REPORT_MD).exists() or (out / REPORT_HTML).exists()

