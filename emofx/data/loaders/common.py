"""Steps shared by every loader: input gathering, face extraction options, strictness, duplicates, building the
dataset."""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import UnknownEmotionError, canonicalize_all
from emofx.data.faces import IMAGE_SUFFIXES, FaceBatch, FaceOptions, extract_faces
from emofx.data.landmarks import resolve_method
from emofx.data.paths import folder_files, shown_path, unencodable_name

FACE_MODES: tuple[str, ...] = ("auto", "detect", "cropped")
_CROPPED_MAX_SIDE = 128  # "auto" treats square images up to this side as already-cropped faces
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar")  # told to unpack, not skipped bare


# The formats whose photos carry their labels in a file-name code (kdef: AF01ANS.JPG, session, sex, actor,
# expression, angle; taiwanese: 0111b02.jpg, performer, performance type, view, expression, serial), by format.
FILE_NAME_CODES: dict[str, re.Pattern[str]] = {
    "kdef": re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(S|HL|HR|FL|FR)$", re.IGNORECASE),
    "taiwanese": re.compile(r"^(\d{2})(\d)(\d)([a-g]?)(\d{2,3})$", re.IGNORECASE),
}


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

    def skip(self, path: Path | str, reason: str, culture: str = "") -> None:
        self.skipped.append({"path": shown_path(path), "reason": reason, **({"culture": culture} if culture else {})})

    def recordable(self, paths: Sequence[Path]) -> list[Path]:
        """``paths`` without those whose names cannot be recorded (not UTF-8), which are skipped with the reason."""
        kept = []
        for path in paths:
            problem = unencodable_name(path)
            if problem:
                self.skip(path, problem)
            else:
                kept.append(path)
        return kept

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


def no_images_error(wanted: str, root: Path, inputs: _Inputs, others: str = "") -> SourceError:
    """The error of a loader that found none of its images (``wanted``) under ``root``: what it found instead
    (``others``, e.g. photos of other angles, and the files it skipped) and which format their names follow."""
    found = [others] if others else []
    if inputs.skipped:
        first = inputs.skipped[0]
        found.append(f"{len(inputs.skipped)} other files (e.g. {Path(first['path']).name}: {first['reason']})")
    if root.is_file() and root.suffix.lower() in _ARCHIVE_SUFFIXES:
        return SourceError(f"no {wanted}: {root} is an archive; unpack it and give the unpacked folder")
    if root.is_file() and not found:
        return SourceError(f"no {wanted}: {root} is one file, neither such an image nor a folder of them")
    text = f"no {wanted} under {root}"
    text += f"; found {' and '.join(found)}" if found else "; it holds no files"
    named = [Path(s["path"]).stem for s in inputs.skipped[:2000]]
    for fmt, pattern in FILE_NAME_CODES.items():
        if sum(bool(pattern.match(name)) for name in named) > len(named) / 2:
            return SourceError(f"{text}; most are named as the {fmt} set's photos: --format {fmt}?")
    return SourceError(text)


def _spread(n: int, limit: int | None, labels: Sequence[str] | None = None) -> list[int]:
    """At most ``limit`` indices evenly spread over ``range(n)`` (all of them without a limit).

    With ``labels`` (one per index) the limit is shared out over the classes as evenly as their
    sizes allow, and spread within each class, each class's picks offset by its own fraction of a
    step (so one pick per class still comes from different places, e.g. different people): a
    listing that cycles through the classes (KDEF's AF01AFS, AF01ANS, ...) would otherwise give
    every few classes only."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise ValueError(f"limit must be a positive number of images; got {limit}")
    if labels is None:
        return [int(i) for i in np.linspace(0, n - 1, limit).round().astype(int)]
    names = np.asarray(labels)
    groups = [np.flatnonzero(names == label) for label in dict.fromkeys(labels)]
    if limit < len(groups):
        left_out = list(dict.fromkeys(labels))[limit:]
        warnings.warn(f"limit (--limit) {limit} is below the source's {len(groups)} classes: the sample has no "
                      f"image of {', '.join(map(str, left_out))}; give a limit of at least {len(groups)} for every "
                      "class", stacklevel=2)
    quota, left = [0] * len(groups), limit
    while left:  # one more image for every class that still has one, in turn
        for k, members in enumerate(groups):
            if left and quota[k] < len(members):
                quota[k], left = quota[k] + 1, left - 1
    return sorted(int(members[i]) for k, (members, q) in enumerate(zip(groups, quota)) if q
                  for i in ((np.arange(q) + (k + 0.5) / len(groups)) * len(members) / q).astype(int))


def _image_files(root: Path) -> list[Path]:
    """Every non-hidden file under ``root`` (or ``root`` itself when it is a file), sorted."""
    if root.is_file():
        return [root]
    return [f for files in folder_files(root).values() for f in files]


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def not_image_reason(path: Path) -> str:
    """Why a file under a source is skipped as no image: its suffix, and for an archive what to do."""
    reason = f"not an image file (suffix {path.suffix or 'none'!r})"
    if path.suffix.lower() in _ARCHIVE_SUFFIXES:
        reason += "; an archive: unpack it and give the unpacked folder"
    return reason


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


def _face_options(mode: str, files: Sequence[Path], size: int, margin: float, center_crop_fallback: bool,
                  landmarks: str = "auto", align: bool | None = None) -> FaceOptions:
    """Options for ``files`` by face ``mode`` (``auto``: detect unless they look like cropped faces)."""
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {FACE_MODES}; got {mode!r}")
    detect = mode == "detect" or (mode == "auto" and not _looks_cropped(files))
    return photo_options(size, margin, center_crop_fallback, landmarks, align, detect=detect)


def photo_options(size: int, margin: float, center_crop_fallback: bool, landmarks: str = "auto",
                  align: bool | None = None, *, detect: bool = True) -> FaceOptions:
    """Face options with landmarks resolved (``auto``: dlib68 on photos) and alignment on by default
    for photos whose landmarks give eye positions."""
    method = resolve_method(landmarks, photos=detect)
    if align is None:
        align = detect and method != "none"
    return FaceOptions(size=size, detect=detect, margin=margin, center_crop_fallback=center_crop_fallback,
                       landmarks=method, align=align)


def skipped_listing(skipped: Sequence[dict[str, str]], first: int) -> str:
    """The ``first`` skipped inputs with their reasons (``path: reason; ...``), for an error message."""
    return "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:first])


def _check_strict(skipped: Sequence[dict[str, str]], source: Path, strict: bool) -> None:
    if strict and skipped:
        more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
        raise SourceError(f"{len(skipped)} input(s) of {source} could not be used (strict mode): "
                          f"{skipped_listing(skipped, 10)}{more}")


def count_duplicates(paths: np.ndarray, hashes: np.ndarray) -> dict[str, Any]:
    """Images with identical bytes (``hashes``, 0: unknown): how many repeat another, in how many groups,
    a few examples (different files first). One file used twice (FER+ maps some rows to one FER2013 file) counts
    as a repeat, and also in ``same_file``."""
    groups: dict[int, list[str]] = defaultdict(list)
    for path, digest in zip(paths, hashes):
        if digest:
            groups[int(digest)].append(str(path))
    repeated = [sorted(g) for g in groups.values() if len(g) > 1]
    return {
        "files": int(sum(len(g) - 1 for g in repeated)),
        "groups": len(repeated),
        "same_file": int(sum(len(g) - len(set(g)) for g in repeated)),
        "examples": sorted(repeated, key=lambda g: len(set(g)) == 1)[:5],
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
    _warn_culture_spellings(inputs.culture, source)
    batch = extract_faces(inputs.files, options, progress=progress, desc=f"{fmt} faces")
    culture_of = {str(path): culture for path, culture in zip(inputs.files, inputs.culture) if culture}
    only = next(iter(set(inputs.culture))) if len(set(inputs.culture)) == 1 else ""  # one culture: all skips its
    skipped = [{**entry, "culture": culture_of.get(entry["path"], only)} if "culture" not in entry and (
        entry["path"] in culture_of or only) else entry for entry in inputs.skipped + list(batch.skipped)]
    _check_strict(skipped, source, strict)
    if not len(batch.kept):
        raise SourceError(f"no faces could be prepared from {source} ({len(skipped)} inputs skipped: "
                          f"{skipped_listing(skipped, 5)})")
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
        extras={"content_hash": batch.content_hash[kept], "face_method": batch.method,
                **_landmark_extras(batch, options),
                **{k: v[kept] for k, v in (extras or {}).items()}},
        meta={
            "source": str(source.absolute()),
            "format": fmt,
            "faces": {str(m): int(c) for m, c in zip(methods, method_counts)},
            "face_options": {"size": options.size, "detect": options.detect, "margin": options.margin,
                             "landmarks": options.landmarks, "align": options.align},
            "aligned": bool(options.align),
            "landmarks": _landmark_summary(batch, options),
            "duplicates": count_duplicates(paths, batch.content_hash[kept]),
            **(meta or {}),
        },
        skipped=skipped,
    )


def _warn_culture_spellings(cultures: Sequence[str], source: Path) -> None:
    """Culture names that differ only in letter case or spaces (``swedish``, ``Swedish``) make cultures of their own."""
    spellings: dict[str, set[str]] = defaultdict(set)
    for name in set(cultures):
        spellings[" ".join(name.casefold().split())].add(name)
    alike = [sorted(names) for names in spellings.values() if len(names) > 1]
    if alike:
        warnings.warn(f"{source}: culture names {'; '.join(' and '.join(map(repr, names)) for names in alike)} differ "
                      "only in letter case or spaces, and each makes a culture of its own; write them alike",
                      stacklevel=4)


def part_summary(part: FaceDataset) -> dict[str, Any]:
    """The whole-file facts of ``meta`` (face boxes, landmarks, duplicates) counted again over the images of ``part``
    (e.g. one culture of a file), from its per-image arrays; a fact it has no arrays for is left out."""
    meta = {k: v for k, v in part.meta.items() if k not in ("faces", "duplicates")}
    if "face_method" in part.extras:
        methods, counts = np.unique(part.extras["face_method"], return_counts=True)
        meta["faces"] = {str(m): int(c) for m, c in zip(methods, counts)}
    if "content_hash" in part.extras:
        meta["duplicates"] = count_duplicates(part.path, part.extras["content_hash"])
    landmarks = part.meta.get("landmarks")
    if isinstance(landmarks, dict) and "landmark_quality" in part.extras and "aligned" in part.extras:
        qualities, counts = np.unique(part.extras["landmark_quality"], return_counts=True)
        meta["landmarks"] = {**landmarks, "quality": {str(q): int(c) for q, c in zip(qualities, counts)},
                             "aligned": int(np.sum(part.extras["aligned"])), "faces": len(part)}
    elif isinstance(landmarks, dict) and landmarks.get("method", "none") != "none":
        meta.pop("landmarks")
    return meta


def _landmark_extras(batch: FaceBatch, options: FaceOptions) -> dict[str, np.ndarray]:
    """Per-image landmark arrays for the dataset (none when no landmarks were asked for)."""
    if options.landmarks == "none":
        return {}
    return {"landmarks": batch.landmarks, "eye_centres": batch.eyes, "landmark_method": batch.landmark_method,
            "landmark_quality": batch.landmark_quality, "aligned": batch.aligned}


def _landmark_summary(batch: FaceBatch, options: FaceOptions) -> dict[str, Any]:
    """How many faces got landmarks of each quality, and how many were aligned."""
    if options.landmarks == "none":
        return {"method": "none"}
    qualities, counts = np.unique(batch.landmark_quality, return_counts=True)
    return {"method": options.landmarks, "quality": {str(q): int(c) for q, c in zip(qualities, counts)},
            "aligned": int(batch.aligned.sum()), "faces": int(len(batch.kept))}


def describe_landmarks(summary: dict[str, Any]) -> str:
    """One line on a dataset's landmarks (its ``meta["landmarks"]``): method, quality counts, and how many faces were
    aligned, naming those left unaligned (no eyes found), which a study mixing aligned and unaligned faces needs."""
    if summary.get("method", "none") == "none":
        return "none"
    quality = ", ".join(f"{name} {count}" for name, count in summary.get("quality", {}).items())
    text = f"{summary['method']} ({quality}); aligned {summary.get('aligned', 0)} of {summary.get('faces', 0)} faces"
    unaligned = summary.get("faces", 0) - summary.get("aligned", 0)
    return text + (f": {unaligned} kept unaligned (no eyes found)" if 0 < unaligned < summary.get("faces", 0) else "")


def read_text_table(path: Path, required: Sequence[str], what: str) -> pd.DataFrame:
    """A table of text cells, comma-, semicolon- or tab-separated (a spreadsheet's export), with a BOM or not."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = next((line for line in handle if line.strip()), "")
        names = lambda sep: {c.strip().strip('"') for c in header.rstrip("\r\n").split(sep)}  # noqa: E731
        sep = next((s for s in (",", "\t", ";") if set(required) <= names(s)), ",")  # the one naming what is needed
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=sep,
                            encoding="utf-8-sig", skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is not a readable CSV file ({err}); expected {what}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SourceError(f"{path} lacks column(s) {missing}; it has {list(frame.columns)}; expected {what}")
    return frame
