"""Taiwanese performers' photos (``0111b02.jpg``) and the observers' ratings in ``Image_info.xls``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.faces import FaceOptions
from emofx.data.loaders.common import (
    FILE_NAME_CODES,
    SourceError,
    _build,
    _existing,
    _image_files,
    _Inputs,
    _is_image_name,
    _spread,
    no_images_error,
    not_image_reason,
    photo_options,
)

TAIWANESE_EXPRESSIONS: dict[str, str] = {
    "a": "neutral", "b": "happy", "c": "sad", "d": "angry", "e": "disgusted", "f": "afraid", "g": "surprised",
}
TAIWANESE_VIEWS: tuple[int, ...] = (1, 2, 3)  # front, three-quarter, profile
TAIWANESE_RATING_NAMES: tuple[str, ...] = ("happy", "sad", "angry", "disgusted", "afraid", "surprised")
_TAIWANESE_NAME = FILE_NAME_CODES["taiwanese"]


def _taiwanese_key(performer: str, kind: str, view: str, letter: str, serial: str) -> str:
    """The canonical file stem; files of performance type 0 may omit the neutral letter ``a``."""
    return f"{performer}{kind}{view}{letter or 'a'}{int(serial):02d}"


def _taiwanese_ratings(path: Path) -> pd.DataFrame:
    """Image_info.xls as a frame indexed by canonical file stem (proportions, intensities, entropy)."""
    import xlrd

    try:
        sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
    except Exception as err:  # xlrd raises its own error types for damaged files
        raise SourceError(f"{path} is not a readable Excel file ({err}); remove it or pass ratings=False") from None
    records = {}
    for r in range(2, sheet.nrows):
        row = sheet.row_values(r)
        if len(row) < 24 or not str(row[0]).strip():
            continue
        match = _TAIWANESE_NAME.match(Path(str(row[0]).strip()).stem)
        if match is None:
            continue
        number = lambda v: float(v) if isinstance(v, (int, float)) else np.nan  # noqa: E731
        records[_taiwanese_key(*match.groups())] = {
            "self_intensity": number(row[1]),
            "observers": number(row[2]),
            "rating_entropy": number(row[5]),
            **{f"ratings_{j}": number(row[6 + j]) for j in range(6)},
            **{f"rating_intensity_{j}": number(row[18 + j]) for j in range(6)},
        }
    return pd.DataFrame.from_dict(records, orient="index")


def load_taiwanese(
    source: str | os.PathLike,
    *,
    culture: str = "Taiwanese",
    views: Sequence[int] = (1,),
    ratings: bool = True,
    size: int = 48,
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    landmarks: str = "auto",
    align: bool | None = None,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """Taiwanese performers' photos named ``PPTVxNN`` (performer, performance type, view, expression, serial).

    Front view only by default. Subject is the performer id. When ``Image_info.xls`` lies in
    ``source`` (or above the image folder), observers' ratings are attached: ``extras["ratings"]``
    (N, 6) proportion of observers choosing each of ``meta["rating_names"]``,
    ``extras["rating_intensity"]`` (N, 6), ``extras["rating_entropy"]``, ``extras["observers"]``,
    ``extras["self_intensity"]``, and ``extras["agreement"]``: the proportion choosing the posed
    emotion (NaN for neutral, which observers could not choose, and for unrated images).
    """
    root = _existing(source, "Taiwanese face folder")
    wanted = {int(v) for v in views}
    if not wanted or not wanted <= set(TAIWANESE_VIEWS):
        unknown = sorted(wanted - set(TAIWANESE_VIEWS))
        raise ValueError(f"{f'unknown Taiwanese view(s) {unknown}' if unknown else 'no Taiwanese view given'}; "
                         f"choose from {list(TAIWANESE_VIEWS)} (1 front, 2 three-quarter, 3 profile)")
    inputs, keys, other_views = _Inputs(), [], 0
    for path in inputs.recordable(_image_files(root)):
        if path.name.lower() in ("image_info.xls", "voting.xls", "readme.txt"):
            continue
        match = _TAIWANESE_NAME.match(path.stem) if _is_image_name(path) else None
        if match is None:
            inputs.skip(path, "file name does not follow the Taiwanese code PPTVxNN (e.g. 0111b02.jpg)"
                        if _is_image_name(path) else not_image_reason(path))
            continue
        performer, kind, view, letter, serial = match.groups()
        if int(view) not in wanted:
            other_views += 1
            continue
        if not letter and kind != "0":
            inputs.skip(path, f"no expression letter in the file name, and performance type {kind} is not neutral")
            continue
        inputs.add(path, TAIWANESE_EXPRESSIONS[(letter or "a").lower()], culture=culture, subject=performer)
        keys.append(_taiwanese_key(performer, kind, view, letter.lower(), serial))
    if not inputs.files:
        raise no_images_error(f"Taiwanese face images with view(s) {sorted(wanted)}", root, inputs,
                              f"{other_views} photos of other views (--views)" if other_views else "")
    chosen = _spread(len(inputs.files), limit, inputs.labels)
    inputs, keys = inputs.take(chosen), [keys[i] for i in chosen]
    extras, meta = {}, {"views": sorted(wanted), "other_views_ignored": other_views}
    info_file = next((p / "Image_info.xls" for p in (root, root.parent) if (p / "Image_info.xls").exists()), None)
    if ratings and info_file is not None:
        table = _taiwanese_ratings(info_file).reindex(keys)
        rating = table[[f"ratings_{j}" for j in range(6)]].to_numpy(np.float32)
        index = {name: j for j, name in enumerate(TAIWANESE_RATING_NAMES)}
        agreement = np.array([rating[i, index[label]] if label in index else np.nan
                              for i, label in enumerate(inputs.labels)], dtype=np.float32)
        extras = {
            "ratings": rating,
            "rating_intensity": table[[f"rating_intensity_{j}" for j in range(6)]].to_numpy(np.float32),
            "rating_entropy": table["rating_entropy"].to_numpy(np.float32),
            "observers": table["observers"].to_numpy(np.float32),
            "self_intensity": table["self_intensity"].to_numpy(np.float32),
            "agreement": agreement,
        }
        meta.update(rating_names=list(TAIWANESE_RATING_NAMES), ratings_file=str(info_file.absolute()),
                    unrated=int(table["observers"].isna().sum()))
    options = photo_options(size, margin, center_crop_fallback, landmarks, align)
    return _build(inputs, options, source=root, fmt="taiwanese", strict=strict, progress=progress,
                  meta=meta, extras=extras)
