"""benchmarks/gpu_check: the JSON summary of its quick mode (one cheap step really run), failures,
benchmarks/device_check.sh's carried data, and the quick check without the packages a GPU image lacks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_check


def test_quick_mode_writes_one_summary_with_every_step(tmp_path):
    assert gpu_check.main(["--quick", "--only", "tests", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["mode"] == "quick" and summary["ok"] is True and summary["seconds"] > 0
    assert list(summary["steps"]) == list(gpu_check.STEPS)
    tests = summary["steps"]["tests"]
    assert tests["status"] == "passed" and tests["result"]["passed"] == 4
    assert tests["result"]["command"].startswith("EMOFX_PRECISION=highest ") and "pytest" in tests["result"]["command"]
    assert tests["result"]["at_default"]["passed"] == 4
    assert tests["result"]["at_default"]["command"].startswith("EMOFX_PRECISION=default ")
    assert {s["status"] for name, s in summary["steps"].items() if name != "tests"} == {"not run"}
    assert (tmp_path / "tests.log").read_text().startswith("$ ")


# The project's dependencies that the lent GPU machines' image lacks (their package list, read 2026-11-17):
# nothing the check runs may need them, as that machine reaches no package index.
ABSENT_ON_THE_GPU_IMAGE = ("papermill", "nbformat", "nbclient", "ipykernel", "jupyterlab", "xlrd", "imagehash", "pywt",
                           "dlib", "face_recognition_models", "dask", "distributed", "dask_jobqueue", "crowdkit",
                           "krippendorff", "ipywidgets", "pillow_heif")
_BLOCKER = """import sys
class AbsentOnTheGpuImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ImportError("not on the GPU machine's image: " + name)
sys.meta_path.insert(0, AbsentOnTheGpuImage())
"""


def test_every_quick_step_runs_without_the_packages_the_gpu_image_lacks(tmp_path, monkeypatch):
    # Each step's process starts with a sitecustomize that makes importing any of those packages fail.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_BLOCKER.format(absent=set(ABSENT_ON_THE_GPU_IMAGE)))
    paths = [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
    probe = subprocess.run([sys.executable, "-c", "import papermill"], capture_output=True, text=True)
    assert probe.returncode == 1 and "not on the GPU machine's image: papermill" in probe.stderr
    assert gpu_check.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    assert {name: s["status"] for name, s in steps.items() if name != "fer2013"} == dict.fromkeys(
        ["environment", "tests", "benchmark", "protocol"], "passed")
    assert steps["fer2013"]["status"] in ("passed", "skipped")  # skipped where the real data is absent


def test_a_failing_or_skipped_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def fails(args):
        raise gpu_check.StepFailed("exit status 1: boom")

    def skips(args):
        raise gpu_check.StepSkipped("no data here")

    monkeypatch.setitem(gpu_check.RUNNERS, "protocol", fails)
    monkeypatch.setitem(gpu_check.RUNNERS, "fer2013", skips)
    monkeypatch.setitem(gpu_check.RUNNERS, "benchmark", lambda args: {"fine": True})
    assert gpu_check.main(["--quick", "--only", "benchmark,protocol,fer2013", "--out", str(tmp_path)]) == 1
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert steps["protocol"] == {"status": "failed", "seconds": steps["protocol"]["seconds"],
                                 "message": "exit status 1: boom", "result": None}
    assert steps["fer2013"]["status"] == "skipped" and steps["fer2013"]["message"] == "no data here"
    assert steps["benchmark"]["result"] == {"fine": True}


def test_unknown_steps_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--only", "tests,lunch"])
    assert exit_info.value.code == 2
    assert "unknown steps ['lunch']" in capsys.readouterr().err


def test_an_unexpected_error_in_a_step_is_recorded_and_the_summary_still_written(tmp_path, monkeypatch):
    def breaks(args):
        raise KeyError("by_batch_size")

    monkeypatch.setitem(gpu_check.RUNNERS, "benchmark", breaks)
    monkeypatch.setitem(gpu_check.RUNNERS, "protocol", lambda args: {"fine": True})
    assert gpu_check.main(["--quick", "--only", "benchmark,protocol", "--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["ok"] is False
    assert summary["steps"]["benchmark"]["status"] == "failed"
    assert summary["steps"]["benchmark"]["message"] == "KeyError: 'by_batch_size'"
    assert summary["steps"]["protocol"] == {"status": "passed", "seconds": summary["steps"]["protocol"]["seconds"],
                                            "message": "", "result": {"fine": True}}


def test_the_environment_step_runs_in_its_own_process_and_the_full_check_needs_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.RUNNERS, "benchmark", lambda args: {"fine": True})
    code = gpu_check.main(["--only", "environment,benchmark", "--out", str(tmp_path)])
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    result = steps["environment"]["result"]
    assert result["backend"] in ("cpu", "gpu", "tpu") and result["jax"] and result["devices"]
    assert "environment_info" in result["command"] and (tmp_path / "environment.log").read_text().startswith("$ ")
    if result["backend"] == "gpu":
        assert code == 0 and steps["benchmark"]["status"] == "passed"
    else:  # sized for a GPU, the full check would take hours here: it says so and stops
        assert code == 1 and steps["environment"]["message"].startswith(f"no GPU: JAX's backend is {result['backend']}")
        assert steps["benchmark"]["status"] == "not run" and "--quick" in steps["benchmark"]["message"]


def test_steps_needing_missing_real_data_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOFX_DATA", str(tmp_path / "nowhere"))
    assert gpu_check.main(["--only", "protocol,fer2013", "--out", str(tmp_path / "out")]) == 0
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    for name, folder in (("protocol", "kdef"), ("fer2013", "fer2013")):
        assert steps[name]["status"] == "skipped" and f"{folder} not found" in steps[name]["message"]


def test_prepared_sets_in_the_output_folder_stand_in_for_missing_raw_data(tmp_path, monkeypatch):
    # benchmarks/device_check.sh puts the carried, prepared KDEF and Taiwanese sets there on a machine without them.
    monkeypatch.setenv("EMOFX_DATA", str(tmp_path / "nowhere"))
    args = argparse.Namespace(out=tmp_path, timeout=60.0, quick=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kdef.npz").write_bytes(b"prepared elsewhere")
    prepared = gpu_check._prepare(args, "kdef", lambda: gpu_check._shared("kdef") / "frontal")
    assert prepared == tmp_path / "data" / "kdef.npz"
    with pytest.raises(gpu_check.StepSkipped, match="taiwanese not found"):
        gpu_check._prepare(args, "taiwanese", lambda: gpu_check._shared("taiwanese"))


def test_device_check_refuses_to_run_without_the_carried_files(tmp_path):
    script = str(gpu_check.ROOT / "benchmarks" / "device_check.sh")
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode == 2 and "device_check.sh pack" in usage.stdout
    missing = subprocess.run(["bash", script, "run", str(tmp_path / "results")], capture_output=True, text=True,
                             env={**os.environ, "CARRY": str(tmp_path / "carry")})
    assert missing.returncode == 2 and "fer2013.npz is missing: run" in missing.stderr
    assert not (tmp_path / "results").exists()
    quick = subprocess.run(["bash", script, "run", "--quick"], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "CARRY": str(tmp_path / "carry")})  # an option, not a folder
    assert quick.returncode == 2 and not (gpu_check.ROOT / "--quick").exists()
    (tmp_path / "carry").mkdir()
    (tmp_path / "carry" / "kdef.npz").write_bytes(b"packed before")
    again = subprocess.run(["bash", script, "pack"], capture_output=True, text=True,
                           env={**os.environ, "CARRY": str(tmp_path / "carry")})
    assert again.returncode == 2 and "kdef.npz exists: remove" in again.stderr
    assert sorted(p.name for p in (tmp_path / "carry").iterdir()) == ["kdef.npz"]  # nothing written
