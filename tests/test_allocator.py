"""glibc's huge-page tunable (emofx.nets.allocator): how it joins the user's tunables, that the emofx
command starts itself again with it (once, unless EMOFX_HUGE_PAGES=0), and that runs record the setting
in force. What it does to page faults and speed depends on the machine's load, so
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
from emofx.nets.allocator import (HUGE_PAGES_ENV, RESTARTED_ENV, TUNABLES_ENV, command_environment, huge_pages_supported,
                                  with_huge_pages)

glibc_only = pytest.mark.skipif(not huge_pages_supported(),
                                reason=f"the hugetlb tunable is glibc's, 2.35 or later (here: {platform.libc_ver()})")


def _environment(tunables: str | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in (TUNABLES_ENV, HUGE_PAGES_ENV, RESTARTED_ENV)}
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


def _tiny_training(tmp_path) -> tuple:
    """A small synthetic dataset and `emofx train` options that train a tiny network on it in seconds."""
    data = make_synthetic("universal", n_per_class=8, classes=("happy", "sad")).save(tmp_path / "a.npz")
    return data, ["--widths", "4,8,8", "--dense-units", "16", "--batch-size", "8", "--epochs", "1", "--split",
                  "random", "--quiet"]


def test_a_run_records_the_allocator_setting_in_force(tmp_path, monkeypatch):
    data, tiny = _tiny_training(tmp_path)
    monkeypatch.delenv(TUNABLES_ENV, raising=False)
    assert main(["train", str(data), "--out", str(tmp_path / "plain"), *tiny]) == 0
    monkeypatch.setenv(TUNABLES_ENV, "glibc.malloc.hugetlb=1")
    assert main(["train", str(data), "--out", str(tmp_path / "huge"), *tiny]) == 0
    recorded = [json.loads((tmp_path / name / "metrics.json").read_text())["malloc_tunables"]
                for name in ("plain", "huge")]
    assert recorded == [None, "glibc.malloc.hugetlb=1"]


@glibc_only
def test_the_command_environment_has_huge_pages_unless_switched_off():
    assert command_environment(_environment())[TUNABLES_ENV] == "glibc.malloc.hugetlb=1"
    assert TUNABLES_ENV not in command_environment({**_environment(), HUGE_PAGES_ENV: "0"})
    mine = "glibc.malloc.hugetlb=0"
    assert command_environment(_environment(mine))[TUNABLES_ENV] == mine  # the user's own value wins


# Prints its process id and tunables each time it starts, restarting itself once in between.
_PROBE = ("import os; print('start', os.getpid(), flush=True); "
          "from emofx.nets.allocator import restart_with_huge_pages; restart_with_huge_pages(); "
          "print('running', os.getpid(), os.environ.get('GLIBC_TUNABLES'))")


def _probe(environ: dict[str, str]) -> list[str]:
    return subprocess.run([sys.executable, "-c", _PROBE], env=environ, capture_output=True, text=True,
                          check=True).stdout.splitlines()


@glibc_only
def test_the_command_restarts_itself_once_with_huge_pages_in_the_same_process():
    start, again, running = _probe(_environment())
    pid = start.split()[1]
    assert again == f"start {pid}" and running == f"running {pid} glibc.malloc.hugetlb=1"  # exec: the same process
    off = _probe({**_environment(), HUGE_PAGES_ENV: "0"})
    assert len(off) == 2 and off[1].endswith(" None")  # switched off: no restart, nothing added
    mine = _probe(_environment("glibc.malloc.hugetlb=0"))
    assert len(mine) == 2 and mine[1].endswith(" glibc.malloc.hugetlb=0")  # nothing to add: no restart
    # A restarted process whose C library dropped the tunable (secure-execution mode) does not restart again.
    dropped = _probe({**_environment(), RESTARTED_ENV: "1"})
    assert len(dropped) == 2 and dropped[1].endswith(" None")


@glibc_only
def test_an_emofx_command_runs_with_huge_pages(tmp_path):
    data, tiny = _tiny_training(tmp_path)
    subprocess.run([sys.executable, "-m", "emofx", "train", str(data), "--out", str(tmp_path / "run"), *tiny],
                   env=_environment(), check=True, capture_output=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["malloc_tunables"] == "glibc.malloc.hugetlb=1"
