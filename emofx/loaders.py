"""Loaders: one function per source format, each returning a :class:`~emofx.dataset.FaceDataset`.

| format | source | faces |
|---|---|---|
| ``folder`` | ``ROOT/[split folders/]<emotion>/<image>`` (the FER2013 Kaggle layout) | cropped or detected |
| ``fer2013-csv`` | the original ``fer2013.csv`` (emotion, pixels, Usage) | 48x48 pixels |
| ``ferplus`` | ``fer2013new.csv`` votes joined to the FER2013 images | cropped |
| ``kdef`` | KDEF photos, codes in the file names (``AF01ANS.JPG``) | detected |
| ``taiwanese`` | Taiwanese performers' photos (``0111b02.jpg``) and ``Image_info.xls`` ratings | detected |
| ``mat`` | MATLAB file with ``images`` (N x 48 x 48) and ``labels`` | as stored |
| ``manifest`` | CSV with ``path``, ``emotion`` and optional ``culture``, ``subject``, ``split`` | cropped or detected |
| ``synthetic`` | the word ``synthetic``: procedural faces from :mod:`emofx.synthetic` | generated |

Every file-based loader takes ``culture``, ``size``, ``strict`` and ``limit``. An input
that cannot be used (unreadable, truncated, not an image, no face, malformed row) is listed
in ``dataset.skipped`` with the reason; ``strict=True`` turns any such input into an error.
Files with identical bytes are reported in ``meta["duplicates"]`` and, per image, in
``extras["content_hash"]``. Sources are only ever read.
"""

from __future__ import annotations

import inspect
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emofx.dataset import FaceDataset, resize_dataset
from emofx.emotions import ALIASES, UnknownEmotionError, canonicalize_all
from emofx.faces import IMAGE_SUFFIXES, FaceOptions, extract_faces

FER2013_CODES: tuple[str, ...] = ("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")
FER2013_SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
FERPLUS_VOTE_NAMES: tuple[str, ...] = (
    "neutral", "happy", "surprised", "sad", "angry", "disgusted", "afraid", "contempt", "unknown", "not_face",
)
KDEF_EXPRESSIONS: dict[str, str] = {
    "AF": "afraid", "AN": "angry", "DI": "disgusted", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprised",
}
KDEF_ANGLES: tuple[str, ...] = ("S", "HL", "HR", "FL", "FR")
TAIWANESE_EXPRESSIONS: dict[str, str] = {
    "a": "neutral", "b": "happy", "c": "sad", "d": "angry", "e": "disgusted", "f": "afraid", "g": "surprised",
}
TAIWANESE_RATING_NAMES: tuple[str, ...] = ("happy", "sad", "angry", "disgusted", "afraid", "surprised")
FACE_MODES: tuple[str, ...] = ("auto", "detect", "cropped")

_KDEF_NAME = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(S|HL|HR|FL|FR)$", re.IGNORECASE)
_TAIWANESE_NAME = re.compile(r"^(\d{2})(\d)(\d)([a-g]?)(\d{2,3})$", re.IGNORECASE)
_CROPPED_MAX_SIDE = 128  # "auto" treats square images up to this side as already-cropped faces


class SourceError(ValueError):
    """A source cannot be loaded as asked; the message names the file and what to do."""


@dataclass
class _Inputs:
    """Image files with their per-file facts, gathered by a loader before faces are extracted."""

    files: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    culture: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def add(self, path: Path, label: str, *, culture: str, subject: str = "", split: str = "") -> None:
        self.files.append(path)
        self.labels.append(label)
        self.culture.append(culture)
        self.subject.append(subject)
        self.split.append(split)

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})

    def take(self, indices: Sequence[int]) -> "_Inputs":
        pick = lambda values: [values[i] for i in indices]  # noqa: E731
        return _Inputs(pick(self.files), pick(self.labels), pick(self.subject), pick(self.split),
                       pick(self.culture), list(self.skipped))


# ---------------------------------------------------------------------------- shared steps
def _existing(source: str | os.PathLike, what: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def _spread(n: int, limit: int | None) -> list[int]:
    """At most ``limit`` indices evenly spread over ``range(n)`` (all of them without a limit)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"limit must be a positive number of images; got {limit}")
    return [int(i) for i in np.linspace(0, n - 1, limit).round().astype(int)]


def _folder_files(root: Path) -> dict[Path, list[Path]]:
    """Every non-hidden folder under ``root`` (itself included) with its non-hidden files, sorted."""
    found: dict[Path, list[Path]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found[Path(folder)] = [Path(folder) / f for f in sorted(files) if not f.startswith(".")]
    return found


def _image_files(root: Path) -> list[Path]:
    """Every non-hidden file under ``root`` (or ``root`` itself when it is a file), sorted."""
    if root.is_file():
        return [root]
    return [f for files in _folder_files(root).values() for f in files]


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _looks_cropped(files: Sequence[Path]) -> bool:
    """True when a sample of the files are small square images (already face crops)."""
    from PIL import Image

    sample = files[:: max(1, len(files) // 16)][:16]
    for path in sample:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # unreadable files are reported later, by extraction
        if width != height or width > _CROPPED_MAX_SIDE:
            return False
    return True


def _face_options(mode: str, files: Sequence[Path], size: int, margin: float, center_crop_fallback: bool) -> FaceOptions:
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {FACE_MODES}; got {mode!r}")
    detect = mode == "detect" or (mode == "auto" and not _looks_cropped(files))
    return FaceOptions(size=size, detect=detect, margin=margin, center_crop_fallback=center_crop_fallback)


def _check_strict(skipped: Sequence[dict[str, str]], source: Path, strict: bool) -> None:
    if strict and skipped:
        listing = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:10])
        more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
        raise SourceError(f"{len(skipped)} input(s) of {source} could not be used (strict mode): {listing}{more}")


def _duplicates(paths: np.ndarray, hashes: np.ndarray) -> dict[str, Any]:
    """Files with identical bytes: how many repeat another, in how many groups, a few examples."""
    groups: dict[int, list[str]] = defaultdict(list)
    for path, digest in zip(paths, hashes):
        if digest:
            groups[int(digest)].append(str(path))
    repeated = [sorted(set(g)) for g in groups.values() if len(set(g)) > 1]
    return {
        "files": int(sum(len(g) - 1 for g in repeated)),
        "groups": len(repeated),
        "examples": repeated[:5],
    }


def _build(
    inputs: _Inputs,
    options: FaceOptions,
    *,
    source: Path,
    fmt: str,
    strict: bool,
    progress: bool,
    meta: dict[str, Any] | None = None,
    extras: dict[str, np.ndarray] | None = None,
) -> FaceDataset:
    """Extract the faces of ``inputs`` and assemble the dataset (the step every photo loader shares)."""
    try:
        canonicalize_all(inputs.labels)  # unknown names fail before any image is decoded
    except UnknownEmotionError as err:
        raise UnknownEmotionError(f"{source}: {err}") from None
    batch = extract_faces(inputs.files, options, progress=progress, desc=f"{fmt} faces")
    skipped = inputs.skipped + list(batch.skipped)
    _check_strict(skipped, source, strict)
    if not len(batch.kept):
        examples = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:5])
        raise SourceError(f"no faces could be prepared from {source} ({len(skipped)} inputs skipped: {examples})")
    kept = batch.kept
    take = lambda values: [values[i] for i in kept]  # noqa: E731
    paths = np.array([str(p) for p in take(inputs.files)])
    methods, method_counts = np.unique(batch.method, return_counts=True)
    return FaceDataset.from_label_names(
        batch.images,
        take(inputs.labels),
        culture=take(inputs.culture),
        subject=take(inputs.subject),
        path=paths,
        split=take(inputs.split),
        extras={"content_hash": batch.content_hash[kept], **{k: v[kept] for k, v in (extras or {}).items()}},
        meta={
            "source": str(source.absolute()),
            "format": fmt,
            "faces": {str(m): int(c) for m, c in zip(methods, method_counts)},
            "face_options": {"size": options.size, "detect": options.detect, "margin": options.margin},
            "duplicates": _duplicates(paths, batch.content_hash[kept]),
            **(meta or {}),
        },
        skipped=skipped,
    )


# ---------------------------------------------------------------------------- folder
def load_folder(
    source: str | os.PathLike,
    *,
    culture: str = "",
    size: int = 48,
    faces: str = "auto",
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """``ROOT/[split folders/]<emotion>/<image>``: the class is the image's folder, the split the folders above.

    FER2013 file names (``Training_*``, ``PublicTest_*``, ``PrivateTest_*``) set the split
    themselves. ``faces``: ``cropped`` (images are faces already), ``detect``, or ``auto``
    (cropped when a sample of the images are small squares).
    """
    root = _existing(source, "image folder")
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; the folder format expects ROOT/<emotion>/<image>")
    inputs = _Inputs()
    listing = _folder_files(root)
    stray = listing.pop(root)
    folders = {f: files for f, files in listing.items()
               if any(map(_is_image_name, files)) or f.name.strip().lower() in ALIASES}
    if not folders:
        raise SourceError(f"no class folders with images under {root}; expected ROOT/<emotion>/<image> "
                          f"(e.g. {root / 'happy' / 'img001.jpg'})")
    unknown = sorted({f.name for f in folders if f.name.strip().lower() not in ALIASES})
    if unknown:
        raise UnknownEmotionError(
            f"folders {unknown} under {root} are not emotion names; accepted names: {', '.join(sorted(ALIASES))}"
        )
    for path in stray:
        if _is_image_name(path):
            inputs.skip(path, "image is not inside a class folder (expected ROOT/<emotion>/<image>)")
    for folder in sorted(folders):
        files = folders[folder]
        images = [p for p in files if _is_image_name(p)]
        if not images:
            inputs.skip(folder, "class folder has no images")
        for path in files:
            if not _is_image_name(path):
                inputs.skip(path, f"not an image file (suffix {path.suffix or 'none'!r})")
        split_folder = folder.parent.relative_to(root).as_posix()
        for path in images:
            prefix = path.name.split("_", 1)[0]
            split = prefix if prefix in FER2013_SPLITS else ("" if split_folder == "." else split_folder)
            inputs.add(path, folder.name, culture=culture, split=split)
    inputs = inputs.take(_spread(len(inputs.files), limit))
    options = _face_options(faces, inputs.files, size, margin, center_crop_fallback)
    return _build(inputs, options, source=root, fmt="folder", strict=strict, progress=progress)


# ---------------------------------------------------------------------------- FER2013 csv
def _read_csv(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is not a readable CSV file ({err}); expected {what}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SourceError(f"{path} lacks column(s) {missing}; it has {list(frame.columns)}; expected {what}")
    return frame


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
    return _read_csv(_existing(path, "FER2013 CSV file"), ("emotion", "pixels"),
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
    rows, images, skipped = _fer2013_rows(path, frame, _spread(len(frame), limit), progress)
    _check_strict(skipped, path, strict)
    if not rows:
        raise SourceError(f"no usable rows in {path} ({len(skipped)} rows skipped)")
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
    frame = _read_csv(votes_csv, ("Usage", *FERPLUS_VOTE_COLUMNS), "the FER+ columns Usage, Image name and ten vote counts")
    try:
        votes = frame[list(FERPLUS_VOTE_COLUMNS)].replace("", "0").astype(int).to_numpy()
    except ValueError as err:
        raise SourceError(f"{votes_csv}: vote counts must be integers ({err})") from None
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


def _ferplus_from_folder(
    root: Path, mapping_csv: Path, votes_csv: Path, labels: dict[int, str], split: dict[int, str],
    culture: str, size: int, strict: bool, progress: bool,
) -> FaceDataset:
    """The FER2013 image files that FER+ rows map to (through ``ferplus_to_fer2013.csv``)."""
    if not mapping_csv.exists():
        raise FileNotFoundError(f"FER+ mapping {mapping_csv} not found; pass mapping= (CLI: --mapping), or a "
                                "fer2013.csv as images= (CLI: --images) to join by row order")
    table = _read_csv(mapping_csv, ("row", "fer2013_file"), "columns row and fer2013_file")
    file_of = dict(zip(table["row"].astype(int), table["fer2013_file"]))
    inputs, joined = _Inputs(), []
    for row in sorted(labels):
        if row not in file_of:
            inputs.skip(f"{votes_csv}#{row}", f"row {row}: no FER2013 image in {mapping_csv.name}")
            continue
        inputs.add(root / file_of[row], labels[row], culture=culture, split=split[row])
        joined.append(row)
    return _build(inputs, FaceOptions(size=size, detect=False), source=root, fmt="ferplus", strict=strict,
                  progress=progress, extras={"ferplus_row": np.asarray(joined, dtype=np.int64)})


# ---------------------------------------------------------------------------- KDEF
def load_kdef(
    source: str | os.PathLike,
    *,
    culture: str = "Swedish",
    angles: Sequence[str] = ("S",),
    size: int = 48,
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """KDEF photos named by code: session (A/B), sex (F/M), actor, expression, angle (``AF01ANS.JPG``).

    Only the straight (``S``) view by default; ``angles`` may add HL, HR, FL, FR. Subject is the
    actor with sex (``F01``), so subject-independent splits are possible.
    """
    root = _existing(source, "KDEF folder")
    wanted = {a.upper() for a in angles}
    bad = sorted(wanted - set(KDEF_ANGLES))
    if bad:
        raise ValueError(f"unknown KDEF angle(s) {bad}; choose from {list(KDEF_ANGLES)}")
    inputs, other_angles = _Inputs(), 0
    for path in _image_files(root):
        match = _KDEF_NAME.match(path.stem) if _is_image_name(path) else None
        if match is None:
            inputs.skip(path, "file name does not follow the KDEF code (e.g. AF01ANS.JPG)"
                        if _is_image_name(path) else f"not an image file (suffix {path.suffix or 'none'!r})")
            continue
        _session, sex, actor, expression, angle = (g.upper() for g in match.groups())
        if angle not in wanted:
            other_angles += 1
            continue
        inputs.add(path, KDEF_EXPRESSIONS[expression], culture=culture, subject=f"{sex}{actor}")
    if not inputs.files:
        raise SourceError(f"no KDEF images with angle(s) {sorted(wanted)} under {root}")
    inputs = inputs.take(_spread(len(inputs.files), limit))
    options = FaceOptions(size=size, margin=margin, center_crop_fallback=center_crop_fallback)
    return _build(inputs, options, source=root, fmt="kdef", strict=strict, progress=progress,
                  meta={"angles": sorted(wanted), "other_angles_ignored": other_angles})


# ---------------------------------------------------------------------------- Taiwanese
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
    inputs, keys, other_views = _Inputs(), [], 0
    for path in _image_files(root):
        if path.name.lower() in ("image_info.xls", "voting.xls", "readme.txt"):
            continue
        match = _TAIWANESE_NAME.match(path.stem) if _is_image_name(path) else None
        if match is None:
            inputs.skip(path, "file name does not follow the Taiwanese code PPTVxNN (e.g. 0111b02.jpg)"
                        if _is_image_name(path) else f"not an image file (suffix {path.suffix or 'none'!r})")
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
        raise SourceError(f"no Taiwanese face images with view(s) {sorted(wanted)} under {root}")
    chosen = _spread(len(inputs.files), limit)
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
    options = FaceOptions(size=size, margin=margin, center_crop_fallback=center_crop_fallback)
    return _build(inputs, options, source=root, fmt="taiwanese", strict=strict, progress=progress,
                  meta=meta, extras=extras)


# ---------------------------------------------------------------------------- MATLAB
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
) -> FaceDataset:
    """A MATLAB file with ``images`` (N x H x W, or H x W x N) and ``labels`` (N).

    Numeric labels index ``label_names`` (default the TFD/FER2013 order angry, disgusted,
    afraid, happy, sad, surprised, neutral), 1-based unless a 0 occurs; negative labels mean
    unlabelled and are skipped. Text labels are emotion names. Optional variables
    ``subjects`` and ``cultures`` give per-image subject and culture.
    """
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
    if images.shape[0] != n and images.shape[2] == n:
        images = np.transpose(images, (2, 0, 1))
    if images.shape[0] != n:
        raise SourceError(f"{path}: {images.shape[0]} images but {n} labels")
    if images.dtype != np.uint8:
        images = np.asarray(images, dtype=np.float64)
        images = np.clip(images * 255.0 if images.max() <= 1.0 else images, 0, 255).round().astype(np.uint8)
    skipped: list[dict[str, str]] = []
    if isinstance(labels, list):
        keep = list(range(n))
    else:
        base = 0 if np.any(labels == 0) else 1
        out_of_range = sorted({int(v) for v in labels if v >= 0 and not 0 <= v - base < len(label_names)})
        if out_of_range:
            raise SourceError(f"{path}: labels {out_of_range} have no name; label_names has {len(label_names)} "
                              f"names ({list(label_names)}) and labels start at {base}")
        keep = [i for i in range(n) if labels[i] >= 0]
        skipped = [{"path": f"{path}#{i}", "reason": f"image {i} is unlabelled (label {labels[i]})"}
                   for i in range(n) if labels[i] < 0]
        labels = [label_names[int(v) - base] if v >= 0 else "" for v in labels]
    _check_strict(skipped, path, strict)
    keep = [keep[i] for i in _spread(len(keep), limit)]
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
        meta={"source": str(path.absolute()), "format": "mat"}, skipped=skipped,
    )
    return resize_dataset(dataset, size)


# ---------------------------------------------------------------------------- manifest
def load_manifest(
    source: str | os.PathLike,
    *,
    culture: str = "",
    root: str | os.PathLike | None = None,
    size: int = 48,
    faces: str = "auto",
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """A CSV listing ``path`` and ``emotion`` per image, with optional ``culture``, ``subject``, ``split``.

    Relative paths are resolved against ``root`` (default: the CSV's folder); a row's culture
    overrides ``culture``. ``faces`` as for :func:`load_folder`. This is how users bring their
    own collections, e.g. a web-collected set like the paper's NFW.
    """
    csv_path = _existing(source, "manifest")
    frame = _read_csv(csv_path, ("path", "emotion"), "columns path and emotion (optional culture, subject, split)")
    base = Path(root).expanduser() if root is not None else csv_path.parent
    inputs = _Inputs()
    for row in range(len(frame)):
        record = frame.iloc[row]
        name, emotion = record["path"].strip(), record["emotion"].strip()
        where = f"{csv_path}#{row}"
        if not name or not emotion:
            inputs.skip(where, f"row {row}: empty {'path' if not name else 'emotion'}")
            continue
        image = Path(name).expanduser()
        image = image if image.is_absolute() else base / image
        if not image.is_file():
            inputs.skip(image, f"file not found (manifest row {row})")
            continue
        inputs.add(
            image, emotion,
            culture=(record.get("culture", "") or "").strip() or culture,
            subject=(record.get("subject", "") or "").strip(),
            split=(record.get("split", "") or "").strip(),
        )
    if not inputs.files:
        _check_strict(inputs.skipped, csv_path, strict)
        raise SourceError(f"no usable rows in {csv_path} ({len(inputs.skipped)} skipped)")
    inputs = inputs.take(_spread(len(inputs.files), limit))
    options = _face_options(faces, inputs.files, size, margin, center_crop_fallback)
    return _build(inputs, options, source=csv_path, fmt="manifest", strict=strict, progress=progress)


# ---------------------------------------------------------------------------- synthetic
def load_synthetic(
    source: str | os.PathLike = "synthetic",
    *,
    dialect: str = "universal",
    n_per_class: int = 100,
    seed: int = 0,
    culture: str | None = None,
    size: int = 48,
) -> FaceDataset:
    """The embedded procedural faces (:func:`emofx.synthetic.make_synthetic`); ``source`` is ``synthetic``."""
    if str(source) != "synthetic":
        raise ValueError(f"the synthetic format takes the source 'synthetic' (no files); got {source!r}")
    from emofx.synthetic import make_synthetic  # generator lives in its own module

    return make_synthetic(dialect=dialect, n_per_class=n_per_class, seed=seed, size=size, culture=culture or None)


# ---------------------------------------------------------------------------- registry
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
