"""MATLAB files with ``images`` (N x 48 x 48) and ``labels`` (TFD order by default)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from emofx.data.dataset import FaceDataset, resize_dataset
from emofx.data.loaders.common import (
    SourceError,
    _check_strict,
    _existing,
    _spread,
)
from emofx.data.loaders.fer2013 import FER2013_CODES

MAT_LAYOUTS: tuple[str, ...] = ("auto", "NHW", "HWN")  # where the images' axis of length N is


def _mat_strings(value: Any) -> list[str]:
    """A MATLAB char matrix or cell array of strings as a flat list of Python strings."""
    array = np.asarray(value)
    if array.dtype.kind in "US" and array.ndim <= 1:
        return [str(v).strip() for v in array.reshape(-1)]
    if array.dtype.kind in "US":
        return ["".join(map(str, row)).strip() for row in array]
    return [str(np.asarray(v).reshape(-1)[0]).strip() if np.asarray(v).size else "" for v in array.reshape(-1)]


def load_mat(
    source: str | os.PathLike,
    *,
    culture: str = "",
    label_names: Sequence[str] = FER2013_CODES,
    size: int = 48,
    strict: bool = False,
    limit: int | None = None,
    layout: str = "auto",
    label_base: int | None = None,
) -> FaceDataset:
    """A MATLAB file with ``images`` (N x H x W, or H x W x N) and ``labels`` (N).

    ``layout`` is ``NHW``, ``HWN`` or ``auto`` (the axis of length N; as many images as rows is
    ambiguous and refused). Numeric labels index ``label_names`` (default the TFD/FER2013 order
    angry, disgusted, afraid, happy, sad, surprised, neutral) from ``label_base`` (None: 0 when a 0
    occurs, else 1; recorded in ``meta``); negative labels mean unlabelled and are skipped. Text
    labels are emotion names. Optional variables ``subjects`` and ``cultures`` give per-image
    subject and culture.
    """
    if layout not in MAT_LAYOUTS or label_base not in (None, 0, 1):
        raise ValueError(f"layout must be one of {', '.join(MAT_LAYOUTS)} and label_base 0 or 1; got {layout!r} "
                         f"and {label_base!r}")
    import scipy.io

    path = _existing(source, "MATLAB file")
    try:
        data = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise SourceError(f"{path} is a MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7')") from None
    except Exception as err:  # scipy raises ValueError, TypeError or struct errors for damaged files
        raise SourceError(f"{path} is not a readable MATLAB file ({err})") from None
    missing = [v for v in ("images", "labels") if v not in data]
    if missing:
        present = sorted(k for k in data if not k.startswith("__"))
        raise SourceError(f"{path} lacks variable(s) {missing}; it has {present}")
    raw_labels = data["labels"]
    labels = _mat_strings(raw_labels) if raw_labels.dtype.kind in "USO" else np.asarray(raw_labels).reshape(-1)
    n = len(labels)
    images = np.asarray(data["images"])
    if images.ndim != 3:
        raise SourceError(f"{path}: images has shape {images.shape}; expected N x H x W")
    if layout == "auto" and images.shape[0] == images.shape[2] == n:
        raise SourceError(f"{path}: images is {'x'.join(map(str, images.shape))} for {n} labels, so N x H x W and "
                          "H x W x N both fit; say which (CLI: --layout NHW or HWN)")
    if layout == "HWN" or (layout == "auto" and images.shape[0] != n and images.shape[2] == n):
        images = np.transpose(images, (2, 0, 1))
    if images.shape[0] != n:
        raise SourceError(f"{path}: {images.shape[0]} images but {n} labels")
    if images.dtype != np.uint8:
        images = np.asarray(images, dtype=np.float64)
        images = np.clip(images * 255.0 if images.max() <= 1.0 else images, 0, 255).round().astype(np.uint8)
    skipped: list[dict[str, str]] = []
    meta: dict[str, Any] = {"source": str(path.absolute()), "format": "mat"}
    if isinstance(labels, list):
        keep = list(range(n))
    else:
        base = label_base if label_base is not None else 0 if np.any(labels == 0) else 1
        meta["label_base"] = int(base)  # shown by `emofx info`: the guess, when it was one, is visible
        out_of_range = sorted({int(v) for v in labels if v >= 0 and not 0 <= v - base < len(label_names)})
        if out_of_range:
            raise SourceError(f"{path}: labels {out_of_range} have no name; label_names has {len(label_names)} "
                              f"names ({list(label_names)}) and labels start at {base}")
        keep = [i for i in range(n) if labels[i] >= 0]
        skipped = [{"path": f"{path}#{i}", "reason": f"image {i} is unlabelled (label {labels[i]})"}
                   for i in range(n) if labels[i] < 0]
        labels = [label_names[int(v) - base] if v >= 0 else "" for v in labels]
    _check_strict(skipped, path, strict)
    keep = [keep[i] for i in _spread(len(keep), limit, [labels[i] for i in keep])]
    per_image = {name: _mat_strings(data[var]) for name, var in (("subject", "subjects"), ("culture", "cultures"))
                 if var in data}
    for name, values in per_image.items():
        if len(values) != n:
            raise SourceError(f"{path}: {name}s has {len(values)} entries for {n} images")
    cultures = [per_image["culture"][i] or culture for i in keep] if "culture" in per_image else culture
    dataset = FaceDataset.from_label_names(
        images[keep], [labels[i] for i in keep], culture=cultures,
        subject=[per_image["subject"][i] for i in keep] if "subject" in per_image else None,
        path=[f"{path}#{i}" for i in keep],
        meta=meta, skipped=skipped,
    )
    return resize_dataset(dataset, size)
