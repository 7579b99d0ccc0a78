"""How busy the machine was while something ran: shares of its CPU time, from ``/proc/stat``.

A wall time measured on a shared machine (a cloud VM, a CI runner) can only be read beside the
share of the CPU that went elsewhere: to other processes, or to other virtual machines
(``steal``: time the hypervisor gave to someone else; 10-20% on the 2-core CI-class VM while it
trained FER2013). Runs, the protocol and the benchmark record these shares next to their times.
Off Linux the machine's counters do not exist and the shares are ``None``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# The fields of /proc/stat's "cpu" line, in ticks (guest time is already counted in user).
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuTimes:
    """A snapshot: this process's CPU seconds and the machine's per-state ticks (None off Linux)."""

    process_seconds: float
    machine_ticks: dict[str, int] | None


def cpu_times(stat_path: Path = PROC_STAT) -> CpuTimes:
    """The current :class:`CpuTimes` (read ``stat_path``; a missing or unreadable file gives None ticks)."""
    times = os.times()
    try:
        line = stat_path.read_text().splitlines()[0].split()
        ticks = dict(zip(STAT_FIELDS, (int(v) for v in line[1:len(STAT_FIELDS) + 1]))) if line[0] == "cpu" else None
    except (OSError, IndexError, ValueError):
        ticks = None
    if ticks is not None and len(ticks) < len(STAT_FIELDS):  # kernels before 2.6.11 have no steal field
        ticks = {**dict.fromkeys(STAT_FIELDS, 0), **ticks}
    return CpuTimes(times.user + times.system, ticks)


def cpu_shares(since: CpuTimes, now: CpuTimes | None = None,
               ticks_per_second: int | None = None) -> dict[str, float] | None:
    """Shares (summing to 1) of the machine's CPU time between ``since`` and ``now`` (default: now):
    ``this_process``, ``other_processes``, ``idle`` (with I/O wait) and ``steal``. None without the
    machine's counters or when no tick passed."""
    now = now or cpu_times()
    if since.machine_ticks is None or now.machine_ticks is None:
        return None
    delta = {name: now.machine_ticks[name] - since.machine_ticks[name] for name in STAT_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return None
    hz = ticks_per_second or os.sysconf("SC_CLK_TCK")
    busy = delta["user"] + delta["nice"] + delta["system"] + delta["irq"] + delta["softirq"]
    mine = min(busy, (now.process_seconds - since.process_seconds) * hz)  # tick rounding can exceed busy by a hair
    shares = {"this_process": mine, "other_processes": busy - mine, "idle": delta["idle"] + delta["iowait"],
              "steal": delta["steal"]}
    return {name: round(value / total, 4) for name, value in shares.items()}
