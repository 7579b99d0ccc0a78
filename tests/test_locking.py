"""Run claims: exclusive, waited for, and released when their holder is killed (no stale claim)."""

from __future__ import annotations

import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from emofx.pipeline.locking import claim_path, run_claim

HOLD = """
import sys, time
from pathlib import Path
from emofx.pipeline.locking import run_claim
claim = run_claim(Path(sys.argv[1]))
claim.__enter__()
print('held', flush=True)
time.sleep(120)
"""


def test_a_claim_waits_for_its_holder_and_a_killed_holder_leaves_no_stale_claim(tmp_path):
    run_dir = tmp_path / "exp" / "nb" / "x=1"
    assert claim_path(run_dir) == tmp_path / "exp" / ".claims" / "nb" / "x=1.lock"
    with run_claim(run_dir) as waited:
        assert not waited
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waits = []

        @contextmanager
        def while_waiting():
            waits.append(holder.pid)
            holder.kill()  # SIGKILL: the holder cannot release anything itself
            yield

        with run_claim(run_dir, while_waiting=while_waiting) as waited:
            assert waited and waits == [holder.pid]
    finally:
        holder.kill()
        holder.wait()
    assert claim_path(run_dir).is_file()  # kept: removing a lock file others may wait on is a race
    with run_claim(Path(run_dir)) as waited:
        assert not waited


def test_two_threads_of_one_process_never_hold_one_claim_together(tmp_path):
    run_dir = tmp_path / "exp" / "nb" / "x=1"
    order, inside, release = [], threading.Event(), threading.Event()

    def first():
        with run_claim(run_dir):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)

    @contextmanager
    def while_waiting():
        release.set()
        yield

    with run_claim(run_dir, while_waiting=while_waiting) as waited:
        order.append("second in")
    thread.join()
    assert waited and order == ["first in", "first out", "second in"]
