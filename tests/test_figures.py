"""emofx figures on hand-made records: tables from known confusions, figure files, records, errors.

The end-to-end path (notebooks executed by papermill, then `emofx figures`) is in test_notebooks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.data.splits import Split
from emofx.data.synthetic import make_synthetic
from emofx.explain.modification import ModificationResult, modification_examples
from emofx.pipeline import figure_output, figures
from emofx.pipeline.experiments import parameter_hash, parameter_set_name
from emofx.data.paths import RecordError
from emofx.pipeline.results import RESULTS_DIR, STATUS_FILE
from emofx.study.runs import RunError, load_run

CLASSES = ["angry", "happy", "sad"]
# Two trials per culture with known test confusions (rows true, columns predicted).
CONFUSIONS = {
    ("eyes", 0): [[2, 1, 0], [0, 3, 0], [1, 0, 1]],
    ("eyes", 1): [[3, 0, 0], [1, 2, 0], [0, 0, 2]],
    ("mouth", 0): [[1, 1, 1], [0, 3, 0], [0, 1, 1]],
    ("mouth", 1): [[1, 2, 0], [0, 3, 0], [0, 0, 2]],
}


def record_run(experiment: Path, notebook: str, parameters: dict, status: str = "ok") -> Path:
    """A run folder as emofx batch leaves it: results/ and a status.json completion marker."""
    run_dir = experiment / notebook / parameter_set_name(parameters)
    (run_dir / RESULTS_DIR).mkdir(parents=True)
    (run_dir / STATUS_FILE).write_text(json.dumps({
        "status": status, "parameters": parameters, "parameter_hash": parameter_hash(parameters), "seconds": 1.0,
        "error": None if status == "ok" else {"type": "ValueError", "message": "boom"},
    }))
    return run_dir / RESULTS_DIR


def record_training(results: Path, confusion: list[list[int]], trial: int) -> None:
    """A run directory's metrics.json, history.csv and split.json (no checkpoint needed for tables)."""
    run = results / figures.RUN_DIR
    run.mkdir()
    counts = np.asarray(confusion)
    errors = {c: 100 * (1 - counts[i, i] / counts[i].sum()) for i, c in enumerate(CLASSES)}
    errors["total"] = 100 * (1 - np.trace(counts) / counts.sum())
    (run / "metrics.json").write_text(json.dumps({"classes": CLASSES, "confusion": confusion,
                                                  "per_class_error": errors}))
    pd.DataFrame({"step": [0, 10, 20], "epoch": [0, 1, 2], "train_error": [np.nan, 0.5 - 0.1 * trial, 0.3],
                  "val_error": [0.8, 0.6, 0.4 + 0.1 * trial]}).to_csv(run / "history.csv", index=False)
    split = Split(train=np.arange(5), val=np.arange(5, 7), test=np.arange(7, 10), kind="random", seed=0, trial=trial,
                  fractions=(0.5, 0.2, 0.3), n_images=10)
    (run / "split.json").write_text(json.dumps(split.to_dict()))


@pytest.fixture()
def experiment(tmp_path) -> Path:
    root = tmp_path / "papermill_runs" / "exp"
    for (culture, trial), confusion in CONFUSIONS.items():
        record_training(record_run(root, figures.TRAINING, {"culture": culture, "trial": trial}), confusion, trial)
    record_run(root, figures.TRAINING, {"culture": "klingon", "trial": 0}, status="failed")
    return root


def test_tables_2_to_4_average_recorded_confusions_over_trials(experiment):
    runs = figures.training_runs(experiment)
    assert sorted(runs) == ["eyes", "mouth"] and [len(r) for r in runs.values()] == [2, 2]  # the failed run is left out
    tables = figures.culture_tables(runs)
    mean, std = tables["confusion_eyes_mean"], tables["confusion_eyes_std"]
    assert mean.loc["angry", "angry"] == 2.5 and mean.loc["angry", "happy"] == 0.5
    assert mean.loc["total", "total"] == 8.0 and mean.loc["happy", "total"] == 3.0
    assert std.loc["angry", "angry"] == pytest.approx(np.std([2, 3], ddof=1))
    miss = tables["misclassification_mean"]
    assert list(miss.columns) == [*CLASSES, "total"] and list(miss.index) == ["eyes", "mouth"]
    assert miss.loc["eyes", "sad"] == pytest.approx((50 + 0) / 2)
    assert miss.loc["mouth", "total"] == pytest.approx((37.5 + 25) / 2)
    assert tables["misclassification_std"].loc["mouth", "total"] == pytest.approx(np.std([37.5, 25], ddof=1))


def test_regenerate_writes_stable_names_and_skips_what_was_not_recorded(experiment, tmp_path):
    out = tmp_path / "figures"
    report = figures.regenerate(experiment, out).set_index("source")
    assert report.loc[figures.TRAINING, "status"] == "written"
    assert report.loc[figures.SALIENCY, "status"] == "skipped"
    for stem in ("fig4_learning_curves", "table2_confusion_eyes", "table2_confusion_mouth", "table4_misclassification"):
        for suffix in ("png", "pdf"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 1000
    table2 = pd.read_csv(out / "table2_confusion_eyes.csv", index_col=0)
    assert table2.loc["total", "total"] == 8.0 and table2.loc["sad", "sad"] == 1.5
    assert "2.5 ± 0.7" in (out / "table2_confusion_eyes.md").read_text()
    table4 = pd.read_csv(out / "table4_misclassification.csv", index_col="culture")
    assert table4.loc["mouth", "total"] == pytest.approx(31.25)


def test_learning_curves_name_the_model_the_runs_trained(experiment):
    """Figure 4 says which model made it: a shrunken one is never shown as the paper's."""
    for culture, widths in (("eyes", [64, 128, 256]), ("mouth", [32, 64, 128])):
        for path in (experiment / figures.TRAINING).glob(f"culture={culture}__*/results/run/metrics.json"):
            metrics = json.loads(path.read_text())
            path.write_text(json.dumps({**metrics, "config": {"model": {"widths": widths, "dense_units": 300}}}))
    fig = figures._learning_curve_figure(figures.training_runs(experiment), "trials")
    titles = [" ".join(ax.get_title().split()) for ax in fig.axes if ax.get_title()]  # wrapped to the panel
    assert titles == ["eyes: mean ± std over 2 trials the paper's model (conv widths 64/128/256, 300 dense units)",
                      "mouth: mean ± std over 2 trials a SHRUNKEN model, not the paper's (conv widths 32/64/128, "
                      "300 dense units)"]


def test_saliency_and_modification_records_round_trip_into_figures_5_and_7(experiment, tmp_path):
    faces = make_synthetic("eyes", n_per_class=3, seed=0, classes=["angry", "happy", "sad", "neutral"])
    maps = np.random.default_rng(0).normal(size=faces.images.shape).astype(np.float32)
    saliency = record_run(experiment, figures.SALIENCY, {"culture": "eyes"})
    path = figures.save_saliency(saliency, faces.images, maps, faces.labels, faces.classes, "eyes", "guided")
    record = figures.load_saliency(path)
    assert np.array_equal(record["maps"], maps) and record["classes"] == faces.classes and record["culture"] == "eyes"
    shares = pd.DataFrame({"emotion": faces.label_names, "eyes": 0.5, "mouth": 0.25, "rest": 0.25})
    shares.to_csv(saliency / figures.REGION_SHARES_FILE, index=False)

    images, targets, sources = modification_examples(faces, [["happy", "happy"], ["angry", "sad"]], seed=1)
    assert sources == ["happy", "angry"] and list(targets) == [faces.classes.index("happy"), faces.classes.index("sad")]
    assert faces.classes[faces.labels[np.flatnonzero((faces.images == images[1]).all(axis=(1, 2)))[0]]] == "angry"
    steps = np.linspace(0, 1, 4, dtype=np.float32)[:, None, None, None] * np.ones((4, 2, 48, 48), np.float32)
    probabilities = np.full((4, 2, 4), 1 / 4, np.float32)
    result = ModificationResult(images=steps, probabilities=probabilities, targets=targets, classes=faces.classes)
    modification = record_run(experiment, figures.MODIFICATION, {"culture": "eyes"})
    loaded, names = figures.load_modification(figures.save_modification(modification, result, sources))
    assert names == sources and np.allclose(loaded.images, result.images, atol=1e-3)
    assert np.array_equal(loaded.targets, targets) and loaded.classes == faces.classes

    out = tmp_path / "figures"
    report = figures.regenerate(experiment, out).set_index("source")
    assert (report.loc[figures.SALIENCY, "status"] == "written"
            and report.loc[figures.MODIFICATION, "status"] == "written")
    for stem in ("fig5_saliency_eyes", "fig7_modification"):
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()
    regions = pd.read_csv(out / "table_saliency_regions.csv")
    assert list(regions.columns) == ["culture", "method", "run", "emotion", "eyes", "mouth", "rest"]
    assert len(regions) == 4 and set(regions["method"]) == {"guided"}
    assert list(regions["emotion"]) == ["angry", "happy", "sad", "neutral"]  # the vocabulary's order, not alphabetical

    # a second saliency run of the same culture (another method) gets its own grid and rows
    other = record_run(experiment, figures.SALIENCY, {"culture": "eyes", "method": "gradient"})
    figures.save_saliency(other, faces.images, -maps, faces.labels, faces.classes, "eyes", "gradient")
    shares.assign(eyes=0.9, rest=-0.15).to_csv(other / figures.REGION_SHARES_FILE, index=False)
    figures.regenerate(experiment, out)  # regenerated in place: the lone run's grid, now named by run, goes
    grids = sorted(p.name for p in out.glob("fig5_saliency_*.png"))
    assert grids == ["fig5_saliency_eyes_culture=eyes.png", "fig5_saliency_eyes_culture=eyes__method=gradient.png"]
    assert not (out / "fig5_saliency_eyes.pdf").exists()
    regions = pd.read_csv(out / "table_saliency_regions.csv")
    assert regions.groupby("method")["eyes"].mean().to_dict() == {"gradient": 0.9, "guided": 0.5}


def test_figures_of_another_experiment_are_replaced_only_when_asked(experiment, tmp_path, capsys):
    out = tmp_path / "figures"
    figures.regenerate(experiment, out)
    manifest = json.loads((out / figure_output.MANIFEST).read_text())
    assert manifest["experiment"] == "exp" and "table2_confusion_eyes.csv" in manifest["files"]
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != figure_output.MANIFEST)
    (out / "notes.txt").write_text("mine")

    other = tmp_path / "papermill_runs" / "other"
    confusion = [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    record_training(record_run(other, figures.TRAINING, {"culture": "lips", "trial": 0}), confusion, 0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="figures drawn from experiment 'exp'.*--overwrite"):
        figures.regenerate(other, out)
    assert main(["figures", str(other), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, nothing lost

    assert main(["figures", str(other), "--out", str(out), "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "table2_confusion_lips.csv" in names and "table2_confusion_eyes.csv" not in names  # no figure of exp stays
    assert (out / "notes.txt").read_text() == "mine"  # a file that is not ours is left alone
    assert json.loads((out / figure_output.MANIFEST).read_text())["experiment"] == "other"

    unknown = tmp_path / "unknown"  # figures without a manifest (drawn by hand, or by an older emofx)
    unknown.mkdir()
    (unknown / "table_h1_accuracy.csv").write_text("metric\n")
    with pytest.raises(FileExistsError, match="figures of unknown origin \\(table_h1_accuracy.csv\\)"):
        figures.regenerate(experiment, unknown)
    figures.regenerate(experiment, unknown, overwrite=True)  # written over by name only: not known to be ours
    assert (unknown / "table_h1_accuracy.csv").read_text() == "metric\n"
    assert (unknown / "table2_confusion_eyes.csv").exists()
    (out / figure_output.MANIFEST).write_text("{not json")
    with pytest.raises(RecordError, match="figures.json is not readable JSON.*not the manifest emofx figures writes"):
        figures.regenerate(other, out)
    (out / figure_output.MANIFEST).write_text("[]")  # JSON, but not the manifest's object
    with pytest.raises(RecordError, match="figures.json holds an array"):
        figures.regenerate(other, out)


def test_an_experiment_of_the_same_name_elsewhere_is_another_experiment(experiment, tmp_path):
    """The manifest names the experiment's folder as seen from the figures' folder: an experiment of the same name
    in another place does not pass for it (it would otherwise remove the figures it does not draw), while the
    folder itself, however it is named on the command line, still does."""
    out = tmp_path / "figures"
    figures.regenerate(experiment, out)
    assert json.loads((out / figure_output.MANIFEST).read_text())["from"] == "../papermill_runs/exp"
    namesake = tmp_path / "elsewhere" / experiment.name
    record_training(record_run(namesake, figures.TRAINING, {"culture": "lips", "trial": 0}), CONFUSIONS["eyes", 0], 0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="figures drawn from experiment 'exp' at ../papermill_runs/exp"):
        figures.regenerate(namesake, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    figures.regenerate(tmp_path / "papermill_runs" / ".." / "papermill_runs" / "exp", out)  # the same folder
    manifest = {"experiment": "exp", "files": json.loads((out / figure_output.MANIFEST).read_text())["files"]}
    (out / figure_output.MANIFEST).write_text(json.dumps(manifest))  # written by an emofx that kept the name only
    figures.regenerate(experiment, out)
    assert json.loads((out / figure_output.MANIFEST).read_text())["from"] == "../papermill_runs/exp"


def test_damaged_records_are_named_and_a_run_left_out_is_said(experiment, tmp_path, capsys, monkeypatch):
    """A damaged status.json leaves its run out with a warning, never silently (the averages would change
    unannounced; the report's own line: tests/test_study.py); results.json or metrics.json holding JSON that is
    not an object is an error naming the file, not an AttributeError."""
    from emofx.pipeline.results import UNREADABLE, read_runs

    damaged = experiment / figures.TRAINING / parameter_set_name({"culture": "eyes", "trial": 1})
    (damaged / STATUS_FILE).write_text("{")
    with pytest.warns(UserWarning, match=r"status.json is not readable JSON.*02_train_culture/culture=eyes__trial=1"):
        runs = read_runs(experiment)
    assert runs.set_index("run").loc[damaged.name, "status"] == UNREADABLE
    assert main(["figures", str(experiment), "--out", str(tmp_path / "figures")]) == 0
    assert capsys.readouterr().err.count("culture=eyes__trial=1 is left out") == 1  # each step reads it; said once
    (damaged / STATUS_FILE).write_text(json.dumps({"status": "ok", "parameters": {"culture": "eyes", "trial": 1}}))

    results_file = experiment / figures.TRAINING / parameter_set_name({"culture": "eyes", "trial": 0}) / RESULTS_DIR
    (results_file / "results.json").write_text("[]")
    with pytest.raises(RecordError, match=r"eyes__trial=0/results/results.json holds an array.*emofx batch"):
        read_runs(experiment)
    (results_file / "results.json").unlink()
    metrics = damaged / RESULTS_DIR / figures.RUN_DIR / "metrics.json"
    for record, problem in (([], "holds an array"), ({"classes": CLASSES, "data": "x"}, "data is not a JSON object")):
        metrics.write_text(json.dumps(record))
        with pytest.raises(RunError, match=rf"corrupt run file \(.*metrics.json:? {problem}"):
            load_run(metrics.parent)
        drawn = figures.regenerate(experiment, tmp_path / f"figures_{len(problem)}")  # that group fails, named
        assert drawn.query("status == 'failed'")["files"].str.contains(f"RunError: .*metrics.json:? {problem}").any()
    from emofx.data.paths import read_json_record
    from emofx.pipeline import report

    metrics.write_text('{"classes": ["an')  # a record cut short: the report says which run to do again, and how
    monkeypatch.setattr(report, "write_report", lambda *args, **kwargs: read_json_record(metrics))  # as it reads
    capsys.readouterr()
    assert main(["report", str(experiment), "--out", str(tmp_path / "report"), "--no-faces"]) == 2
    assert ("metrics.json is not readable JSON" in (err := capsys.readouterr().err) and "the run that wrote it is "
            "damaged: run it again (delete the run's status.json" in err)
    manifest = tmp_path / "report" / "figures" / "figures.json"  # a damaged file of the report's own: no such advice
    monkeypatch.setattr(report, "write_report", lambda *args, **kwargs: read_json_record(manifest))
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{")
    assert main(["report", str(experiment), "--out", str(tmp_path / "report"), "--no-faces"]) == 2
    assert "figures.json is not readable JSON" in (err := capsys.readouterr().err) and "run it again" not in err


def test_bad_requests_are_clear_errors(tmp_path, experiment, capsys):
    faces = make_synthetic("eyes", n_per_class=2, seed=0, classes=["angry", "happy"])
    with pytest.raises(ValueError, match="'sad' is not in the dataset's classes"):
        modification_examples(faces, [["happy", "sad"]])
    with pytest.raises(ValueError, match=r"\[source, target\]"):
        modification_examples(faces, [["happy"]])
    runs = figures.training_runs(experiment)
    with pytest.raises(figures.FiguresError, match="no completed training runs of culture 'klingon'"):
        figures.culture_runs(runs, "klingon")
    # notebooks 03 and 04 explain one culture's run, by number
    assert figures.chosen_run(runs, "eyes", 1) is runs["eyes"][1]
    with pytest.raises(figures.FiguresError, match="no completed training runs of culture 'klingon'"):
        figures.chosen_run(runs, "klingon", 0)
    for index in (len(runs["eyes"]), -1, "0", 1.0, True):
        with pytest.raises(figures.FiguresError, match=rf"trial_index must be a whole number from 0 to "
                                                       rf"{len(runs['eyes']) - 1} \(eyes has"):
            figures.chosen_run(runs, "eyes", index)
    # notebook 05 compares two cultures, checked before any work; more go a pair at a time
    assert figures.compared_pair(["eyes", "mouth"], runs) == ("eyes", "mouth")
    for cultures in (["eyes", "mouth", "universal"], ["eyes"], ["eyes", "eyes"], "eyes"):
        with pytest.raises(figures.FiguresError, match=r"two different cultures.*once per pair"):
            figures.compared_pair(cultures, runs)
    with pytest.raises(figures.FiguresError, match="culture 'klingon'; cultures with runs: eyes, mouth"):
        figures.compared_pair(["eyes", "klingon"], runs)
    empty = tmp_path / "papermill_runs" / "empty"
    empty.mkdir(parents=True)
    with pytest.raises(figures.FiguresError, match="no completed notebook runs"):
        figures.regenerate(empty, tmp_path / "out")
    assert main(["figures", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "run `emofx batch` first" in capsys.readouterr().err
    assert main(["figures", str(experiment), "--out", str(tmp_path / "cli")]) == 0
    assert "written  table2_confusion_*" in capsys.readouterr().out


def test_comparison_figures_with_jitter_are_the_same_for_the_same_numbers(tmp_path):
    """Seaborn jitters strip plots from NumPy's global generator: the same numbers must still draw the same
    file, and the caller's global generator must be left as it was."""
    from emofx.plotting.comparison import accuracy_by_culture, cka_bars

    trials = pd.DataFrame({"train_culture": ["a"] * 5 + ["b"] * 5, "test_culture": ["a"] * 5 + ["b"] * 5,
                           "accuracy": [0.8, 0.82, 0.85, 0.79, 0.81, 0.6, 0.62, 0.58, 0.61, 0.6]})
    test = {"diff": 0.2, "ci_low": 0.15, "ci_high": 0.25, "p_value": 0.008}
    kinds = ["within_a"] * 3 + ["within_b"] * 3 + ["between"] * 9
    cka = pd.DataFrame({"kind": kinds, "cka": np.linspace(0.1, 0.9, 15)})
    drawn = []
    for seed in (1, 2):
        np.random.seed(seed)  # another global state each time
        for name, fig in (("h1", accuracy_by_culture(trials, test)), ("cka", cka_bars(cka))):
            fig.savefig(tmp_path / f"{name}{seed}.png")
        assert np.random.randint(1 << 30) == np.random.RandomState(seed).randint(1 << 30)  # state put back
        drawn.append([(tmp_path / f"{name}{seed}.png").read_bytes() for name in ("h1", "cka")])
    assert drawn[0] == drawn[1]


def test_figures_name_what_they_show_and_keep_errors_in_range():
    from emofx.plotting.comparison import cka_bars
    from emofx.plotting.curves import learning_curves
    from emofx.plotting.saliency import modification_panel, saliency_grid

    cka = pd.DataFrame({"kind": ["within_a", "within_b", "between", "between"], "cka": [0.9, 0.8, 0.5, 0.6]})
    labels = [tick.get_text() for tick in cka_bars(cka, ("eyes", "mouth")).axes[0].get_xticklabels()]
    assert labels == ["within eyes", "within mouth", "between"]

    images = np.zeros((4, 8, 8), np.uint8)
    grid = saliency_grid(images, np.ones((4, 8, 8)), np.array([0, 0, 1, 1]), ["happy", "sad"],
                         culture="eyes", method="integrated-gradients", per_class=2)
    title = "Salient features in eyes faces: integrated gradients from each image's class node"
    assert grid._suptitle.get_text() == title
    for maps, labels, problem in ((np.ones((2, 8, 8)), np.array([0, 0, 1, 1]), "4 images, 2 maps and 4 labels"),
                                  (np.ones((4, 8, 8)), np.array(["happy"] * 4), "labels must be class indices")):
        with pytest.raises(ValueError, match=problem):
            saliency_grid(images, maps, labels, ["happy", "sad"])
    steps = np.zeros((3, 2, 8, 8), np.float32)  # two images, two steps
    result = ModificationResult(images=steps, probabilities=np.full((3, 2, 2), 0.5, np.float32),
                                targets=np.array([0, 1]), classes=("happy", "sad"))
    assert len(modification_panel(result, source_names=["sad", "happy"]).axes) == 2 * 3
    for wrong, problem in ((dict(source_names=["sad"]), "1 source names for the result's 2 images"),
                           (dict(images=[5]), r"images \[5\]: the result holds images 0 to 1")):
        with pytest.raises(ValueError, match=problem):
            modification_panel(result, **wrong)

    # two folds whose errors differ a lot: mean ± std would reach past 1 and below 0
    histories = [pd.DataFrame({"step": [1, 2], "train_error": [1.0, 0.0], "val_error": [0.95, 0.05]}),
                 pd.DataFrame({"step": [1, 2], "train_error": [0.5, 0.5], "val_error": [0.2, 0.7]})]
    ax = learning_curves(histories).axes[0]
    bands = np.concatenate([np.concatenate([path.vertices for path in band.get_paths()]) for band in ax.collections])
    assert bands[:, 1].min() >= 0.0 and bands[:, 1].max() <= 1.0
    assert bands[:, 1].max() == pytest.approx(1.0)  # cut at 1, not shrunk

    # a fold that stopped early: the mean covers the steps every fold reached, then each fold goes on alone
    stopped = [pd.DataFrame({"step": [1, 2, 3, 4], "train_error": [0.6, 0.5, 0.4, 0.3], "val_error": [0.7] * 4}),
               pd.DataFrame({"step": [1, 2], "train_error": [0.8, 0.9], "val_error": [0.9, 0.9]})]
    ax = learning_curves(stopped, columns=("train_error",)).axes[0]
    mean, alone = ax.lines[0], ax.lines[1]
    assert mean.get_xdata().tolist() == [1, 2] and mean.get_ydata().tolist() == pytest.approx([0.7, 0.7])
    assert alone.get_xdata().tolist() == [2, 3, 4] and alone.get_ydata().tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert "a run stopped at step 2" in ax.get_legend_handles_labels()[1][-1]

    # two complete runs of other training sizes validate at other steps: each is interpolated between its own
    # validations, none is said to have stopped, and the longer one's last point is drawn
    apart = [pd.DataFrame({"step": [0, 10, 20, 30], "epoch": [0.0, 1, 2, 3], "train_error": [0.9, 0.6, 0.4, 0.3]}),
             pd.DataFrame({"step": [0, 11, 22, 33], "epoch": [0.0, 1, 2, 3], "train_error": [0.9, 0.5, 0.3, 0.2]})]
    ax = learning_curves(apart, columns=("train_error",)).axes[0]
    mean, alone = ax.lines[0], ax.lines[1:]
    assert mean.get_xdata().tolist() == [0, 10, 11, 20, 22, 30]
    second_at_10 = 0.9 + (0.5 - 0.9) * 10 / 11
    assert mean.get_ydata()[1] == pytest.approx((0.6 + second_at_10) / 2)
    assert [line.get_xdata().tolist() for line in alone] == [[22, 33]]
    assert not any("stopped" in label for label in ax.get_legend_handles_labels()[1])


def test_markdown_tables_keep_three_significant_digits_of_p_values():
    from emofx.pipeline.figures import markdown_table

    frame = pd.DataFrame({"emotion": ["happy", "sad"], "diff": [0.00049, 0.1234], "p_value": [0.0005, 0.01234],
                          "p_adjusted": [0.0005, float("nan")], "smallest_p": [0.00794, 0.00794]})
    lines = markdown_table(frame).splitlines()
    # the smallest p of 1999 permutations is 1/2000: not rounded up to 0.001 as the other numbers' .3f would
    assert lines[2].split("|")[2:6] == ["  0.000 ", " 0.0005    ", " 0.0005       ", " 0.00794      "]
    assert lines[3].split("|")[2:6] == ["  0.123 ", " 0.0123    ", "              ", " 0.00794      "]
    assert "0.0005" in markdown_table(frame.set_index("emotion"), index=True)


def test_a_comparison_of_other_trials_than_the_completed_training_runs_is_said(experiment, tmp_path):
    """A comparison made when a culture had three trials, drawn beside training tables of the two completed now:
    the figures warn that they describe other models, and say how to redo the comparison."""
    import warnings

    def trials(eyes: list[int]) -> pd.DataFrame:
        rows = [("eyes", t) for t in eyes] + [("mouth", t) for t in (0, 1)] + [("eyes", 9)]  # and a transfer row
        return pd.DataFrame({"train_culture": [c for c, _ in rows], "trial": [t for _, t in rows],
                             "test_culture": [c for c, _ in rows[:-1]] + ["mouth"]})

    record = tmp_path / "cmp" / RESULTS_DIR / figures.COMPARISON_DIR
    record.mkdir(parents=True)

    def compared(eyes: list[int], exclude_chance: bool = False) -> None:
        (record / "summary.json").write_text(json.dumps({"config": {"exclude_chance": exclude_chance}}))
        figures._warn_if_stale(experiment, tmp_path / "cmp", trials(eyes), ("eyes", "mouth"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compared([0, 1])  # as compared
        compared([1], exclude_chance=True)  # the comparison left trial 0 out as at chance: not stale
    with pytest.warns(UserWarning, match=r"cmp compared eyes's trials \[0, 1, 2\], but its completed 02_train_culture "
                                         r"runs \(collected\) are now trials \[0, 1\].*--only 05_compare_cultures"):
        compared([0, 1, 2])
    (record / "summary.json").write_text("{")  # unreadable: that group's own error, no warning from here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures._warn_if_stale(experiment, tmp_path / "cmp", trials([0, 1, 2]), ("eyes", "mouth"))


def test_training_runs_come_in_trial_order_not_run_name_order(tmp_path):
    root = tmp_path / "exp"
    for trial in (10, 2, 1):  # run names sort trial=10 before trial=2
        record_training(record_run(root, figures.TRAINING, {"culture": "eyes", "trial": trial}),
                        CONFUSIONS[("eyes", 0)], trial)
    runs = figures.training_runs(root)["eyes"]
    assert [run.split.trial for run in runs] == [1, 2, 10]
    assert figures.chosen_run({"eyes": runs}, "eyes", 1).split.trial == 2


def test_every_comparison_figure_has_one_name_everywhere():
    """The figures `emofx compare` may draw (and clears with --overwrite) are those `emofx figures` renames."""
    from emofx.plotting.comparison import FIGURE_NAMES

    assert set(FIGURE_NAMES) == set(figures.COMPARISON_FIGURES)


def test_a_class_a_culture_lacks_is_a_dash_not_nan_in_the_tables():
    mean = pd.DataFrame({"happy": [10.0, 20.0], "disgusted": [5.0, np.nan]}, index=["Swedish", "Taiwanese"])
    text = figures.mean_std_text(mean, mean / 10)
    assert text.loc["Taiwanese", "disgusted"] == "—" and text.loc["Swedish", "disgusted"] == "5.0 ± 0.5"



def test_class_examples_show_each_class_its_own_faces_at_their_true_brightness():
    from emofx.plotting.faces import class_examples

    faces = make_synthetic("eyes", n_per_class=2, seed=0, classes=["angry", "happy", "sad"])
    fig = class_examples(faces)
    assert [ax.get_title() for ax in fig.axes] == ["angry", "happy", "sad"]
    for ax, name in zip(fig.axes, faces.classes):
        shown = ax.get_images()[0]
        first = np.flatnonzero(faces.label_names == name)[0]
        assert np.array_equal(shown.get_array(), faces.images[first]) and shown.get_clim() == (0, 255)
    two = class_examples(faces.subset(np.array([0, 1, 2, 3, 4])), per_class=2, seed=3)  # sad has one face here
    counts = [len(ax.get_images()) for ax in two.axes]
    assert len(two.axes) == 6 and sum(counts) == 5
    with pytest.raises(ValueError, match="per_class must be at least 1; got 0"):
        class_examples(faces, per_class=0)
