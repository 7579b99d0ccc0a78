"""benchmarks/op_profile: exclusive time per XLA operation, and the CLI end to end in a new process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import op_profile


def _op(name: str, start: float, duration: float, tid: int = 1) -> dict:
    return {"ph": "X", "pid": 7, "tid": tid, "ts": start, "dur": duration, "name": name, "args": {"hlo_op": name}}


def test_exclusive_times_subtract_nested_operations_per_thread():
    events = [
        _op("while.3", 0, 100), _op("ynn_fusion.1", 10, 30), _op("add_bitcast_fusion.2", 40, 20),
        _op("ynn_fusion.4", 100, 50),  # starts as the loop ends: not nested in it
        _op("ynn_fusion.5", 0, 70, tid=2),  # another thread's operation overlapping the loop
        {"ph": "X", "pid": 7, "tid": 1, "ts": 0, "dur": 500, "name": "ThunkExecutor::Execute", "args": {}},
        {"ph": "M", "pid": 7, "tid": 1, "name": "thread_name", "args": {"name": "worker"}},
    ]
    assert op_profile.exclusive_op_times(events) == {"while": 50, "ynn_fusion": 150, "add_bitcast_fusion": 20}
    assert [op_profile.op_kind(stem) for stem in ("ynn_fusion", "dot_general", "while", "add_bitcast_fusion")] == \
        ["matmul", "matmul", "loop", "other"]


def test_cli_profiles_a_tiny_inference_call_in_a_new_process(tmp_path):
    out = tmp_path / "profile.json"
    command = [sys.executable, "-m", "benchmarks.op_profile", "infer", "--cores", "1", "--calls", "2",
               "--batch-size", "2", "--image-size", "8", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["task"] == "infer" and summary["cores"] == 1 and summary["images_per_call"] == 2
    assert summary["ms_per_call_by_kind"]["matmul"] > 0 and summary["wall_ms_per_call"] > 0
    assert sum(summary["share_by_kind"].values()) == pytest.approx(1.0)
    assert summary["matmul_bound_speedup"] == pytest.approx(
        summary["op_ms_per_call"] / summary["ms_per_call_by_kind"]["matmul"])
    assert sum(op["ms_per_call"] for op in summary["ops"]) == pytest.approx(summary["op_ms_per_call"])
    assert "matmul-bound speed-up" in result.stdout


@pytest.mark.parametrize("arguments, message", [
    (["train", "--cores", "0"], "--cores must be between 1"),
    (["train", "--calls", "0"], "--calls and --top must be >= 1"),
    (["saliency", "--batch-size", "0"], "batch_size, repeats, train_steps and dataset_size must be >= 1"),
])
def test_cli_refuses_bad_arguments_with_one_line(arguments, message, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # the check that JAX starts after the flags are set
    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_keeps_an_existing_json(tmp_path, monkeypatch, capsys):
    existing = tmp_path / "profile.json"
    existing.write_text("keep me")
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(["train", "--json", str(existing)])
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err
    assert existing.read_text() == "keep me"


def test_cli_refuses_to_run_once_jax_is_imported(capsys):
    import jax  # noqa: F401  (imported by the test session anyway)

    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(["train"])
    assert exit_info.value.code == 2 and "already imported" in capsys.readouterr().err
