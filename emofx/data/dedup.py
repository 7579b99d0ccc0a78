"""Exact and near-duplicate images: content digests, perceptual hashes, aligned-face correlations, groups, and
which copy to keep.

Exact duplicates share their file bytes (a BLAKE2b digest). Near duplicates (re-encoded,
resized, slightly cropped or brightened copies) have perceptual hashes (``imagehash``:
pHash by default, 64 bits) within ``threshold`` bits of each other; groups are the connected
components of that relation, so a chain of small differences forms one group. Two hashes within
``threshold`` bits agree on one of ``threshold + 1`` bit fields, so only hashes sharing a field are
compared (FER2013's 35,887 faces: a few hundred thousand candidates instead of 644 million pairs).

Faces aligned on their eyes compare better by correlation: two copies of a photo stay within 0.005 of
correlation 1 on 16x16 thumbnails however they were resized, re-encoded or reframed, while a person's other
photos of a posed series (KDEF) lie further apart; a 64-bit hash of the crop puts some of those within 4 bits
(``benchmarks/results/collect/README.md`` has the measurement).
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from typing import Iterator, Sequence

import numpy as np

HASH_METHODS: tuple[str, ...] = ("phash", "dhash", "ahash", "whash")
HASH_BITS = 64
NO_GROUP = -1
_BLOCK = 1024
_CANDIDATES = 1 << 22  # pairs compared at once by near_pairs (tens of MB)
THUMBNAIL_SIDE = 16  # aligned faces are correlated as thumbnails of this side


def content_digest(data: bytes | np.ndarray) -> int:
    """A 64-bit digest of file bytes or a C-contiguous array's memory (equal bytes, equal digest)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def image_digests(images: np.ndarray) -> np.ndarray:
    """A 64-bit :func:`content_digest` per image (N,), uint64: equal pixels, equal digest."""
    return np.fromiter((content_digest(np.ascontiguousarray(image)) for image in images), dtype=np.uint64,
                       count=len(images))


def perceptual_hash(gray: np.ndarray, method: str = "phash") -> int:
    """The 64-bit perceptual hash of a grayscale image (``imagehash``, 8x8 bits)."""
    try:
        import imagehash
    except ImportError:
        raise ImportError("near-duplicate search needs imagehash, a dependency of emofx: "
                          f"{shlex.quote(sys.executable)} -m pip install imagehash") from None
    from PIL import Image

    if method not in HASH_METHODS:
        raise ValueError(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}")
    bits = getattr(imagehash, method)(Image.fromarray(np.asarray(gray, dtype=np.uint8))).hash.reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hashes(images: Sequence[np.ndarray] | np.ndarray, method: str = "phash") -> np.ndarray:
    """uint64 (N,) perceptual hashes of grayscale images (a sequence of them or one (N, H, W) array)."""
    return np.array([perceptual_hash(image, method) for image in images], dtype=np.uint64)


def near_pairs(hashes: np.ndarray, threshold: int, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) whose hashes differ in at most ``threshold`` bits, sorted by i, then j.

    Within ``hashes`` (i < j) when ``others`` is None, else between ``hashes[i]`` and ``others[j]``. Two hashes within
    ``threshold`` bits agree exactly on at least one of ``threshold + 1`` disjoint bit fields (pigeonhole), so only the
    pairs sharing a field's value are compared (:func:`field_candidates`), not every pair; where that would be more
    pairs than all of them (wide thresholds, hashes alike), every pair is compared, in blocks.
    """
    if not 0 <= threshold < HASH_BITS:
        raise ValueError(f"near-duplicate threshold must lie in [0, {HASH_BITS}) bits; got {threshold}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    against = hashes if others is None else np.asarray(others, dtype=np.uint64)
    within = others is None
    bounds = np.linspace(0, HASH_BITS, threshold + 2).round().astype(int)
    fields = [(_field(hashes, lo, hi), _field(against, lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    counts = [_matches(a, b) for a, b in fields]
    every = len(hashes) * (len(hashes) - 1) // 2 if within else len(hashes) * len(against)
    if sum(int(c.sum()) for c in counts) > every:
        return _all_pairs(hashes, against, threshold, within)
    keys = [np.zeros(0, np.int64)]
    for (a, b), count in zip(fields, counts):
        for rows, cols in field_candidates(a, b, within, count):
            close = np.bitwise_count(hashes[rows] ^ against[cols]) <= threshold
            keys.append(rows[close] * len(against) + cols[close])
    found = np.unique(np.concatenate(keys))  # a pair agreeing on several fields once; sorted by (i, j)
    return found // max(len(against), 1), found % max(len(against), 1)


def _field(hashes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bits ``lo`` to ``hi`` (exclusive) of each hash, as an integer."""
    return (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)


def _matches(keys: np.ndarray, others: np.ndarray) -> np.ndarray:
    """How many of ``others`` equal each of ``keys``."""
    ordered = np.sort(others)
    return np.searchsorted(ordered, keys, "right") - np.searchsorted(ordered, keys, "left")


def field_candidates(keys: np.ndarray, others: np.ndarray, within: bool, counts: np.ndarray | None = None,
                     limit: int = _CANDIDATES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i, j) with ``keys[i] == others[j]`` (j > i when ``within``: ``others`` is ``keys``), in pieces of
    about ``limit`` pairs (the rows of one key at least), so that a value many share costs time, not memory.
    ``counts``: :func:`_matches` of the two, when known."""
    order = np.argsort(others, kind="stable")
    first = np.searchsorted(others[order], keys, "left")
    counts = _matches(keys, others) if counts is None else counts
    ends = np.cumsum(counts)
    start = 0
    while start < len(keys):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - counts[start] + limit, "right")))
        part = np.arange(start, min(stop, len(keys)))
        rows = np.repeat(part, counts[part])
        offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts[part]) - counts[part], counts[part])
        cols = order[np.repeat(first[part], counts[part]) + offsets]
        yield (rows[cols > rows], cols[cols > rows]) if within else (rows, cols)
        start = stop


def _all_pairs(hashes: np.ndarray, against: np.ndarray, threshold: int, within: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`near_pairs` by comparing every pair, in blocks of rows (within: each row with those after it only)."""
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(hashes), _BLOCK):
        offset = start if within else 0
        distance = np.bitwise_count(hashes[start:start + _BLOCK, None] ^ against[None, offset:])
        i, j = np.nonzero(distance <= threshold)
        i, j = i + start, j + offset
        if within:
            i, j = i[j > i], j[j > i]
        rows.append(i.astype(np.int64))
        cols.append(j.astype(np.int64))
    return np.concatenate(rows), np.concatenate(cols)


def thumbnails(faces: Sequence[np.ndarray] | np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """float32 (N, side * side): each grayscale face shrunk to ``side`` x ``side``, less its mean, at unit norm, so
    that the dot product of two is their correlation (a flat face: zeros, correlated with nothing)."""
    import cv2

    shrunk = np.array([cv2.resize(np.asarray(face, dtype=np.uint8), (side, side), interpolation=cv2.INTER_AREA)
                       for face in faces], dtype=np.float64).reshape(len(faces), side * side)
    shrunk -= shrunk.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(shrunk, axis=1, keepdims=True)
    return np.divide(shrunk, norms, out=np.zeros_like(shrunk), where=norms > 0).astype(np.float32)


def correlated_pairs(thumbs: np.ndarray, threshold: float, others: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of :func:`thumbnails` whose correlation is at least 1 - ``threshold``.

    Within ``thumbs`` (i < j) when ``others`` is None, else between ``thumbs[i]`` and ``others[j]``.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"an aligned near-duplicate threshold must lie in [0, 1) (1 - correlation); got {threshold}")
    thumbs = np.asarray(thumbs, dtype=np.float32)
    against = thumbs if others is None else np.asarray(others, dtype=np.float32)
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(thumbs), _BLOCK):
        i, j = np.nonzero(thumbs[start:start + _BLOCK] @ against.T >= 1.0 - threshold)
        i = i + start
        if others is None:
            i, j = i[j > i], j[j > i]
        rows.append(i.astype(np.int64))
        cols.append(j.astype(np.int64))
    return np.concatenate(rows), np.concatenate(cols)


def groups_from_pairs(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Group id per item (connected components of the pairs); NO_GROUP for items in no pair."""
    if not len(rows):
        return np.full(n, NO_GROUP, dtype=np.int64)
    from scipy.sparse import coo_matrix  # here: importing scipy.sparse would add 0.2 s to every emofx command's start
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    in_group = sizes[component] > 1
    _, renumbered = np.unique(component[in_group], return_inverse=True)
    groups = np.full(n, NO_GROUP, dtype=np.int64)
    groups[in_group] = renumbered
    return groups


def exact_groups(digests: np.ndarray) -> np.ndarray:
    """Group id per item for equal digests; NO_GROUP for unique items (and for digest 0, unread files)."""
    digests = np.asarray(digests, dtype=np.uint64)
    _, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    repeated = (counts[inverse] > 1) & (digests != 0)
    groups = np.full(len(digests), NO_GROUP, dtype=np.int64)
    _, groups[repeated] = np.unique(inverse[repeated], return_inverse=True)
    return groups


def near_groups(hashes: np.ndarray, threshold: int, aligned: np.ndarray | None = None,
                thumbs: np.ndarray | None = None, aligned_threshold: float = 0.0) -> np.ndarray:
    """Group id per item for hashes within ``threshold`` bits (connected components); NO_GROUP when alone.

    Items whose faces were aligned on their eyes (``aligned``, with their :func:`thumbnails` ``thumbs``) pair with
    each other by correlation instead (within ``aligned_threshold`` of 1): a person's other photos of a posed
    series are not near duplicates. A pair with one unaligned item still pairs by hash."""
    rows, cols = near_pairs(hashes, threshold)
    if aligned is None or thumbs is None:
        return groups_from_pairs(len(hashes), rows, cols)
    by_hash = ~(aligned[rows] & aligned[cols])
    index = np.flatnonzero(aligned)
    pair_rows, pair_cols = correlated_pairs(thumbs[index], aligned_threshold)
    return groups_from_pairs(len(hashes), np.r_[rows[by_hash], index[pair_rows]],
                             np.r_[cols[by_hash], index[pair_cols]])


def keep_one_per_group(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Boolean (N,): True for the item each group keeps (highest ``priority``, then first index) and every
    ungrouped item."""
    keep = np.asarray(groups) == NO_GROUP
    order = np.lexsort((np.arange(len(groups)), -np.asarray(priority)))
    grouped = order[np.asarray(groups)[order] != NO_GROUP]
    _, first = np.unique(np.asarray(groups)[grouped], return_index=True)
    keep[grouped[first]] = True
    return keep
