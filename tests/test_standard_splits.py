"""benchmarks.standard_splits: tables and curves of finished runs, grouped by configuration over seeds."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmarks import standard_splits
from emofx.cli import main
from emofx.data.synthetic import make_synthetic

TINY = ["--widths", "8,16,16", "--dense-units", "32", "--epochs", "1", "--batch-size", "16", "--split", "random",
        "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    data = make_synthetic("universal", n_per_class=12, classes=("happy", "sad", "surprised")).save(folder / "d.npz")
    for recipe, seed in (("paper", 0), ("paper", 1), ("strong", 0)):
        assert main(["train", str(data), "--recipe", recipe, "--seed", str(seed), *TINY,
                     "--out", str(folder / recipe / f"seed-{seed}")]) == 0
    return folder


def test_summary_groups_seeds_of_a_configuration_and_writes_curves(runs, tmp_path, capsys):
    directories = [str(runs / r / f"seed-{s}") for r, s in (("paper", 0), ("paper", 1), ("strong", 0))]
    assert standard_splits.main([*directories, str(tmp_path / "not-a-run"), "--out", str(tmp_path / "out"),
                                 "--title", "Tiny"]) == 0
    assert "skipped:" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert table["run"].tolist() == ["paper-seed-0", "paper-seed-1", "strong-seed-0"]
    metrics = [json.loads((runs / r / f"seed-{s}" / "metrics.json").read_text())
               for r, s in (("paper", 0), ("paper", 1))]
    assert table.loc[0, "device"] == metrics[0]["device"] and "cores" in metrics[0]["device"]
    shares = metrics[0]["cpu_shares"]  # on Linux, where the tests run
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3) and shares["this_process"] > 0
    assert table.loc[0, "cpu_elsewhere"] == pytest.approx(shares["other_processes"] + shares["steal"])
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["recipe"].tolist() == ["paper", "strong"] and summary["seeds"].tolist() == ["0,1", "0"]
    accuracies = [m["test_accuracy"] for m in metrics]
    assert summary.loc[0, "test_accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert summary.loc[0, "test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert np.isnan(summary.loc[1, "test_accuracy_std"])
    text = (tmp_path / "out" / "summary.md").read_text()
    assert text.startswith("# Tiny") and "python -m benchmarks.standard_splits" in text
    assert f"{100 * np.mean(accuracies):.1f} ± {100 * np.std(accuracies, ddof=1):.1f}" in text
    assert sorted(p.name for p in (tmp_path / "out" / "history").iterdir()) == [f"{n}.csv" for n in table["run"]]
    assert (tmp_path / "out" / "curves.png").stat().st_size > 10_000


def test_later_calls_keep_earlier_rows_and_replace_runs_given_again(runs, tmp_path, capsys):
    out = tmp_path / "out"
    paper = [str(runs / "paper" / f"seed-{s}") for s in (0, 1)]
    assert standard_splits.main([*paper, "--out", str(out)]) == 0
    first = pd.read_csv(out / "runs.csv")
    # Another session adds the strong run and gives paper seed 1 again; paper seed 0's directory is gone.
    assert standard_splits.main([str(runs / "strong" / "seed-0"), paper[1], "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "kept the earlier row of seed-0" in err and "replaced the earlier row of seed-1" in err
    table = pd.read_csv(out / "runs.csv")
    assert table["run"].tolist() == ["seed-0", "strong-seed-0", "seed-1"]  # a taken name gets its parent's
    assert sorted(p.stem for p in (out / "history").iterdir()) == sorted(table["run"])
    assert sorted(zip(table["recipe"], table["seed"])) == [("paper", 0), ("paper", 1), ("strong", 0)]
    kept = table[(table["recipe"] == "paper") & (table["seed"] == 0)].iloc[0]
    assert kept["test_accuracy"] == first.loc[first["seed"] == 0, "test_accuracy"].iloc[0]
    summary = pd.read_csv(out / "summary.csv")
    assert summary.set_index("recipe").loc["paper", "seeds"] == "0,1"
    commands = (out / "command.txt").read_text().splitlines()
    assert len(commands) == 2 and all(c in (out / "summary.md").read_text() for c in commands)


def test_continued_runs_of_several_seeds_group_by_what_they_started_from(runs, tmp_path):
    # Each seed continues its own seed's model at a lower learning rate: one configuration, two seeds.
    data = runs / "d.npz"
    for seed in (0, 1):
        assert main(["train", str(data), "--recipe", "paper", "--seed", str(seed), *TINY, "--lr", "0.01",
                     "--init-from", str(runs / "paper" / f"seed-{seed}"), "--out", str(tmp_path / f"more-{seed}")]) == 0
    out = tmp_path / "out"
    given = [str(runs / "paper" / "seed-0"), str(tmp_path / "more-0"), str(tmp_path / "more-1")]
    assert standard_splits.main([*given, "--out", str(out)]) == 0
    table = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert table["lr"].tolist() == [0.05, 0.01, 0.01]
    assert table["init_from"].tolist() == ["", "paper, 1 epoch", "paper, 1 epoch"]
    assert table["init_run"].tolist() == ["", "seed-0", "seed-1"]
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert summary["seeds"].tolist() == ["0", "0,1"] and summary["init_from"].tolist() == ["", "paper, 1 epoch"]
    assert "| paper    | none   | hard      | 0.01 |" in (out / "summary.md").read_text()


def test_an_older_table_without_a_configuration_column_is_a_clear_error(runs, tmp_path):
    out = tmp_path / "out"
    assert standard_splits.main([str(runs / "paper" / "seed-0"), "--out", str(out)]) == 0
    pd.read_csv(out / "runs.csv").drop(columns="lr").to_csv(out / "runs.csv", index=False)
    before = (out / "runs.csv").read_bytes()
    with pytest.raises(SystemExit, match="has no column lr"):
        standard_splits.main([str(runs / "paper" / "seed-1"), "--out", str(out)])
    assert (out / "runs.csv").read_bytes() == before


def test_curves_are_a_grid_on_one_error_axis_and_redraw_from_the_committed_files_alone(runs, tmp_path, capsys):
    out = tmp_path / "out"
    directories = [str(runs / r / f"seed-{s}") for r, s in (("paper", 0), ("paper", 1), ("strong", 0))]
    assert standard_splits.main([*directories, "--out", str(out)]) == 0
    table = pd.read_csv(out / "runs.csv")  # as committed: a run trained from scratch has no init_from (NaN)
    histories = {name: pd.read_csv(out / "history" / f"{name}.csv") for name in table["run"]}
    fig = standard_splits.curves_figure(table, histories)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["paper, norm none, hard, 1 ep, lr 0.05 (2 seeds)",
                                                "strong, norm none, hard, 1 ep, lr 0.05 (1 seed)"]
    assert shown[0].get_ylim() == shown[1].get_ylim()  # the panels' heights compare
    (out / "curves.png").unlink()
    commands = (out / "command.txt").read_text()
    assert standard_splits.main(["--redraw", "--out", str(out)]) == 0  # the run directories may be gone
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "command.txt").read_text() == commands
    for wrong, problem in ((["--redraw", directories[0], "--out", str(out)], "give no run directories"),
                           (["--redraw", "--out", str(tmp_path / "none")], "needs .*runs.csv"),
                           (["--out", str(out)], "give run directories")):
        with pytest.raises(SystemExit):
            standard_splits.main(wrong)
        assert re.search(problem, capsys.readouterr().err)
