"""A CSV manifest with ``path``, ``emotion`` and optional ``culture``, ``subject``, ``split``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.faces import FaceOptions
from emofx.data.loaders.common import (
    SourceError,
    _build,
    _check_strict,
    _existing,
    _face_options,
    _Inputs,
    read_text_table,
    _spread,
    skipped_listing,
)


def load_manifest(
    source: str | os.PathLike,
    *,
    culture: str = "",
    root: str | os.PathLike | None = None,
    size: int = 48,
    faces: str = "auto",
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    landmarks: str = "auto",
    align: bool | None = None,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """A CSV listing ``path`` and ``emotion`` per image, with optional ``culture``, ``subject``, ``split``.

    Relative paths are resolved against ``root`` (default: the CSV's folder); a row's culture
    overrides ``culture``. ``faces`` as for :func:`load_folder`. This is how users bring their
    own collections, e.g. a web-collected set like the paper's NFW. A folder holding a ``manifest.csv`` (an
    ``emofx collect`` collection) stands for that file.
    """
    csv_path = _existing(source, "manifest")
    if csv_path.is_dir():
        if not (csv_path / "manifest.csv").is_file():
            raise SourceError(f"{csv_path} is a folder without a manifest.csv; the manifest format reads a CSV of "
                              "path and emotion columns (an emofx collect folder holds one)")
        csv_path = csv_path / "manifest.csv"
    frame = read_text_table(csv_path, ("path", "emotion"),
                            "columns path and emotion (optional culture, subject, split)")
    frame = _person_column(frame, csv_path)
    base = Path(root).expanduser() if root is not None else csv_path.parent
    inputs = _Inputs()
    for row in range(len(frame)):
        record = frame.iloc[row]
        name, emotion = record["path"].strip(), record["emotion"].strip()
        row_culture = (record.get("culture", "") or "").strip() or culture
        where = f"{csv_path}#{row}"
        if not name or not emotion:
            inputs.skip(where, f"row {row}: empty {'path' if not name else 'emotion'}", row_culture)
            continue
        image = Path(name).expanduser()
        image = image if image.is_absolute() else base / image
        if not image.is_file():
            inputs.skip(image, f"{'a folder, not an image file' if image.is_dir() else 'file not found'} "
                               f"(manifest row {row})", row_culture)
            continue
        inputs.add(image, emotion, culture=row_culture, subject=(record.get("subject", "") or "").strip(),
                   split=(record.get("split", "") or "").strip())
    if not inputs.files and root is None and any(Path(p.strip()).expanduser().is_file() for p in frame["path"]):
        raise SourceError(f"no row of {csv_path} names a file relative to its folder ({base}), and some name files "
                          f"relative to the current folder ({Path.cwd()}): pass --root . (Python: root='.')")
    if not inputs.files:
        _check_strict(inputs.skipped, csv_path, strict)
        unlabelled = all(s["reason"].endswith("empty emotion") for s in inputs.skipped)
        raise SourceError(f"no usable rows in {csv_path} ({len(inputs.skipped)} skipped: "
                          f"{skipped_listing(inputs.skipped, 5)})" + (
                              "; every image needs an emotion, e.g. the one its search asked for: give emofx collect "
                              "a --queries table with an emotion column, or fill the manifest's emotion column (crowd "
                              "answers then relabel the dataset: emofx labels)" if unlabelled else ""))
    inputs = inputs.take(_spread(len(inputs.files), limit, inputs.labels))
    options = _face_options(faces, inputs.files, size, margin, center_crop_fallback, landmarks, align)
    return _build(inputs, options, source=csv_path, fmt="manifest", strict=strict, progress=progress)


PERSON_COLUMNS = ("subject", "person", "participant", "actor", "identity", "subject_id", "person_id")
READ_COLUMNS = ("path", "emotion", "culture", "split")


def _person_column(frame: pd.DataFrame, csv_path: Path) -> pd.DataFrame:
    """The table with its person column (the first of :data:`PERSON_COLUMNS`) named ``subject``. Without one, the
    columns it does not read are said (an emofx collection's aside), so that a person column of another name does
    not silently leave the images without people, and every split random."""
    by_name = {str(c).casefold().replace(" ", "_"): c for c in frame.columns}  # Person, Subject ID ...
    person = next((by_name[c] for c in PERSON_COLUMNS if c in by_name), None)
    if person is not None:
        return frame.rename(columns={person: "subject"})
    unread = [c for c in frame.columns if c not in READ_COLUMNS]
    if unread and not (csv_path.parent / "report.json").is_file():
        warnings.warn(f"{csv_path} names no person ({', '.join(PERSON_COLUMNS)}): its images cannot be split by "
                      f"person; column(s) {', '.join(unread)} not read (the manifest reads path, emotion, culture, "
                      "split and the person)", stacklevel=3)
    return frame

