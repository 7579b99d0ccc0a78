"""Loaders: one function per source format, each returning a :class:`~emofx.data.dataset.FaceDataset`.

| format | source | faces |
|---|---|---|
| ``folder`` | ``ROOT/[split folders/]<emotion>/<image>`` (the FER2013 Kaggle layout) | cropped or detected |
| ``fer2013-csv`` | the original ``fer2013.csv`` (emotion, pixels, Usage) | 48x48 pixels |
| ``ferplus`` | ``fer2013new.csv`` votes joined to the FER2013 images | cropped |
| ``kdef`` | KDEF photos, codes in the file names (``AF01ANS.JPG``) | detected |
| ``taiwanese`` | Taiwanese performers' photos (``0111b02.jpg``) and ``Image_info.xls`` ratings | detected |
| ``mat`` | MATLAB file with ``images`` (N x H x W or H x W x N: ``layout``) and ``labels`` (from ``label_base``) | \
as stored |
| ``manifest`` | CSV with ``path``, ``emotion`` and optional ``culture``, ``subject``, ``split`` | cropped or detected |
| ``synthetic`` | the word ``synthetic``: procedural faces from :mod:`emofx.data.synthetic` | generated |

Every file-based loader takes ``culture``, ``size``, ``strict`` and ``limit``. An input
that cannot be used (unreadable, truncated, not an image, no face, malformed row) is listed
in ``dataset.skipped`` with the reason; ``strict=True`` turns any such input into an error.
Files with identical bytes are reported in ``meta["duplicates"]`` and, per image, in
``extras["content_hash"]``. Sources are only ever read.
"""


from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from emofx.data.dataset import FaceDataset
from emofx.data.loaders.common import FACE_MODES, SourceError, describe_landmarks
from emofx.data.loaders.fer2013 import (
    FER2013_CODES,
    FER2013_SPLITS,
    FERPLUS_VOTE_COLUMNS,
    FERPLUS_VOTE_NAMES,
    NO_MAJORITY,
    ferplus_majority,
    load_fer2013_csv,
    load_ferplus,
)
from emofx.data.loaders.folder import load_folder
from emofx.data.loaders.kdef import KDEF_ANGLES, KDEF_EXPRESSIONS, load_kdef
from emofx.data.loaders.manifest import load_manifest
from emofx.data.loaders.mat import load_mat
from emofx.data.loaders.synthetic import load_synthetic
from emofx.data.loaders.taiwanese import TAIWANESE_EXPRESSIONS, TAIWANESE_RATING_NAMES, load_taiwanese

__all__ = [
    "FACE_MODES", "FER2013_CODES", "FER2013_SPLITS", "FERPLUS_VOTE_COLUMNS", "FERPLUS_VOTE_NAMES", "FORMATS",
    "KDEF_ANGLES", "KDEF_EXPRESSIONS", "NO_MAJORITY", "TAIWANESE_EXPRESSIONS", "TAIWANESE_RATING_NAMES",
    "SourceError", "describe_landmarks", "ferplus_majority", "load", "load_fer2013_csv", "load_ferplus",
    "load_folder", "load_kdef", "load_manifest", "load_mat", "load_synthetic", "load_taiwanese", "loader_options",
]

FORMATS: dict[str, Callable[..., FaceDataset]] = {
    "folder": load_folder,
    "fer2013-csv": load_fer2013_csv,
    "ferplus": load_ferplus,
    "kdef": load_kdef,
    "taiwanese": load_taiwanese,
    "mat": load_mat,
    "manifest": load_manifest,
    "synthetic": load_synthetic,
}


def loader_options(fmt: str) -> tuple[str, ...]:
    """The keyword options that format ``fmt`` accepts."""
    return tuple(p for p in inspect.signature(_loader(fmt)).parameters if p != "source")


def _loader(fmt: str) -> Callable[..., FaceDataset]:
    key = fmt.strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[key]


def load(source: str | os.PathLike, format: str, **options: Any) -> FaceDataset:  # noqa: A002 - CLI word
    """Load ``source`` with the loader of ``format``; options it does not take are an error naming them."""
    accepted = loader_options(format)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"format {format!r} does not take option(s) {unknown}; it takes {list(accepted)}")
    return _loader(format)(source, **options)
