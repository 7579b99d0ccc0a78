"""benchmarks.pooled_cultures and finetune_trials --pooled: one model of the cultures pooled, scored per culture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmarks import finetune_trials, pooled_cultures
from emofx.cli import main
from emofx.data.dataset import FaceDataset
from emofx.data.synthetic import make_synthetic
from emofx.study.baselines import against_observers
from emofx.study.runs import evaluate_runs, load_run, shared_test_images

CLASSES = ("happy", "sad", "surprised")
TINY = ["--widths", "8,16,16", "--dense-units", "32", "--epochs", "2", "--batch-size", "16", "--quiet"]


def rated(data: FaceDataset) -> FaceDataset:
    """``data`` with observers' ratings, as the Taiwanese set has (and the other culture has not)."""
    ratings = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), len(data)).astype(np.float32)
    return replace(data, meta={**data.meta, "rating_names": list(CLASSES)},
                   extras={**data.extras, "ratings": ratings,
                           "agreement": ratings[np.arange(len(data)), data.labels]})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two cultures, one arm of two subject-independent trials each (ROOT/runs/<culture>/arm/trial-<k>), pooled
    (ROOT/sets/trial-<k>.npz) and trained on (ROOT/runs/pooled/arm/trial-<k>)."""
    folder = tmp_path_factory.mktemp("pooled")
    cultures = {"west": make_synthetic("universal", n_per_class=20, classes=CLASSES, culture="West"),
                "east": rated(make_synthetic("eyes", n_per_class=20, seed=1, classes=CLASSES, culture="East"))}
    for name, data in cultures.items():
        path = data.save(folder / f"{name}.npz")
        for trial in (0, 1):
            assert main(["train", str(path), *TINY, "--split", "subject", "--trial", str(trial),
                         "--out", str(folder / "runs" / name / "arm" / f"trial-{trial}")]) == 0
    assert pooled_cultures.main([str(folder / "runs"), "--arm", "arm", "--datasets", "west", "east",
                                 "--out", str(folder / "sets")]) == 0
    for trial in (0, 1):
        assert main(["train", str(folder / "sets" / f"trial-{trial}.npz"), *TINY, "--split", "predefined",
                     "--trial", str(trial), "--out", str(folder / "runs" / "pooled" / "arm" / f"trial-{trial}")]) == 0
    return folder


def test_a_pooled_set_puts_every_image_in_its_own_cultures_part(root):
    for trial in (0, 1):
        pooled = FaceDataset.load(root / "sets" / f"trial-{trial}.npz")
        assert len(pooled) == 120 and set(pooled.culture) == {"West", "East"}
        for name in ("west", "east"):
            run = load_run(root / "runs" / name / "arm" / f"trial-{trial}")
            data = run.dataset()
            for part, indices in run.split.parts().items():
                assert len(indices) > 0
                mine = (pooled.split == part) & (pooled.culture == data.culture[0])
                assert sorted(pooled.path[mine]) == sorted(data.path[indices])
        assert "ratings" not in pooled.extras  # one culture's extra: left out of the pooled set
        assert pooled.meta["split_from"] == [str(root / "runs" / name / "arm" / f"trial-{trial}")
                                             for name in ("west", "east")]


def test_pooled_runs_are_scored_on_each_cultures_test_images(root, tmp_path):
    out = tmp_path / "out"
    assert finetune_trials.main([str(root / "runs"), "--out", str(out), "--datasets", "west", "east",
                                 "--arms", "arm", "--pooled", "arm"]) == 0
    trials = pd.read_csv(out / "trials.csv").set_index(["dataset", "arm", "trial"])
    for name in ("west", "east"):
        for trial in (0, 1):
            pooled = load_run(root / "runs" / "pooled" / "arm" / f"trial-{trial}")
            images = shared_test_images([load_run(root / "runs" / name / "arm" / f"trial-{trial}")])
            evaluation = evaluate_runs([pooled], images)
            row = trials.loc[(name, "pooled arm", trial)]
            assert row["n_test"] == len(images) < pooled.metrics["n_test"]
            assert row["n_train"] == pooled.metrics["n_train"] == sum(
                load_run(root / "runs" / culture / "arm" / f"trial-{trial}").metrics["n_train"]
                for culture in ("west", "east"))
            assert row["test_accuracy"] == pytest.approx(evaluation.accuracy, abs=5e-7)
            if name == "east":  # the ratings come from the culture's own dataset
                scores = against_observers(images, evaluation.predictions == evaluation.labels)
                assert row["rated_accuracy"] == pytest.approx(scores["model_accuracy"], abs=5e-7)
            else:
                assert np.isnan(row["rated_accuracy"])
    assert "| pooled arm | 2 |" in (out / "summary.md").read_text()


def test_a_pooled_run_of_other_splits_is_refused_with_a_message(root, tmp_path, capsys):
    """Trial 1's pooled model scored against trial 0's test images: other images, a one-line error."""
    runs = tmp_path / "runs"
    (runs / "pooled" / "arm").mkdir(parents=True)
    (runs / "west").mkdir()
    (runs / "pooled" / "arm" / "trial-0").symlink_to(root / "runs" / "pooled" / "arm" / "trial-1")
    (runs / "west" / "arm").symlink_to(root / "runs" / "west" / "arm")
    assert finetune_trials.main([str(runs), "--out", str(tmp_path / "out"), "--datasets", "west",
                                 "--pooled", "arm"]) == 2
    assert "was not tested on the test images of" in capsys.readouterr().err
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_pooling_needs_an_arm_finished_for_every_culture(root, tmp_path, capsys):
    assert pooled_cultures.main([str(root / "runs"), "--arm", "other", "--out", str(tmp_path / "sets")]) == 2
    assert "no trial of arm other is finished" in capsys.readouterr().err
    assert pooled_cultures.main([str(root / "runs"), "--arm", "arm", "--datasets", "west", "east",
                                 "--out", str(root / "sets")]) == 2  # written before: kept, not overwritten
    assert "already exists" in capsys.readouterr().err
