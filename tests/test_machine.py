"""emofx.study.machine: shares of the machine's CPU time between two snapshots."""

from __future__ import annotations

import time

import pytest

from emofx.study.machine import CpuTimes, cpu_shares, cpu_times

FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def ticks(**values: int) -> dict[str, int]:
    return {name: values.get(name, 0) for name in FIELDS}


def test_shares_split_busy_time_between_this_process_others_idle_and_steal():
    before = CpuTimes(10.0, ticks(user=1000, system=100, idle=500, steal=0))
    # 10 s on 2 cores at 100 ticks/s = 2000 ticks: 1300 user+system (this process 12 s = 1200), 300 idle + 100
    # I/O wait, 300 stolen by the hypervisor.
    after = CpuTimes(22.0, ticks(user=2200, system=200, idle=800, iowait=100, steal=300))
    shares = cpu_shares(before, after, ticks_per_second=100)
    assert shares == {"this_process": 0.6, "other_processes": 0.05, "idle": 0.2, "steal": 0.15}


def test_this_process_never_exceeds_the_busy_time():
    before, after = CpuTimes(0.0, ticks()), CpuTimes(5.0, ticks(user=400, idle=100))
    assert cpu_shares(before, after, ticks_per_second=100) == {"this_process": 0.8, "other_processes": 0.0,
                                                                "idle": 0.2, "steal": 0.0}


def test_no_counters_or_no_time_gives_none(tmp_path):
    missing = cpu_times(tmp_path / "no-such-stat")
    assert missing.machine_ticks is None and cpu_shares(missing, missing) is None
    same = CpuTimes(1.0, ticks(user=5))
    assert cpu_shares(same, same) is None


def test_reads_proc_stat_lines(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\n")
    assert cpu_times(stat).machine_ticks == dict(zip(FIELDS, range(1, 9)))
    stat.write_text("intr 5\n")
    assert cpu_times(stat).machine_ticks is None


def test_real_counters_advance_while_this_process_works():
    before = cpu_times()
    if before.machine_ticks is None:
        pytest.skip("no /proc/stat on this system (not Linux)")
    total, deadline = 0, time.monotonic() + 30
    while (shares := cpu_shares(before)) is None or shares["this_process"] == 0:
        assert time.monotonic() < deadline, "30 s of work never showed up as this process's CPU time"
        total += sum(i * i for i in range(200_000))  # busy for a few ticks
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3) and shares["this_process"] > 0
