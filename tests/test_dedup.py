"""Near-duplicate search at scale: hash pairs through shared bit fields, found exactly as by comparing every pair."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofx.data import dedup
from emofx.data.collect import drop_reasons


def every_pair(hashes: np.ndarray, threshold: int, others: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The pairs within ``threshold`` bits, each pair's distance counted bit by bit (the definition)."""
    against = hashes if others is None else others
    return [(i, j) for i in range(len(hashes)) for j in range(len(against))
            if (others is not None or j > i) and bin(int(hashes[i]) ^ int(against[j])).count("1") <= threshold]


@pytest.fixture(scope="module")
def hashes() -> np.ndarray:
    """300 random hashes, 60 near copies of them (1 to 6 bits flipped), and 20 copies of one value."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2 ** 63, 300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300, dtype=np.uint64)
    flips = [sum(1 << int(b) for b in rng.choice(64, k, replace=False)) for k in rng.integers(1, 7, 60)]
    near = base[:60] ^ np.array(flips, dtype=np.uint64)
    return np.concatenate([base, near, np.full(20, base[7])])


@pytest.mark.parametrize("threshold", [0, 1, 4, 6, 20])
def test_near_pairs_are_every_pair_within_the_threshold_in_order(hashes, threshold):
    rows, cols = dedup.near_pairs(hashes, threshold)
    assert list(zip(rows.tolist(), cols.tolist())) == every_pair(hashes, threshold)
    assert rows.dtype == cols.dtype == np.int64
    rows, cols = dedup.near_pairs(hashes[300:], threshold, others=hashes[:300])
    assert list(zip(rows.tolist(), cols.tolist())) == every_pair(hashes[300:], threshold, hashes[:300])


def test_near_pairs_of_the_default_threshold_compare_only_hashes_sharing_a_field(hashes, monkeypatch):
    def refuse(*args):
        raise AssertionError("compared every pair")

    monkeypatch.setattr(dedup, "_all_pairs", refuse)
    rows, cols = dedup.near_pairs(hashes, 4)
    assert list(zip(rows.tolist(), cols.tolist())) == every_pair(hashes, 4)
    monkeypatch.undo()
    same = np.zeros(50, np.uint64)  # every hash alike: the fields give more candidates than there are pairs
    calls = []
    monkeypatch.setattr(dedup, "_all_pairs", lambda *a: calls.append(a) or (np.zeros(0, np.int64),) * 2)
    dedup.near_pairs(same, 4)
    assert len(calls) == 1
    assert dedup.near_pairs(np.zeros(0, np.uint64), 4)[0].tolist() == []


def test_field_candidates_are_the_pairs_of_equal_keys_in_pieces_of_the_limit():
    keys = np.array([3, 1, 3, 2, 3, 1], dtype=np.uint64)
    pieces = list(dedup.field_candidates(keys, keys, within=True, limit=4))
    found = sorted((int(i), int(j)) for rows, cols in pieces for i, j in zip(rows, cols))
    assert found == [(0, 2), (0, 4), (1, 5), (2, 4)]
    assert len(pieces) > 1  # 3 + 2 + 3 + 1 + 3 + 2 = 14 matches (self-matches too), at most 4 rows' worth at once
    others = np.array([2, 3, 9], dtype=np.uint64)
    found = sorted((int(i), int(j)) for rows, cols in dedup.field_candidates(keys, others, within=False)
                   for i, j in zip(rows, cols))
    assert found == [(0, 1), (2, 1), (3, 0), (4, 1)]


def test_drop_reasons_give_each_dropped_image_its_first_reason():
    duplicates = pd.DataFrame({
        "index": [4, 2, 4, 2, 7], "kept": [False, True, False, False, False],
        "reason": ["exact duplicate", "near duplicate", "near duplicate of another dataset",
                   "near duplicate of another dataset", "exact duplicate"],
        "detail": ["of a", "of b", "of c", "of d", "of e"],
    })
    why = drop_reasons(duplicates)
    assert sorted(why.index) == [2, 4, 7]
    assert why.loc[4].tolist() == ["exact duplicate", "of a"]  # its first row, not the later one
    assert why.loc[2].tolist() == ["near duplicate of another dataset", "of d"]  # the row that keeps it passed over


def test_a_missing_imagehash_names_the_command_that_installs_it_here(monkeypatch):
    import shlex
    import sys

    monkeypatch.setitem(sys.modules, "imagehash", None)  # an import of it fails
    with pytest.raises(ImportError, match="needs imagehash") as error:
        dedup.perceptual_hash(np.zeros((8, 8), np.uint8))
    assert f"{shlex.quote(sys.executable)} -m pip install imagehash" in str(error.value)  # this Python's pip
