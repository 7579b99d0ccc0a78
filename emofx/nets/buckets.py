"""Shape buckets: datasets padded to a few sizes so that similar sizes share one compiled program.

A compiled program is specialised to its input shapes, so a training set of 958 images and
one of 970 (two trials of a subject split) would each compile the training step anew (about
20 s on a GPU, more on a CPU). Padding every set to the next *bucket* and passing the true
count as data lets them share: with 4 buckets per octave (..., 512, 640, 768, 896, 1024,
1280, ...) a set is padded by less than 25%, and the padded rows are never read as data
(training samples only the first ``n`` rows; evaluation masks the rest).
"""

from __future__ import annotations

import numpy as np

BUCKETS_PER_OCTAVE = 4


def bucket_size(n: int, per_octave: int = BUCKETS_PER_OCTAVE) -> int:
    """The smallest bucket >= ``n``: a multiple of 2**(floor(log2 n) - log2 per_octave), so < 1/per_octave padding."""
    if n < 1:
        raise ValueError(f"a bucket holds at least one row; got {n}")
    step = max(1, 2 ** (int(n).bit_length() - 1) // per_octave)
    return -(-int(n) // step) * step


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with zero rows appended along axis 0 up to ``size`` rows."""
    array = np.asarray(array)
    if size < len(array):
        raise ValueError(f"cannot pad {len(array)} rows down to {size}")
    return np.concatenate([array, np.zeros((size - len(array), *array.shape[1:]), array.dtype)])


def pad_to_bucket(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Arrays of equal length ``n`` zero-padded to :func:`bucket_size` rows, and ``n``."""
    n = len(arrays[0])
    return [pad_rows(a, bucket_size(n)) for a in arrays], n
