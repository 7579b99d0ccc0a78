"""emofx batch on Dask (a LocalCluster of 2 worker processes), worker loss, run claims between
concurrent batch processes, and the SLURM/PBS job scripts of dask-jobqueue."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emofx.pipeline import batch, experiments, results
from emofx.cli import main

distributed = pytest.importorskip("distributed")
executors = pytest.importorskip("emofx.pipeline.executors")

REPO = Path(__file__).resolve().parents[1]

# y = 10 * x. Every execution appends its run name to `log` (so tests count executions). A run whose
# x equals hold["x"] first writes a wrong result (a half-done run), records its worker's pid and
# waits to be killed; once the pid file exists the run goes through normally.
SOURCE_PARAMETERS = "x = 1\noutput_dir = None\nlog = None\nhold = None\ndelay = 0"
SOURCE_BODY = """\
import os, time
from pathlib import Path
from emofx.pipeline.results import save_results
run = Path(output_dir).parent.name
if log:
    with open(log, 'a') as handle:
        handle.write(run + '\\n')
if hold and x == hold['x'] and not Path(hold['pid_file']).exists():
    save_results(output_dir, y=-1)
    Path(hold['pid_file'] + '.tmp').write_text(str(os.getppid()))
    os.replace(hold['pid_file'] + '.tmp', hold['pid_file'])
    time.sleep(120)
time.sleep(delay)
save_results(output_dir, y=10 * x)
"""
# Reads the source runs through the experiment: sees them all only when the dependency order holds.
READER_PARAMETERS = "x = 1\noutput_dir = None\nexperiment_dir = None"
READER_BODY = """\
from emofx.pipeline.results import completed_runs, save_results
runs = completed_runs(experiment_dir, 'source')
save_results(output_dir, total=int(runs['y'].sum()) * x, sources=len(runs))
"""


@pytest.fixture()
def notebooks(tmp_path, write_notebook):
    return (write_notebook(tmp_path / "nb" / "source.ipynb", SOURCE_PARAMETERS, SOURCE_BODY),
            write_notebook(tmp_path / "nb" / "reader.ipynb", READER_PARAMETERS, READER_BODY))


# How long the nanny may take to bring a killed worker back: a new process importing distributed and emofx, beside the
# other test worker's load; 60 s was too little once on a 2-core AVX2 VM (only 1 of 2 workers back). A liveness wait,
# not a speed target: it returns as soon as the worker is back.
RESTART_WAIT = 300


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (one thread each), started as `emofx batch --executor dask` does."""
    with executors.dask_client(workers=2, retries=2) as dask_client:
        yield dask_client


def connect(client):
    """The client for run_experiment_on_dask, left open for the next test."""
    return lambda: contextlib.nullcontext(client)


def unreachable():
    raise AssertionError("a batch with nothing to run must not connect to a cluster")


def executions(log: Path) -> list[str]:
    return sorted(log.read_text().split()) if log.exists() else []


def comparable_status(run_dir: Path) -> dict:
    """status.json without what differs between two executions (time, the execution log's path)."""
    status = json.loads((run_dir / results.STATUS_FILE).read_text())
    status["parameters"].pop("log", None)
    return {k: v for k, v in status.items() if k not in ("started", "seconds", "inputs", "parameter_hash", "batch")}


def run_and_kill_the_held_run(experiment, client, pid_file: Path) -> list:
    """Run the experiment on Dask, SIGKILL the worker process of the held run once it has written
    its half result (checking that nothing reads it), and return the summaries."""
    summaries = []
    runner = threading.Thread(target=lambda: summaries.extend(
        executors.run_experiment_on_dask(experiment, connect(client), progress=False)))
    runner.start()
    deadline = time.time() + 120
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the held run never started"
    held = experiment.directory / "source" / "x=2"
    assert (held / results.RESULTS_DIR / results.RESULTS_FILE).is_file()  # written, but without a marker:
    assert not (held / results.STATUS_FILE).exists()
    assert "x=2" not in set(results.read_runs(experiment.directory)["run"])  # so never read
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    runner.join(timeout=180)
    assert not runner.is_alive()
    return summaries


def test_dask_gives_the_results_and_statuses_of_the_process_pool_then_skips_everything(notebooks, client, tmp_path):
    source, reader = notebooks

    def experiment(where):
        log = {"log": str(tmp_path / f"{where}.log")}
        sweeps = (experiments.Sweep(source, {"x": [1, 2]}, log), experiments.Sweep(reader, {"x": [1, 3]}))
        return experiments.Experiment("exp", sweeps, tmp_path / where)

    pool = batch.run_experiment(experiment("pool"), workers=2, progress=False)
    on_dask = executors.run_experiment_on_dask(experiment("dask"), connect(client), progress=False)
    errors = [(o.name, o.error) for s in (*pool, *on_dask) for o in s.outcomes if o.error]  # why, should one fail
    assert [[(o.name, o.status, o.previous) for o in s.outcomes] for s in on_dask] == \
           [[(o.name, o.status, o.previous) for o in s.outcomes] for s in pool], errors
    assert [s.count("ok") for s in on_dask] == [2, 2]
    frames = [results.read_runs(tmp_path / where / "exp").drop(columns=["run_dir", "seconds", "log"])
              for where in ("pool", "dask")]
    assert frames[0].equals(frames[1])
    readers = frames[1][frames[1]["notebook"] == "reader"]
    # The readers started after every source run was complete: the scheduler kept the sweeps' order.
    assert readers["total"].tolist() == [30, 90] and readers["sources"].tolist() == [2, 2]
    for run in ("source/x=2", "reader/x=3"):
        assert comparable_status(tmp_path / "dask" / "exp" / run) == comparable_status(tmp_path / "pool" / "exp" / run)
    assert json.loads((tmp_path / "dask" / "exp" / "reader" / "x=1" / results.STATUS_FILE).read_text())["inputs"]

    again = executors.run_experiment_on_dask(experiment("dask"), unreachable, progress=False)
    assert [(s.count("skipped"), len(s.outcomes)) for s in again] == [(2, 2), (2, 2)]
    assert executions(tmp_path / "dask.log") == ["x=1", "x=2"]
    # A redone source run redoes the readers built on it; they wait for it in the graph.
    (tmp_path / "dask" / "exp" / "source" / "x=2" / results.STATUS_FILE).unlink()
    redo = executors.run_experiment_on_dask(experiment("dask"), connect(client), progress=False)
    assert [[(o.status, o.previous) for o in s.outcomes] for s in redo] == [
        [("skipped", "complete"), ("ok", "interrupted")], [("ok", "changed")] * 2]


def test_a_killed_worker_leaves_its_run_unread_and_the_retry_redoes_it(notebooks, client, tmp_path):
    source, _ = notebooks
    pid_file, log = tmp_path / "worker.pid", tmp_path / "runs.log"
    experiment = experiments.Experiment("exp", (experiments.Sweep(source, {"x": [1, 2]}, {
        "log": str(log), "hold": {"x": 2, "pid_file": str(pid_file)}}),), tmp_path / "runs")
    summaries = run_and_kill_the_held_run(experiment, client, pid_file)
    outcomes = {o.name: (o.status, o.previous) for o in summaries[0].outcomes}
    assert outcomes == {"x=1": ("ok", "new"), "x=2": ("ok", "interrupted")}
    assert executions(log) == ["x=1", "x=2", "x=2"]
    runs = results.read_runs(experiment.directory).set_index("run")
    assert runs["y"].to_dict() == {"x=1": 10, "x=2": 20} and set(runs["status"]) == {"ok"}
    client.wait_for_workers(2, timeout=RESTART_WAIT)  # the nanny brings the killed worker back


def test_cli_on_a_running_scheduler(notebooks, client, tmp_path, capsys):
    source, _ = notebooks
    args = ["batch", str(source), "--experiment", "cli", "-p", "x", "4", "--runs-dir", str(tmp_path / "runs"),
            "--executor", "dask", "--scheduler", client.scheduler.address, "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Dask dashboard: {client.dashboard_link}" in out and "cli/source: 1 ok, 0 failed, 0 skipped" in out
    assert main(args) == 0
    assert "cli/source: 0 ok, 0 failed, 1 skipped (already complete)" in capsys.readouterr().out
    assert results.read_runs(tmp_path / "runs" / "cli")["y"].tolist() == [40]


def test_a_worker_lost_past_the_retries_is_reported_lost_with_the_runs_waiting_on_it(notebooks, client, tmp_path):
    source, reader = notebooks
    pid_file = tmp_path / "worker.pid"
    experiment = experiments.Experiment("exp", (
        experiments.Sweep(source, {"x": [2]}, {"hold": {"x": 2, "pid_file": str(pid_file)}}),
        experiments.Sweep(reader, {"x": [1]})), tmp_path / "runs")

    def allow_failures(count):
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", count))

    allow_failures(0)  # no retry: the first worker death loses the run
    try:
        summaries = run_and_kill_the_held_run(experiment, client, pid_file)
    finally:
        allow_failures(2)
    (source_run,), (reader_run,) = (s.outcomes for s in summaries)
    assert (source_run.status, reader_run.status) == ("lost", "lost")
    assert source_run.error.startswith("its worker died (1 attempt; last on tcp://")
    assert reader_run.error.startswith("not run: source/x=2-") and "earlier sweep lost its worker" in reader_run.error
    assert summaries[0].describe().startswith(
        "exp/source: 0 ok, 0 failed, 1 lost (worker died; redone next batch), 0 skipped")
    assert "LOST x=2: its worker died" in summaries[0].describe() and not summaries[0].failed
    assert results.read_runs(experiment.directory).empty  # the half-done run has no marker: nothing is read
    client.wait_for_workers(2, timeout=RESTART_WAIT)
    again = executors.run_experiment_on_dask(experiment, connect(client), progress=False)
    assert [[(o.status, o.previous) for o in s.outcomes] for s in again] == [[("ok", "interrupted")], [("ok", "new")]]


def test_two_concurrent_batch_processes_execute_every_run_exactly_once(notebooks, tmp_path):
    source, _ = notebooks
    log = tmp_path / "runs.log"
    command = [sys.executable, "-m", "emofx", "batch", str(source), "--experiment", "shared", "--runs-dir",
               str(tmp_path / "runs"), "-p", "x", "1", "2", "3", "4", "--set", "log", str(log),
               "--set", "delay", "1", "--workers", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [subprocess.Popen(command + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for extra in (["--executor", "dask"], [])]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert executions(log) == [f"x={x}" for x in range(1, 5)]
    counts = [next(line for line in out.splitlines() if line.startswith("shared/source:")) for out, _ in outputs]
    ok = [int(line.split(": ")[1].split(" ok")[0]) for line in counts]
    assert sum(ok) == 4, counts
    assert "Dask dashboard: http" in outputs[0][0]
    assert len(results.read_runs(tmp_path / "runs" / "shared")) == 4


def test_slurm_and_pbs_job_scripts_from_the_example_config(tmp_path):
    config = executors.load_job_config(REPO / "experiments" / "slurm_cluster.yaml")
    cluster = executors.jobqueue_cluster("slurm", config, retries=3)
    try:
        script = cluster.job_script()
        assert cluster.scheduler.allowed_failures == 3
    finally:
        cluster.close()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("#SBATCH -p gpu", f"#SBATCH --cpus-per-task={config.cores}", "#SBATCH -t 04:00:00",
                      "#SBATCH --gres=gpu:1"):
        assert directive in lines, script
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    command = shlex.split(next(line for line in lines if "distributed.cli.dask_worker" in line))
    from distributed.cli.dask_worker import main as dask_worker

    parsed = dask_worker.make_context("dask worker", command[3:]).params
    assert parsed["nthreads"] == 1 and parsed["n_workers"] in (None, 1)  # one notebook at a time per worker
    assert parsed["scheduler"].startswith("tcp://")

    pbs = tmp_path / "pbs.yaml"
    pbs.write_text("cores: 8\nprocesses: 2\nmemory: 16GB\nwalltime: '02:00:00'\nqueue: batch\njobs: 3\n")
    cluster = executors.jobqueue_cluster("pbs", executors.load_job_config(pbs))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#PBS -q batch" in script and "#PBS -l walltime=02:00:00" in script and "ncpus=8" in script
    assert "--nworkers 2" in script and script.rstrip().endswith("--nthreads 1")


def test_a_run_left_out_of_the_file_redoes_the_runs_built_on_it_in_the_first_dask_batch(notebooks, client,
                                                                                         tmp_path):
    source, reader = notebooks
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: drop\nruns_dir: runs\nsweeps:\n  - notebook: {source}\n    grid: {{x: [1, 2, 3]}}\n"
                      f"  - notebook: {reader}\n    grid: {{x: [1]}}\n")
    experiment = experiments.load_experiment(config)
    first = executors.run_experiment_on_dask(experiment, connect(client), progress=False)
    assert [s.count("ok") for s in first] == [3, 1]
    config.write_text(config.read_text().replace("[1, 2, 3]", "[1, 2]"))
    again = executors.run_experiment_on_dask(experiments.load_experiment(config), connect(client), progress=False)
    assert [(s.count("ok"), s.count("skipped")) for s in again] == [(0, 2), (1, 0)]
    reader_run = results.read_runs(experiment.directory).set_index("notebook").loc["reader"]
    assert reader_run["sources"] == 2 and reader_run["total"] == 30  # x=3's run no longer read


def test_a_dry_run_prints_the_job_script_without_sbatch_and_checks_the_options(notebooks, tmp_path, capsys,
                                                                               monkeypatch):
    source, _ = notebooks
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here: a dry run needs none
    config = REPO / "experiments" / "slurm_cluster.yaml"
    base = ["batch", str(source), "--experiment", "e", "--runs-dir", str(tmp_path / "runs"), "-p", "x", "1", "2",
            "--dry-run", "--executor", "dask"]
    assert main([*base, "--cluster", "slurm", "--cluster-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "e/source: 2 runs: 2 to execute (2 new), 0 complete (skipped)" in out
    assert "each of the 8 jobs sbatch would submit" in out
    script = out.split("emofx batch starts):\n", 1)[1].splitlines()
    assert script[0] == "#!/usr/bin/env bash" and "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script
    assert "tcp://SCHEDULER:8786" in next(line for line in script if "dask_worker" in line)
    assert not any("-e " in line or "-o " in line for line in script)  # no log folder configured: none named
    assert not (tmp_path / "runs").exists()
    logged = tmp_path / "logged.yaml"  # a log folder is named in the script, and not made by a dry run
    logged.write_text(config.read_text() + f"log_directory: {tmp_path / 'dask-logs'}\n")
    assert main([*base, "--cluster", "slurm", "--cluster-config", str(logged)]) == 0
    assert f"#SBATCH -e {tmp_path / 'dask-logs'}/dask-worker-%J.err" in capsys.readouterr().out
    assert not (tmp_path / "dask-logs").exists() and not (tmp_path / "runs").exists()
    for extra, message in ((["--cluster", "slurm"], "--cluster slurm needs --cluster-config"),
                           (["--scheduler", "tcp://x:1", "--retries", "1"], "--scheduler connects to a running")):
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err


def test_bad_dask_options_are_one_line_errors(notebooks, tmp_path, capsys, monkeypatch):
    source, _ = notebooks
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here, whatever the machine has
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: 4\nqueues: gpu\n")
    with pytest.raises(experiments.BatchError, match="unknown key 'queues'"):
        executors.load_job_config(bad)
    bad.write_text("cores: 4\nwalltime: 12:00:00\n")
    with pytest.raises(experiments.BatchError, match="walltime must be text in quotes"):
        executors.load_job_config(bad)
    for value in ("", "7", "'#SBATCH -p gpu'"):
        bad.write_text(f"cores: 4\njob_extra_directives: {value}\n")
        with pytest.raises(experiments.BatchError, match="job_extra_directives must be a list of strings"):
            executors.load_job_config(bad)
    bad.write_text("cores: 2\nprocesses: 4\n")
    with pytest.raises(experiments.BatchError, match="processes \\(4\\) cannot exceed cores \\(2\\)"):
        executors.load_job_config(bad)
    base = ["batch", str(source), "--experiment", "e", "--runs-dir", str(tmp_path / "runs"), "-p", "x", "1"]
    for extra, message in ((["--scheduler", "tcp://x:1"], "--scheduler goes with --executor dask"),
                           (["--executor", "dask", "--cluster", "slurm"], "--cluster slurm needs --cluster-config"),
                           (["--executor", "dask", "--scheduler", "tcp://x:1", "--retries", "1"],
                            "--scheduler connects to a running scheduler"),
                           (["--executor", "dask", "--scheduler", "tcp://x:1", "--workers", "8"],
                            "--workers sets the processes of the local cluster"),
                           (["--executor", "dask", "--scheduler", "127.0.0.1:8799x"],
                            "--scheduler 127.0.0.1:8799x: cannot connect (invalid literal"),
                           (["--executor", "dask", "--cluster", "slurm", "--cluster-config",
                             str(Path(__file__).parent.parent / "experiments" / "slurm_cluster.yaml")],
                            "--cluster slurm submits its jobs with sbatch, which is not on this machine's PATH")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
