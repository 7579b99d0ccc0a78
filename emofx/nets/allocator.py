"""The C allocator setting that spares XLA's CPU calls most of their page faults: huge pages.

XLA's CPU runtime allocates every call's temporary buffers afresh and frees them after the call
(about 100 MiB for inference on 64 images of the paper's CNN, 293 MiB for a 4-step training
call). glibc maps such buffers anew each time, so every call faults them in again 4 KiB at a
time: 15,000 page faults per inference call, 56,000 per training call. The glibc tunable
``glibc.malloc.hugetlb=1`` (glibc 2.35 and later) asks the kernel for 2 MiB transparent huge pages
on what malloc maps, which leaves a few hundred faults per call. It matters where the kernel's
transparent huge pages are ``madvise`` (``/sys/kernel/mm/transparent_hugepage/enabled``): with
``always`` every process has them already, with ``never`` none does.

glibc reads ``GLIBC_TUNABLES`` only when a process starts, so the ``emofx`` command starts itself
again with the tunable added (:func:`restart_with_huge_pages`, before anything heavy is imported);
the papermill kernels and Dask workers it starts inherit it. ``EMOFX_HUGE_PAGES=0`` leaves the
allocator as the process found it. Python sessions and Jupyter servers started otherwise get it with
``export GLIBC_TUNABLES=$(python -m emofx.nets.allocator)`` before they start (``make lab`` does).
Every run records the setting in force (``malloc_tunables`` in ``metrics.json``).

Measured on 2 Xeon cores with the current memory use (``benchmarks/results/benchmark/README.md``,
run20-run21): an emofx process alone infers 14% faster, computes saliency 5% faster and trains 2% faster,
at the same peak memory, and two side by side gain as much or more; alternating with a PyTorch process
(the interleaved benchmark) the medians hardly move and inference spreads more. (With the larger buffers
of an earlier version, run6-run9, peak training memory beside a PyTorch process rose by 21-25% in two of
five runs, which kept it an opt-in then.)
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping

TUNABLES_ENV = "GLIBC_TUNABLES"
HUGE_PAGES = ("glibc.malloc.hugetlb", "1")  # madvise(MADV_HUGEPAGE) on what malloc maps
HUGE_PAGES_ENV = "EMOFX_HUGE_PAGES"  # "0": the emofx command leaves the C allocator alone
FIRST_GLIBC = (2, 35)  # the first glibc with the hugetlb tunable
RESTARTED_ENV = "EMOFX_ALLOCATOR_RESTARTED"  # set in the restarted process: never restart twice


def huge_pages_supported() -> bool:
    """Whether this process's C library reads the hugetlb tunable (glibc 2.35 or later)."""
    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= FIRST_GLIBC
    except ValueError:
        return False


def with_huge_pages(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with ``glibc.malloc.hugetlb=1`` added to ``GLIBC_TUNABLES``.

    The user's other tunables are kept, and a ``glibc.malloc.hugetlb`` value of their own wins.
    Where the C library is not glibc 2.35 or later (macOS, Windows, musl, older Linux) the
    environment is returned unchanged.
    """
    environ = dict(os.environ if environ is None else environ)
    if not huge_pages_supported():
        return environ
    current = [item for item in environ.get(TUNABLES_ENV, "").split(":") if item]
    if HUGE_PAGES[0] not in {item.split("=", 1)[0] for item in current}:
        environ[TUNABLES_ENV] = ":".join(current + ["=".join(HUGE_PAGES)])
    return environ


def command_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the ``emofx`` command runs in, given the one it was started with (default
    ``os.environ``): with huge pages unless ``EMOFX_HUGE_PAGES=0``."""
    environ = dict(os.environ if environ is None else environ)
    return environ if environ.get(HUGE_PAGES_ENV, "1").strip() == "0" else with_huge_pages(environ)


def restart_with_huge_pages() -> None:
    """Replace this process by the same command line started in :func:`command_environment`, when
    that adds something to ``GLIBC_TUNABLES``. Once only: the new process finds the tunable there, and
    :data:`RESTARTED_ENV` stops a second restart where the C library drops it (secure-execution mode).
    Returns without a change where nothing is to be added or the process cannot be started again."""
    environ = command_environment()
    if environ.get(TUNABLES_ENV) == os.environ.get(TUNABLES_ENV) or os.environ.get(RESTARTED_ENV):
        return
    environ[RESTARTED_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError:  # e.g. the interpreter is not executable again here: run without huge pages
        return


def allocator_setting() -> str | None:
    """This process's ``GLIBC_TUNABLES`` (None when unset): recorded with every run beside its times."""
    return os.environ.get(TUNABLES_ENV) or None


if __name__ == "__main__":  # the GLIBC_TUNABLES value to export before starting Python or Jupyter
    print(command_environment().get(TUNABLES_ENV, ""))
