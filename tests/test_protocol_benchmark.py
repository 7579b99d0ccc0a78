"""benchmarks.protocol: the paper's protocol timed, one run at a time or as lanes of one program."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from benchmarks import protocol
from emofx.data.synthetic import make_synthetic
from emofx.nets.precision import use_precision

TINY = ["--trials", "2", "--epochs", "1", "--widths", "8,16,16", "--dense-units", "32"]


@pytest.fixture(scope="module")
def cultures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cultures")
    return [str(make_synthetic(dialect, n_per_class=12, seed=0, culture=name).save(folder / f"{name}.npz"))
            for name, dialect in (("east", "eyes"), ("west", "mouth"))]


def _summary(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_lanes_train_every_run_of_both_cultures_as_one_program(cultures, tmp_path, capsys):
    assert protocol.main([*cultures, *TINY, "--out", str(tmp_path / "one")]) == 0
    alone = _summary(capsys)
    assert protocol.main([*cultures, *TINY, "--lanes", "--out", str(tmp_path / "lanes")]) == 0
    lanes = _summary(capsys)
    assert alone["runs"] == lanes["runs"] == 4 and lanes["lanes"] and not alone["lanes"]
    assert [r["lanes"] for r in alone["per_run"]] == [1] * 4 and [r["lanes"] for r in lanes["per_run"]] == [4] * 4
    assert [(r["culture"], r["trial"], r["n_train"]) for r in lanes["per_run"]] == \
        [(r["culture"], r["trial"], r["n_train"]) for r in alone["per_run"]]
    assert {r["culture"] for r in lanes["per_run"]} == {"east", "west"}
    assert 0 < lanes["train_step_seconds"] < lanes["total_seconds"]
    assert lanes["cpu_shares"]["this_process"] > 0 and sum(lanes["cpu_shares"].values()) == pytest.approx(1, abs=1e-3)
    assert (tmp_path / "lanes" / "west" / "trial-1" / "metrics.json").exists()


def test_datasets_with_the_same_file_name_are_refused_before_training(cultures, tmp_path, capsys):
    twin = tmp_path / "elsewhere" / "east.npz"  # a/east.npz and b/east.npz would share out/east/trial-K
    twin.parent.mkdir()
    shutil.copy(cultures[0], twin)
    with pytest.raises(SystemExit) as exit_info:
        protocol.main([cultures[0], str(twin), *TINY, "--out", str(tmp_path / "runs")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "share the file name east" in error
    assert not (tmp_path / "runs").exists()


def test_emulated_tf32_trains_as_a_gpu_would_and_says_so(cultures, tmp_path, capsys):
    one = [cultures[0], "--trials", "1", "--epochs", "2", "--widths", "8,16,16", "--dense-units", "32"]
    before = jax.default_backend()
    with use_precision("default"):  # where a GPU multiplies in TF32
        assert protocol.main([*one, "--out", str(tmp_path / "plain")]) == 0
        plain = _summary(capsys)
        assert protocol.main([*one, "--emulate-tf32", "--out", str(tmp_path / "tf32")]) == 0
        emulated = _summary(capsys)
    assert jax.default_backend() == before  # the GPU's paths end with the protocol
    assert plain["device"] == "cpu" and "TF32" in emulated["device"] and "emulated" in emulated["device"]
    losses = [pd.read_csv(tmp_path / name / "east" / "trial-0" / "history.csv")["val_loss"].to_numpy()
              for name in ("plain", "tf32")]
    difference = np.abs(losses[0] - losses[1]).max() / np.abs(losses[0]).max()
    assert 1e-5 < difference < 0.05  # TF32's rounding (~1e-3), not float32's (~1e-7), nor another training


@pytest.mark.parametrize("options, message", [
    (["--trials", "0"], "--trials must be at least 1; got 0"),
    (["--epochs", "0"], "epochs must be at least 1; got 0"),
    (["--split", "bogus"], "invalid choice: 'bogus'"),
    (["--widths", "8,x"], "expected comma-separated integers"),
])
def test_bad_settings_are_one_line_errors_before_training(cultures, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        protocol.main([*cultures, *TINY, *options, "--out", str(tmp_path / "runs")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "error: " in error and message in error
    assert not (tmp_path / "runs").exists()
