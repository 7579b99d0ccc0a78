"""Claims on runs, so that batch processes sharing an experiment folder never run one run twice.

Each run has a claim file under ``<experiment>/.claims/<notebook>/<run>.lock``; whoever executes
the run (a process-pool worker, a Dask worker on another node) holds an exclusive ``flock`` on it
for the whole run, then re-reads the run's state under the claim (another process may have
completed it meanwhile). Why ``flock`` and not a claim file created with ``O_EXCL``: the kernel
releases the lock when its holder dies, even from SIGKILL or a lost job, so a crashed batch
never leaves a stale claim behind that someone must clean up by hand. It works across machines
on NFS (Linux maps ``flock`` to NFS byte-range locks; NFSv4, or NFSv3 with ``lockd``), on GPFS,
and on Lustre or BeeGFS mounted with the ``flock`` option. A filesystem without it raises a
clear error instead of silently falling back to a lock that only looks held. The claim files
are kept (deleting a lock file while others wait on it is a race); they are empty.

Locks come from the ``filelock`` library (``UnixFileLock``: ``flock`` on an ``O_RDWR`` file).
On NFS, ``flock`` becomes a POSIX lock, which is owned per *process*: two threads of one process
(e.g. seceded Dask tasks) would both get it, so a per-process thread lock is taken first.
"""

from __future__ import annotations

import errno
import threading
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

from filelock import Timeout, UnixFileLock

CLAIMS_DIR = ".claims"

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def claim_path(run_dir: Path) -> Path:
    """The claim file of ``<experiment>/<notebook>/<run>``: ``<experiment>/.claims/<notebook>/<run>.lock``."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent / CLAIMS_DIR / run_dir.parent.name / f"{run_dir.name}.lock"


@contextmanager
def run_claim(run_dir: Path, *, while_waiting: Callable[[], AbstractContextManager] = nullcontext) -> Iterator[bool]:
    """Hold the claim on ``run_dir`` for the duration of the block; yields whether another holder
    had to finish first. ``while_waiting()`` wraps the blocking wait (a Dask worker secedes from
    its thread pool there, so that it runs other tasks meanwhile)."""
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCKS_GUARD:
        in_process = _THREAD_LOCKS.setdefault(str(path.resolve()), threading.Lock())
    lock = UnixFileLock(path, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)
    waited = not in_process.acquire(blocking=False)
    if waited:
        with while_waiting():
            in_process.acquire()
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            waited = True
            with while_waiting():
                lock.acquire()
        except OSError as err:
            if err.errno == errno.ENOSYS:
                raise OSError(err.errno, f"the filesystem of {path.parent} does not support flock, which emofx "
                                         "batch needs to claim runs (Lustre/BeeGFS: mount with -o flock)") from None
            raise
        try:
            yield waited
        finally:
            lock.release()
    finally:
        in_process.release()
