"""Exact and near-duplicate images: content digests, perceptual hashes, aligned-face correlations, groups, and
which copy to keep.

Exact duplicates share their file bytes (a BLAKE2b digest). Near duplicates (re-encoded,
resized, slightly cropped or brightened copies) have perceptual hashes (``imagehash``:
pHash by default, 64 bits) within ``threshold`` bits of each other; groups are the connected
components of that relation, so a chain of small differences forms one group. Hamming
distances are computed for all pairs in blocks (35,887 FER2013 faces: about 1.3 billion pairs,
seconds).

Faces aligned on their eyes compare better by correlation: two copies of a photo stay within 0.005 of
correlation 1 on 16x16 thumbnails however they were resized, re-encoded or reframed, while a person's other
photos of a posed series (KDEF) lie further apart; a 64-bit hash of the crop puts some of those within 4 bits
(``benchmarks/results/collect/README.md`` has the measurement).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_METHODS: tuple[str, ...] = ("phash", "dhash", "ahash", "whash")
HASH_BITS = 64
NO_GROUP = -1
_BLOCK = 1024
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
        raise ImportError('near-duplicate search needs imagehash: pip install imagehash') from None
    from PIL import Image

    if method not in HASH_METHODS:
        raise ValueError(f"unknown hash method {method!r}; choose one of {', '.join(HASH_METHODS)}")
    bits = getattr(imagehash, method)(Image.fromarray(np.asarray(gray, dtype=np.uint8))).hash.reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hashes(images: Sequence[np.ndarray] | np.ndarray, method: str = "phash") -> np.ndarray:
    """uint64 (N,) perceptual hashes of grayscale images (a sequence of them or one (N, H, W) array)."""
    return np.array([perceptual_hash(image, method) for image in images], dtype=np.uint64)


def near_pairs(hashes: np.ndarray, threshold: int, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) whose hashes differ in at most ``threshold`` bits.

    Within ``hashes`` (i < j) when ``others`` is None, else between ``hashes[i]`` and ``others[j]``.
    """
    if not 0 <= threshold < HASH_BITS:
        raise ValueError(f"near-duplicate threshold must lie in [0, {HASH_BITS}) bits; got {threshold}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    against = hashes if others is None else np.asarray(others, dtype=np.uint64)
    rows, cols = [], []
    for start in range(0, len(hashes), _BLOCK):
        block = hashes[start:start + _BLOCK]
        distance = np.bitwise_count(block[:, None] ^ against[None, :])
        i, j = np.nonzero(distance <= threshold)
        i = i + start
        if others is None:
            keep = j > i
            i, j = i[keep], j[keep]
        rows.append(i)
        cols.append(j)
    if not rows:  # no hashes: no pairs
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


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
