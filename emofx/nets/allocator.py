"""The C allocator setting that spares XLA's CPU calls most of their page faults: huge pages.

XLA's CPU runtime allocates every call's temporary buffers afresh and frees them after the call
(about 100 MiB for inference on 64 images of the paper's CNN, 293 MiB for a 4-step training
call). glibc maps such buffers anew each time, so every call faults them in again 4 KiB at a
time: 25,000 page faults per inference call, 76,000 per training call. The glibc tunable
``glibc.malloc.hugetlb=1`` asks the kernel for 2 MiB transparent huge pages on what malloc maps,
which leaves a few hundred faults per call. It matters where the kernel's transparent huge pages
are ``madvise`` (``/sys/kernel/mm/transparent_hugepage/enabled``): with ``always`` every process
has them already, with ``never`` none does.

It is an opt-in, because what it gains depends on what else the machine runs
(``benchmarks/results/benchmark/README.md``, run8-run9, 2 Xeon cores): an emofx process alone
trained 4% faster, inferred 18% and computed saliency 20% faster with the same peak memory, but
beside a PyTorch process (the interleaved benchmark) the gains shrank to +5% / +4% / -6% and
peak training memory rose by 21-25% in two of five runs. glibc reads ``GLIBC_TUNABLES`` only when a process
starts: ``export GLIBC_TUNABLES=$(python -m emofx.nets.allocator)`` before starting emofx,
Python or a Jupyter server turns it on (the papermill kernels and Dask workers they start
inherit it). Every run records the setting in force (``malloc_tunables`` in ``metrics.json``).
"""

from __future__ import annotations

import os
import platform
from typing import Mapping

TUNABLES_ENV = "GLIBC_TUNABLES"
HUGE_PAGES = ("glibc.malloc.hugetlb", "1")  # madvise(MADV_HUGEPAGE) on what malloc maps


def with_huge_pages(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with ``glibc.malloc.hugetlb=1`` added to ``GLIBC_TUNABLES``.

    The user's other tunables are kept, and a ``glibc.malloc.hugetlb`` value of their own wins.
    Where the C library is not glibc (macOS, Windows, musl) the environment is returned unchanged.
    """
    environ = dict(os.environ if environ is None else environ)
    if platform.libc_ver()[0] != "glibc":
        return environ
    current = [item for item in environ.get(TUNABLES_ENV, "").split(":") if item]
    if HUGE_PAGES[0] not in {item.split("=", 1)[0] for item in current}:
        environ[TUNABLES_ENV] = ":".join(current + ["=".join(HUGE_PAGES)])
    return environ


def allocator_setting() -> str | None:
    """This process's ``GLIBC_TUNABLES`` (None when unset): recorded with every run beside its times."""
    return os.environ.get(TUNABLES_ENV) or None


if __name__ == "__main__":
    print(with_huge_pages().get(TUNABLES_ENV, ""))
