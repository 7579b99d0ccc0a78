"""End to end: `emofx train`, `emofx evaluate` and `emofx quickstart` with tiny parameters."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.data.dataset import FaceDataset, merge
from emofx.data.synthetic import make_synthetic
from emofx.nets.checkpoint import source_revision
from emofx.study.run_tables import runs_frame
from emofx.study.runs import load_run, load_runs

TINY = ["--widths", "8,16,16", "--dense-units", "32", "--epochs", "2", "--batch-size", "16", "--lr", "0.02",
        "--split", "random", "--quiet"]
TIMING = ("seconds", "train_step_seconds", "compile_seconds", "ready_seconds", "cpu_shares")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train": make_synthetic("universal", n_per_class=16,
                                classes=("happy", "sad", "surprised")).save(folder / "a.npz"),
        "other": make_synthetic("mouth", n_per_class=4,
                                classes=("happy", "surprised", "neutral")).save(folder / "b.npz"),
        "strangers": make_synthetic("mouth", n_per_class=2, classes=("angry", "neutral")).save(folder / "c.npz"),
    }


@pytest.fixture(scope="module")
def run_dir(data_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "first"
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY]) == 0
    return out


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def test_train_writes_a_complete_run(run_dir, data_files, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "balanced_accuracy", "macro_f1", "classes", "confusion", "per_class_error",
                "n_train", "n_val", "n_test", "best_step", "seconds", "config"):
        assert key in metrics
    assert metrics["classes"] == ["happy", "sad", "surprised"]
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 48
    assert np.sum(metrics["confusion"]) == metrics["n_test"]
    assert np.trace(metrics["confusion"]) / metrics["n_test"] == pytest.approx(metrics["test_accuracy"])
    assert metrics["config"]["model"]["widths"] == [8, 16, 16] and metrics["config"]["train"]["epochs"] == 2
    assert metrics["test_copies_of_training"] == 0 and metrics["notes"] == []
    # The first step came after this test process started (pytest's imports) and before training ended.
    assert 0 < metrics["compile_seconds"] < metrics["ready_seconds"]
    run = load_run(run_dir)
    assert run.history["step"].tolist()[0] == 0 and len(run.history) == 3
    assert sorted(np.r_[run.split.train, run.split.val, run.split.test].tolist()) == list(range(48))
    assert run.model.classes == ("happy", "sad", "surprised")
    assert run.confusion().loc["total", "total"] == metrics["n_test"]
    capsys.readouterr()
    assert main(["info", str(run_dir)]) == 0  # what it was trained on, one fact a line
    facts = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert facts["data"] == (f"{data_files['train'].resolve()} (universal; random split: {metrics['n_train']} train, "
                             f"{metrics['n_val']} validation, {metrics['n_test']} test)")


def test_test_images_that_copy_training_images_are_counted_and_said(data_files, tmp_path, capsys):
    """A file holding every image twice: a random split tests copies of the images it trained on, which inflates
    the test accuracy; the run counts them and says so."""
    once = FaceDataset.load(data_files["train"])
    twice = merge([once, replace(once, path=np.array([f"{p}#copy" for p in once.path]))]).save(tmp_path / "twice.npz")
    assert main(["train", str(twice), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    run = load_run(tmp_path / "run")
    learned = {image.tobytes() for image in FaceDataset.load(twice).images[np.r_[run.split.train, run.split.val]]}
    expected = sum(FaceDataset.load(twice).images[i].tobytes() in learned for i in run.split.test)
    assert metrics["test_copies_of_training"] == expected > 0
    assert (f"note: {expected} of the {metrics['n_test']} test images are pixel copies of training or validation "
            "images") in capsys.readouterr().out


def test_same_seed_and_trial_give_identical_numbers_and_another_trial_another_split(run_dir, data_files, tmp_path):
    first = json.loads((run_dir / "metrics.json").read_text())
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "again"), *TINY]) == 0
    assert _numbers(json.loads((tmp_path / "again" / "metrics.json").read_text())) == _numbers(first)
    # Re-running the very same run into its own directory is allowed; another trial there is not.
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "again"), *TINY]) == 0
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "again"), *TINY, "--trial", "1"]) == 2
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "again"), *TINY, "--trial", "1",
                 "--overwrite"]) == 0
    assert load_run(tmp_path / "again").split.test.tolist() != load_run(run_dir).split.test.tolist()
    table = runs_frame(tmp_path)
    assert table["run"].tolist() == ["again"] and table.loc[0, "trial"] == 1
    assert table.loc[0, "code"] == source_revision()  # which code trained it
    assert len(load_runs(tmp_path)) == 1


def test_overwrite_refuses_to_leave_earlier_runs_of_other_settings_beside_the_new_ones(data_files, tmp_path,
                                                                                         capsys):
    """Trials of the same settings may be redone batch by batch; runs of other settings that --overwrite would leave
    beside the new ones (compare and info would read them too), or runs inside a single run's folder, are refused,
    nothing touched."""
    out = tmp_path / "runs"
    once = ["train", str(data_files["train"]), "--out", str(out), *TINY, "--epochs", "1"]
    assert main([*once, "--trials", "2"]) == 0
    assert main([*once, "--trial", "2", "--trials", "2"]) == 0  # a second batch of trials beside the first
    assert main([*once, "--trial", "2", "--trials", "2", "--overwrite"]) == 0  # redone: the first batch stays
    assert len(load_runs(out)) == 4
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*once, "--trial", "2", "--trials", "2", "--overwrite", "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "holds 2 earlier run(s) trained with other settings that this training would not replace (trial-0, " \
        "trial-1)" in err
    assert main([*once, "--overwrite"]) == 2  # one run into the folder of four
    assert "holds 4 earlier run(s) that this training would not replace (trial-0, trial-1, trial-2 and 1 more)" in (
        capsys.readouterr().err)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _evaluate_json(capsys, *arguments: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", *arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_several_runs_scores_their_ensemble(run_dir, data_files, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["train", str(data_files["train"]), "--out", str(other), *TINY, "--lr", "0.05"]) == 0
    for name, runs in (("first", [run_dir]), ("other", [other]), ("ensemble", [run_dir, other])):
        result = _evaluate_json(capsys, *map(str, runs), "--predictions", str(tmp_path / "new" / f"{name}.csv"))
    assert result["run"] == [str(run_dir), str(other)] and result["n"] == load_run(run_dir).metrics["n_test"]
    first, second, ensemble = (pd.read_csv(tmp_path / "new" / f"{name}.csv", index_col="row")  # the folder made
                               for name in ("first", "other", "ensemble"))
    assert ensemble["data_index"].tolist() == load_run(run_dir).split.test.tolist()  # places in the run's dataset
    columns = [c for c in ensemble.columns if c.startswith("p_")]
    np.testing.assert_allclose(ensemble[columns], (first[columns] + second[columns]) / 2, rtol=1e-6)
    assert (ensemble["true"] == first["true"]).all()
    assert result["accuracy"] == pytest.approx(np.mean(ensemble["true"] == ensemble["predicted"]))
    assert result["accuracy_low"] <= result["accuracy"] <= result["accuracy_high"]
    # the synthetic faces name their people
    assert result["accuracy_interval_unit"].startswith("over the 3 people, each redrawn")
    # Runs tested on other images (another trial's split) cannot form an ensemble without --data.
    moved = tmp_path / "trial1"
    assert main(["train", str(data_files["train"]), "--out", str(moved), *TINY, "--trial", "1"]) == 0
    assert main(["evaluate", str(run_dir), str(moved)]) == 2
    assert "was tested on other images" in capsys.readouterr().err
    assert _evaluate_json(capsys, str(run_dir), str(moved), "--data", str(data_files["other"]))["n"] == 8
    # Compared image by image: the counts are those of the two runs' predictions.
    result = _evaluate_json(capsys, str(run_dir), "--against", str(other))
    right_here, right_there = (first["true"] == first["predicted"]), (second["true"] == second["predicted"])
    comparison = result["comparison"]
    assert comparison["only_a"] == int((right_here & ~right_there).sum())
    assert comparison["only_b"] == int((~right_here & right_there).sum())
    assert result["against"]["run"] == str(other) and result["against"]["accuracy"] == comparison["accuracy_b"]
    assert comparison["accuracy_a"] - comparison["accuracy_b"] == pytest.approx(comparison["difference"])
    assert main(["evaluate", str(run_dir), "--against", str(moved)]) == 2
    assert "a comparison (--against) needs the same test images" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--against", str(other), "--data", str(data_files["other"])]) == 0
    assert "McNemar exact p" in capsys.readouterr().out
    # A copy of the same data elsewhere (each study keeps its own) holds the same test images: same fingerprint.
    copy = tmp_path / "copy" / "a.npz"
    copy.parent.mkdir()
    shutil.copy(data_files["train"], copy)
    elsewhere = tmp_path / "elsewhere"
    assert main(["train", str(copy), "--out", str(elsewhere), *TINY]) == 0
    assert _evaluate_json(capsys, str(elsewhere), "--against", str(run_dir))["comparison"]["n"] == result["n"]


def test_refuses_bad_inputs_with_one_line_messages(run_dir, data_files, tmp_path, capsys):
    not_emofx = tmp_path / "x.npz"
    np.savez(not_emofx, images=np.zeros((2, 48, 48), np.uint8))
    assert main(["train", str(not_emofx), "--out", str(tmp_path / "r")]) == 2
    assert "not an emofx dataset" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert main(["train", str(data_files["train"]), "--out", str(occupied), *TINY]) == 2
    assert "not an emofx run" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "mine"
    assert main(["train", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing-here")]) == 2
    assert "nothing-here: no such run directory" in capsys.readouterr().err
    assert main(["evaluate", str(data_files["train"])]) == 2  # a dataset where a run is expected
    assert "a.npz: a file, not a run directory" in capsys.readouterr().err
    foreign = tmp_path / "foreign_history"
    shutil.copytree(run_dir, foreign)
    (foreign / "history.csv").write_text("a;b\n1;2\n")
    assert main(["evaluate", str(foreign)]) == 2
    assert "corrupt run file (history.csv: no column step, epoch, train_error" in capsys.readouterr().err
    assert main(["evaluate", str(occupied)]) == 2
    assert "not a complete emofx run (missing metrics.json" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), str(run_dir.parent / ".." / run_dir.parent.name / run_dir.name)]) == 2
    assert f"run {run_dir.parent / '..' / run_dir.parent.name / run_dir.name} is given twice" in capsys.readouterr().err
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "r"), *TINY, "--lr", "inf"]) == 2
    assert "learning_rate must be positive and finite; got inf" in capsys.readouterr().err
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "r"), *TINY, "--freeze-conv"]) == 2
    assert "--freeze-conv keeps pre-trained convolutional layers fixed: give --init-from" in capsys.readouterr().err
    assert main(["quickstart", "--seed", "-1", "--out", str(tmp_path / "q")]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["quickstart", "--n-per-class", "2", "--trials", "1", "--out", str(tmp_path / "q")]) == 2
    assert "--n-per-class 2 makes 1 synthetic people per culture" in capsys.readouterr().err  # its own option named
    assert not (tmp_path / "r").exists() and not (tmp_path / "q").exists()


def test_emofx_warnings_are_one_line_and_running_out_of_memory_says_what_to_ask_less_of(data_files, tmp_path,
                                                                                          capsys, monkeypatch):
    # The batch (64) is larger than the training images (39 of the 48, after the random split).
    big_batch = [*TINY[:TINY.index("--batch-size")], "--batch-size", "64", *TINY[TINY.index("--batch-size") + 2:]]
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "big"), *big_batch]) == 0
    err = capsys.readouterr().err
    assert "emofx train: warning: the batch (64) is larger than the 39 training images" in err
    assert "UserWarning" not in err and "runs.py" not in err

    def out_of_memory(*args, **kwargs):  # as XLA raises it (on a CPU; a GPU's words differ after the status)
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 195085935360 bytes.")

    monkeypatch.setattr("emofx.study.runs.fit", out_of_memory)
    assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "r"), *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("emofx train: error: out of memory (Out of memory allocating 195085935360 bytes = 181.7 GiB); "
                   "ask for a smaller --batch-size, or fewer --seeds or --trials side by side (or --side-by-side no)")
    assert not (tmp_path / "r").exists()

    def other_failure(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr("emofx.study.runs.fit", other_failure)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):  # not ours to explain: the traceback stays
        main(["train", str(data_files["train"]), "--out", str(tmp_path / "r"), *TINY])


def test_evaluate_refuses_a_dataset_file_changed_since_training_and_a_damaged_model(run_dir, data_files, tmp_path,
                                                                                    capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = tmp_path / "a.npz"
    shutil.copy(data_files["train"], data)
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "data": {**metrics["data"], "path": str(data)}}))
    assert main(["evaluate", str(copy), "--json"]) == 0  # the same file, moved: fine
    capsys.readouterr()
    make_synthetic("universal", n_per_class=16, seed=9,
                   classes=("happy", "sad", "surprised")).save(data, overwrite=True)
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "has changed since" in err and "--data" in err and err.count("\n") == 1
    model_json = copy / "checkpoint" / "model.json"
    model_json.write_text(model_json.read_text().replace('"model_config": {', '"model_config": {"future_field": 1, '))
    assert main(["evaluate", str(copy), "--data", str(data_files["train"])]) == 2
    err = capsys.readouterr().err
    assert "model.json is not a readable emofx model" in err and "future_field" in err and err.count("\n") == 1


def test_a_damaged_run_is_named_as_such_by_every_command(run_dir, data_files, tmp_path, capsys):
    """A run whose checkpoint, metrics.json or history.csv was lost or cut short is not reported complete, resumed
    as complete or taken for another run: each command says which file is damaged and what to do."""
    def damaged(name: str, file: str, keep: int) -> Path:
        copy = tmp_path / name
        shutil.copytree(run_dir, copy)
        (copy / file).write_bytes((copy / file).read_bytes()[:keep])
        return copy

    no_weights = damaged("weights", "checkpoint/params.msgpack", 100)
    assert main(["info", str(no_weights)]) == 0
    assert "damaged checkpoint" in capsys.readouterr().out
    assert main(["train", str(data_files["train"]), "--out", str(no_weights), *TINY, "--resume"]) == 2
    assert "holds a damaged run" in capsys.readouterr().err
    cut_metrics = damaged("metrics", "metrics.json", 200)
    assert main(["train", str(data_files["train"]), "--out", str(cut_metrics), *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds a damaged run" in err and "metrics.json is not readable JSON" in err and "--overwrite" in err
    empty_history = damaged("history", "history.csv", 0)
    assert main(["evaluate", str(empty_history)]) == 2
    assert "holds a corrupt run file (history.csv: No columns to parse from file)" in capsys.readouterr().err
    moved = damaged("moved", "history.csv", 10**9)  # intact; its dataset file then moved away
    metrics = json.loads((moved / "metrics.json").read_text())
    metrics["data"]["path"] = str(tmp_path / "gone.npz")
    (moved / "metrics.json").write_text(json.dumps(metrics))
    assert main(["evaluate", str(moved)]) == 2
    assert f"was trained on {tmp_path / 'gone.npz'}, which is not there (moved or deleted)" in capsys.readouterr().err


def test_evaluate_leaves_out_the_images_a_run_trained_on(run_dir, data_files, tmp_path, capsys):
    run = load_run(run_dir)
    own = _evaluate_json(capsys, str(run_dir), "--data", str(data_files["train"]))
    # Its own file: the training and validation images are found by their pixels; the test images remain.
    assert own["left_out_seen"] == run.metrics["n_train"] + run.metrics["n_val"]
    assert own["n"] == run.metrics["n_test"] and own["accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert own["confusion"] == run.metrics["confusion"] and "--include-seen" in own["notes"][0]
    everything = _evaluate_json(capsys, str(run_dir), "--data", str(data_files["train"]), "--include-seen")
    assert everything["n"] == 48 and everything["left_out_seen"] == 0 and everything["notes"] == []
    assert main(["evaluate", str(run_dir), "--include-seen"]) == 2
    assert "--include-seen applies to a dataset given with --data" in capsys.readouterr().err
    # A file of two cultures, one of which the run learned: that culture's unseen images and all of the other's,
    # scored culture by culture too.
    both = merge([FaceDataset.load(data_files["train"]), FaceDataset.load(data_files["other"])])
    both = replace(both, culture=np.where(np.arange(len(both)) < 48, "A", "B").astype(object))
    pooled = both.save(tmp_path / "both.npz")
    result = _evaluate_json(capsys, str(run_dir), "--data", str(pooled))
    assert result["left_out_seen"] == own["left_out_seen"]
    by_culture = {row["culture"]: row for row in result["by_culture"]}
    assert by_culture["A"]["n"] == own["n"] and by_culture["A"]["accuracy"] == pytest.approx(own["accuracy"])
    assert (by_culture["A"]["accuracy_low"], by_culture["A"]["accuracy_high"]) == pytest.approx(
        (own["accuracy_low"], own["accuracy_high"]))  # the same images, people and seed: the same interval
    assert by_culture["B"]["accuracy_low"] <= by_culture["B"]["accuracy"] <= by_culture["B"]["accuracy_high"]
    assert by_culture["B"]["n"] == 8 and result["n"] == own["n"] + 8  # B's neutral faces: a class the run lacks
    # The per-image predictions name each scored image (the unseen A images, B's but its neutral ones).
    _evaluate_json(capsys, str(run_dir), "--data", str(pooled), "--predictions", str(tmp_path / "pooled.csv"))
    rows = pd.read_csv(tmp_path / "pooled.csv", keep_default_na=False)
    expected = both.subset(np.r_[run.split.test, 48 + np.flatnonzero(both.label_names[48:] != "neutral")])
    assert rows["path"].tolist() == list(expected.path) and rows["culture"].tolist() == list(expected.culture)
    assert rows["data_index"].tolist() == [*run.split.test, *(48 + np.flatnonzero(both.label_names[48:] != "neutral"))]
    assert rows["true"].tolist() == list(expected.label_names)
    # Only the test images of its own file: refused with what to do instead.
    assert main(["evaluate", str(run_dir), "--data",
                 str(FaceDataset.load(data_files["train"]).subset(np.r_[run.split.train, run.split.val])
                     .save(tmp_path / "seen.npz"))]) == 2
    err = capsys.readouterr().err
    assert "every image" in err and "without --data" in err and err.count("\n") == 1
    # Its dataset file gone: the images cannot be checked, and the note says so.
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    metrics = json.loads((moved / "metrics.json").read_text())
    (moved / "metrics.json").write_text(json.dumps({**metrics, "data": {**metrics["data"], "path": "gone.npz"}}))
    result = _evaluate_json(capsys, str(moved), "--data", str(data_files["train"]))
    assert result["n"] == 48 and "could not check" in result["notes"][0] and "gone.npz" in result["notes"][0]


def test_evaluate_on_another_class_set_names_the_dropped_classes(run_dir, data_files, capsys):
    assert main(["evaluate", str(run_dir), "--data", str(data_files["other"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == ["happy", "surprised"] and result["n"] == 8
    assert result["dropped_model_classes"] == ["sad"] and result["dropped_data_classes"] == {"neutral": 4}
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "the run's test images" in out and "confusion" in out
    assert main(["evaluate", str(run_dir), "--data", str(data_files["strangers"])]) == 2
    assert "share no class" in capsys.readouterr().err


def test_quickstart_writes_tables_and_figures(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--trials", "1", "--n-per-class", "15", "--epochs", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy per culture" in printed and "eyes" in printed and "mouth" in printed
    for name in ("confusion_eyes_mean.csv", "confusion_mouth_std.csv", "misclassified_mean.csv", "transfer.csv",
                 "runs.csv"):
        assert (out / "tables" / name).exists(), name
    for name in ("confusion_eyes.png", "misclassified.png", "learning_curves_mouth.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    assert json.loads((out / "quickstart.json").read_text())["status"] == "done"
    assert len(load_runs(out / "runs")) == 2
    transfer = pd.read_csv(out / "tables" / "transfer.csv", index_col=0)
    for trained, tested in (("eyes", "eyes"), ("eyes", "mouth")):  # own test images; every image of the other
        run = load_run(out / "runs" / trained / "trial-0")
        images = FaceDataset.load(out / "data" / f"{tested}.npz")
        images = images.subset(run.split.test) if trained == tested else images
        right = run.model.predict(images.images) == images.labels
        assert transfer.loc[trained, tested] == pytest.approx(right.mean(), abs=1e-9)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["quickstart", "--out", str(out), "--trials", "1", "--n-per-class", "15", "--epochs", "2",
                 "--quiet"]) == 2  # other settings: refused before anything is rewritten
    assert "already holds a different run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    shutil.copytree(out / "runs" / "eyes" / "trial-0", out / "runs" / "eyes" / "trial-1")  # of a run with 2 trials
    same = ["quickstart", "--out", str(out), "--trials", "1", "--n-per-class", "15", "--epochs", "1", "--quiet"]
    assert main(same) == 2
    assert "holds trials of an earlier quickstart that this one would not replace (runs/eyes/trial-1)" in (
        capsys.readouterr().err)
    assert main([*same, "--overwrite"]) == 0 and len(load_runs(out / "runs")) == 2  # removed: compare reads 1 each


def test_trials_on_a_cpu_are_the_separate_trainings_one_after_another(run_dir, data_files, tmp_path, capsys):
    out = tmp_path / "trials"
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--trials", "2"]) == 0  # auto: one by one
    assert capsys.readouterr().out.count("test accuracy") == 2
    separate, first = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, out / "trial-0"))
    assert _numbers(first) == _numbers(separate)  # exactly: the same program on the same data
    assert load_run(out / "trial-0").history.equals(load_run(run_dir).history)
    second = load_run(out / "trial-1")
    assert second.metrics["trial"] == 1 and second.split.test.tolist() != load_run(run_dir).split.test.tolist()
    assert first["train_step_seconds"] != second.metrics["train_step_seconds"]  # each run's own time, not the batch's
    assert first["side_by_side"] == second.metrics["side_by_side"] == 1
    assert not list(out.rglob("training_state.msgpack"))
    assert main(["evaluate", str(out)]) == 2  # the folder of the trials, not a run: the message names them
    assert f"{out} holds 2 runs (trial-0, trial-1), not one run; give one of them, e.g. {out / 'trial-0'}" in (
        capsys.readouterr().err)


def test_ctrl_c_in_one_of_several_trials_stops_the_rest(data_files, tmp_path, monkeypatch, capsys):
    from emofx.study import runs

    real_fit = runs.fit

    def interrupted_fit(*args, **kwargs):  # as fit returns after Ctrl-C: the run so far, to be recorded
        return replace(real_fit(*args, **kwargs), stop_reason="interrupted")

    monkeypatch.setattr(runs, "fit", interrupted_fit)
    out = tmp_path / "trials"
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--trials", "3"]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["trial-0"]  # recorded; trials 1 and 2 never started
    assert load_run(out / "trial-0").metrics["stop_reason"] == "interrupted"


def test_trials_side_by_side_give_the_runs_of_separate_trainings(run_dir, data_files, tmp_path, capsys):
    out = tmp_path / "lanes"
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--trials", "2", "--side-by-side",
                 "yes"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("test accuracy") == 2 and str(out / "trial-1") in printed
    separate = json.loads((run_dir / "metrics.json").read_text())
    side_by_side = json.loads((out / "trial-0" / "metrics.json").read_text())
    # Trial 0 has the split, steps and checkpoint choice of the separate run; its scores agree
    # within float tolerance (batched convolutions add in another order, tests/test_lanes.py).
    for key in ("n_train", "n_val", "n_test", "steps", "best_step", "classes", "identity", "split"):
        assert side_by_side[key] == separate[key]
    assert side_by_side["best_val_error"] == pytest.approx(separate["best_val_error"], abs=1e-6)
    assert load_run(out / "trial-1").metrics["trial"] == 1
    assert side_by_side["side_by_side"] == 2 and separate["side_by_side"] == 1  # whose times the seconds are
    assert load_run(out / "trial-1").split.test.tolist() != load_run(out / "trial-0").split.test.tolist()
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--trials", "2", "--resume",
                 "--side-by-side", "yes"]) == 2
    assert "runs trained side by side start afresh" in capsys.readouterr().err
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--trials", "0"]) == 2
    assert "--trials must be at least 1" in capsys.readouterr().err


def test_seeds_side_by_side_give_the_runs_of_separate_seeds(run_dir, data_files, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", str(data_files["train"]), "--out", str(out), *TINY, "--seeds", "0", "5", "--side-by-side",
                 "yes"]) == 0
    assert capsys.readouterr().out.count("test accuracy") == 2
    separate = json.loads((run_dir / "metrics.json").read_text())  # --seed 0 alone
    side_by_side = json.loads((out / "seed-0" / "metrics.json").read_text())
    for key in ("n_train", "n_val", "n_test", "steps", "best_step", "classes", "identity", "split", "seed"):
        assert side_by_side[key] == separate[key]
    assert side_by_side["best_val_error"] == pytest.approx(separate["best_val_error"], abs=1e-6)
    other = load_run(out / "seed-5")
    assert other.metrics["seed"] == other.metrics["identity"]["seed"] == other.metrics["config"]["train"]["seed"] == 5
    assert other.split.test.tolist() != load_run(out / "seed-0").split.test.tolist()  # the seed draws the split
    for bad, message in ((["--seeds", "1", "1"], "repeats a seed"), (["--seeds", "1", "--trials", "2"], "not both"),
                         (["--seeds", "1", "--resume", "--side-by-side", "yes"], "side by side start afresh")):
        assert main(["train", str(data_files["train"]), "--out", str(tmp_path / "bad"), *TINY, *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_file_of_several_cultures_is_trained_pooled_and_says_so(tmp_path, capsys):
    from emofx.data.dataset import merge

    parts = [make_synthetic(d, n_per_class=6, classes=("happy", "sad", "surprised")) for d in ("eyes", "mouth")]
    merge(parts).save(tmp_path / "two.npz")
    assert main(["train", str(tmp_path / "two.npz"), "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'two.npz'} holds 2 cultures (eyes 18, mouth 18): one model learns them pooled" in out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_train"] > 18  # both cultures' images


def test_one_culture_of_a_file_of_several_is_trained_and_found_again_by_every_command(tmp_path, capsys):
    from emofx.data.dataset import merge

    parts = [make_synthetic(d, n_per_class=8, classes=("happy", "sad", "surprised"), culture=d, seed=4)
             for d in ("eyes", "mouth")]
    pooled = str(merge(parts).save(tmp_path / "two.npz"))
    for culture in ("eyes", "mouth"):
        assert main(["train", pooled, "--out", str(tmp_path / culture), "--culture", culture, "--trials", "2",
                     *TINY]) == 0
    assert "learns them pooled" not in capsys.readouterr().out
    run = load_run(tmp_path / "eyes" / "trial-0")
    m = run.metrics
    assert m["data"]["culture"] == "eyes" and m["n_train"] + m["n_val"] + m["n_test"] == 24  # the eyes images only
    assert set(run.dataset().culture) == {"eyes"} and len(run.dataset()) == 24
    assert main(["evaluate", str(tmp_path / "eyes" / "trial-0"), "--json"]) == 0  # its own test images, found again
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(m["test_accuracy"])
    mouth = load_run(tmp_path / "mouth" / "trial-0")  # the second culture's: its places in the pooled file
    assert main(["evaluate", str(mouth.directory), "--predictions", str(tmp_path / "mouth.csv"), "--json"]) == 0
    capsys.readouterr()
    rows = pd.read_csv(tmp_path / "mouth.csv", keep_default_na=False)
    file = FaceDataset.load(pooled)
    assert rows["data_index"].tolist() == (24 + np.asarray(mouth.split.test)).tolist()
    assert rows["path"].tolist() == list(file.path[rows["data_index"]]) and set(file.culture[rows["data_index"]]) == {
        "mouth"}
    assert main(["saliency", str(tmp_path / "eyes" / "trial-0"), "--data", pooled, "--out", str(tmp_path / "sal"),
                 "--method", "gradient", "--quiet"]) == 0
    assert "(the run's test images)" in capsys.readouterr().out  # the pooled file is recognised as the run's data
    assert main(["compare", str(tmp_path / "eyes"), str(tmp_path / "mouth"), "--data-a", pooled, "--data-b", pooled,
                 "--out", str(tmp_path / "cmp"), "--permutations", "99", "--bootstrap", "50", "--no-figures"]) == 0
    assert json.loads(capsys.readouterr().out)["cultures"] == ["eyes", "mouth"]
    assert main(["train", pooled, "--out", str(tmp_path / "bad"), "--culture", "klingon", *TINY]) == 2
    assert "holds the cultures eyes, mouth, not 'klingon'" in capsys.readouterr().err
    single = str(parts[0].save(tmp_path / "eyes.npz"))
    assert main(["train", single, "--out", str(tmp_path / "bad"), "--culture", "eyes", *TINY]) == 2
    assert "holds one culture (eyes); train on the whole file without --culture" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    fewer = make_synthetic("mouth", n_per_class=8, classes=("happy", "sad"), culture="two", seed=5)
    uneven = str(merge([parts[0], fewer]).save(tmp_path / "uneven.npz"))  # culture two has no surprised faces
    assert main(["train", uneven, "--out", str(tmp_path / "two"), "--culture", "two", *TINY]) == 0
    capsys.readouterr()
    run = load_run(tmp_path / "two")
    assert run.model.classes == ("happy", "sad") and run.metrics["n_train"] + run.metrics["n_val"] + run.metrics[
        "n_test"] == 16
    assert main(["evaluate", str(tmp_path / "two"), "--json"]) == 0  # its part of the file found again
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(run.metrics["test_accuracy"])


def test_info_on_a_batch_experiment_says_which_notebook_runs_did_not_succeed(run_dir, tmp_path, capsys,
                                                                              monkeypatch):
    """A training run inside a batch notebook run that failed later, or never finished, is not simply
    'completed' or 'continue it with --resume': emofx batch does the notebook run again."""
    import json as _json

    experiment = tmp_path / "exp" / "02_train_culture"
    for name, status in (("culture=a", {"status": "ok"}), ("culture=b", {"status": "failed", "error": {
            "type": "ValueError", "message": "no saliency"}}), ("culture=c", None)):
        (experiment / name / "results").mkdir(parents=True)
        shutil.copytree(run_dir, experiment / name / "results" / "run")
        (experiment / name / "02_train_culture.ipynb").write_text("{}")
        if status is not None:
            (experiment / name / "status.json").write_text(_json.dumps(status))
    (experiment / "culture=d" / "results").mkdir(parents=True)
    shutil.copytree(run_dir, experiment / "culture=d" / "results" / "run")
    (experiment / "culture=d" / "02_train_culture.ipynb").write_text("{}")
    (experiment / "culture=d" / "status.json").write_text('{"status": ')
    expected = {"culture=a": "completed",
                "culture=b": "completed; its notebook run failed: ValueError no saliency (emofx batch does it again)",
                "culture=c": "completed; its notebook run has not finished (running now, or stopped: emofx batch "
                             "does it again)",
                "culture=d": "completed; its notebook run's status.json is damaged (emofx batch does it again)"}
    assert main(["info", str(tmp_path / "exp"), "--json"]) == 0
    rows = {r["run"].split("/")[1]: r["status"] for r in _json.loads(capsys.readouterr().out)["runs"]}
    assert rows == expected
    monkeypatch.chdir(experiment)  # the same from inside the sweep's folder
    assert main(["info", ".", "--json"]) == 0
    assert {r["run"].split("/")[0]: r["status"] for r in _json.loads(capsys.readouterr().out)["runs"]} == expected
