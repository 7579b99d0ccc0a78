"""From a folder of downloaded web images to a clean face collection ready for annotation.

:func:`collect` reads every file under a source folder (JPEG, PNG, WebP, GIF (first frame of an
animation), TIFF, BMP, and HEIC/HEIF when ``pillow-heif`` is installed), then drops, with the
reason:

1. files that are empty, not images, truncated, or HEIC without ``pillow-heif``;
2. images without a detected face (Haar cascade of :mod:`emofx.data.faces`; ``faces="cropped"``
   takes each image as a face), faces smaller than ``min_face`` source pixels, blurred faces
   (variance of the Laplacian of the output face below ``min_sharpness``) and, with
   ``require_eyes``, faces whose two eyes are not found (the landmark-quality check);
3. exact duplicates (same bytes) and near duplicates, within the collection and against other
   datasets (``against``: the file digests an emofx dataset recorded, or a folder's files; the faces
   of either). Faces aligned on their eyes (``landmarks``) are near duplicates when their thumbnails
   correlate within ``aligned_threshold`` of 1; other faces when their perceptual hashes lie within
   ``near_threshold`` bits (a hash of the crop also joins a person's photos of other expressions:
   ``benchmarks/results/collect/README.md``). A dataset prepared with alignment is compared with the
   collection's aligned faces; a collection that does not align finds only exact copies of its files.

Of each duplicate group one image is kept: the one in the highest-priority split (test over
validation over training, so a benchmark's test set stays whole and its copies leave training),
then the first by path. The query table (``file``, ``query``, ``emotion``, ``language``,
``culture``) says which search found each image; without one the emotion is the image's folder
name when that is an emotion, and FER2013 file names give the split.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from emofx.data import dedup
from emofx.data.collect_queries import read_queries, rows_without_file
from emofx.data.dataset import FaceDataset
from emofx.data.emotions import ALIASES
from emofx.data.faces import (FaceOptions, ImageReadError, ImageTooLargeError, center_square, crop_square, decode_gray,
                              eye_alignment, face_landmarks, find_faces, square_around, warp_face)
from emofx.data.landmarks import LANDMARK_METHODS, detect_eyes, dlib_available, resolve_method
from emofx.data.paths import folder_files, install_command, shown_path, unencodable_name
from emofx.data.progress import tqdm
from emofx.data.splits import PREDEFINED_NAMES

HEIF_SUFFIXES = frozenset({".heic", ".heif"})
SKIP_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
SPLIT_PRIORITY = {"test": 2, "val": 1, "train": 0}
FACE_MODES = ("detect", "cropped")
HEIC_EXTRA = install_command("heic")


class CollectError(ValueError):
    """A collection cannot be made as asked."""


@dataclass(frozen=True)
class CollectConfig:
    """How a web collection is cleaned.

    Attributes:
        size: side of the square output faces.
        faces: ``detect`` (find the face) or ``cropped`` (every image is a face already).
        margin: border around a detected face, fraction of its side.
        min_face: smallest face side in source pixels.
        min_sharpness: smallest variance of the Laplacian of the output face (0: no blur filter).
        require_eyes: drop faces whose two eyes the eye cascade does not find.
        near_threshold: largest Hamming distance (bits of 64) between near duplicates' hashes; -1: no near-duplicate
            search.
        hash_method: perceptual hash (``phash``, ``dhash``, ``ahash``, ``whash``).
        landmarks: how faces are aligned on their eyes for the near-duplicate search: ``auto`` (dlib's 68 points
            where faces are detected and dlib is installed, else no alignment), ``dlib68``, ``eyes`` or ``none``.
            Two aligned faces are near duplicates by correlation (``aligned_threshold``), others by hash. Cropped
            faces are not aligned by ``auto``: on FER2013's 48-px crops the landmarks move between copies (a
            brighter copy stayed within the threshold for 46 of 60 faces).
        aligned_threshold: largest 1 - correlation of two eye-aligned 16x16 faces that are near duplicates.
        workers: threads reading and detecting.
    """

    size: int = 48
    faces: str = "detect"
    margin: float = 0.1
    min_face: int = 32
    min_sharpness: float = 0.0
    require_eyes: bool = False
    near_threshold: int = 4
    hash_method: str = "phash"
    landmarks: str = "auto"
    aligned_threshold: float = 0.005
    workers: int = 2

    def __post_init__(self) -> None:
        if self.faces not in FACE_MODES:
            raise CollectError(f"faces must be one of {FACE_MODES}; got {self.faces!r}")
        if not (0 <= self.min_face < math.inf and 0 <= self.min_sharpness < math.inf):
            raise CollectError(f"min_face and min_sharpness must be finite and >= 0; got {self.min_face}, "
                               f"{self.min_sharpness}")
        if not -1 <= self.near_threshold < dedup.HASH_BITS:
            raise CollectError(f"near_threshold must lie in [-1, {dedup.HASH_BITS}); got {self.near_threshold}")
        if self.hash_method not in dedup.HASH_METHODS:
            raise CollectError(f"hash_method must be one of {dedup.HASH_METHODS}; got {self.hash_method!r}")
        if self.landmarks not in ("auto", *LANDMARK_METHODS):
            raise CollectError(f"landmarks must be auto or one of {LANDMARK_METHODS}; got {self.landmarks!r}")
        if not 0 <= self.aligned_threshold < 1:
            raise CollectError(f"aligned_threshold (1 - correlation) must lie in [0, 1); got {self.aligned_threshold}")
        FaceOptions(size=self.size, margin=self.margin)  # validates size and margin

    @property
    def alignment(self) -> str:
        """The landmark method faces are aligned with (``none``: not aligned); ``dlib68`` without dlib is an error."""
        if self.landmarks == "auto":
            return "dlib68" if self.faces == "detect" and dlib_available() else "none"
        return resolve_method(self.landmarks, photos=self.faces == "detect")


@dataclass(frozen=True, eq=False)
class Collection:
    """The result of :func:`collect`.

    Attributes:
        kept: one row per kept image (the manifest): ``source``, ``emotion``, ``query``,
            ``language``, ``culture``, ``split``, face box and side, ``sharpness``, ``animated``,
            hashes and duplicate groups.
        faces: uint8 (K, size, size), the kept faces in ``kept`` order.
        dropped: one row per dropped file: ``source``, ``reason``, ``detail``.
        duplicates: one row per image in a duplicate group (kept or not): ``kind``, ``group``,
            ``source``, ``split``, ``kept``.
        summary: counts (files, kept, dropped by reason, groups by split combination).
    """

    kept: pd.DataFrame
    faces: np.ndarray
    dropped: pd.DataFrame
    duplicates: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    def exclusion_list(self) -> pd.DataFrame:
        """The duplicates removed (``path``, ``reason``): give it to ``emofx prepare --exclude`` for a
        deduplicated benchmark."""
        rows = self.dropped[self.dropped["reason"].isin(["exact duplicate", "near duplicate",
                                                           "exact duplicate of another dataset",
                                                           "near duplicate of another dataset"])]
        return rows.rename(columns={"source": "path"})[["path", "reason", "detail"]].reset_index(drop=True)


def register_heif() -> bool:
    """Let Pillow open HEIC/HEIF when pillow-heif is installed; True when it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred images."""
    return float(cv2.Laplacian(np.asarray(face, dtype=np.uint8), cv2.CV_64F).var())


def _frame_count(data: bytes) -> int:
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # decode_gray reports unreadable files with the reason
        return 1


def _one_file(path: Path, config: CollectConfig, heif: bool) -> dict[str, Any]:
    """Everything the collection needs to know about one file (never raises for bad files)."""
    record: dict[str, Any] = {"source": shown_path(path)}
    problem = unencodable_name(path)
    if problem:
        return {**record, "reason": "file name not UTF-8", "detail": problem}
    try:
        data = path.read_bytes()
    except OSError as err:
        return {**record, "reason": "unreadable file", "detail": str(err.strerror or err)}
    if not data:
        return {**record, "reason": "empty file", "detail": "0 bytes"}
    record["content_hash"] = dedup.content_digest(data)
    if path.suffix.lower() in HEIF_SUFFIXES and not heif:
        return {**record, "reason": "HEIC/HEIF needs pillow-heif", "detail": HEIC_EXTRA}
    try:
        gray = decode_gray(data)
    except ImageReadError as err:
        too_large = isinstance(err, ImageTooLargeError)
        return {**record, "reason": "image too large" if too_large else "not an image", "detail": str(err)}
    record["animated"] = _frame_count(data) > 1  # GIF/WebP/PNG animations: the first frame is used
    detected = config.faces == "detect"
    if detected:
        boxes = find_faces(gray, FaceOptions(size=config.size, margin=config.margin))
        if not boxes:
            return {**record, "reason": "no face", "detail": f"{gray.shape[1]}x{gray.shape[0]} image"}
        box, record["faces_found"] = boxes[0], len(boxes)  # the largest is kept
        square = square_around(box, config.margin)
    else:
        square = center_square(gray)
        box, record["faces_found"] = (square[0], square[1], square[2], square[2]), 1
    crop = crop_square(gray, square)
    side = int(min(box[2], box[3]))
    record.update(face_x=box[0], face_y=box[1], face_side=side)
    if side < config.min_face:
        return {**record, "reason": "face too small", "detail": f"{side} < {config.min_face} pixels"}
    interpolation = cv2.INTER_AREA if crop.shape[0] > config.size else cv2.INTER_LINEAR
    face = cv2.resize(crop, (config.size, config.size), interpolation=interpolation)
    record["sharpness"] = sharpness(face)
    if record["sharpness"] < config.min_sharpness:
        return {**record, "reason": "blurred",
                "detail": f"variance of Laplacian {record['sharpness']:.1f} < {config.min_sharpness}"}
    if config.require_eyes and detect_eyes(face) is None:
        return {**record, "reason": "eyes not found", "detail": "landmark check"}
    record["face"] = face
    if config.landmarks not in ("auto", "none"):  # the eye-aligned face, for the near-duplicate search
        options = FaceOptions(size=config.size, margin=config.margin, detect=detected, landmarks=config.landmarks,
                              align=True)
        alignment = eye_alignment(face_landmarks(gray, square, box if detected else None, face, options), options)
        if alignment is not None:
            record["aligned_face"] = warp_face(gray, alignment, config.size)
    return record


def _source_files(root: Path) -> list[Path]:
    """Every non-hidden file under ``root``, sorted, following folders that are symbolic links (each real folder
    once) as ``emofx prepare`` does; broken links are listed (and dropped as unreadable)."""
    return sorted(p for files in folder_files(root).values() for p in files if p.name.lower() not in SKIP_NAMES)


def _provenance(path: Path, root: Path) -> tuple[str, str]:
    """(emotion, split) from the folder name and the FER2013 file-name prefix or a split folder under
    ``root``, when present (folders above the source, e.g. ``/tmp/test/``, say nothing of the split)."""
    emotion = ALIASES.get(path.parent.name.strip().lower(), "")
    prefix = path.name.split("_", 1)[0]
    folders = [p.name for p in path.relative_to(root).parents]
    split = prefix if prefix.lower() in PREDEFINED_NAMES else next(
        (f for f in folders if f.lower() in PREDEFINED_NAMES), "")
    return emotion, split


def _priority(split: np.ndarray) -> np.ndarray:
    return np.array([SPLIT_PRIORITY.get(PREDEFINED_NAMES.get(s.lower(), ""), -1) for s in split])


@dataclass(frozen=True)
class OtherImages:
    """Other datasets' images to find copies of: their files' digests (``content``; exact copies), their faces'
    perceptual hashes (``faces``; near copies) and the :func:`dedup.thumbnails` of their eye-aligned faces
    (``thumbs``; near copies of a collection's aligned faces), each with the image's name, and the datasets whose
    faces were aligned (a collection that does not align its faces finds only exact copies of those)."""

    content: np.ndarray
    content_names: np.ndarray
    faces: np.ndarray
    face_names: np.ndarray
    thumbs: np.ndarray
    thumb_names: np.ndarray
    aligned: tuple[str, ...] = ()


def _other_file(path: Path, config: CollectConfig, heif: bool
                ) -> tuple[int | None, list[np.ndarray], np.ndarray | None]:
    """One file of another dataset's folder: its digest (None when unreadable), its faces, read as the
    collection reads its own files (no size, blur or eye filter), plus, when faces are detected, the centre square
    (so that a folder of cropped faces compares too), and its eye-aligned face (None without one)."""
    record = _one_file(path, replace(config, min_face=0, min_sharpness=0.0, require_eyes=False), heif)
    crops = [record["face"]] if "face" in record else []
    if config.faces == "detect" and "animated" in record:  # a readable image
        gray = decode_gray(path.read_bytes())
        crops.append(cv2.resize(crop_square(gray, center_square(gray)), (config.size, config.size),
                                interpolation=cv2.INTER_AREA))
    return record.get("content_hash"), crops, record.get("aligned_face")


def other_images(sources: Sequence[str | os.PathLike], config: CollectConfig) -> OtherImages:
    """:class:`OtherImages` of ``.npz`` datasets (the file digests they recorded, their faces; an aligned dataset's
    aligned faces as thumbnails where ``config`` aligns faces) or folders of images (read like the collection's own
    files: the face found as ``config`` says, and the centre square, so that both a folder of photos and a folder of
    cropped faces compare; the eye-aligned face where ``config`` aligns faces)."""
    config = replace(config, landmarks=config.alignment)
    content, content_names, faces, face_names, aligned_faces, aligned_names, aligned = [], [], [], [], [], [], []
    heif = register_heif()
    for source in sources:
        source = Path(source).expanduser()
        if source.suffix == ".npz":
            dataset = FaceDataset.load(source)
            names = [f"{source}:{p}" for p in dataset.path]
            digests = dataset.extras.get("content_hash")
            if digests is not None:
                content += [int(d) for d in digests]
                content_names += names
            faces += list(dataset.images)
            face_names += names
            if dataset.meta.get("aligned"):
                aligned.append(str(source))
                if config.landmarks != "none":
                    each = np.asarray(dataset.extras.get("aligned", np.ones(len(dataset), bool)), dtype=bool)
                    aligned_faces += list(dataset.images[each])
                    aligned_names += list(np.asarray(names)[each])
        elif source.is_dir():
            files = _source_files(source)
            with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
                records = list(pool.map(lambda p: _other_file(p, config, heif), files))
            for path, (digest, crops, aligned_face) in zip(files, records):
                if digest is not None:
                    content.append(digest)
                    content_names.append(str(path))
                faces += crops
                face_names += [str(path)] * len(crops)
                if aligned_face is not None:
                    aligned_faces.append(aligned_face)
                    aligned_names.append(str(path))
        else:
            raise FileNotFoundError(f"--against {source} is neither an emofx dataset (.npz) nor a folder")
    return OtherImages(np.asarray(content, dtype=np.uint64), np.asarray(content_names, dtype=str),
                       dedup.perceptual_hashes(faces, config.hash_method) if faces else np.zeros(0, np.uint64),
                       np.asarray(face_names, dtype=str),
                       dedup.thumbnails(aligned_faces) if aligned_faces else
                       np.zeros((0, dedup.THUMBNAIL_SIDE ** 2), np.float32),
                       np.asarray(aligned_names, dtype=str), tuple(aligned))


def collect(source: str | os.PathLike, config: CollectConfig = CollectConfig(), *,
            queries: str | os.PathLike | None = None, against: Sequence[str | os.PathLike] = (),
            progress: bool = False) -> Collection:
    """Clean the images under ``source`` (see the module docstring); the source is only read.

    Sources are recorded as absolute paths, so the manifest and exclusion list work from any folder."""
    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"collection source {root} is not a folder")
    files = _source_files(root)
    if not files:
        raise CollectError(f"no files under {root}")
    query_table = read_queries(queries, root) if queries is not None else None
    unlisted = rows_without_file(query_table, files, queries, root) if query_table is not None else 0
    config = replace(config, landmarks=config.alignment)  # resolved once: what the report records
    heif = register_heif()
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
        records = list(tqdm(pool.map(lambda p: _one_file(p, config, heif), files), total=len(files),
                            desc="collect", unit="img", disable=not progress, leave=False))
    dropped = [{k: r[k] for k in ("source", "reason", "detail")} for r in records if "reason" in r]
    good = [r for r in records if "face" in r]
    faces = np.stack([r.pop("face") for r in good]) if good else np.zeros((0, config.size, config.size), np.uint8)
    aligned_faces = [r.pop("aligned_face", None) for r in good]
    kept = pd.DataFrame(good, columns=["source", "content_hash", "animated", "face_x", "face_y", "face_side",
                                       "faces_found", "sharpness"])
    provenance = [_provenance(Path(s), root) for s in kept["source"]]
    kept["emotion"] = [e for e, _ in provenance]
    kept["split"] = [s for _, s in provenance]
    for column in ("query", "language", "culture"):
        kept[column] = ""
    if query_table is not None:
        resolved = [str(Path(s).resolve()) for s in kept["source"]]
        found = np.array([r in query_table.index for r in resolved])
        for column in ("query", "language", "culture"):
            kept.loc[found, column] = query_table.loc[np.asarray(resolved)[found], column].to_numpy()
        emotion = query_table.reindex(resolved)["emotion"].fillna("").to_numpy()
        kept["emotion"] = np.where(emotion != "", emotion, kept["emotion"])
        kept["in_query_table"] = found
    kept["phash"] = dedup.perceptual_hashes(faces, config.hash_method) if len(kept) else np.zeros(0, np.uint64)
    kept["aligned"] = np.array([face is not None for face in aligned_faces], dtype=bool)
    thumbs = np.zeros((len(kept), dedup.THUMBNAIL_SIDE ** 2), np.float32)
    if kept["aligned"].any():
        thumbs[kept["aligned"].to_numpy()] = dedup.thumbnails([face for face in aligned_faces if face is not None])
    others = other_images(against, config) if against else None
    duplicates, keep = _deduplicate(kept, thumbs, config, others)
    why = drop_reasons(duplicates)
    for index in np.flatnonzero(~keep):
        dropped.append({"source": kept.at[index, "source"], "reason": why.at[index, "reason"],
                        "detail": why.at[index, "detail"]})
    dropped_frame = pd.DataFrame(dropped, columns=["source", "reason", "detail"])
    summary = {
        "source": str(root.absolute()), "files": len(files), "kept": int(keep.sum()),
        "dropped": {str(k): int(v) for k, v in dropped_frame["reason"].value_counts().items()},
        "animated_first_frame": int(kept.loc[keep, "animated"].sum()) if len(kept) else 0,
        "several_faces": int((kept.loc[keep, "faces_found"].fillna(1) > 1).sum()) if len(kept) else 0,
        "config": asdict(config), "heif_support": heif, "aligned_faces": int(kept["aligned"].sum()),
        "duplicate_groups": _group_summary(duplicates),
    }
    if others is not None:
        summary["against"] = {"sources": [str(a) for a in against], "aligned": list(others.aligned),
                              "files": len(others.content), "faces": len(others.faces),
                              "aligned_faces": len(others.thumbs)}
    if query_table is not None:
        summary["not_in_query_table"] = int((~kept.loc[keep, "in_query_table"]).sum())
        summary["query_rows_without_file"] = unlisted
    own = duplicates[duplicates["kind"].isin(["exact", "near"]) & (duplicates["emotion"] != "")]
    summary["groups_across_emotions"] = int((own.groupby(["kind", "group"])["emotion"].nunique() > 1).sum())
    kept_frame = kept[keep].reset_index(drop=True)
    kept_frame["phash"] = [f"{int(h):016x}" for h in kept_frame["phash"]]
    kept_frame["content_hash"] = [f"{int(h):016x}" for h in kept_frame["content_hash"]]
    return Collection(kept=kept_frame, faces=faces[keep], dropped=dropped_frame,
                      duplicates=duplicates.drop(columns=["index"]), summary=summary)


def _deduplicate(kept: pd.DataFrame, thumbs: np.ndarray, config: CollectConfig, others: OtherImages | None
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Duplicate groups (exact, near, against other datasets) and which images survive; ``thumbs`` are the
    :func:`dedup.thumbnails` of the aligned faces (rows of images without one unused)."""
    n = len(kept)
    aligned = kept["aligned"].to_numpy(dtype=bool) if n else np.zeros(0, bool)
    split = kept["split"].to_numpy(dtype=str) if n else np.zeros(0, str)
    priority = _priority(split)
    source = kept["source"].to_numpy(dtype=str) if n else np.zeros(0, str)
    emotion = kept["emotion"].to_numpy(dtype=str) if n else np.zeros(0, str)
    keep = np.ones(n, dtype=bool)
    parts = []
    kinds = [("exact", "exact duplicate")] + ([("near", "near duplicate")] if config.near_threshold >= 0 else [])
    for kind, reason in kinds:
        groups = np.full(n, dedup.NO_GROUP, dtype=np.int64)
        remaining = np.flatnonzero(keep)  # near groups are searched among the exact groups' survivors
        if kind == "exact":
            groups[remaining] = dedup.exact_groups(kept["content_hash"].to_numpy(np.uint64)[remaining])
        else:
            groups[remaining] = dedup.near_groups(kept["phash"].to_numpy(np.uint64)[remaining], config.near_threshold,
                                                  aligned[remaining], thumbs[remaining], config.aligned_threshold)
        survivors = dedup.keep_one_per_group(groups, priority)
        kept_of = {g: source[i] for i in np.flatnonzero(survivors & (groups != dedup.NO_GROUP)) for g in [groups[i]]}
        members = np.flatnonzero(groups != dedup.NO_GROUP)
        parts.append(pd.DataFrame({
            "kind": kind, "group": groups[members], "index": members, "source": source[members],
            "split": split[members], "emotion": emotion[members], "kept": survivors[members] & keep[members],
            "reason": reason,
            "detail": [f"of {kept_of[g]}" for g in groups[members]],
        }))
        keep &= survivors
    if others is not None:
        first_of = {int(h): j for j, h in reversed(list(enumerate(others.content)))}
        digests = kept["content_hash"].to_numpy(np.uint64)
        exact = {i: first_of[int(h)] for i, h in enumerate(digests) if int(h) in first_of}
        rows, cols = _near_others(kept["phash"].to_numpy(np.uint64), aligned, thumbs, config, others)
        near = {int(i): int(j) for i, j in pd.Series(cols).groupby(rows).first().items() if int(i) not in exact}
        for kind, matches, names, reason in (
                ("against-exact", exact, others.content_names, "exact duplicate of another dataset"),
                ("against", near, np.r_[others.face_names, others.thumb_names], "near duplicate of another dataset")):
            members = np.asarray(sorted(matches), dtype=np.int64)
            parts.append(pd.DataFrame({
                "kind": kind, "group": [matches[i] for i in members], "index": members, "source": source[members],
                "split": split[members], "emotion": emotion[members], "kept": False, "reason": reason,
                "detail": [f"of {names[matches[i]]}" for i in members],
            }))
            keep[members] = False
    columns = ["kind", "group", "index", "source", "split", "emotion", "kept", "reason", "detail"]
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)), keep


def drop_reasons(duplicates: pd.DataFrame) -> pd.DataFrame:
    """Why each image :func:`_deduplicate` dropped was dropped (``reason``, ``detail``), indexed by its ``index``: its
    first row in ``duplicates`` that does not keep it. One table for all, not a search of every row per image (which
    grows with the square of the duplicates: FER2013 has 2,910)."""
    return duplicates.loc[~duplicates["kept"], ["index", "reason", "detail"]].drop_duplicates("index").set_index(
        "index")


def _near_others(hashes: np.ndarray, aligned: np.ndarray, thumbs: np.ndarray, config: CollectConfig,
                 others: OtherImages) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (collection image, other image) of near copies of other datasets' images, the other image indexing
    ``others.face_names`` followed by ``others.thumb_names``: aligned faces of both by correlation, any other pair
    by hash."""
    rows, cols = dedup.near_pairs(hashes, max(config.near_threshold, 0), others.faces)
    with_thumb = np.isin(others.face_names, others.thumb_names)
    by_hash = ~(aligned[rows] & with_thumb[cols])
    index = np.flatnonzero(aligned)
    pair_rows, pair_cols = dedup.correlated_pairs(thumbs[index], config.aligned_threshold, others.thumbs)
    return np.r_[rows[by_hash], index[pair_rows]], np.r_[cols[by_hash], len(others.faces) + pair_cols]


def _group_summary(duplicates: pd.DataFrame) -> list[dict[str, Any]]:
    """Groups and images per kind and combination of splits spanned."""
    if duplicates.empty:
        return []
    spans = duplicates.groupby(["kind", "group"]).agg(
        size=("source", "size"), splits=("split", lambda s: "+".join(sorted(set(s))) or "(none)"))
    table = spans.groupby(["kind", "splits"]).agg(groups=("size", "size"), images=("size", "sum")).reset_index()
    table["removed"] = table["images"] - np.where(table["kind"].str.startswith("against"), 0, table["groups"])
    return table.to_dict(orient="records")
