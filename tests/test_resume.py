"""Resumable training (a run killed with SIGKILL continues to the same numbers), the recipe and
normalisation options of `emofx train`, their bad-input refusals, and `--split auto`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.nets.train_state import STATE_FILE, read_tag
from emofx.study.runs import load_run
from emofx.data.splits import make_split
from emofx.data.synthetic import make_synthetic

TINY = ["--widths", "4,8,8", "--dense-units", "16", "--batch-size", "16", "--split", "random", "--quiet"]
TIMING = ("seconds", "train_step_seconds", "compile_seconds", "ready_seconds", "cpu_shares")
EPOCHS = 40  # long enough that the run is surely killed before it ends: 3 steps each


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    return make_synthetic("universal", n_per_class=16, classes=("happy", "sad", "surprised")).save(folder / "a.npz")


@pytest.fixture(scope="module")
def uninterrupted(data_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "whole"
    assert main(["train", str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--patience", "0", *TINY]) == 0
    return out


def _numbers(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k not in TIMING}


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _info(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _train_killed_once(state: Path, arguments: list[str]) -> None:
    """Run `python -m emofx train ARGUMENTS` and SIGKILL it as soon as it has saved the training state ``state``."""
    process = subprocess.Popen([sys.executable, "-m", "emofx", "train", *arguments], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()


def test_a_run_killed_mid_training_resumes_to_the_numbers_of_an_uninterrupted_one(data_file, uninterrupted, tmp_path,
                                                                                    capsys):
    out = tmp_path / "killed"
    state = out / STATE_FILE
    _train_killed_once(state, [str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--patience", "0", *TINY])
    assert state.exists() and not (out / "metrics.json").exists()
    assert read_tag(state)["train"]["epochs"] == EPOCHS  # the state names the training it belongs to

    # `emofx info` says how far the killed run got and how to continue it.
    progress = _info(out, capsys)
    planned = load_run(uninterrupted).metrics["steps"]  # every epoch of the same length
    assert progress["status"] == "unfinished" and progress["resumable"]
    assert progress["epochs"] == EPOCHS and progress["steps"] == planned
    assert 0 <= progress["step"] < planned and progress["epoch"] == progress["step"] / (planned / EPOCHS)
    assert main(["info", str(out)]) == 0
    assert "plus --resume" in capsys.readouterr().out
    listed = _info(tmp_path, capsys)["runs"]  # the folder above: one row per run, finished or not
    assert [(r["run"], r["status"], r["epoch"], r["test_accuracy"]) for r in listed] == [
        ("killed", "unfinished", progress["epoch"], None)]

    # Without --resume the unfinished run is neither overwritten nor continued.
    assert main(["train", str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--patience", "0", *TINY]) == 2
    assert main(["train", str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--patience", "0", "--resume",
                 *TINY]) == 0
    assert _numbers(out) == _numbers(uninterrupted)
    pd.testing.assert_frame_equal(load_run(out).history, load_run(uninterrupted).history)
    assert not state.exists()  # a finished run keeps no training state
    finished = _info(out, capsys)
    metrics = load_run(out).metrics
    assert finished["status"] == "completed" and not finished["resumable"] and finished["epoch"] == EPOCHS
    assert (finished["step"], finished["test_accuracy"]) == (planned, metrics["test_accuracy"])
    kept = _snapshot(out)  # resuming the finished run again: nothing to do, as --trials --resume does
    capsys.readouterr()
    assert main(["train", str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--patience", "0", "--resume",
                 *TINY]) == 0
    assert capsys.readouterr().out == f"{out}: already complete, kept as it is\n" and _snapshot(out) == kept
    damaged = tmp_path / "damaged"  # a run whose metrics.json broke: listed as such, the others still shown
    shutil.copytree(uninterrupted, damaged)
    (damaged / "metrics.json").write_text("{not json")
    listed = {row["run"]: row["status"] for row in _info(tmp_path, capsys)["runs"]}
    assert listed["killed"] == "completed" and listed["damaged"].startswith("unreadable: ")
    assert "corrupt run file" in listed["damaged"]
    assert main(["info", str(tmp_path)]) == 0  # as text: the long reason below the table, marked in its row
    table, _, reason = capsys.readouterr().out.partition("\n[1] ")
    assert "unreadable [1]" in table and "corrupt run file" not in table
    assert reason.startswith("unreadable: ") and "corrupt run file" in reason


def test_trials_killed_midway_continue_where_they_stand(data_file, uninterrupted, tmp_path, capsys):
    """`--trials 3` killed during trial 1: `--resume` keeps trial 0, resumes trial 1 and trains trial 2, each
    to the numbers of its own uninterrupted run."""
    out = tmp_path / "trials"
    options = ["--epochs", str(EPOCHS), "--patience", "0", *TINY]
    state = out / "trial-1" / STATE_FILE
    _train_killed_once(state, [str(data_file), "--out", str(out), "--trials", "3", *options])
    assert state.exists() and not (out / "trial-2").exists()
    first = _snapshot(out / "trial-0")
    assert main(["train", str(data_file), "--out", str(out), "--trials", "3", "--side-by-side", "yes", "--resume",
                 *options]) == 2  # side by side means afresh
    assert "runs trained side by side start afresh" in capsys.readouterr().err
    assert main(["train", str(data_file), "--out", str(out), "--trials", "3", "--resume", *options]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'trial-0'}: already complete, kept as it is" in printed and printed.count("test accuracy") == 2
    assert _snapshot(out / "trial-0") == first
    in_process = {k: v for k, v in _numbers(uninterrupted).items() if k != "malloc_tunables"}  # `python -m emofx` tunes
    assert {k: v for k, v in _numbers(out / "trial-0").items() if k != "malloc_tunables"} == in_process
    alone = tmp_path / "trial-1-alone"
    assert main(["train", str(data_file), "--out", str(alone), "--trial", "1", *options]) == 0
    assert _numbers(out / "trial-1") == _numbers(alone)  # resumed to the numbers of an uninterrupted run
    assert not list(out.rglob(STATE_FILE)) and load_run(out / "trial-2").metrics["trial"] == 2


def test_resume_refuses_another_run_and_leaves_it_untouched(data_file, tmp_path, capsys):
    out = tmp_path / "other"
    process = subprocess.Popen([sys.executable, "-m", "emofx", "train", str(data_file), "--out", str(out),
                                "--epochs", str(EPOCHS), *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (out / STATE_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["train", str(data_file), "--out", str(out), "--epochs", str(EPOCHS), "--seed", "1", "--resume",
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted run with other data, split, seed, trial or settings" in err and err.count("\n") == 1
    assert main(["train", str(data_file), "--out", str(tmp_path / "empty"), "--resume", *TINY]) == 2
    assert "no interrupted run to resume" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize("option, message", [
    (["--recipe", "fancy"], "unknown recipe 'fancy'; choose one of paper, strong"),
    (["--norm", "group"], "unknown --norm 'group'; choose one of none, batch"),
    (["--resume", "--overwrite"], "give one of them"),
    (["--conv-lr-scale", "-1"], "conv_lr_scale must be >= 0"),
    (["--no-augment", "--rotation", "10"], "--no-augment turns rotation off, --rotation 10.0 turns it on"),
    (["--dense-units", "0"], "every layer needs at least one unit"),
])
def test_bad_options_give_one_line_and_write_nothing(data_file, tmp_path, capsys, option, message):
    out = tmp_path / "run"
    assert main(["train", str(data_file), "--out", str(out), *TINY, *option]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_init_from_another_normalisation_is_refused_before_anything_is_written(data_file, uninterrupted, tmp_path,
                                                                                  capsys):
    out = tmp_path / "tuned"
    assert main(["train", str(data_file), "--out", str(out), "--epochs", "1", "--norm", "batch",
                 "--init-from", str(uninterrupted), *TINY]) == 2
    err = capsys.readouterr().err
    assert "differs in norm none (this training: batch)" in err and err.count("\n") == 1
    assert not out.exists()


def test_init_from_another_shape_ends_the_process_with_the_error_not_an_abort(data_file, uninterrupted, tmp_path):
    # The first training program compiles in a background thread; an error raised meanwhile must wait for it,
    # or the interpreter exits while XLA compiles and the process aborts (SIGABRT) after printing the error.
    command = [sys.executable, "-m", "emofx", "train", str(data_file), "--out", str(tmp_path / "tuned"), *TINY,
               "--widths", "4,8,16", "--epochs", "1", "--init-from", str(uninterrupted)]
    fresh = {**os.environ, "EMOFX_COMPILATION_CACHE": "off"}  # compiling, not loading: the thread is still busy
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=fresh)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "differs in widths" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "tuned").exists()


def test_a_diverged_run_keeps_no_state_to_resume(data_file, tmp_path, capsys):
    out = tmp_path / "diverged"
    assert main(["train", str(data_file), "--out", str(out), "--epochs", "2", "--lr", "1e6", "--eval-every", "1",
                 *TINY]) == 1
    assert "NaN" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["stop_reason"] == "nan_loss"
    assert not (out / STATE_FILE).exists()  # resuming would diverge again at the same step


def test_recipe_and_norm_are_recorded_in_metrics_and_checkpoint(data_file, tmp_path, capsys):
    out = tmp_path / "strong"
    assert main(["train", str(data_file), "--out", str(out), "--epochs", "1", "--recipe", "strong", "--norm", "batch",
                 "--conv-lr-scale", "0.5", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "strong" and metrics["norm"] == "batch"
    assert metrics["config"]["train"]["flip_average"] and metrics["config"]["train"]["conv_lr_scale"] == 0.5
    model = json.loads((out / "checkpoint" / "model.json").read_text())
    assert model["recipe"] == "strong" and model["model_config"]["norm"] == "batch"
    assert (out / "checkpoint" / "batch_stats.msgpack").exists()
    run = load_run(out)
    scored = run.model.predict(run.dataset().subset(run.split.test).images, flip_average=True)
    assert np.mean(scored == run.dataset().labels[run.split.test]) == pytest.approx(metrics["test_accuracy"])
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0  # scored as the run was: with flip averaging
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_auto_split_uses_the_sources_own_split_when_it_defines_one():
    data = make_synthetic("universal", n_per_class=12, classes=("happy", "sad"))
    assert make_split(data, "auto").kind == "subject"
    names = np.array(["Training", "PublicTest", "PrivateTest"])[np.arange(len(data)) % 3]
    fer_like = replace(data, split=names)
    split = make_split(fer_like, "auto")
    assert split.kind == "predefined"
    assert set(names[split.train]) == {"Training"} and set(names[split.val]) == {"PublicTest"}
    assert set(names[split.test]) == {"PrivateTest"}
    partly = replace(data, split=np.where(np.arange(len(data)) < 3, "", names))
    assert make_split(partly, "auto").kind == "subject"
