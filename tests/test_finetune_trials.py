"""benchmarks.finetune_trials: trial rows of arms, ensembles of arms, and their mean ± std."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmarks import finetune_trials
from emofx.cli import main
from emofx.data.synthetic import make_synthetic
from emofx.study.baselines import against_observers
from emofx.study.runs import evaluate_runs, load_run, shared_test_images

TINY = ["--widths", "8,16,16", "--dense-units", "32", "--epochs", "2", "--batch-size", "16", "--split", "random",
        "--quiet"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two arms (two learning rates) of two trials each on one dataset, as ROOT/<dataset>/<arm>/trial-<k>."""
    folder = tmp_path_factory.mktemp("finetune")
    data = make_synthetic("universal", n_per_class=12, classes=("happy", "sad", "surprised")).save(folder / "d.npz")
    for arm, lr in (("slow", "0.01"), ("fast", "0.05")):
        for trial in (0, 1):
            assert main(["train", str(data), *TINY, "--lr", lr, "--trial", str(trial),
                         "--out", str(folder / "tiny" / arm / f"trial-{trial}")]) == 0
    return folder


def test_collects_trials_and_scores_ensembles_of_arms(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert finetune_trials.main([str(root), "--out", str(out), "--datasets", "tiny", "--arms", "slow", "fast",
                                 "--ensemble", "slow,fast"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert trials[["arm", "trial"]].values.tolist() == [["slow", 0], ["slow", 1], ["fast", 0], ["fast", 1]]
    first = load_run(root / "tiny" / "slow" / "trial-0").metrics
    assert trials.loc[0, "test_accuracy"] == pytest.approx(first["test_accuracy"], abs=5e-5)
    assert trials.loc[0, "n_test"] == first["n_test"] and trials.loc[0, "epochs_run"] == 2.0
    ensembles = pd.read_csv(out / "ensembles.csv")
    assert ensembles["members"].tolist() == ["slow & fast"] * 2 and ensembles["trial"].tolist() == [0, 1]
    for trial in (0, 1):
        members = [load_run(root / "tiny" / arm / f"trial-{trial}") for arm in ("slow", "fast")]
        assert ensembles.loc[trial, "test_accuracy"] == pytest.approx(evaluate_runs(members).accuracy, abs=5e-5)
    summary = (out / "summary.md").read_text()
    slow = trials[trials["arm"] == "slow"]["test_accuracy"]
    assert f"| slow | 2 | {100 * slow.mean():.1f}% ± {100 * np.std(slow, ddof=1):.1f} |" in summary
    assert "| ensemble of slow & fast | 2 |" in summary


def test_later_calls_keep_earlier_rows_and_replace_trials_collected_again(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert finetune_trials.main([str(root), "--out", str(out), "--datasets", "tiny", "--arms", "slow"]) == 0
    # Another session collects the fast arm and the slow arm again; nothing is duplicated.
    assert finetune_trials.main([str(root), "--out", str(out), "--datasets", "tiny", "--arms", "fast", "slow"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials[["arm", "trial"]].values.tolist()) == [["fast", 0], ["fast", 1], ["slow", 0], ["slow", 1]]
    assert finetune_trials.main([str(root), "--out", str(out), "--datasets", "tiny", "--arms", "gone"]) == 0
    assert "no finished trials of arm gone" in capsys.readouterr().err
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_an_empty_collection_is_refused_with_a_message(tmp_path, capsys):
    assert finetune_trials.main([str(tmp_path), "--out", str(tmp_path / "out"), "--arms", "none"]) == 2
    assert "nothing collected" in capsys.readouterr().err


def test_rated_datasets_are_scored_against_the_observers(tmp_path, capsys):
    """As for the Taiwanese set: rows and summary set the models beside one observer and the plurality."""
    data = make_synthetic("universal", n_per_class=12, classes=("happy", "sad", "surprised"))
    rng = np.random.default_rng(0)
    ratings = rng.dirichlet(np.ones(3), len(data)).astype(np.float32)
    agreement = ratings[np.arange(len(data)), data.labels]
    agreement[:4] = np.nan  # unrated images are left out
    rated = replace(data, meta={**data.meta, "rating_names": list(data.classes)},
                    extras={**data.extras, "ratings": ratings, "agreement": agreement}).save(tmp_path / "r.npz")
    for arm, learning_rate in (("arm", "0.02"), ("other", "0.05")):
        for trial in (0, 1):
            assert main(["train", str(rated), *TINY, "--lr", learning_rate, "--trial", str(trial),
                         "--out", str(tmp_path / "root" / "rated" / arm / f"trial-{trial}")]) == 0
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        finetune_trials.main([str(tmp_path / "root"), "--out", str(out), "--arms", "arm", "--ensemble", "arm,arm"])
    assert "--ensemble arm,arm names an arm twice" in capsys.readouterr().err and not out.exists()
    assert finetune_trials.main([str(tmp_path / "root"), "--out", str(out), "--datasets", "rated", "--arms", "arm",
                                 "--ensemble", "arm,other"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    expected = []
    for trial in (0, 1):
        run = load_run(tmp_path / "root" / "rated" / "arm" / f"trial-{trial}")
        evaluation, images = evaluate_runs([run]), shared_test_images([run])
        expected.append(against_observers(images, evaluation.predictions == evaluation.labels))
        row = trials.iloc[trial]
        assert row["rated_images"] == expected[-1]["rated_images"] == np.isfinite(images.extras["agreement"]).sum()
        for column, key in (("rated_accuracy", "model_accuracy"), ("observer_accuracy", "observer_accuracy"),
                            ("plurality_accuracy", "plurality_accuracy")):
            assert row[column] == pytest.approx(expected[-1][key], abs=5e-7)
    rated_images = sum(e["rated_images"] for e in expected)
    pooled = sum(e["observer_accuracy"] * e["rated_images"] for e in expected) / rated_images
    summary = (out / "summary.md").read_text()
    assert "| arm or ensemble | trials | rated images | model | one observer | observers' plurality |" in summary
    assert f"| arm | 2 | {rated_images} | " in summary and f"| {100 * pooled:.1f}% |" in summary
    assert f"| ensemble of arm & other | 2 | {rated_images} | " in summary
