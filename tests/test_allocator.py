"""glibc's allocator tunables (emofx.nets.allocator): how they join the user's tunables, that the emofx
command starts itself again with them (once, unless EMOFX_TUNED_MALLOC=0), that a freed buffer is kept
for the next allocation, and that runs record the setting in force. What they do to speed depends on
the machine's load, so that is measured by `benchmarks.run` (faults per call, `--malloc tuned`), not
asserted here."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from emofx.cli import main
from emofx.data.synthetic import make_synthetic
from emofx.nets.allocator import (RESTARTED_ENV, TUNABLES_ENV, TUNED_MALLOC_ENV, command_environment,
                                  tunables_supported, with_tuned_malloc)

glibc_only = pytest.mark.skipif(not tunables_supported(),
                                reason=f"the tunables are glibc's, 2.35 or later (here: {platform.libc_ver()})")
TUNED = ("glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=268435456:"
         "glibc.malloc.trim_threshold=536870912")


def _environment(tunables: str | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in (TUNABLES_ENV, TUNED_MALLOC_ENV, RESTARTED_ENV)}
    return environ if tunables is None else {**environ, TUNABLES_ENV: tunables}


@glibc_only
def test_the_tunables_join_the_users_and_the_users_own_values_win():
    assert with_tuned_malloc(_environment())[TUNABLES_ENV] == TUNED
    mine = "glibc.malloc.tcache_count=0"
    assert with_tuned_malloc(_environment(mine))[TUNABLES_ENV] == f"{mine}:{TUNED}"
    theirs = "glibc.malloc.hugetlb=0:glibc.malloc.trim_threshold=1"
    assert with_tuned_malloc(_environment(theirs))[TUNABLES_ENV] == theirs + ":glibc.malloc.mmap_threshold=268435456"
    shown = subprocess.run([sys.executable, "-m", "emofx.nets.allocator"], env=_environment(mine),
                           capture_output=True, text=True, check=True).stdout
    assert shown.strip() == f"{mine}:{TUNED}"  # the value to export


# Allocates, touches and frees a 64 MiB buffer, then counts the page faults of doing it again.
_REUSE = ("import resource, numpy as np; faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt; "
          "first = np.ones(2 ** 24, np.float32); del first; before = faults(); "
          "again = np.ones(2 ** 24, np.float32); print(faults() - before)")


@glibc_only
def test_a_freed_buffer_is_kept_for_the_next_allocation():
    # XLA's CPU calls free their buffers and allocate them again: with the tunables the second
    # allocation reuses the first's memory (no page faults); by glibc's default it is mapped anew.
    def second_allocation_faults(environ: dict[str, str]) -> int:
        return int(subprocess.run([sys.executable, "-c", _REUSE], env=environ, capture_output=True, text=True,
                                  check=True).stdout)

    assert second_allocation_faults(command_environment(_environment())) < 100
    assert second_allocation_faults(_environment("glibc.malloc.hugetlb=0")) >= 16  # 64 MiB in 2 MiB pages at most


def _tiny_training(tmp_path) -> tuple:
    """A small synthetic dataset and `emofx train` options that train a tiny network on it in seconds."""
    data = make_synthetic("universal", n_per_class=8, classes=("happy", "sad")).save(tmp_path / "a.npz")
    return data, ["--widths", "4,8,8", "--dense-units", "16", "--batch-size", "8", "--epochs", "1", "--split",
                  "random", "--quiet"]


def test_a_run_records_the_allocator_setting_in_force(tmp_path, monkeypatch):
    data, tiny = _tiny_training(tmp_path)
    monkeypatch.delenv(TUNABLES_ENV, raising=False)
    assert main(["train", str(data), "--out", str(tmp_path / "plain"), *tiny]) == 0
    monkeypatch.setenv(TUNABLES_ENV, TUNED)
    assert main(["train", str(data), "--out", str(tmp_path / "tuned"), *tiny]) == 0
    recorded = [json.loads((tmp_path / name / "metrics.json").read_text())["malloc_tunables"]
                for name in ("plain", "tuned")]
    assert recorded == [None, TUNED]


@glibc_only
def test_the_command_environment_has_the_tunables_unless_switched_off():
    assert command_environment(_environment())[TUNABLES_ENV] == TUNED
    assert TUNABLES_ENV not in command_environment({**_environment(), TUNED_MALLOC_ENV: "0"})
    mine = TUNED.replace("hugetlb=1", "hugetlb=0")
    assert command_environment(_environment(mine))[TUNABLES_ENV] == mine  # the user's own values win


# Prints its process id and tunables each time it starts, restarting itself once in between.
_PROBE = ("import os; print('start', os.getpid(), flush=True); "
          "from emofx.nets.allocator import restart_with_tuned_malloc; restart_with_tuned_malloc(); "
          "print('running', os.getpid(), os.environ.get('GLIBC_TUNABLES'))")


def _probe(environ: dict[str, str]) -> list[str]:
    return subprocess.run([sys.executable, "-c", _PROBE], env=environ, capture_output=True, text=True,
                          check=True).stdout.splitlines()


@glibc_only
def test_the_command_restarts_itself_once_with_the_tunables_in_the_same_process():
    start, again, running = _probe(_environment())
    pid = start.split()[1]
    assert again == f"start {pid}" and running == f"running {pid} {TUNED}"  # exec: the same process
    off = _probe({**_environment(), TUNED_MALLOC_ENV: "0"})
    assert len(off) == 2 and off[1].endswith(" None")  # switched off: no restart, nothing added
    theirs = TUNED.replace("hugetlb=1", "hugetlb=0")
    mine = _probe(_environment(theirs))
    assert len(mine) == 2 and mine[1].endswith(f" {theirs}")
    # A restarted process whose C library dropped the tunable (secure-execution mode) does not restart again.
    dropped = _probe({**_environment(), RESTARTED_ENV: "1"})
    assert len(dropped) == 2 and dropped[1].endswith(" None")


@glibc_only
def test_an_emofx_command_runs_with_the_tunables(tmp_path):
    data, tiny = _tiny_training(tmp_path)
    subprocess.run([sys.executable, "-m", "emofx", "train", str(data), "--out", str(tmp_path / "run"), *tiny],
                   env=_environment(), check=True, capture_output=True)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["malloc_tunables"] == TUNED
