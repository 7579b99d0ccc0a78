"""glibc's huge-page tunable (emofx.nets.allocator): how it joins the user's tunables, that runs
record the setting in force, and that it spares XLA's calls the page faults of fresh buffers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from emofx.cli import main
from emofx.data.synthetic import make_synthetic
from emofx.nets.allocator import TUNABLES_ENV, with_huge_pages

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="GLIBC_TUNABLES are glibc's (Linux)")
FAULTS_PER_INFERENCE = """
import resource, numpy as np, jax
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig, init_params
config = ModelConfig(num_classes=7)
model = TrainedModel(config, init_params(config, 0), tuple(f"c{i}" for i in range(7)))
images = jax.device_put(np.random.default_rng(0).random((64, 48, 48), dtype=np.float32))
for _ in range(3):
    jax.block_until_ready(model.logits(images))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    jax.block_until_ready(model.logits(images))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


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


def _huge_pages_on_request() -> bool:
    try:
        return "[madvise]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@glibc_only
@pytest.mark.skipif(not _huge_pages_on_request(), reason="the kernel's transparent huge pages are not 'madvise' "
                                                         "(with 'always' or 'never' the tunable changes nothing)")
def test_huge_pages_spare_inference_the_page_faults_of_fresh_buffers():
    def faults(environ: dict[str, str]) -> float:
        done = subprocess.run([sys.executable, "-c", FAULTS_PER_INFERENCE], env=environ, capture_output=True,
                              text=True, check=True)
        return float(done.stdout.split()[-1])

    default, huge = faults(_environment()), faults(with_huge_pages(_environment()))
    # glibc maps the call's ~100 MiB of temporaries afresh each time: about 25,000 faults of 4 KiB pages
    # by default, a few hundred with 2 MiB pages.
    assert default > 5000, default
    assert huge < default / 4, (default, huge)
