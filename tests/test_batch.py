"""The papermill batch engine: naming, planning, resume/skip/redo, failures, parallel workers, reader, CLI."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from emofx.cli import main
from emofx.pipeline import batch, experiments, results

# A tiny notebook: y = 10 * x, and an "impossible" x raises like a real notebook would.
PARAMETERS = "x = 1\nlabel = 'a'\noutput_dir = None\nexperiment_dir = None"
BODY = (
    "from emofx.pipeline.results import save_results\n"
    "if x < 0:\n"
    "    raise ValueError(f'x must be >= 0; got {x}')\n"
    "save_results(output_dir, y=10 * x, label=label, experiment_dir=experiment_dir)\n"
    "import pandas as pd\n"
    "pd.DataFrame({'k': [0, 1], 'v': [x, x + 1]}).to_csv(f'{output_dir}/table.csv', index=False)"
)


@pytest.fixture()
def notebook(tmp_path, write_notebook):
    return write_notebook(tmp_path / "nb" / "tiny.ipynb", PARAMETERS, BODY)


def sweep_of(notebook, tmp_path, **grid):
    return experiments.Experiment("exp", (experiments.Sweep(notebook, grid),), tmp_path / "runs")


def test_parameter_set_names_are_readable_stable_and_safe():
    assert experiments.parameter_set_name({"culture": "eyes", "seed": 0}) == "culture=eyes__seed=0"
    assert experiments.parameter_set_name({}) == "default"
    assert experiments.parameter_set_name({"lr": 0.5, "aug": True}) == "lr=0.5__aug=true"
    odd_a = experiments.parameter_set_name({"path": "a/b c"})
    odd_b = experiments.parameter_set_name({"path": "a-b-c"})
    assert "/" not in odd_a and " " not in odd_a and odd_a.startswith("path=a-b-c__")
    assert odd_a != odd_b  # sanitising never makes two parameter sets collide
    assert len(experiments.parameter_set_name({"k": "v" * 500})) < 140
    for text, value in (("1", 1), ("true", True), ("null", None)):  # text that reads as another value
        assert experiments.parameter_set_name({"x": text}) != experiments.parameter_set_name({"x": value})
    assert experiments.parameter_hash({"a": 1, "b": 2}) == experiments.parameter_hash({"b": 2, "a": 1})


def test_paths_in_an_experiment_file_are_read_from_its_folder(tmp_path):
    """A file named beside the experiment file reaches the notebook's kernel (which runs in the notebook's folder)
    as a path from there; source names, cultures and numbers stay as written."""
    study, notebooks = tmp_path / "my_study", tmp_path / "tools" / "notebooks"
    (study / "data").mkdir(parents=True)
    notebooks.mkdir(parents=True)
    (study / "data" / "mine.npz").write_bytes(b"")
    config = study / "exp.yaml"
    config.write_text("name: e\nsweeps:\n  - notebook: ../tools/notebooks/nb.ipynb\n"
                      "    grid: {culture: [A, B]}\n"
                      "    fixed: {dataset: data/mine.npz, sources: {A: data/mine.npz, B: kdef}, epochs: 3}\n")
    sweep = experiments.load_experiment(config).sweeps[0]
    mine = str((study / "data" / "mine.npz").resolve())  # outside the notebooks' parent: absolute
    assert sweep.fixed == {"dataset": mine, "sources": {"A": mine, "B": "kdef"}, "epochs": 3}
    assert dict(sweep.grid) == {"culture": ("A", "B")}
    (tmp_path / "tools" / "data.npz").write_bytes(b"")  # beside the notebooks, reached through a linked folder
    os.symlink(tmp_path / "tools", study / "tools")
    config.write_text("name: e\nsweeps:\n  - notebook: tools/notebooks/nb.ipynb\n"
                      "    fixed: {dataset: tools/data.npz}\n")
    assert experiments.load_experiment(config).sweeps[0].fixed == {"dataset": os.path.join("..", "data.npz")}
    shared = tmp_path / "shared" / "kdef.npz"  # named alike from the experiment's folder and the notebooks': kept
    shared.parent.mkdir()
    shared.write_bytes(b"")
    (tmp_path / "tools" / "experiments").mkdir()
    sibling = tmp_path / "tools" / "experiments" / "exp.yaml"
    sibling.write_text("name: e\nsweeps:\n  - notebook: ../notebooks/nb.ipynb\n"
                       "    fixed: {dataset: ../../shared/kdef.npz}\n")
    assert experiments.load_experiment(sibling).sweeps[0].fixed == {"dataset": "../../shared/kdef.npz"}


def test_parse_value_reads_yaml_scalars():
    assert experiments.parse_value("3") == 3 and experiments.parse_value("0.5") == 0.5
    assert experiments.parse_value("true") is True and experiments.parse_value("eyes") == "eyes"
    assert experiments.parse_value("[a, b]") == ["a", "b"]


def test_sweep_runs_every_combination_then_skips_and_redoes_only_what_is_missing(notebook, tmp_path):
    experiment = sweep_of(notebook, tmp_path, x=[1, 2], label=["a", "b"])
    first = batch.run_experiment(experiment, progress=False)[0]
    assert (first.count("ok"), first.count("failed"), first.count("skipped")) == (4, 0, 0)
    runs = results.read_runs(experiment.directory, "tiny")
    assert sorted(runs["run"]) == ["x=1__label=a", "x=1__label=b", "x=2__label=a", "x=2__label=b"]
    assert (runs["y"] == 10 * runs["x"]).all() and set(runs["status"]) == {"ok"}
    assert runs["experiment_dir"].iloc[0] == str(experiment.directory.resolve())
    table = results.read_table(experiment.directory, "tiny", "table.csv")
    assert list(table.columns) == ["run", "x", "label", "k", "v"] and len(table) == 8
    assert (table["v"] == table["x"] + table["k"]).all()
    run_dir = experiment.directory / "tiny" / "x=2__label=b"
    assert (run_dir / "tiny.ipynb").is_file()
    assert json.loads((run_dir / "status.json").read_text())["parameters"] == {"x": 2, "label": "b"}

    again = batch.run_experiment(experiment, progress=False)[0]
    assert again.count("skipped") == 4 and again.count("ok") == 0
    assert "4 skipped (already complete)" in again.describe()

    # Deleting one run redoes only that run; an interrupted one (no marker) is redone, never read.
    import shutil

    shutil.rmtree(run_dir)
    interrupted = experiment.directory / "tiny" / "x=1__label=a"
    (interrupted / "status.json").unlink()
    (interrupted / "my_notes.txt").write_text("mine")  # a user's file beside the run: redoing it keeps it
    (interrupted / "results" / "stale.csv").write_text("old")  # results/ is the notebook's: replaced whole
    assert len(results.read_runs(experiment.directory)) == 2
    redo = batch.run_experiment(experiment, progress=False)[0]
    redone = {o.name: o.previous for o in redo.outcomes if o.status == "ok"}
    assert redone == {"x=2__label=b": "new", "x=1__label=a": "interrupted"}
    assert redo.count("skipped") == 2
    assert len(results.read_runs(experiment.directory)) == 4
    assert (interrupted / "my_notes.txt").read_text() == "mine" and not (interrupted / "results" / "stale.csv").exists()


def test_kernels_talk_over_encrypted_sockets_without_warning(notebook, tmp_path, capfd):
    from jupyter_client.manager import KernelManager

    if "transport_encryption" not in KernelManager.class_trait_names():
        pytest.skip("this jupyter_client cannot provision CurveZMQ keys (8.10 and later can)")
    assert batch.kernel_settings()["config"].KernelManager.transport_encryption == "auto"
    outcome = batch.run_experiment(sweep_of(notebook, tmp_path, x=[3]), progress=False)[0]
    assert outcome.count("ok") == 1
    assert "without encryption" not in capfd.readouterr().err  # the kernel's own stderr, at the descriptor


def test_the_kernels_own_log_stays_off_the_batchs_terminal(tmp_path, write_notebook, capfd):
    # jupyter_client interrupts every kernel before shutting it down; one busy with a message then logs
    # "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." on the terminal of a batch that went well
    body = ("from ipykernel.kernelapp import IPKernelApp\n"
            "IPKernelApp.instance().log.error('kernel log line')\n"
            "IPKernelApp.instance().log.critical('kernel critical line')\n"
            "print('cell output line')")
    logging = write_notebook(tmp_path / "nb" / "logging.ipynb", PARAMETERS, body)
    outcome = batch.run_experiment(sweep_of(logging, tmp_path, x=[1]), progress=False)[0]
    assert outcome.count("ok") == 1
    err = capfd.readouterr().err
    assert "kernel log line" not in err and "kernel critical line" in err  # at the level kernel_settings sets
    saved = nbformat.read(next((tmp_path / "runs").rglob("logging.ipynb")), as_version=4)
    assert "cell output line" in json.dumps(saved.cells[-1].outputs)  # the notebook's own outputs are kept


def test_changed_parameters_rerun_and_any_executor_can_run_the_batch(notebook, tmp_path, monkeypatch):
    def experiment(label):
        return experiments.Experiment("exp", (experiments.Sweep(notebook, {"x": [4, 5]}, {"label": label}),),
                                      tmp_path / "runs")

    # runs on threads of this process: none may change the process's working folder (two papermill runs that
    # each chdir and restore left the pytest worker in a notebook folder, and later tests' `python -m` failed)
    chdirs = []
    monkeypatch.setattr(os, "chdir", lambda path: chdirs.append(path))
    threads = batch.run_experiment(
        experiment("a"), workers=2, progress=False,
        executor_factory=lambda n: concurrent.futures.ThreadPoolExecutor(max_workers=n),
    )[0]
    assert threads.count("ok") == 2 and set(map(str, chdirs)) <= {os.getcwd()}  # papermill's restores only
    monkeypatch.undo()
    changed = batch.run_experiment(experiment("z"), progress=False)[0]
    assert [(o.status, o.previous) for o in changed.outcomes] == [("ok", "changed")] * 2
    runs = results.read_runs(tmp_path / "runs" / "exp")
    assert runs["y"].tolist() == [40, 50] and runs["label"].tolist() == ["z", "z"]


def test_runs_that_read_the_experiment_are_redone_when_what_they_build_on_is_redone(notebook, tmp_path):
    source = nbformat.read(notebook, as_version=4)
    source.cells[0].source = "x = 1\nlabel = 'a'\noutput_dir = None"
    source.cells[1].source = "from emofx.pipeline.results import save_results\nsave_results(output_dir, y=x)"
    source_path = notebook.with_name("source.ipynb")
    nbformat.write(source, source_path)
    experiment = experiments.Experiment("exp", (experiments.Sweep(source_path, {"x": [1, 2]}),
                                                experiments.Sweep(notebook, {"x": [7]})),
                                        tmp_path / "runs")
    first = batch.run_experiment(experiment, progress=False)
    assert [s.count("ok") for s in first] == [2, 1]
    import shutil

    shutil.rmtree(experiment.directory / "source" / "x=2")
    again = batch.run_experiment(experiment, progress=False)
    assert [(s.count("ok"), s.count("skipped")) for s in again] == [(1, 1), (1, 0)]
    assert again[1].outcomes[0].previous == "changed"


def two_stage_experiment(notebook: Path, tmp_path: Path, name: str) -> Path:
    """An experiment file: a source notebook over x in 1, 2, 3, then the tiny notebook (which reads the experiment,
    so its run builds on the source runs) for x = 7."""
    source = nbformat.read(notebook, as_version=4)
    source.cells[0].source = "x = 1\nlabel = 'a'\noutput_dir = None"
    source.cells[1].source = "from emofx.pipeline.results import save_results\nsave_results(output_dir, y=x)"
    nbformat.write(source, notebook.with_name("source.ipynb"))
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: {name}\nruns_dir: runs\nsweeps:\n"
                      "  - notebook: nb/source.ipynb\n    grid: {x: [1, 2, 3]}\n"
                      "  - notebook: nb/tiny.ipynb\n    grid: {x: [7]}\n")
    return config


def test_a_dry_run_names_the_runs_a_batch_would_execute_and_why_and_touches_nothing(notebook, tmp_path, capsys):
    config = two_stage_experiment(notebook, tmp_path, "dry")
    dry = ["batch", "--config", str(config), "--dry-run"]
    assert main(dry) == 0
    out = capsys.readouterr().out
    assert "dry/source: 3 runs: 3 to execute (3 new), 0 complete (skipped)" in out
    assert "dry/tiny: 1 run, decided once the earlier sweeps' runs are done" in out and "now: 1 new" in out
    assert [line.split() for line in out.splitlines() if line.startswith("  ")] == [
        ["new", "x=1"], ["new", "x=2"], ["new", "x=3"], ["new", "x=7"]]
    assert not (tmp_path / "runs").exists()  # no plan.json, no run folder
    assert main(["batch", "--config", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    runs = tmp_path / "runs" / "dry"
    (runs / "source" / "x=2" / "status.json").unlink()  # cut short
    status = json.loads((runs / "source" / "x=3" / "status.json").read_text())
    (runs / "source" / "x=3" / "status.json").write_text(json.dumps({**status, "status": "failed"}))
    config.write_text(config.read_text().replace("{x: [7]}", "{x: [7, 8]}"))
    before = sorted((path, path.stat().st_mtime_ns) for path in runs.rglob("*"))
    assert main(dry) == 0
    out = capsys.readouterr().out
    assert "dry/source: 3 runs: 2 to execute (1 interrupted, 1 failed), 1 complete (skipped)" in out
    assert "dry/tiny: 2 runs, decided once" in out and "now: 1 changed, 1 new" in out
    assert sorted((path, path.stat().st_mtime_ns) for path in runs.rglob("*")) == before
    assert main([*dry, "--only", "source", "--force"]) == 0
    out = capsys.readouterr().out
    assert "dry/source: 3 runs: 3 to execute (--force; now: 1 complete, 1 interrupted, 1 failed)" in out
    assert main([*dry, "--cluster", "slurm"]) == 2
    assert "--cluster goes with --executor dask" in capsys.readouterr().err
    for extra, message in ((["--workers", "0"], "--workers must be at least 1"), (["--kernel", "nosuch"],
                                                                                 "no Jupyter kernel named 'nosuch'")):
        assert main([*dry, *extra]) == 2 and message in capsys.readouterr().err  # refused as by a real batch


def test_a_run_left_out_of_the_file_redoes_the_runs_built_on_it_and_the_dry_run_says_so(notebook, tmp_path, capsys):
    config = two_stage_experiment(notebook, tmp_path, "drop")
    assert main(["batch", "--config", str(config), "--no-progress"]) == 0
    config.write_text(config.read_text().replace("[1, 2, 3]", "[1, 2]"))  # x=3 no longer made: tiny built on it
    capsys.readouterr()
    assert main(["batch", "--config", str(config), "--dry-run"]) == 0
    assert "drop/tiny: 1 run: 1 to execute (1 changed), 0 complete (skipped)" in capsys.readouterr().out
    assert main(["batch", "--config", str(config), "--no-progress"]) == 0
    assert "drop/tiny: 1 ok, 0 failed, 0 skipped (already complete); 1 redone" in capsys.readouterr().out


def test_failing_run_is_recorded_and_others_go_on_in_parallel(notebook, tmp_path):
    experiment = sweep_of(notebook, tmp_path, x=[-1, 3])
    summary = batch.run_experiment(experiment, workers=2, progress=False)[0]
    assert (summary.count("ok"), summary.count("failed")) == (1, 1)
    failed = summary.failed[0]
    assert failed.name == "x=-1" and failed.error == "ValueError: x must be >= 0; got -1"
    assert "FAILED x=-1: ValueError" in summary.describe()
    status = json.loads((failed.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["error"]["type"] == "ValueError"
    assert "\x1b[" not in status["error"]["traceback"] and "x must be >= 0" in status["error"]["traceback"]
    assert (failed.run_dir / "tiny.ipynb").is_file()  # the partially executed notebook is kept
    runs = results.read_runs(experiment.directory).set_index("run")
    assert runs.loc["x=3", "y"] == 30 and runs.loc["x=-1", "status"] == "failed"
    assert results.completed_runs(experiment.directory, "tiny")["run"].tolist() == ["x=3"]


def test_bad_experiments_are_clear_errors(notebook, tmp_path):
    with pytest.raises(experiments.BatchError, match="has no parameter 'seed'; its parameters are"):
        batch.run_experiment(sweep_of(notebook, tmp_path, seed=[0]), progress=False)
    with pytest.raises(experiments.BatchError, match="set by emofx batch"):
        batch.run_experiment(sweep_of(notebook, tmp_path, output_dir=["x"]), progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        batch.run_experiment(sweep_of(tmp_path / "missing.ipynb", tmp_path, x=[1]), progress=False)
    untagged = nbformat.v4.new_notebook()
    untagged.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(untagged, tmp_path / "untagged.ipynb")
    with pytest.raises(experiments.BatchError, match="no cell tagged 'parameters'"):
        batch.run_experiment(sweep_of(tmp_path / "untagged.ipynb", tmp_path, x=[1]), progress=False)
    with pytest.raises(experiments.BatchError, match="experiment name"):
        experiments.Experiment("a/b", ())
    with pytest.raises(FileNotFoundError, match="run `emofx batch` first"):
        results.read_runs(tmp_path / "nothing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: e\nsweeps:\n  - notebook: x.ipynb\n    grids: {}\n")
    with pytest.raises(experiments.BatchError, match="unknown key 'grids'"):
        experiments.load_experiment(bad)
    with pytest.raises(FileNotFoundError, match="is a folder; give the YAML file"):
        experiments.load_experiment(tmp_path)
    bad.write_text("name: e\nsweeps:\n  - notebook: x.ipynb\n    fixed: {a: 1}\n    fixed: {a: 2}\n")
    with pytest.raises(experiments.BatchError, match="not valid YAML: the key 'fixed' is given twice"):
        experiments.load_experiment(bad)  # YAML itself would keep the last
    merged = tmp_path / "merged.yaml"  # YAML's merge keys are not keys given twice
    merged.write_text("name: e\ndefaults: &d {epochs: 5, seed: 1}\nsweeps:\n  - notebook: x.ipynb\n"
                      "    fixed: {<<: *d, seed: 2}\n")
    with pytest.raises(experiments.BatchError, match="unknown key 'defaults'"):  # read past the merge
        experiments.load_experiment(merged)
    merged.write_text("name: e\nsweeps:\n  - &s\n    notebook: x.ipynb\n    fixed: {epochs: 5}\n"
                      "  - <<: *s\n    grid: {seed: [1, 2]}\n")
    assert experiments.load_experiment(merged).sweeps[1].fixed == {"epochs": 5}
    bad.write_text("name: e\nsweeps:\n  - notebook: x.ipynb\n    grid: {culture: }\n")
    with pytest.raises(experiments.BatchError, match="sweep 1's grid gives 'culture' no value"):
        experiments.load_experiment(bad)  # YAML reads it as null: one run of culture None
    bad.write_text("name: e\nsweeps:\n  - notebook: x.ipynb\n    grid: [1, 2]\n")
    with pytest.raises(experiments.BatchError, match="'grid' must map parameter names to values"):
        experiments.load_experiment(bad)
    for text in ("sweeps:\n  - notebook: 7\n", "runs_dir: 5\nsweeps:\n  - notebook: x.ipynb\n"):
        bad.write_text(text)
        with pytest.raises(experiments.BatchError, match="notebook' \\(the path|must be text"):
            experiments.load_experiment(bad)
    (tmp_path / "empty.ipynb").write_text("{}")
    with pytest.raises(experiments.BatchError, match="is not a Jupyter notebook"):
        batch.run_experiment(sweep_of(tmp_path / "empty.ipynb", tmp_path, x=[1]), progress=False)
    with pytest.raises(experiments.BatchError, match="parameter 'x' of tiny.ipynb repeats the value 0; each run is"):
        experiments.Sweep(notebook, {"x": [0, 1, 0]})
    assert len(experiments.Sweep(notebook, {"x": [1, "1", None, [1]]}).parameter_sets()) == 4  # four values
    twice = (experiments.Sweep(notebook, {"x": [1, 2]}, {"label": "a"}), experiments.Sweep(notebook, {"x": [2]}))
    with pytest.raises(experiments.BatchError, match="sweeps 1 and 2 of exp both write the run tiny/x=2"):
        experiments.Experiment("exp", twice, tmp_path / "runs")


def test_cli_runs_a_config_and_a_command_line_sweep(notebook, tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(
        "name: cfg\nruns_dir: runs\nsweeps:\n"
        "  - notebook: nb/tiny.ipynb\n    grid: {x: [1, -2]}\n    fixed: {label: [p, q]}\n"
    )
    assert main(["batch", "--config", str(config), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 ok, 1 failed, 0 skipped" in out and "FAILED x=-2: ValueError: x must be >= 0" in out
    runs = results.read_runs(tmp_path / "runs" / "cfg").set_index("run")
    assert runs.loc["x=1", "label"] == ["p", "q"]  # a list in `fixed` is one value

    args = ["batch", str(notebook), "--experiment", "cli", "-p", "x", "6", "--runs-dir", str(tmp_path / "runs"),
            "--no-progress"]
    assert main(args) == 0
    assert main(args) == 0
    # a parameter left at the notebook's default is read from its parameters cell
    assert results.read_runs(tmp_path / "runs" / "cli")["label"].tolist() == ["a"]
    assert "0 ok, 0 failed, 1 skipped (already complete)" in capsys.readouterr().out
    assert main(["batch", str(notebook), "--experiment", "cli", "-p", "nope", "1", "--runs-dir",
                 str(tmp_path / "runs")]) == 2
    assert "has no parameter 'nope'" in capsys.readouterr().err
    assert main([*args, "--timeout", "-5"]) == 2
    assert "--timeout must be a positive number of seconds per cell; got -5.0" in capsys.readouterr().err


def test_relative_data_and_cache_folders_are_made_absolute_for_kernels_started_elsewhere(tmp_path, monkeypatch):
    from emofx.data.paths import CACHE_ENV, DATA_ENV, absolutize_path_env, shared_data_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, "../shared/data")
    monkeypatch.setenv(CACHE_ENV, "cache")
    absolutize_path_env()
    assert Path(os.environ[DATA_ENV]) == tmp_path.parent / "shared" / "data"
    assert Path(os.environ[CACHE_ENV]) == tmp_path / "cache"
    monkeypatch.chdir(tmp_path.parent)  # a notebook kernel's folder: the same data folder
    assert shared_data_root() == tmp_path.parent / "shared" / "data"


def test_results_files_are_standard_json_and_a_damaged_one_is_named(notebook, tmp_path):
    path = results.save_results(tmp_path, accuracy=float("nan"), spread=float("inf"), n=3, label="eyes")
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert json.loads(path.read_text()) == {"accuracy": None, "spread": None, "n": 3, "label": "eyes"}
    batch.run_experiment(sweep_of(notebook, tmp_path, x=[1]), progress=False)
    written = next((tmp_path / "runs").rglob(results.RESULTS_FILE))
    written.write_text("{damaged")
    with pytest.raises(ValueError, match=re.escape(f"{written} is not readable JSON")):
        results.read_runs(tmp_path / "runs" / "exp")


def test_a_notebook_that_names_no_kernel_runs_as_python_and_its_experiment_has_a_report(notebook, tmp_path, capsys):
    # written by a script or jupytext, not saved by Jupyter: papermill alone refused to read or run it
    bare = nbformat.read(notebook, as_version=4)
    bare.metadata = {}
    nbformat.write(bare, notebook)
    summary = batch.run_experiment(sweep_of(notebook, tmp_path, x=[2]), progress=False)[0]
    assert summary.count("ok") == 1, summary.describe()
    assert results.read_runs(tmp_path / "runs" / "exp")["y"].tolist() == [20]
    assert main(["report", str(tmp_path / "runs" / "exp"), "--out", str(tmp_path / "report")]) == 0
    assert "No completed 02_train_culture runs" in (tmp_path / "report" / "report.md").read_text()


def test_an_experiment_file_defines_its_runs_and_readers_leave_out_the_rest(notebook, tmp_path, capsys):
    """Runs an earlier configuration of the same experiment file left in its folder are not read as if the file
    still made them (a comparison would mix them with the current runs)."""
    config = tmp_path / "exp.yaml"
    config.write_text("name: cfg\nruns_dir: runs\nsweeps:\n  - notebook: nb/tiny.ipynb\n    grid: {x: [1, 2]}\n")
    assert main(["batch", "--config", str(config), "--no-progress"]) == 0
    config.write_text("name: cfg\nruns_dir: runs\nsweeps:\n  - notebook: nb/tiny.ipynb\n    grid: {x: [1, 3]}\n")
    assert main(["batch", "--config", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    folder = tmp_path / "runs" / "cfg"
    with pytest.warns(UserWarning, match=r"1 completed runs under .*cfg are not made by its experiment file's current "
                                         r"configuration \(e.g. tiny/x=2: an earlier configuration's"):
        runs = results.read_runs(folder).set_index("run")["status"]
    assert runs.to_dict() == {"x=1": "ok", "x=2": results.NOT_PLANNED, "x=3": "ok"}
    with pytest.warns(UserWarning):
        assert results.completed_runs(folder, "tiny")["run"].tolist() == ["x=1", "x=3"]
    reader = tmp_path / "nb" / "reader.ipynb"  # a notebook the file no longer runs: its runs are left out too
    reader.write_bytes(notebook.read_bytes())
    assert main(["batch", str(reader), "--experiment", "cfg", "--runs-dir", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    with pytest.warns(UserWarning, match="1 completed runs"):
        assert results.read_runs(folder, "reader")["status"].tolist() == [results.NOT_PLANNED]
    # runs added one command at a time (no experiment file) are all read
    args = ["batch", str(notebook), "--experiment", "cli", "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main([*args, "-p", "x", "4"]) == 0 and main([*args, "-p", "x", "5"]) == 0
    assert results.completed_runs(tmp_path / "runs" / "cli", "tiny")["run"].tolist() == ["x=4", "x=5"]


def test_the_same_run_twice_and_values_of_the_wrong_kind_are_refused_before_any_run(notebook, tmp_path):
    for values, shown in (([0, 0.0], "0.0"), ([1, True], "True")):  # one model each, under two names
        with pytest.raises(experiments.BatchError, match=f"parameter 'x' of tiny.ipynb repeats the value {shown}"):
            experiments.Sweep(notebook, {"x": values})
    swapped = (experiments.Sweep(notebook, {"x": [1], "label": ["b"]}),
               experiments.Sweep(notebook, {"label": ["b"], "x": [1]}))
    with pytest.raises(experiments.BatchError, match="makes the runs tiny/x=1__label=b and tiny/label=b__x=1 with "
                                                     "the same parameters"):
        experiments.Experiment("exp", swapped, tmp_path / "runs")
    for value, kind in (("1", r"a whole number \(without quotes\)"), (1.5, "a whole number"), ([1], "a whole number"),
                        (True, "a whole number")):
        with pytest.raises(experiments.BatchError, match=f"parameter 'x' of tiny.ipynb takes {kind}, as its default "
                                                         f"1 is; got {re.escape(repr(value))}"):
            batch.run_experiment(sweep_of(notebook, tmp_path, x=[value]), progress=False)
    with pytest.raises(experiments.BatchError, match="takes a whole number, as its default 1 is; got 2.0"):
        batch.check_parameters(experiments.Sweep(notebook, {"x": [2.0]}))  # range(2.0) fails in the notebook
    assert batch.check_parameters(experiments.Sweep(notebook, {"x": [2]}, {"label": ["any", "kind"]}))
    assert batch.check_parameters(experiments.Sweep(notebook, {"x": [None]}))  # a notebook's "all" or "default"
    # an experiment file's sweeps are all checked before the first runs
    config = tmp_path / "exp.yaml"
    config.write_text("name: cfg\nruns_dir: runs\nsweeps:\n  - notebook: nb/tiny.ipynb\n    grid: {x: [1]}\n"
                      "  - notebook: nb/tiny.ipynb\n    grid: {x: ['2']}\n")
    with pytest.raises(experiments.BatchError, match="takes a whole number"):
        batch.run_experiment(experiments.load_experiment(config), progress=False)
    assert not (tmp_path / "runs" / "cfg" / "tiny").exists()


def test_a_run_whose_training_was_interrupted_is_not_complete(tmp_path, write_notebook):
    stopped = write_notebook(tmp_path / "nb" / "stopped.ipynb", "output_dir = None",
                             "from emofx.pipeline.results import save_results\n"
                             "save_results(output_dir, stop_reason='interrupted', test_accuracy=0.3)")
    summary = batch.run_experiment(sweep_of(stopped, tmp_path), progress=False)[0]
    assert summary.count("failed") == 1
    assert "Interrupted: the notebook's training was interrupted (its kernel got SIGINT)" in summary.describe()
    again = batch.run_experiment(sweep_of(stopped, tmp_path), progress=False)[0]
    assert again.count("skipped") == 0  # done again, not taken as complete


def test_a_kernel_that_dies_while_starting_is_started_once_more(notebook, tmp_path, monkeypatch):
    """On a loaded machine a kernel may die before it answers (no cell has run): the run starts it again, once."""
    import papermill

    real, calls = papermill.execute_notebook, []

    def dies_at_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", dies_at_first)
    summary = batch.run_experiment(sweep_of(notebook, tmp_path, x=[1]), progress=False)[0]
    assert summary.count("ok") == 1 and len(calls) == 2

    def always_dies(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", always_dies)
    calls.clear()
    again = batch.run_experiment(sweep_of(notebook, tmp_path, x=[2]), progress=False)[0]
    assert again.count("failed") == 1 and len(calls) == 2 and "Kernel died" in again.describe()


def test_a_stage_without_completed_runs_says_why_and_how_to_run_it(notebook, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("name: cfg\nruns_dir: runs\nsweeps:\n  - notebook: nb/tiny.ipynb\n    grid: {x: [-1, -2]}\n")
    batch.run_experiment(experiments.load_experiment(config), progress=False)
    with pytest.raises(FileNotFoundError, match=r"no completed runs of tiny under .*cfg: its 2 runs failed \(first, "
                                                r"x=-1: ValueError: x must be >= 0; got -1\); fix that, then run it "
                                                rf"with `emofx batch --config {re.escape(str(config))}`"):
        results.completed_runs(tmp_path / "runs" / "cfg", "tiny")
    (tmp_path / "runs" / "bare" / "tiny").mkdir(parents=True)  # no plan: the notebook's own command
    with pytest.raises(FileNotFoundError, match=r"run it with `emofx batch notebooks/tiny.ipynb --experiment bare"):
        results.completed_runs(tmp_path / "runs" / "bare", "tiny")


def test_a_run_this_batch_already_executed_is_not_executed_again(tmp_path, monkeypatch):
    """Dask redoes a finished task whose worker died (it held the result): the run's status.json names this batch,
    so the task returns what was recorded instead of executing the notebook again (--force had it retrain and, the
    batch ending first, leave no marker)."""
    from dataclasses import replace

    spec = batch.RunSpec(notebook=tmp_path / "nb.ipynb", run_dir=tmp_path / "x=1", name="x=1", parameters={"x": 1},
                         injected={})
    (spec.run_dir / results.RESULTS_DIR).mkdir(parents=True)
    (spec.run_dir / results.STATUS_FILE).write_text(json.dumps({
        "status": "ok", "parameter_hash": spec.parameter_hash, "inputs": "", "batch": "b1", "seconds": 2.5}))
    executed = []
    monkeypatch.setattr(batch, "execute_run", lambda s: executed.append(s.batch) or batch.RunOutcome(
        s.name, s.run_dir, "ok"))
    again = batch.claim_and_execute(replace(spec, batch="b1"), force=True)
    assert (again.status, again.seconds, executed) == ("ok", 2.5, [])
    batch.claim_and_execute(replace(spec, batch="b2"), force=True)  # another batch's --force executes it
    assert executed == ["b2"]


def _recorded_run(experiment_dir, name, status, results=None, **fields):
    run_dir = experiment_dir / "tiny" / name
    (run_dir / "results").mkdir(parents=True)
    record = {"status": status, "parameters": {"x": int(name.split("=")[1])}, "parameter_hash": "h", **fields}
    (run_dir / "status.json").write_text(json.dumps(record))
    if results is not None:
        (run_dir / "results" / "results.json").write_text(json.dumps(results))
    return run_dir


def test_the_results_of_a_failed_run_are_not_read_and_only_completed_runs_leave_the_plan(tmp_path):
    """A notebook that saved its results and then failed in a later cell: its row says failed, without the numbers;
    a run the plan no longer makes is left out when it completed, and still reported when it failed."""
    root = tmp_path / "exp"
    _recorded_run(root, "x=1", "failed", {"y": 10}, error={"type": "ValueError", "message": "late"})
    _recorded_run(root, "x=2", "ok", {"y": 20})
    _recorded_run(root, "x=3", "ok", {"y": 30})
    _recorded_run(root, "x=4", "failed", None, error={"type": "ValueError", "message": "early"})
    runs = results.read_runs(root).set_index("run")
    assert np.isnan(runs.loc["x=1", "y"]) and runs.loc["x=2", "y"] == 20
    assert runs.loc["x=1", "error"] == "ValueError: late"
    results.write_plan(root, {"tiny": ["x=1", "x=2"]}, tmp_path / "exp.yaml")
    with pytest.warns(UserWarning, match="1 completed runs under .* are not made by its experiment file"):
        planned = results.read_runs(root).set_index("run")["status"].to_dict()
    assert planned == {"x=1": "failed", "x=2": "ok", "x=3": results.NOT_PLANNED, "x=4": "failed"}


def test_a_runs_state_follows_its_marker_its_parameters_and_its_inputs(tmp_path):
    root = tmp_path / "exp"
    done = _recorded_run(root, "x=1", "ok", inputs="abc")
    assert results.run_state(done, "h", "abc") == "complete"
    assert results.run_state(done, "other", "abc") == "changed"
    assert results.run_state(done, "h", "xyz") == "changed"  # what it builds on was redone
    assert results.run_state(done, "h") == "changed"
    failed = _recorded_run(root, "x=2", "failed", inputs="")
    assert results.run_state(failed, "h") == "failed"
    (failed / "status.json").unlink()
    assert results.run_state(failed, "h") == "interrupted" and results.run_state(root / "tiny" / "x=9", "h") == "new"


def test_parse_value_keeps_empty_text_as_text():
    assert experiments.parse_value("") == "" and experiments.parse_value("  ") == "  "
    assert experiments.parse_value("[1, 2") == "[1, 2"  # not YAML: the text as given


def test_a_run_reading_the_experiment_builds_only_on_completed_runs_of_earlier_sweeps(notebook, tmp_path):
    """The fingerprint of what a run reads: the completed runs of the sweeps before it that do not read the
    experiment; a failed run (retried or not) and the runs of later sweeps change nothing."""
    source = nbformat.read(notebook, as_version=4)
    source.cells[0].source = "x = 1\noutput_dir = None"
    source_path = notebook.with_name("source.ipynb")
    nbformat.write(source, source_path)
    reader, maker = experiments.Sweep(notebook, {"x": [7]}), experiments.Sweep(source_path, {"x": [1, 2]})
    before = experiments.Experiment("exp", (maker, reader), tmp_path / "runs")
    root = before.directory
    for name, status in (("x=1", "ok"), ("x=2", "failed")):
        (root / "source" / name).mkdir(parents=True)
        (root / "source" / name / "status.json").write_text(json.dumps(
            {"status": status, "parameters": {"x": int(name[-1])}, "started": "2026-01-01T00:00:00"}))
    first = batch.upstream_fingerprint(before, reader)
    assert first == experiments.parameter_hash({"upstream": [["source", "x=1", "2026-01-01T00:00:00"]]})
    failed = root / "source" / "x=2" / "status.json"
    failed.write_text(failed.read_text().replace("2026-01-01", "2026-02-02"))  # retried, failed again
    assert batch.upstream_fingerprint(before, reader) == first
    after = experiments.Experiment("exp", (reader, maker), tmp_path / "runs")  # the runs it reads come later
    assert batch.upstream_fingerprint(after, reader) == ""


def test_a_sweep_reading_the_experiment_waits_only_while_an_earlier_sweep_has_runs_to_do(notebook, tmp_path):
    from emofx.pipeline.plans import plan_sweeps

    source = nbformat.read(notebook, as_version=4)
    source.cells[0].source = "x = 1\noutput_dir = None"
    source_path = notebook.with_name("source.ipynb")
    nbformat.write(source, source_path)
    experiment = experiments.Experiment("exp", (experiments.Sweep(source_path, {"x": [1]}),
                                                experiments.Sweep(notebook, {"x": [7]})), tmp_path / "runs")
    assert [plan.waits for plan in plan_sweeps(experiment)] == [False, True]  # source's run is still to do
    done = experiment.directory / "source" / "x=1"
    done.mkdir(parents=True)
    (done / "status.json").write_text(json.dumps({"status": "ok", "parameters": {"x": 1},
                                                  "parameter_hash": experiments.parameter_hash({"x": 1})}))
    plans = plan_sweeps(experiment)
    assert [plan.waits for plan in plans] == [False, False] and [len(plan.todo) for plan in plans] == [0, 1]


def test_notebook_tools_import_without_jsonschemas_iri_grammar_and_leave_it_importable():
    # In fresh processes (this one imported jsonschema long ago). rfc3987_syntax is there with Jupyter's
    # jupyter-events; where it is absent, jsonschema never had the iri checks and there is nothing to compare.
    pytest.importorskip("rfc3987_syntax")
    tools = "from emofx.pipeline.experiments import notebook_tools; notebook_tools(); "
    report = ("import jsonschema, rfc3987_syntax; "
              "print('iri' in jsonschema.FormatChecker.checkers, 'date' in jsonschema.FormatChecker.checkers)")
    for code, iri in ((tools + report, False), ("import jsonschema; " + tools + report, True)):  # True: kept as was
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.split() == [str(iri), "True"], (code, done.stderr)
