"""The C allocator settings that spare XLA's CPU calls their page faults: huge pages, and freed
buffers kept for the next call.

XLA's CPU runtime allocates every call's temporary buffers afresh and frees them after the call
(about 100 MiB for inference on 64 images of the paper's CNN, 293 MiB for a 4-step training
call). glibc maps such buffers anew each time and hands them back on free, so every call faults
them in again 4 KiB at a time: 15,000 page faults per inference call, 56,000 per training call.
Three glibc tunables (glibc 2.35 and later) change that, :data:`TUNABLES`:

``glibc.malloc.hugetlb=1``
    2 MiB transparent huge pages on what malloc maps (a few hundred faults per call instead).
    It matters where the kernel's transparent huge pages are ``madvise``
    (``/sys/kernel/mm/transparent_hugepage/enabled``): with ``always`` every process has them, with
    ``never`` none does.
``glibc.malloc.mmap_threshold=256 MiB``, ``glibc.malloc.trim_threshold=512 MiB``
    buffers under 256 MiB come from the heap instead of a mapping of their own, and the heap keeps up
    to 512 MiB of freed memory for the next call instead of handing it back: an inference call
    then faults a few dozen times, and its buffers sit where the last call's did. A process keeps
    what it freed up to that bound (peak memory does not change; memory held after the peak does).

glibc reads ``GLIBC_TUNABLES`` only when a process starts, so the ``emofx`` command starts itself
again with the tunables added (:func:`restart_with_tuned_malloc`, before anything heavy is imported);
the papermill kernels and Dask workers it starts inherit them. ``EMOFX_TUNED_MALLOC=0`` leaves the
allocator as the process found it. Python sessions and Jupyter servers started otherwise get them with
``export GLIBC_TUNABLES=$(python -m emofx.nets.allocator)`` before they start (``make lab`` does).
Every run records the setting in force (``malloc_tunables`` in ``metrics.json``); no number changes with it.

Measured on 2 Xeon cores (``benchmarks/results/benchmark/README.md``, run20-run22): huge pages alone
made an emofx process 14% faster at inference, 5% at saliency and 2% at training, but beside a PyTorch
process (the interleaved benchmark) its inference spread over 672-1078 img/s from call to call; with the
thresholds too its median was 1058-1153 img/s over five runs (inference 2.3-2.7x PyTorch eager, saliency
2.4-3.1x, training unchanged), at the same peak training memory; two emofx processes side by side gained
nothing (training 133-138 img/s each against 138-147). ``emofx train`` on KDEF (10 epochs) took
the same 36.3 s and held 1043 MiB at most instead of 952; the paper protocol on 2 cores took 777 s (822 before).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping

TUNABLES_ENV = "GLIBC_TUNABLES"
TUNABLES: tuple[tuple[str, str], ...] = (
    ("glibc.malloc.hugetlb", "1"),  # madvise(MADV_HUGEPAGE) on what malloc maps
    ("glibc.malloc.mmap_threshold", str(256 * 2 ** 20)),  # per-call buffers from the heap ...
    ("glibc.malloc.trim_threshold", str(512 * 2 ** 20)),  # ... which keeps them for the next call
)
TUNED_MALLOC_ENV = "EMOFX_TUNED_MALLOC"  # "0": the emofx command leaves the C allocator alone
FIRST_GLIBC = (2, 35)  # the first glibc with the hugetlb tunable
RESTARTED_ENV = "EMOFX_ALLOCATOR_RESTARTED"  # set in the restarted process: never restart twice


def tunables_supported() -> bool:
    """Whether this process's C library reads :data:`TUNABLES` (glibc 2.35 or later)."""
    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= FIRST_GLIBC
    except ValueError:
        return False


def with_tuned_malloc(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with :data:`TUNABLES` added to ``GLIBC_TUNABLES``.

    The user's other tunables are kept, and a value of their own for any of these names wins.
    Where the C library is not glibc 2.35 or later (macOS, Windows, musl, older Linux) the
    environment is returned unchanged.
    """
    environ = dict(os.environ if environ is None else environ)
    if not tunables_supported():
        return environ
    current = [item for item in environ.get(TUNABLES_ENV, "").split(":") if item]
    theirs = {item.split("=", 1)[0] for item in current}
    added = ["=".join(tunable) for tunable in TUNABLES if tunable[0] not in theirs]
    if added:
        environ[TUNABLES_ENV] = ":".join(current + added)
    return environ


def command_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the ``emofx`` command runs in, given the one it was started with (default
    ``os.environ``): with :data:`TUNABLES` unless ``EMOFX_TUNED_MALLOC=0``."""
    environ = dict(os.environ if environ is None else environ)
    return environ if environ.get(TUNED_MALLOC_ENV, "1").strip() == "0" else with_tuned_malloc(environ)


def restart_with_tuned_malloc() -> None:
    """Replace this process by the same command line started in :func:`command_environment`, when
    that adds something to ``GLIBC_TUNABLES``. Once only: the new process finds the tunables there, and
    :data:`RESTARTED_ENV` stops a second restart where the C library drops them (secure-execution mode).
    Returns without a change where nothing is to be added or the process cannot be started again."""
    environ = command_environment()
    if environ.get(TUNABLES_ENV) == os.environ.get(TUNABLES_ENV) or os.environ.get(RESTARTED_ENV):
        return
    environ[RESTARTED_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError:  # e.g. the interpreter is not executable again here: run as started
        return


def allocator_setting() -> str | None:
    """This process's ``GLIBC_TUNABLES`` (None when unset): recorded with every run beside its times."""
    return os.environ.get(TUNABLES_ENV) or None


if __name__ == "__main__":  # the GLIBC_TUNABLES value to export before starting Python or Jupyter
    print(command_environment().get(TUNABLES_ENV, ""))
