"""Every notebook executed by papermill (through emofx batch) with tiny parameters on synthetic
data, its results files checked, then `emofx figures` on the recorded runs; and the notebooks in
git carry no outputs."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.pipeline import batch, experiments, figures, results
from emofx.study.run_tables import test_error_summary as error_summary  # (not collected as a test)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY_MODEL = {"widths": [8, 16, 16], "dense_units": 32}
# 00 and 02 train on same-sized data, so their kernels share compiled programs through the JAX cache.
TINY_TRAINING = {"n_per_class": 15, "split": "random", "epochs": 2, **TINY_MODEL}
CULTURES = ["eyes", "mouth"]


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """All six notebooks run once as one experiment (02 for 2 cultures x 2 trials, then 03-05 on them)."""
    root = tmp_path_factory.mktemp("notebooks")
    sweeps = (
        experiments.Sweep(NOTEBOOKS / "02_train_culture.ipynb", {"culture": CULTURES, "trial": [0, 1]},
                          {**TINY_TRAINING, "patience": 0}),
        experiments.Sweep(NOTEBOOKS / "03_saliency.ipynb", {"culture": ["eyes"]}, {"per_class": 2}),
        experiments.Sweep(NOTEBOOKS / "04_emotion_modification.ipynb", {"culture": ["eyes"]}, {"steps": 3}),
        experiments.Sweep(NOTEBOOKS / "05_compare_cultures.ipynb", {},
                          {"cultures": CULTURES, "n_permutations": 99, "n_boot": 50, "cka_images": 20}),
        experiments.Sweep(NOTEBOOKS / "00_quickstart.ipynb", {}, TINY_TRAINING),
        experiments.Sweep(NOTEBOOKS / "01_benchmark.ipynb", {},
                          {"dataset": "synthetic", "n_per_class": 8, "folds": 2, "epochs": 1, **TINY_MODEL}),
    )
    experiment = experiments.Experiment("tiny", sweeps, root / "papermill_runs")
    # One worker: the first run fills the compilation cache (the suite's, conftest), the others reuse it (the
    # process pool itself is tested in test_batch.py).
    summaries = batch.run_experiment(experiment, progress=False)
    return experiment.directory, summaries


def results_of(experiment_dir: Path, notebook: str, run: str = "default") -> Path:
    return experiment_dir / notebook / run / results.RESULTS_DIR


def test_every_notebook_ran_to_the_end(executed):
    experiment_dir, summaries = executed
    for summary in summaries:
        assert summary.count("ok") == len(summary.outcomes), summary.describe()
    runs = results.read_runs(experiment_dir)
    assert len(runs) == 9 and set(runs["status"]) == {"ok"}
    executed_02 = nbformat.read(
        experiment_dir / "02_train_culture" / "culture=eyes__trial=0" / "02_train_culture.ipynb", 4)
    outputs = [o for cell in executed_02.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the confusion matrix is shown
    # Progress bars as text (emofx batch's kernels: emofx.data.progress): the saved notebook keeps the last frame.
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert re.search(r"train: 100%\|[^\n]*\| (\d+)/\1 ", streams), streams[-500:]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


def test_train_culture_records_a_run_per_culture_and_trial(executed):
    experiment_dir, _ = executed
    runs = results.read_runs(experiment_dir, "02_train_culture")
    assert sorted(zip(runs["culture"], runs["trial"])) == [("eyes", 0), ("eyes", 1), ("mouth", 0), ("mouth", 1)]
    assert runs["test_accuracy"].between(0, 1).all() and (runs["n_test"] > 0).all()
    for run_dir in runs["run_dir"]:
        run = Path(run_dir) / results.RESULTS_DIR / figures.RUN_DIR
        assert all((run / name).exists() for name in ("metrics.json", "history.csv", "split.json", "checkpoint"))
        assert json.loads((run / "metrics.json").read_text())["config"]["train"]["patience"] == 0  # the parameter
    trained = figures.training_runs(experiment_dir)
    assert trained["eyes"][0].split.test.tolist() != trained["eyes"][1].split.test.tolist()  # trials differ


def test_saliency_modification_and_comparison_results(executed):
    experiment_dir, _ = executed
    saliency = figures.load_saliency(results_of(experiment_dir, "03_saliency", "culture=eyes") / figures.SALIENCY_FILE)
    assert saliency["maps"].shape == saliency["images"].shape and np.isfinite(saliency["maps"]).all()
    shares = pd.read_csv(results_of(experiment_dir, "03_saliency", "culture=eyes") / figures.REGION_SHARES_FILE)
    regions = ["eyes", "brows", "nose", "mouth", "rest"]
    assert list(shares.columns) == ["emotion", *regions, "region_method"]
    assert set(shares["region_method"]) == {"truth"}  # synthetic faces carry their true regions
    assert np.allclose(shares[regions].sum(axis=1), 1.0)

    result, sources = figures.load_modification(
        results_of(experiment_dir, "04_emotion_modification", "culture=eyes") / figures.MODIFICATION_FILE)
    assert result.images.shape[:2] == (4, 5) and sources == ["happy", "surprised", "happy", "happy", "neutral"]
    assert np.allclose(result.probabilities.sum(axis=2), 1.0, atol=1e-4)
    assert result.images.min() >= 0 and result.images.max() <= 1

    comparison = results_of(experiment_dir, "05_compare_cultures") / figures.COMPARISON_DIR
    summary = json.loads((comparison / "summary.json").read_text())
    assert summary["cultures"] == {"a": "eyes", "b": "mouth"} and 0 < summary["accuracy"]["p_value"] <= 1
    region_tests = pd.read_csv(comparison / "region_tests.csv")
    assert set(region_tests["region"]) == set(regions) and region_tests["p_adjusted"].between(0, 1).all()
    assert set(saliency["classes"]) <= set(region_tests["emotion"])  # a test per emotion and region
    confusions = pd.read_csv(comparison / "confusion_tests.csv")
    assert (confusions["true"] != confusions["predicted"]).all() and confusions["p_adjusted"].between(0, 1).all()
    recorded = json.loads((comparison.parent / results.RESULTS_FILE).read_text())
    assert recorded["confusions_significant"] == int((confusions["p_adjusted"] < 0.05).sum())
    transfer = pd.read_csv(comparison / "transfer.csv")
    assert {(a, b) for a, b in zip(transfer["train_culture"], transfer["test_culture"])} == {
        (a, b) for a in CULTURES for b in CULTURES}


def test_quickstart_and_benchmark_results(executed):
    experiment_dir, _ = executed
    quick_dir = results_of(experiment_dir, "00_quickstart")
    quick = json.loads((quick_dir / results.RESULTS_FILE).read_text())
    run = json.loads((quick_dir / figures.RUN_DIR / "metrics.json").read_text())
    assert quick["test_accuracy"] == pytest.approx(run["test_accuracy"]) and quick["mean_abs_change"] > 0
    bench = results_of(experiment_dir, "01_benchmark")
    assert sorted(p.name for p in (bench / figures.FOLDS_DIR).iterdir()) == ["fold-0", "fold-1"]
    folds = json.loads((bench / results.RESULTS_FILE).read_text())
    errors = [1 - json.loads((bench / figures.FOLDS_DIR / f"fold-{k}" / "metrics.json").read_text())["test_accuracy"]
              for k in range(2)]
    assert folds["folds"] == 2 and folds["test_error_mean"] == pytest.approx(np.mean(errors))
    assert folds["model"] == ("a SHRUNKEN model, not the paper's (conv widths 8/16/16, 32 dense units; "
                              "asked for explicitly)")
    assert folds["test_error_std"] == pytest.approx(np.std(errors, ddof=1))  # as every table of emofx
    one_fold = error_summary([SimpleNamespace(metrics={"test_accuracy": 0.75})])
    assert one_fold == {"test_error_mean": pytest.approx(0.25), "test_error_std": None}  # no spread from one fold


def test_figures_regenerates_every_figure_and_table_from_the_runs(executed, tmp_path, capsys):
    experiment_dir, _ = executed
    out = tmp_path / "figures"
    assert main(["figures", str(experiment_dir), "--out", str(out)]) == 0
    assert "failed" not in capsys.readouterr().out
    figure_names = ["fig4_learning_curves", "table2_confusion_eyes", "table2_confusion_mouth",
                    "table4_misclassification", "fig5_saliency_eyes", "fig7_modification", "fig_h1_accuracy",
                    "fig_h2_regions", "fig_h2_pixel_difference", "fig_transfer_matrix", "fig_cka"]
    table_names = ["table2_confusion_eyes", "table2_confusion_mouth", "table4_misclassification",
                   "table_saliency_regions", "table_h1_accuracy", "table_h2_region_tests", "table_transfer",
                   "table_cka"]
    missing = [f"{n}.{s}" for n in figure_names for s in ("png", "pdf") if not (out / f"{n}.{s}").is_file()]
    missing += [f"{n}.{s}" for n in table_names for s in ("csv", "md") if not (out / f"{n}.{s}").is_file()]
    assert missing == []
    table2 = pd.read_csv(out / "table2_confusion_eyes.csv", index_col=0)
    n_test = results.read_runs(experiment_dir, "02_train_culture").query("culture == 'eyes'")["n_test"]
    assert table2.loc["total", "total"] == pytest.approx(n_test.mean())


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_in_git_carry_no_outputs_and_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), f"{path.name} has outputs"
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    declared = experiments.notebook_parameters(path)  # raises when papermill cannot read a parameter
    assert "output_dir" in declared
    assigned = {t.id for node in ast.parse(tagged[0].source).body for t in node.targets}
    assert assigned == set(declared)
    undocumented = [line for line in tagged[0].source.splitlines() if "=" in line and "#" not in line]
    assert not undocumented, f"{path.name}: parameters without a comment saying what they do: {undocumented}"


def test_notebook_list_is_complete():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [
        "00_quickstart", "01_benchmark", "02_train_culture", "03_saliency", "04_emotion_modification",
        "05_compare_cultures", "06_annotate"]
