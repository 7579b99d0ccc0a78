"""The recipe ablation benchmark end to end on a tiny synthetic set with a predefined split:
its table, re-scored rows, ``--only`` keeping earlier rows, and the refusal of other settings."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmarks import ablation
from emofx.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    data = make_synthetic("universal", n_per_class=12, seed=0, classes=("happy", "sad", "surprised"))
    parts = np.array(["Training", "Training", "PublicTest", "PrivateTest"])[np.arange(len(data)) % 4]
    path = tmp_path_factory.mktemp("ablation") / "tiny.npz"
    replace(data, split=parts).save(path)
    return path


def run(data_path, out, *extra):
    return ablation.main([str(data_path), "--out", str(out), "--runs", str(out.parent / "runs"), "--epochs", "1",
                          "--batch-size", "8", "--widths", "4,4,4", "--dense-units", "8", *extra])


def test_only_reruns_some_variants_and_keeps_the_other_rows(data_path, tmp_path):
    out = tmp_path / "table"
    assert run(data_path, out, "--only", "paper+flip_average") == 0
    first = pd.read_csv(out / "ablation.csv")
    # The evaluation-only change re-scores the model it changes, which is trained once.
    assert list(first["variant"]) == ["paper", "paper+flip_average"]
    assert list(first["trained"]) == ["yes", "= paper (re-scored)"]
    assert first["best_val_error"].nunique() == 1 and first.loc[0, "vs_paper"] == 0
    assert 0 <= first.loc[0, "dead_dense_units"] <= 1 and (out / "history" / "paper.csv").exists()

    assert run(data_path, out, "--only", "strong+norm") == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table["variant"]) == ["paper", "paper+flip_average", "strong+norm"]
    pd.testing.assert_frame_equal(table.iloc[:2][first.columns], first)
    assert table.loc[2, "vs_paper"] == pytest.approx(table.loc[2, "test_accuracy"] - table.loc[0, "test_accuracy"])
    assert "(+ 2 kept from an earlier run)" in (out / "ablation.md").read_text()
    commands = (out / "command.txt").read_text().splitlines()
    assert len(commands) == 2 and commands[1].endswith("--only strong+norm")
    assert json.loads((out / "settings.json").read_text())["epochs"] == 1


def test_only_refuses_a_table_made_with_other_settings(data_path, tmp_path, capsys):
    out = tmp_path / "table"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"epochs": 10}))
    with pytest.raises(SystemExit) as exit_info:
        run(data_path, out, "--only", "paper")
    assert exit_info.value.code == 2
    assert "holds an ablation made with other settings" in capsys.readouterr().err
    assert json.loads((out / "settings.json").read_text()) == {"epochs": 10}
