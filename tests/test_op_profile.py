"""benchmarks/op_profile: exclusive time per XLA operation, and the CLI end to end in a new process."""

from __future__ import annotations

import json
import os
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
    assert op_profile.exclusive_op_times(events) == {("", "while.3"): 50, ("", "ynn_fusion.1"): 30,
                                                     ("", "add_bitcast_fusion.2"): 20, ("", "ynn_fusion.4"): 50,
                                                     ("", "ynn_fusion.5"): 70}


# An optimised module as XLA dumps it (shortened): a YNNPACK fusion around a convolution, another around a
# pooling reduction, a loop whose body holds a dot, and a call whose result type is a tuple with a comment.
HLO = """HloModule jit_step, entry_computation_layout={(f32[8,8]{1,0})->f32[8,8]{1,0}}

%max_of (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %maximum.1 = f32[] maximum(%a, %b)
}

%conv_computation (p0: f32[1,8,8,4], p1: f32[5,1,4,4]) -> f32[1,8,8,4] {
  %p0 = f32[1,8,8,4]{3,2,1,0} parameter(0)
  %p1 = f32[5,1,4,4]{3,2,1,0} parameter(1)
  ROOT %convolution.2 = f32[1,8,8,4]{3,2,1,0} convolution(%p0, %p1), window={size=5x1 pad=2_2x0_0}
}

%pool_computation (p0.1: f32[1,8,8,4]) -> f32[1,4,4,4] {
  %p0.1 = f32[1,8,8,4]{3,2,1,0} parameter(0)
  %c = f32[] constant(-inf)
  ROOT %reduce.3 = f32[1,4,4,4]{3,2,1,0} reduce(%p0.1, %c), dimensions={2}, to_apply=%max_of
}

%body (state: (s32[], f32[8,8])) -> (s32[], f32[8,8]) {
  %state = (s32[], f32[8,8]{1,0}) parameter(0)
  %x = f32[8,8]{1,0} get-tuple-element(%state), index=1
  %dot.4 = f32[8,8]{1,0} dot(%x, %x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %i = s32[] get-tuple-element(%state), index=0
  ROOT %tuple.5 = (s32[], f32[8,8]{1,0}) tuple(%i, %dot.4)
}

ENTRY %main (x.1: f32[8,8]) -> f32[8,8] {
  %x.1 = f32[8,8]{1,0} parameter(0)
  %ynn_fusion.1 = f32[1,8,8,4]{3,2,1,0} fusion(%x.1, %x.1), kind=kCustom, calls=%conv_computation, \
metadata={op_name="jit(step)/transpose(jvp(EmotionCNN))/conv2/conv_general_dilated" source_file="/x/ops.py" \
source_line=7}
  %ynn_fusion.2 = f32[1,4,4,4]{3,2,1,0} fusion(%ynn_fusion.1), kind=kCustom, calls=%pool_computation
  %call.6 = (s32[], f32[8,8]{1,0}, /*index=2*/u32[]) call(%x.1), to_apply=%body
  ROOT %while.7 = (s32[], f32[8,8]{1,0}) while(%call.6), condition=%max_of, body=%body
}
"""


def test_operation_kinds_come_from_the_optimised_hlo():
    kinds = op_profile.hlo_op_kinds(HLO)
    assert {name: kinds[name] for name in ("ynn_fusion.1", "ynn_fusion.2", "dot.4", "call.6", "while.7",
                                           "maximum.1", "tuple.5")} == {
        "ynn_fusion.1": "matmul", "ynn_fusion.2": "other", "dot.4": "matmul", "call.6": "loop", "while.7": "loop",
        "maximum.1": "other", "tuple.5": "other"}
    traced = {("jit_step", "ynn_fusion.1"): 5.0, ("jit_step", "ynn_fusion.2"): 1.0}
    other_module = "HloModule jit_step\n\nENTRY %main () -> f32[] {\n  ROOT %c.1 = f32[] constant(0)\n}\n"
    assert op_profile.classify(traced, [("jit_step", other_module), ("jit_step", HLO)]) == {
        ("jit_step", "ynn_fusion.1"): "matmul", ("jit_step", "ynn_fusion.2"): "other"}
    with pytest.raises(RuntimeError, match="compilation cache"):
        op_profile.classify(traced, [("jit_step", other_module)])


def test_operations_are_traced_to_the_jax_operation_they_came_from():
    assert op_profile.hlo_op_sources(HLO) == {"ynn_fusion.1": "transpose(jvp(EmotionCNN))/conv2/conv_general_dilated"}
    traced = {("jit_step", "ynn_fusion.1"): 5.0, ("jit_step", "ynn_fusion.2"): 1.0}
    assert op_profile.sources(traced, [("jit_step", HLO)]) == {  # without metadata: the operation's own name
        ("jit_step", "ynn_fusion.1"): "transpose(jvp(EmotionCNN))/conv2/conv_general_dilated",
        ("jit_step", "ynn_fusion.2"): "ynn_fusion.2"}


@pytest.mark.parametrize("by", op_profile.GROUPINGS)
def test_cli_profiles_a_tiny_inference_call_in_a_new_process(tmp_path, by):
    out = tmp_path / "profile.json"
    command = [sys.executable, "-m", "benchmarks.op_profile", "infer", "--cores", "1", "--calls", "2",
               "--batch-size", "2", "--image-size", "8", "--by", by, "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["task"] == "infer" and summary["cores"] == 1 and summary["images_per_call"] == 2
    assert summary["grouped_by"] == by and all(by in op for op in summary["ops"])
    if by == "source":  # the model's layers, by name
        assert any("EmotionCNN.conv_features/conv1" in op["source"] for op in summary["ops"])
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


def test_cli_refuses_a_json_path_in_a_missing_folder_before_profiling(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setattr(op_profile, "profile_task", lambda *args, **kwargs: pytest.fail("profiled anyway"))
    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(["train", "--json", str(tmp_path / "missing" / "profile.json")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and f"the folder {tmp_path / 'missing'} does not exist" in error


def test_cli_refuses_to_run_once_jax_is_imported(capsys):
    import jax  # noqa: F401  (imported by the test session anyway)

    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(["train"])
    assert exit_info.value.code == 2 and "already imported" in capsys.readouterr().err


def test_cli_reports_a_failed_profile_in_one_line(monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise RuntimeError("the trace holds no XLA operation events")

    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.setattr(op_profile, "profile_task", fails)
    for name in ("XLA_FLAGS", "JAX_PLATFORMS", "EMOFX_COMPILATION_CACHE"):  # main sets them for the profiled process
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with pytest.raises(SystemExit) as exit_info:
        op_profile.main(["infer"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "python -m benchmarks.op_profile: the trace holds no XLA operation events\n"
