"""The FER2013/FER+ suite and the one-file data carrier it is taken to a GPU machine with."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest

from benchmarks import accuracy_suite, device_data
from emofx.cli import main as emofx_main
from emofx.nets.train_state import STATE_FILE

TINY = ["--widths", "4,4,4", "--dense-units", "8"]


# ---------------------------------------------------------------------------- device_data
def _tree(root):
    files = {"a/one.jpg": b"\xff\xd8jpeg bytes", "a/sub/two.jpg": bytes(range(256)) * 3, "b/votes.csv": b"x,y\n1,2\n",
             "b/empty.txt": b""}
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return files


def test_unpack_writes_back_the_packed_files_byte_for_byte(tmp_path):
    files = _tree(tmp_path / "data")
    count, size = device_data.pack(tmp_path / "data", ["a", "b"], tmp_path / "carry" / "data.npz")
    assert count == 4 and size == (tmp_path / "carry" / "data.npz").stat().st_size
    assert device_data.unpack(tmp_path / "carry" / "data.npz", tmp_path / "there") == 4
    assert {p.relative_to(tmp_path / "there").as_posix(): p.read_bytes()
            for p in (tmp_path / "there").rglob("*") if p.is_file()} == files


def test_unpack_never_overwrites_and_refuses_paths_that_leave_the_folder(tmp_path):
    _tree(tmp_path / "data")
    packed = tmp_path / "data.npz"
    device_data.pack(tmp_path / "data", ["a"], packed)
    (tmp_path / "there" / "a").mkdir(parents=True)
    (tmp_path / "there" / "a" / "one.jpg").write_bytes(b"mine")
    with pytest.raises(device_data.PackError, match="already exist .* unpack into an empty folder"):
        device_data.unpack(packed, tmp_path / "there")
    assert (tmp_path / "there" / "a" / "one.jpg").read_bytes() == b"mine"
    assert not (tmp_path / "there" / "a" / "sub").exists()  # nothing written

    evil = tmp_path / "evil.npz"
    with open(evil, "wb") as handle:
        np.savez(handle, format=np.array(device_data.FORMAT), paths=np.array(["../outside.txt"]),
                 offsets=np.array([0, 3]), blob=np.frombuffer(b"bad", np.uint8))
    with pytest.raises(device_data.PackError, match="would leave"):
        device_data.unpack(evil, tmp_path / "safe")
    assert not (tmp_path / "outside.txt").exists()


def test_device_data_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    _tree(tmp_path / "data")
    assert device_data.main(["pack", str(tmp_path / "data"), "missing", "--out", str(tmp_path / "x.npz")]) == 2
    assert "missing is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    (tmp_path / "taken.npz").write_bytes(b"keep")
    assert device_data.main(["pack", str(tmp_path / "data"), "a", "--out", str(tmp_path / "taken.npz")]) == 2
    assert (tmp_path / "taken.npz").read_bytes() == b"keep"
    assert device_data.main(["unpack", str(tmp_path / "taken.npz"), "--out", str(tmp_path / "u")]) == 2
    assert "not a packed dataset file" in capsys.readouterr().err


# ---------------------------------------------------------------------------- accuracy_suite
def test_configuration_names_map_to_train_options_and_bad_ones_are_refused(tmp_path, capsys):
    paper = accuracy_suite.parse_configuration("paper", 20)
    assert (paper.name, paper.options()) == ("paper-e20", ["--recipe", "paper", "--epochs", "20"])
    longer = accuracy_suite.parse_configuration("strong+batch@60", 20)
    assert (longer.name, longer.options()) == ("strong+batch-e60",
                                               ["--recipe", "strong", "--norm", "batch", "--epochs", "60"])
    continued = accuracy_suite.parse_configuration("strong+batch@40+20", 20, restart_lr=0.02)
    assert (continued.name, continued.options()) == ("strong+batch-e40+20-lr0.02", [
        "--recipe", "strong", "--norm", "batch", "--epochs", "20", "--lr", "0.02"])
    assert continued.first_stage == accuracy_suite.parse_configuration("strong+batch@40", 20)
    assert longer.first_stage is None
    assert [c.name for c in accuracy_suite.with_first_stages([continued, longer, continued.first_stage])] == [
        "strong+batch-e40", "strong+batch-e40+20-lr0.02", "strong+batch-e60"]
    for bad in ("strong+layer", "strong@0", "strong@ten", "sgd", "strong@40+", "strong@40+0", "strong@+20"):
        with pytest.raises(accuracy_suite.SuiteError, match="unknown configuration"):
            accuracy_suite.parse_configuration(bad, 20)
    (tmp_path / "data" / "fer2013").mkdir(parents=True)
    assert accuracy_suite.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                           "--configs", "strong+layer"]) == 2
    assert "unknown configuration 'strong+layer'" in capsys.readouterr().err
    assert accuracy_suite.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                                "--finetune-epochs", "0"]) == 2
    assert "--finetune-epochs" in capsys.readouterr().err
    assert accuracy_suite.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                                "--ferplus-finetune-lr", "0"]) == 2
    assert "--ferplus-finetune-lr must be positive" in capsys.readouterr().err
    assert accuracy_suite.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                                "--restart-lr", "-1"]) == 2
    assert "--restart-lr must be positive" in capsys.readouterr().err
    assert accuracy_suite.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "device_data unpack" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_are_told_new_interrupted_or_finished(tmp_path):
    run_dir = tmp_path / "run"
    assert accuracy_suite.run_status(run_dir) == "new"
    run_dir.mkdir()
    (run_dir / STATE_FILE).write_bytes(b"state")
    assert accuracy_suite.run_status(run_dir) == "interrupted"
    (run_dir / STATE_FILE).unlink()
    (run_dir / "metrics.json").write_text("{}")
    assert accuracy_suite.run_status(run_dir) == "finished"


def test_suite_trains_every_configuration_on_carried_data_and_bundles_the_results(tmp_path, ferplus_slice):
    chosen = ferplus_slice(tmp_path / "shared")
    count = chosen.usage.value_counts()
    packed = tmp_path / "carry" / "fer.npz"
    device_data.pack(tmp_path / "shared", ["fer2013", "ferplus"], packed)
    device_data.unpack(packed, tmp_path / "data")  # as on a machine without ../shared/data
    culture = tmp_path / "carry" / "eyes.npz"  # a prepared culture dataset (4 synthetic subjects)
    assert emofx_main(["prepare", "synthetic", "--format", "synthetic", "--dialect", "eyes", "--n-per-class", "20",
                       "--out", str(culture), "--no-progress"]) == 0
    out, bundle = tmp_path / "suite", tmp_path / "returned" / "accuracy_suite.tar.gz"
    bundle.parent.mkdir()
    common = ["--data", str(tmp_path / "data"), "--out", str(out), "--configs", "strong", "strong@1+1", "paper+batch@2",
              "--seeds", "0", "--epochs", "1", "--cultures", str(culture), "--culture-trials", "2",
              "--culture-epochs", "1", "--finetune-epochs", "2", "--bundle", str(bundle), *TINY]
    assert accuracy_suite.main([*common, "--lanes", "on", "--ferplus-epochs", "1", "--ferplus-arms", "soft",
                                "--ferplus-finetune-epochs", "1"]) == 0

    steps = {s["step"]: s for s in json.loads((out / "suite.json").read_text())["steps"]}
    assert list(steps) == ["prepare", "train-strong-e1-seeds", "train-strong-e1+1-lr0.01-seed-0",
                           "train-paper+batch-e2-seeds", "standard-splits",
                           "train-eyes-paper-scratch", "train-eyes-strong-from-fer2013", "culture-table", "ferplus",
                           "ferplus-from-fer2013"]
    assert {s["status"] for s in steps.values()} == {"passed"}
    runs = pd.read_csv(out / "results" / "fer2013" / "runs.csv")
    assert sorted(zip(runs.recipe, runs.norm, runs.init_from.fillna(""))) == [
        ("paper", "batch", ""), ("strong", "none", ""), ("strong", "none", "strong, 1 epoch")]
    assert set(runs.n_train) == {count["Training"]} and set(runs.n_val) == {count["PublicTest"]}
    assert set(runs.n_test) == {count["PrivateTest"]}
    for config, epochs in (("strong-e1", 1), ("paper+batch-e2", 2)):
        metrics = json.loads((out / "runs" / "fer2013" / config / "seed-0" / "metrics.json").read_text())
        assert steps[f"train-{config}-seeds"]["test_accuracy"] == {"seed-0": metrics["test_accuracy"]}
        assert metrics["split"] == "predefined" and metrics["seed"] == 0
        assert metrics["config"]["train"]["epochs"] == epochs
    # The second stage continues the seed's model of the first at the restart learning rate.
    continued_dir = out / "runs" / "fer2013" / "strong-e1+1-lr0.01" / "seed-0"
    continued = json.loads((continued_dir / "metrics.json").read_text())
    assert continued["init_from"] == str((out / "runs" / "fer2013" / "strong-e1" / "seed-0").resolve())
    assert continued["config"]["train"]["learning_rate"] == 0.01 and continued["config"]["train"]["epochs"] == 1
    assert "train-strong-e1+1-lr0.01-seed-0" in steps and continued["seed"] == 0

    # The cultures: both trainings, every trial subject-independent; fine-tuning starts from the FER2013 model.
    fine_tuned = json.loads((out / "runs" / "cultures" / "eyes" / "strong-from-fer2013" / "trial-1" /
                             "metrics.json").read_text())
    assert fine_tuned["init_from"] == str((out / "runs" / "fer2013" / "strong-e1" / "seed-0").resolve())
    assert fine_tuned["recipe"] == "strong" and fine_tuned["split"] == "subject" and fine_tuned["trial"] == 1
    assert fine_tuned["config"]["train"]["epochs"] == 2 and fine_tuned["config"]["train"]["patience"] == 0
    table = pd.read_csv(out / "results" / "cultures.csv")
    assert list(table.training) == ["paper-scratch", "strong-from-fer2013"] and set(table.trials) == {2}
    assert list(table.epochs) == [1, 2]
    for _, row in table.iterrows():  # each row: the mean and std (ddof 1) of its trials' recorded accuracies
        accuracies = [json.loads((out / "runs" / "cultures" / "eyes" / row.training / f"trial-{k}" /
                                  "metrics.json").read_text())["test_accuracy"] for k in (0, 1)]
        assert row.test_accuracy_mean == pytest.approx(np.mean(accuracies))
        assert row.test_accuracy_std == pytest.approx(np.std(accuracies, ddof=1))
    assert "| eyes      | eyes      | strong-from-fer2013 |" in (out / "results" / "cultures.md").read_text()

    ferplus = pd.read_csv(out / "results" / "ferplus.csv")
    assert list(ferplus.arm) == ["soft"] and ferplus.train_images.iloc[0] == count["Training"]
    fine_tuned_ferplus = (out / "results" / "ferplus_from_fer2013.md").read_text()
    assert f"fine-tuned from {out / 'runs' / 'fer2013' / 'strong-e1' / 'seed-0'}" in fine_tuned_ferplus
    assert "--lr 0.02" in steps["ferplus-from-fer2013"]["command"]

    with tarfile.open(bundle) as archive:
        names = archive.getnames()
    assert "suite/runs/fer2013/strong-e1/seed-0/metrics.json" in names
    assert {"suite/suite.json", "suite/results/fer2013/summary.md", "suite/results/ferplus.csv",
            "suite/results/cultures.md"} <= set(names)
    assert not [n for n in names if "/checkpoint/" in n or "/data/" in n or n.endswith(STATE_FILE)]

    # Called again, one run at a time: finished runs are kept; the runs removed are trained alone.
    shutil.rmtree(out / "runs" / "cultures" / "eyes" / "paper-scratch" / "trial-1")
    assert accuracy_suite.main([*common, "--lanes", "off", "--ferplus-epochs", "0",
                                "--ferplus-finetune-epochs", "0"]) == 0
    again = json.loads((out / "suite.json").read_text())["steps"]
    assert [(s["step"], s["status"], s.get("message", "")) for s in again] == [
        ("train-strong-e1-seed-0", "skipped", "finished earlier"),
        ("train-strong-e1+1-lr0.01-seed-0", "skipped", "finished earlier"),
        ("train-paper+batch-e2-seed-0", "skipped", "finished earlier"),
        ("standard-splits", "passed", ""),
        ("train-eyes-paper-scratch-trial-0", "skipped", "finished earlier"),
        ("train-eyes-paper-scratch-trial-1", "passed", ""),
        ("train-eyes-strong-from-fer2013-trial-0", "skipped", "finished earlier"),
        ("train-eyes-strong-from-fer2013-trial-1", "skipped", "finished earlier"),
        ("culture-table", "passed", ""), ("ferplus", "skipped", "--ferplus-epochs 0"),
        ("ferplus-from-fer2013", "skipped", "--ferplus-finetune-epochs 0")]
    assert len(pd.read_csv(out / "results" / "fer2013" / "runs.csv")) == 3
    assert set(pd.read_csv(out / "results" / "cultures.csv").trials) == {2}
