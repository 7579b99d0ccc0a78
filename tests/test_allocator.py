"""glibc's huge-page tunable (emofx.nets.allocator): how it joins the user's tunables, and that runs
record the setting in force. What it does to page faults and speed depends on the machine's load, so
it is measured by `benchmarks.run` (faults per call, `--malloc hugepages`), not asserted here."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from emofx.cli import main
from emofx.data.synthetic import make_synthetic
from emofx.nets.allocator import TUNABLES_ENV, with_huge_pages

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="GLIBC_TUNABLES are glibc's (Linux)")


def _environment(tunables: str | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != TUNABLES_ENV}
    return environ if tunables is None else {**environ, TUNABLES_ENV: tunables}


@glibc_only
def test_huge_pages_join_the_users_tunables_and_the_users_own_value_wins():
    assert with_huge_pages(_environment())[TUNABLES_ENV] == "glibc.malloc.hugetlb=1"
    mine = "glibc.malloc.tcache_count=0"
    assert with_huge_pages(_environment(mine))[TUNABLES_ENV] == mine + ":glibc.malloc.hugetlb=1"
    assert with_huge_pages(_environment("glibc.malloc.hugetlb=0"))[TUNABLES_ENV] == "glibc.malloc.hugetlb=0"
    shown = subprocess.run([sys.executable, "-m", "emofx.nets.allocator"], env=_environment(mine),
                           capture_output=True, text=True, check=True).stdout
    assert shown.strip() == mine + ":glibc.malloc.hugetlb=1"  # the value to export


def test_a_run_records_the_allocator_setting_in_force(tmp_path, monkeypatch):
    data = make_synthetic("universal", n_per_class=8, classes=("happy", "sad")).save(tmp_path / "a.npz")
    tiny = ["--widths", "4,8,8", "--dense-units", "16", "--batch-size", "8", "--epochs", "1", "--split", "random",
            "--quiet"]
    monkeypatch.delenv(TUNABLES_ENV, raising=False)
    assert main(["train", str(data), "--out", str(tmp_path / "plain"), *tiny]) == 0
    monkeypatch.setenv(TUNABLES_ENV, "glibc.malloc.hugetlb=1")
    assert main(["train", str(data), "--out", str(tmp_path / "huge"), *tiny]) == 0
    recorded = [json.loads((tmp_path / name / "metrics.json").read_text())["malloc_tunables"]
                for name in ("plain", "huge")]
    assert recorded == [None, "glibc.malloc.hugetlb=1"]

