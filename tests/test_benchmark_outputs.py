"""Benchmarks refuse bad arguments and existing result files in one line, before any training."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from benchmarks import ablation, alignment, calibration, crowd_ferplus, crowd_simulated, startup
from benchmarks.outputs import refuse_existing
from emofx.data.splits import make_split
from emofx.data.synthetic import make_synthetic
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig
from emofx.study.runs import RunError, run_identity


def _refused(main, argv: list[str], capsys) -> str:
    """The one error line of a command that stops with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def _no_training(*args, **kwargs):
    pytest.fail("trained although the arguments were refused")


def test_refuse_existing_names_every_existing_path_and_the_way_out(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="bench")
    kept, other, new = tmp_path / "a.csv", tmp_path / "b.md", tmp_path / "c.json"
    kept.write_text("keep")
    other.write_text("keep")
    refuse_existing(parser, [new], "--out")  # nothing there yet: no error
    refuse_existing(parser, [kept], "--out", overwrite=True)  # asked for: no error
    error = _refused(lambda argv: refuse_existing(parser, [kept, other, new], "--out", overwrite=False), [], capsys)
    assert error == (f"bench: error: {kept}, {other} already exist; choose another --out or pass --overwrite "
                     "(nothing was written)")
    error = _refused(lambda argv: refuse_existing(parser, [kept], "--json"), [], capsys)
    assert error.endswith(f"{kept} already exists; choose another --json (nothing was written)")
    assert kept.read_text() == other.read_text() == "keep"


# ---------------------------------------------------------------------------- calibration
def test_calibration_needs_out_and_refuses_its_existing_result_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(calibration, "trained_pair", _no_training)
    assert "the following arguments are required: --out" in _refused(calibration.main, ["--quick"], capsys)
    out = tmp_path / "results"
    out.mkdir()
    (out / "planted_subject.json").write_text("committed")
    argv = ["--quick", "--experiments", "planted", "--out", str(out), "--cache", str(tmp_path / "cache")]
    error = _refused(calibration.main, argv, capsys)
    assert f"{out / 'planted_subject.json'} already exists; choose another --out or pass --overwrite" in error
    assert (out / "planted_subject.json").read_text() == "committed"
    # --overwrite passes that check; --stage analyse then refuses the models missing from the cache.
    error = _refused(calibration.main, [*argv, "--overwrite", "--stage", "analyse"], capsys)
    assert "--stage analyse: 1 trained models missing from --cache" in error and "run --stage train" in error


def test_calibration_analyse_refuses_every_missing_null_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(calibration, "trained_culture", _no_training)
    cache = tmp_path / "cache"
    design = calibration.Design.quick()
    todo = [("null", pair) for pair in calibration.culture_pairs(design)["null"]]
    samples = calibration.cache_folders(cache, design, todo)
    assert len(samples) == design.null_samples  # disjoint pairs: each sample trained once
    (samples[0] / "done").parent.mkdir(parents=True)
    (samples[0] / "done").write_text("")
    error = _refused(calibration.main, ["--quick", "--experiments", "null", "--stage", "analyse",
                                        "--out", str(tmp_path / "out"), "--cache", str(cache)], capsys)
    assert f"{design.null_samples - 1} trained models missing" in error and str(samples[1]) in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    (["--experiments", "planted,bogus"], "--experiments: unknown bogus; choose from planted,imbalance,null,simulated"),
    (["--widths", "16,x"], "expected comma-separated integers"),
    (["--epochs", "0"], "epochs must be at least 1; got 0"),
])
def test_calibration_refuses_bad_settings(tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.setattr(calibration, "trained_pair", _no_training)
    error = _refused(calibration.main, ["--quick", "--out", str(tmp_path / "out"), *options], capsys)
    assert message in error and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- crowds
def test_crowd_simulated_refuses_an_existing_table_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "simulated"
    out.with_suffix(".md").write_text("committed")
    argv = ["--images", "60", "--seeds", "0", "--methods", "mv", "--out", str(out)]
    assert "simulated.md already exists" in _refused(crowd_simulated.main, argv, capsys)
    assert out.with_suffix(".md").read_text() == "committed" and not out.with_suffix(".csv").exists()
    assert crowd_simulated.main([*argv, "--overwrite"]) == 0
    assert list(pd.read_csv(out.with_suffix(".csv"))["method"]) == ["mv"]
    assert out.with_suffix(".md").read_text().startswith("# Aggregation on simulated crowds (60 images")


def test_crowd_ferplus_refuses_an_existing_table_and_bad_widths(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(crowd_ferplus, "fit", _no_training)
    out = tmp_path / "ferplus"
    out.with_suffix(".csv").write_text("committed")
    assert "ferplus.csv already exists" in _refused(crowd_ferplus.main, ["--data", str(tmp_path), "--out", str(out)],
                                                    capsys)
    assert out.with_suffix(".csv").read_text() == "committed"
    error = _refused(crowd_ferplus.main, ["--widths", "16,x", "--out", str(tmp_path / "other")], capsys)
    assert "expected comma-separated integers, e.g. 64,128,256; got '16,x'" in error


def test_crowd_ferplus_missing_data_is_one_line(tmp_path, capsys):
    out = tmp_path / "table" / "ferplus"
    assert crowd_ferplus.main(["--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"crowd_ferplus: {tmp_path / 'nowhere' / 'fer2013'}, ")
    assert "point --data (or EMOFX_DATA) at the folder holding fer2013/ and ferplus/" in error
    assert not out.parent.exists()  # nothing written, not even the table's folder


# ---------------------------------------------------------------------------- startup, ablation, alignment
def test_startup_refuses_a_missing_dataset_before_starting_processes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(startup, "timed_train", _no_training)
    error = _refused(startup.main, [str(tmp_path / "missing.npz")], capsys)
    assert f"{tmp_path / 'missing.npz'} is not a file; give a prepared emofx dataset" in error


@pytest.mark.parametrize("options, message", [
    (["--widths", "16,x"], "expected comma-separated integers"),
    (["--epochs", "0"], "epochs must be at least 1; got 0"),
])
def test_ablation_refuses_bad_settings_before_reading_data(tmp_path, capsys, options, message):
    argv = [str(tmp_path / "data.npz"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), *options]
    assert message in _refused(ablation.main, argv, capsys)
    assert not (tmp_path / "out").exists()


def test_alignment_keeps_only_a_finished_run_with_the_asked_settings(tmp_path):
    dataset = make_synthetic(n_per_class=30, seed=0, size=16)
    recorded = TrainConfig(epochs=20, patience=0)
    directory = tmp_path / "trial-0"
    directory.mkdir()
    model = ModelConfig(num_classes=len(dataset.classes))
    identity = run_identity(dataset, "subject", recorded.seed, 0, recorded, model, None)
    (directory / "metrics.json").write_text(json.dumps({"identity": identity, "seconds": 12.5, "test_accuracy": 0.5}))
    (directory / "history.csv").write_text("step,epoch,train_error,val_error\n1,1,0.6,0.5\n")
    (directory / "split.json").write_text(json.dumps(make_split(dataset, "subject", seed=0, trial=0).to_dict()))

    assert alignment.kept_run(tmp_path / "nothing", dataset, 0, recorded) is None
    assert alignment.kept_run(directory, dataset, 0, recorded).metrics["seconds"] == 12.5
    with pytest.raises(RunError, match=r"other settings \(epochs 20 \(asked 30\)\)"):
        alignment.kept_run(directory, dataset, 0, TrainConfig(epochs=30, patience=0))
    with pytest.raises(RunError, match="other data, split or model"):
        alignment.kept_run(directory, dataset, 1, recorded)  # another trial
