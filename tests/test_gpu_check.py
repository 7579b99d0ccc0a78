"""benchmarks/gpu_check: the JSON summary of its quick mode (one cheap step really run), and failures."""

from __future__ import annotations

import json

from benchmarks import gpu_check


def test_quick_mode_writes_one_summary_with_every_step(tmp_path):
    assert gpu_check.main(["--quick", "--only", "tests", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["mode"] == "quick" and summary["ok"] is True and summary["seconds"] > 0
    assert list(summary["steps"]) == list(gpu_check.STEPS)
    tests = summary["steps"]["tests"]
    assert tests["status"] == "passed" and tests["result"]["passed"] == 3 and "pytest" in tests["result"]["command"]
    assert {s["status"] for name, s in summary["steps"].items() if name != "tests"} == {"not run"}
    assert (tmp_path / "tests.log").read_text().startswith("$ ")


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
    try:
        gpu_check.main(["--only", "tests,lunch"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "unknown steps ['lunch']" in capsys.readouterr().err


def test_steps_needing_missing_real_data_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOFX_DATA", str(tmp_path / "nowhere"))
    assert gpu_check.main(["--only", "protocol,fer2013", "--out", str(tmp_path / "out")]) == 0
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    for name, folder in (("protocol", "kdef"), ("fer2013", "fer2013")):
        assert steps[name]["status"] == "skipped" and f"{folder} not found" in steps[name]["message"]
