"""Faces from image files: robust decoding, Haar-cascade detection, square crops, disk cache.

Photos (KDEF, the Taiwanese set, a user's web collection) become ``size`` x ``size``
grayscale faces: the largest face found by OpenCV's ``haarcascade_frontalface_default``
(shipped inside the opencv wheel, so nothing is downloaded) is cropped with a margin
and resized. Already-cropped sources skip detection (``FaceOptions(detect=False)``).
A file that cannot be turned into a face is never dropped silently: it is returned in
``FaceBatch.skipped`` with the reason. Results are cached under
:func:`emofx.data.paths.cache_root`, keyed by every input file's path, size and mtime and by
the options, so preparing the same source again costs a directory walk and one read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emofx.data.dataset import MAX_SIDE, MIN_SIDE
from emofx.data.landmarks import (
    LANDMARK_METHODS,
    N_POINTS,
    OUTSIDE,
    Landmarks,
    alignment_matrix,
    crop_matrix,
    find_landmarks,
    thread_cascade,
    warp_face,
)
from emofx.data.paths import cache_root
from emofx.data.progress import tqdm

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)
CASCADE_FILE = "haarcascade_frontalface_default.xml"
_CACHE_VERSION = 4  # 4: no landmarks made up in a centre crop without a face; 3: aligned crops follow the margin
_LANDMARK_UPSCALE = 192  # already-cropped faces are enlarged to this side for dlib
_CHUNK = 64

# Methods recorded per kept image.
DETECTED, CENTER_CROP, AS_IS = "detected", "center_crop", "as_is"
NO_FACE = "no face found"


class ImageReadError(ValueError):
    """An image file could not be decoded; the message says why."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than Pillow decodes safely (a possible decompression bomb)."""


@dataclass(frozen=True)
class FaceOptions:
    """How an image file becomes a face (every field is part of the cache key).

    Attributes:
        size: side length of the square output face.
        detect: find the face with the Haar cascade; False for already-cropped images
            (they are centre-cropped to a square and resized).
        margin: extra border around the detected box, as a fraction of its side, on each side
            (aligned crops frame the face to match: :func:`emofx.data.landmarks.aligned_eyes`).
        center_crop_fallback: keep images without a detected face as a centre crop
            (otherwise they are skipped with the reason).
        scale_factor, min_neighbors: the cascade's ``detectMultiScale`` parameters.
        min_face_fraction: smallest face side searched, as a fraction of the image's shorter side.
        detect_max_side: images are downscaled to at most this shorter side before detection
            (the crop is still taken from the full-resolution image).
        landmarks: ``dlib68``, ``eyes`` or ``none`` (:mod:`emofx.data.landmarks`), found on the
            original photo (already-cropped faces: on an enlarged crop) and stored in crop coordinates.
        align: rotate and scale each face so that the eye centres land on fixed positions
            (needs landmarks; a face whose eyes are not found keeps its unaligned crop, recorded per image).
    """

    size: int = 48
    detect: bool = True
    margin: float = 0.1
    center_crop_fallback: bool = False
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_face_fraction: float = 0.25
    detect_max_side: int = 480
    landmarks: str = "none"
    align: bool = False

    def __post_init__(self) -> None:
        if self.landmarks not in LANDMARK_METHODS:
            raise ValueError(f"unknown landmark method {self.landmarks!r}; choose one of {', '.join(LANDMARK_METHODS)}")
        if self.align and self.landmarks == "none":
            raise ValueError("aligning faces needs landmarks (dlib68 or eyes); choose one or turn alignment off")
        if not MIN_SIDE <= self.size <= MAX_SIDE:
            raise ValueError(f"face size must be between {MIN_SIDE} and {MAX_SIDE} pixels; got {self.size}")
        if not 0 <= self.margin <= 1:
            raise ValueError(f"face margin must be a fraction between 0 and 1; got {self.margin}")
        if self.scale_factor <= 1:
            raise ValueError(f"scale_factor must be > 1; got {self.scale_factor}")
        if not 0 < self.min_face_fraction <= 1:
            raise ValueError(f"min_face_fraction must lie in (0, 1]; got {self.min_face_fraction}")
        if self.detect_max_side < 1 or self.min_neighbors < 0:
            raise ValueError(f"detect_max_side must be >= 1 and min_neighbors >= 0; got {self.detect_max_side} "
                             f"and {self.min_neighbors}")


@dataclass(frozen=True)
class FaceBatch:
    """The faces extracted from a list of files.

    Attributes:
        images: uint8 (K, size, size), one per kept file.
        kept: int (K,), index of each kept file in the input list.
        method: str (K,), how each face was obtained (``detected``, ``center_crop``, ``as_is``).
        content_hash: uint64 (N,), hash of every input file's bytes (0 when unreadable),
            so identical files can be found.
        skipped: ``{"path", "reason"}`` for every input that gave no face.
        landmarks: float32 (K, 68, 2) in crop coordinates, NaN where unknown; eyes: float32 (K, 2, 2);
            landmark_method, landmark_quality: str (K,); aligned: bool (K,). Empty (K, 0, ...) arrays
            and ``none`` when no landmarks were asked for.
    """

    images: np.ndarray
    kept: np.ndarray
    method: np.ndarray
    content_hash: np.ndarray
    skipped: tuple[dict[str, str], ...]
    landmarks: np.ndarray
    eyes: np.ndarray
    landmark_method: np.ndarray
    landmark_quality: np.ndarray
    aligned: np.ndarray


# ---------------------------------------------------------------------------- one image
def decode_gray(data: bytes) -> np.ndarray:
    """Decode image bytes to a uint8 grayscale array, whatever the mode (16-bit, palette, RGBA, CMYK).

    Raises:
        ImageReadError: the bytes are not an image, or the image is truncated or corrupt.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode fully now, so truncated files fail here
            image = ImageOps.exif_transpose(image)
            return _to_gray(image)
    except UnidentifiedImageError:
        raise ImageReadError("not an image (unknown or unsupported file format)") from None
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"image too large to decode safely ({err}); shrink it if it is a real photo") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"unreadable or truncated image ({err})") from None


def _to_gray(image: Image.Image) -> np.ndarray:
    """Grayscale uint8 from any PIL mode; high-bit-depth images are rescaled, not clipped."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(image, dtype=np.float64) / 257.0).round().astype(np.uint8)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return scaled.round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def find_faces(gray: np.ndarray, options: FaceOptions) -> list[tuple[int, int, int, int]]:
    """Every face the cascade finds as (x, y, w, h) in ``gray``'s pixel coordinates, the largest first."""
    scale = min(1.0, options.detect_max_side / min(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    side = max(20, int(options.min_face_fraction * min(small.shape)))
    boxes = thread_cascade(CASCADE_FILE).detectMultiScale(
        small, scaleFactor=options.scale_factor, minNeighbors=options.min_neighbors, minSize=(side, side)
    )
    ordered = sorted(boxes, key=lambda b: -int(b[2]) * int(b[3]))
    return [tuple(int(round(v / scale)) for v in box) for box in ordered]  # type: ignore[misc]


def find_face(gray: np.ndarray, options: FaceOptions) -> tuple[int, int, int, int] | None:
    """The largest face as (x, y, w, h) in ``gray``'s pixel coordinates, or None."""
    boxes = find_faces(gray, options)
    return boxes[0] if boxes else None


def square_around(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square centred on ``box`` (x, y, w, h) grown by ``margin`` per side."""
    x, y, w, h = box
    half = max(w, h) * (0.5 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - half)), int(round(cy - half)), int(round(2 * half))


def crop_square(gray: np.ndarray, square: tuple[int, int, int]) -> np.ndarray:
    """The square (x0, y0, side) of ``gray``; edges replicated past the border."""
    x0, y0, side = square
    pad = max(0, -x0, -y0, x0 + side - gray.shape[1], y0 + side - gray.shape[0])
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return gray[y0 : y0 + side, x0 : x0 + side]


def center_square(gray: np.ndarray) -> tuple[int, int, int]:
    """(x0, y0, side) of the largest centred square of ``gray``."""
    h, w = gray.shape
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side


@dataclass(frozen=True)
class Face:
    """One face from one image: the crop, how it was obtained, its landmarks (crop coordinates) and alignment."""

    image: np.ndarray
    method: str
    landmarks: Landmarks | None = None
    aligned: bool = False


def extract_face(data: bytes, options: FaceOptions) -> Face | str:
    """One face from image bytes, or the reason it was skipped."""
    try:
        gray = decode_gray(data)
    except ImageReadError as err:
        return str(err)
    if min(gray.shape) < 2:
        return f"image too small ({gray.shape[1]}x{gray.shape[0]} pixels)"
    method, box = AS_IS, None
    square = center_square(gray)
    if options.detect:
        box = find_face(gray, options)
        if box is not None:
            method, square = DETECTED, square_around(box, options.margin)
        elif options.center_crop_fallback:
            method = CENTER_CROP
        else:
            return f"{NO_FACE} (use the centre-crop fallback to keep it)"
    crop = crop_square(gray, square)
    if crop.shape != (options.size, options.size):
        interpolation = cv2.INTER_AREA if crop.shape[0] > options.size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (options.size, options.size), interpolation=interpolation)
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if options.landmarks == "none":
        return Face(crop, method)
    matrix = crop_matrix(*square, options.size)
    marks = face_landmarks(gray, square, box, crop, options)
    alignment = eye_alignment(marks, options) if options.align else None
    if alignment is not None:
        matrix, crop = alignment, warp_face(gray, alignment, options.size)
    marks = marks.transformed(matrix)
    if marks.found and not _within(marks.points, options.size):
        marks = Landmarks(marks.points, marks.eyes, marks.method, OUTSIDE)
    return Face(crop, method, marks, alignment is not None)


def face_landmarks(gray: np.ndarray, square: tuple[int, int, int], box: tuple[int, int, int, int] | None,
                   crop: np.ndarray, options: FaceOptions) -> Landmarks:
    """Landmarks (photo coordinates, by ``options.landmarks``) of the face cropped from ``gray`` as the square
    ``square`` (``crop``, at ``options.size``). Where dlib's own detector finds no face, its points are placed in
    the face detector's ``box``, or in the whole crop of a ready-cropped face (``options.detect`` off); never in a
    centre crop kept without a face found (``box`` None there), where they would be made up."""
    hint = box if box is not None or options.detect else (square[0], square[1], square[2], square[2])
    return find_landmarks(gray, options.landmarks, box=hint, crop=(crop, crop_matrix(*square, options.size)),
                          upscale_to=0 if options.detect else _LANDMARK_UPSCALE)


def eye_alignment(marks: Landmarks, options: FaceOptions) -> np.ndarray | None:
    """The 2x3 map that rotates and scales a photo to put the eyes of ``marks`` in place in a face of
    ``options.size`` (:func:`warp_face` applies it); None where the eyes were not found."""
    if not np.all(np.isfinite(marks.eyes)):
        return None
    return alignment_matrix(marks.eyes, options.size, options.margin)


def _within(points: np.ndarray, size: int, slack: float = 0.15) -> bool:
    """Known points inside the crop, allowing ``slack`` of its side beyond the border (the chin may be cut)."""
    known = points[np.all(np.isfinite(points), axis=1)]
    return bool(np.all((known >= -slack * size) & (known <= (1 + slack) * size)))


def face_from_bytes(data: bytes, options: FaceOptions) -> tuple[np.ndarray | None, str]:
    """One face from image bytes: (face, method) or (None, reason it was skipped)."""
    face = extract_face(data, options)
    return (None, face) if isinstance(face, str) else (face.image, face.method)


def _face_from_file(path: Path, options: FaceOptions) -> tuple[Face | str, int]:
    """(face or the reason it was skipped, content hash) for one file; never raises for bad files."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot read file ({err.strerror or err})", 0
    if not data:
        return "empty file (0 bytes)", 0
    digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return extract_face(data, options), digest


# ---------------------------------------------------------------------------- many images
def extract_faces(
    paths: Sequence[str | os.PathLike],
    options: FaceOptions = FaceOptions(),
    *,
    workers: int = 2,
    use_cache: bool = True,
    progress: bool = False,
    desc: str = "faces",
) -> FaceBatch:
    """Faces from many files, in parallel threads, reusing the disk cache when nothing changed.

    OpenCV and Pillow release the GIL while decoding and detecting, so threads use the cores
    without the start-up cost of processes.
    """
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    key = _cache_key(paths, options)
    cached = _read_cache(key) if use_cache else None
    if cached is not None:
        return cached
    faces: list[Face] = []
    kept: list[int] = []
    hashes = np.zeros(len(paths), dtype=np.uint64)
    skipped: list[dict[str, str]] = []
    chunks = [range(i, min(i + _CHUNK, len(paths))) for i in range(0, len(paths), _CHUNK)]

    def run_chunk(indices: range) -> list[tuple[Face | str, int]]:
        return [_face_from_file(paths[i], options) for i in indices]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
        total=len(paths), desc=desc, unit="img", disable=not progress, leave=False
    ) as bar:
        for indices, results in zip(chunks, pool.map(run_chunk, chunks)):
            for i, (face, digest) in zip(indices, results):
                hashes[i] = digest
                if isinstance(face, str):
                    skipped.append({"path": str(paths[i]), "reason": face})
                else:
                    faces.append(face)
                    kept.append(i)
            bar.update(len(indices))
    batch = _batch(faces, np.asarray(kept, dtype=np.int64), hashes, tuple(skipped), options)
    if use_cache:
        _write_cache(key, batch)
    return batch


def _batch(faces: Sequence[Face], kept: np.ndarray, hashes: np.ndarray, skipped: tuple[dict[str, str], ...],
           options: FaceOptions) -> FaceBatch:
    """The per-image arrays of a :class:`FaceBatch` from the kept faces."""
    with_marks = options.landmarks != "none"
    marks = [f.landmarks for f in faces] if with_marks else []
    points = (N_POINTS, 2) if with_marks else (0, 2)
    eyes = (2, 2) if with_marks else (0, 2)
    return FaceBatch(
        images=np.stack([f.image for f in faces]) if faces else np.zeros((0, options.size, options.size), np.uint8),
        kept=kept,
        method=np.asarray([f.method for f in faces], dtype=str),
        content_hash=hashes,
        skipped=skipped,
        landmarks=np.stack([m.points for m in marks]) if marks else np.zeros((len(faces), *points), np.float32),
        eyes=np.stack([m.eyes for m in marks]) if marks else np.zeros((len(faces), *eyes), np.float32),
        landmark_method=np.asarray([m.method for m in marks] if marks else ["none"] * len(faces), dtype=str),
        landmark_quality=np.asarray([m.quality for m in marks] if marks else ["none"] * len(faces), dtype=str),
        aligned=np.asarray([f.aligned for f in faces], dtype=bool),
    )


# ---------------------------------------------------------------------------- cache
def _cache_key(paths: Sequence[Path], options: FaceOptions) -> str:
    """Hash of the options, the detector and every file's absolute path, size and mtime."""
    files = []
    for path in map(os.path.abspath, paths):
        try:
            stat = os.stat(path)
            files.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            files.append((path, -1, -1))
    record = {
        "version": _CACHE_VERSION,
        "options": asdict(options),
        "detector": [CASCADE_FILE, cv2.__version__, _landmark_model_version(options)],
        "files": files,
    }
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:32]


def _landmark_model_version(options: FaceOptions) -> str:
    """The landmark library's version, part of the cache key when landmarks are asked for."""
    if options.landmarks != "dlib68":
        return ""
    try:
        import dlib
    except ImportError:
        return "missing"
    return f"dlib {dlib.__version__}"


def _cache_file(key: str) -> Path:
    return cache_root() / "faces" / f"{key}.npz"


_CACHED_ARRAYS = ("images", "kept", "method", "content_hash", "landmarks", "eyes", "landmark_method",
                  "landmark_quality", "aligned")


def _read_cache(key: str) -> FaceBatch | None:
    path = _cache_file(key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _CACHED_ARRAYS}
            return FaceBatch(skipped=tuple(json.loads(str(data["skipped"]))), **arrays)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache entry is recomputed (and rewritten)


def _write_cache(key: str, batch: FaceBatch) -> None:
    path = _cache_file(key)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.partial.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, skipped=np.array(json.dumps(list(batch.skipped))),
                 **{name: getattr(batch, name) for name in _CACHED_ARRAYS})
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the face cache {path} ({err}); results are not cached", stacklevel=2)
    except BaseException:  # Ctrl-C while writing: no half-written file left in the cache
        tmp.unlink(missing_ok=True)
        raise
