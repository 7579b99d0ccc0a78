"""FER2013 as the original CSV (``fer2013-csv``) and the FER+ crowd votes joined to its images (``ferplus``)."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset, resize_dataset
from emofx.data.dedup import content_digest
from emofx.data.emotions import UnknownEmotionError, canonicalize_all
from emofx.data.faces import FaceOptions
from emofx.data.loaders.common import (
    SourceError,
    _build,
    _check_strict,
    _existing,
    _Inputs,
    read_text_table,
    _spread,
    skipped_listing,
)
from emofx.data.progress import tqdm

FER2013_CODES: tuple[str, ...] = ("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")
FER2013_SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
FERPLUS_VOTE_NAMES: tuple[str, ...] = (
    "neutral", "happy", "surprised", "sad", "angry", "disgusted", "afraid", "contempt", "unknown", "not_face",
)


def _fer2013_label(value: str) -> str:
    """A FER2013 emotion code (0-6) or an emotion name, as a label name."""
    value = value.strip()
    if value.isdigit() and int(value) < len(FER2013_CODES):
        return FER2013_CODES[int(value)]
    return value


def _parse_pixels(text: str, side: int) -> np.ndarray:
    values = text.split()
    if len(values) != side * side:
        raise ValueError(f"pixels has {len(values)} values; expected {side * side} ({side}x{side})")
    try:
        pixels = np.array(values, dtype=np.int64)
    except ValueError:
        raise ValueError("pixels holds values that are not integers") from None
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"pixels lie in {pixels.min()}..{pixels.max()}; expected 0..255")
    return pixels.astype(np.uint8).reshape(side, side)


def _fer2013_rows(
    path: Path, frame: pd.DataFrame, rows: Sequence[int], progress: bool
) -> tuple[list[int], np.ndarray, list[dict[str, str]]]:
    """(usable row numbers, their 48x48 images, skipped rows) among ``rows`` of a fer2013.csv frame."""
    usable, images, skipped = [], [], []
    for row in tqdm(rows, desc="fer2013 rows", unit="row", disable=not progress, leave=False):
        try:
            images.append(_parse_pixels(frame.at[row, "pixels"], 48))
            usable.append(row)
        except ValueError as err:
            skipped.append({"path": f"{path}#{row}", "reason": f"row {row}: {err}"})
    return usable, (np.stack(images) if images else np.zeros((0, 48, 48), np.uint8)), skipped


def _read_fer2013_csv(path: Path) -> pd.DataFrame:
    return read_text_table(_existing(path, "FER2013 CSV file"), ("emotion", "pixels"),
                     "the FER2013 columns emotion, pixels and Usage")


def load_fer2013_csv(
    source: str | os.PathLike,
    *,
    culture: str = "",
    size: int = 48,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """The original ``fer2013.csv``: emotion code 0-6, 48x48 space-separated pixels, Usage as split.

    Each image's path is ``<csv>#<row>`` (data rows counted from 0, as in FER+).
    """
    path = Path(source).expanduser()
    frame = _read_fer2013_csv(path)
    rows, images, skipped = _fer2013_rows(path, frame,
                                          _spread(len(frame), limit, frame["emotion"].str.strip().tolist()), progress)
    _check_strict(skipped, path, strict)
    if not rows:
        raise SourceError(f"no usable rows in {path} ({len(skipped)} rows skipped: {skipped_listing(skipped, 5)})")
    usage = frame["Usage"].str.strip() if "Usage" in frame.columns else pd.Series("", index=frame.index)
    labels = [_fer2013_label(frame.at[r, "emotion"]) for r in rows]
    try:
        canonicalize_all(labels)
    except UnknownEmotionError as err:
        raise UnknownEmotionError(f"{path}: {err} (or FER2013 codes 0-6)") from None
    dataset = FaceDataset.from_label_names(
        images, labels, culture=culture, path=[f"{path}#{r}" for r in rows], split=list(usage[rows]),
        meta={"source": str(path.absolute()), "format": "fer2013-csv"}, skipped=skipped,
    )
    return resize_dataset(dataset, size)


# ---------------------------------------------------------------------------- FER+
NO_MAJORITY = -1


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """The FER+ paper's majority rule for vote rows (N, 10) in :data:`FERPLUS_VOTE_COLUMNS` order.

    Single votes are discarded as outliers; a column wins when it holds more than half of the
    remaining votes. Returns the winning column per row, or :data:`NO_MAJORITY` (-1).
    """
    votes = np.asarray(votes, dtype=np.float64)
    kept = np.where(votes > 1, votes, 0.0)
    has_majority = kept.max(axis=1) > 0.5 * kept.sum(axis=1)
    return np.where(has_majority, kept.argmax(axis=1), NO_MAJORITY)


def read_ferplus_votes(votes_csv: Path, *also: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of a FER+ ``fer2013new.csv`` (as text) and their (N, 10) vote counts in
    :data:`FERPLUS_VOTE_COLUMNS` order; ``also`` names further columns the file must have."""
    frame = read_text_table(votes_csv, (*also, *FERPLUS_VOTE_COLUMNS),
                      f"the FER+ columns {', '.join((*also, *FERPLUS_VOTE_COLUMNS))}")
    try:
        votes = frame[list(FERPLUS_VOTE_COLUMNS)].replace("", "0").astype(int).to_numpy()
    except ValueError as err:
        raise SourceError(f"{votes_csv}: vote counts must be integers ({err})") from None
    return frame, votes


def load_ferplus(
    source: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    mapping: str | os.PathLike | None = None,
    culture: str = "",
    size: int = 48,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """FER+ crowd votes (``fer2013new.csv``) joined to the FER2013 images, labelled by majority.

    ``source`` is the FER+ folder or its ``fer2013new.csv``. ``images`` is the FER2013 image
    folder (joined through ``mapping``, default ``ferplus_to_fer2013.csv`` beside the votes;
    default folder ``../fer2013`` beside the FER+ folder) or a ``fer2013.csv`` (joined by row
    order). Vote counts are kept in ``extras["votes"]`` (names in ``meta["vote_names"]``) and
    the FER+ row in ``extras["ferplus_row"]``; rows without a majority, or whose majority is
    unknown or not-a-face, are dropped and counted in ``meta["dropped"]``.
    """
    given = _existing(source, "FER+ source")
    votes_csv = _existing(given / "fer2013new.csv" if given.is_dir() else given, "FER+ votes file")
    frame, votes = read_ferplus_votes(votes_csv, "Usage")
    image_source = Path(images).expanduser() if images is not None else votes_csv.parent.parent / "fer2013"
    if not image_source.exists():
        raise FileNotFoundError(f"FER2013 images not found at {image_source}; pass images= (CLI: --images) "
                                "with the FER2013 image folder or fer2013.csv")
    rows = np.asarray(_spread(len(frame), limit), dtype=np.int64)
    winner = ferplus_majority(votes[rows])
    dropped = {
        "no_majority": int(np.sum(winner == NO_MAJORITY)),
        "unknown": int(np.sum(winner == FERPLUS_VOTE_COLUMNS.index("unknown"))),
        "not_face": int(np.sum(winner == FERPLUS_VOTE_COLUMNS.index("NF"))),
    }
    emotion = (winner >= 0) & (winner < FERPLUS_VOTE_COLUMNS.index("unknown"))
    labelled = {int(r): FERPLUS_VOTE_NAMES[w] for r, w in zip(rows[emotion], winner[emotion])}
    split = {r: frame.at[r, "Usage"].strip() for r in labelled}
    if image_source.is_file():
        dataset = _ferplus_from_csv(image_source, labelled, split, len(frame), culture, strict, progress)
    else:
        mapping_csv = Path(mapping).expanduser() if mapping is not None else votes_csv.parent / "ferplus_to_fer2013.csv"
        dataset = _ferplus_from_folder(image_source, mapping_csv, votes_csv, labelled, split, culture, size,
                                       strict, progress)
    joined = dataset.extras["ferplus_row"]
    return replace(
        resize_dataset(dataset, size),
        extras={**dataset.extras, "votes": votes[joined].astype(np.int16)},
        meta={**dataset.meta, "source": str(votes_csv.absolute()), "format": "ferplus",
              "images": str(image_source.absolute()), "vote_names": list(FERPLUS_VOTE_NAMES),
              "dropped": {**dropped, "total": int(sum(dropped.values()))}},
    )


def _ferplus_from_csv(
    path: Path, labels: dict[int, str], split: dict[int, str], n_votes: int, culture: str, strict: bool,
    progress: bool,
) -> FaceDataset:
    """The FER2013 rows of ``fer2013.csv`` that FER+ labels, joined by row order."""
    frame = _read_fer2013_csv(path)
    if len(frame) != n_votes:
        raise SourceError(f"{path} has {len(frame)} rows but the FER+ votes have {n_votes}; "
                          "joining by row order needs the original fer2013.csv")
    rows, images, skipped = _fer2013_rows(path, frame, sorted(labels), progress)
    _check_strict(skipped, path, strict)
    if not rows:
        raise SourceError(f"no FER+ row could be joined to an image of {path}")
    return FaceDataset.from_label_names(
        images, [labels[r] for r in rows], culture=culture, path=[f"{path}#{r}" for r in rows],
        split=[split[r] for r in rows], extras={"ferplus_row": np.asarray(rows, dtype=np.int64)}, skipped=skipped,
    )


def _check_layout(root: Path, files: Sequence[str]) -> None:
    """Refuse an image folder without the top folders the mapping's paths start with (``train/``, ``test/``),
    saying which folder to give; warn where one of them is missing (its images' rows are skipped)."""
    tops = pd.Series([PurePosixPath(f).parts[0] for f in files if f], dtype=object).value_counts()
    missing = [top for top in tops.index if not (root / top).is_dir()]
    if not missing:
        return
    if len(missing) == len(tops):
        above = f"; did you mean {root.parent}?" if root.name in tops.index else ""
        layout = " and ".join(f"{top}/<class>/<file>" for top in tops.index)
        raise SourceError(f"{root} does not hold the FER2013 layout the FER+ mapping names, {layout} (e.g. "
                          f"{files[0]}): give the folder holding {' and '.join(tops.index)} (images=, CLI --images)"
                          f"{above}")
    warnings.warn(f"{root} has no {' or '.join(missing)} folder: the {int(tops[missing].sum())} FER+ rows of its "
                  "images are skipped", stacklevel=3)


def read_ferplus_mapping(mapping_csv: Path, root: Path | None) -> pd.DataFrame:
    """``ferplus_to_fer2013.csv`` (``row``, ``fer2013_file``, optional ``usage``), each FER+ row on a file of its own
    where ``root``, the FER2013 image folder, holds one.

    The mapping joins rows to files by pixels, so both rows of an image FER2013 holds twice name the same file and
    its byte-identical copy gets none (1,269 files of the public set). A row after the first of a shared file moves
    to such a copy that no row names, one of its own split first (``Training_*`` for ``Training``); a copy then
    gets its image's own FER+ votes instead of being read as an image FER+ left out.
    """
    table = read_text_table(mapping_csv, ("row", "fer2013_file"), "columns row and fer2013_file")
    table = table.assign(row=table["row"].astype(int)).sort_values("row", kind="stable")
    shared = table[table.duplicated("fer2013_file", keep=False)]
    if root is None or shared.empty or not root.is_dir():
        return table
    named = set(table["fer2013_file"])
    copies: dict[int, list[str]] = {}
    for file in sorted(root.glob("*/*/*")):
        name = file.relative_to(root).as_posix()
        if name not in named and file.is_file():
            copies.setdefault(content_digest(file.read_bytes()), []).append(name)
    usage = table["usage"] if "usage" in table.columns else pd.Series("", index=table.index)
    for name, rows in shared.groupby("fer2013_file", sort=False).groups.items():
        path = root / str(name)
        free = copies.get(content_digest(path.read_bytes()), []) if path.is_file() else []
        files = [str(name), *free]
        for index in rows:
            if not files:
                break
            own = [f for f in files if PurePosixPath(f).name.startswith(f"{usage[index]}_")]
            table.at[index, "fer2013_file"] = chosen = (own or files)[0]
            files.remove(chosen)
    return table


def _ferplus_from_folder(
    root: Path, mapping_csv: Path, votes_csv: Path, labels: dict[int, str], split: dict[int, str],
    culture: str, size: int, strict: bool, progress: bool,
) -> FaceDataset:
    """The FER2013 image files that FER+ rows map to (through ``ferplus_to_fer2013.csv``)."""
    if not mapping_csv.exists():
        raise FileNotFoundError(f"FER+ mapping {mapping_csv} not found; pass mapping= (CLI: --mapping), or a "
                                "fer2013.csv as images= (CLI: --images) to join by row order")
    table = read_ferplus_mapping(mapping_csv, root)
    file_of = dict(zip(table["row"], table["fer2013_file"]))
    _check_layout(root, [file_of[row] for row in labels if row in file_of])
    inputs, joined = _Inputs(), []
    for row in sorted(labels):
        if row not in file_of:
            inputs.skip(f"{votes_csv}#{row}", f"row {row}: no FER2013 image in {mapping_csv.name}")
            continue
        inputs.add(root / file_of[row], labels[row], culture=culture, split=split[row])
        joined.append(row)
    return _build(inputs, FaceOptions(size=size, detect=False), source=root, fmt="ferplus", strict=strict,
                  progress=progress, extras={"ferplus_row": np.asarray(joined, dtype=np.int64)})
