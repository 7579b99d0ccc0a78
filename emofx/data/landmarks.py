"""Facial landmarks on the original photo and the alignment of face crops by the eyes.

Two ways to find landmarks, one calling convention (:func:`find_landmarks`):

- ``dlib68``: dlib's HOG face detector and its 68-point shape predictor (iBUG 300-W layout;
  the model file ships in the ``face-recognition-models`` package, dlib in ``dlib-bin``: both in
  the ``landmarks`` extra, nothing is downloaded at run time). When the HOG detector misses the
  face, the predictor is run in the box the Haar cascade found (quality ``box``).
- ``eyes``: OpenCV's ``haarcascade_eye`` on an upscaled face crop gives the two eye centres only.

Points are (x, y) in pixel-index coordinates (pixel (row i, column j) has centre (j, i)); "left"
means the image's left. Alignment maps the eye centres onto fixed positions of the output crop
(:data:`ALIGNED_EYES`, near the mean-face positions of unaligned crops (measured on 420 KDEF and Taiwanese
crops: x 0.343 and 0.665, y 0.420), so region templates fit both;
another face margin scales them about the centre, :func:`aligned_eyes`)
with a similarity transform (rotation, uniform scale, shift).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emofx.data.paths import install_command

LANDMARK_METHODS: tuple[str, ...] = ("dlib68", "eyes", "none")
N_POINTS = 68
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # the image's left and right eye in the 68-point layout
# Eye centres of an aligned crop as fractions of its width and height (left, right).
ALIGNED_EYES: tuple[tuple[float, float], tuple[float, float]] = ((0.33, 0.41), (0.67, 0.41))
ALIGNED_MARGIN = 0.1  # the face margin of the unaligned crops whose mean face gave ALIGNED_EYES
EYE_CASCADE = "haarcascade_eye.xml"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = f"{install_command('landmarks')}  (dlib-bin and face-recognition-models)"

# Per-image quality of the landmarks.
OK, BOX, MISSING, OUTSIDE = "ok", "box", "missing", "outside"


class LandmarkError(ValueError):
    """Landmarks cannot be found as asked (e.g. the dlib model is not installed)."""


@dataclass(frozen=True)
class Landmarks:
    """Landmarks of one face: ``points`` (68, 2) (NaN when unknown), ``eyes`` (2, 2), method and quality."""

    points: np.ndarray
    eyes: np.ndarray
    method: str
    quality: str

    @property
    def found(self) -> bool:
        """Whether points were found: on the face dlib detected, or fitted within the given face box."""
        return self.quality in (OK, BOX)

    def transformed(self, matrix: np.ndarray) -> "Landmarks":
        """The same landmarks under a 2x3 affine map (e.g. into crop coordinates)."""
        return Landmarks(transform_points(self.points, matrix), transform_points(self.eyes, matrix),
                         self.method, self.quality)


def missing(method: str) -> Landmarks:
    """No landmarks: every coordinate NaN."""
    return Landmarks(np.full((N_POINTS, 2), np.nan, np.float32), np.full((2, 2), np.nan, np.float32), method, MISSING)


# ---------------------------------------------------------------------------- dlib 68 points
def dlib_available() -> bool:
    """True when dlib and the 68-point model package are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


def resolve_method(requested: str, *, photos: bool) -> str:
    """The landmark method for ``auto``: ``dlib68`` on photos, ``none`` on already-cropped faces
    (dlib needs ~50 ms per enlarged crop: ask for it explicitly there). ``dlib68`` without dlib is an error."""
    method = ("dlib68" if photos else "none") if requested == "auto" else requested
    if method not in LANDMARK_METHODS:
        raise ValueError(f"unknown landmark method {requested!r}; choose auto or one of {', '.join(LANDMARK_METHODS)}")
    if method == "dlib68" and not dlib_available():
        raise LandmarkError(f"68-point landmarks need dlib and its model, which are not installed: {INSTALL_HINT}; "
                            "or choose --landmarks eyes (eye cascade only) or --landmarks none")
    return method


_local = threading.local()


def predictor_path() -> Path:
    """The 68-point model file inside the installed ``face-recognition-models`` package.

    Located through the import system rather than by importing the package, whose ``__init__``
    needs ``pkg_resources`` (absent from new setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkError(f"the 68-point model is not installed: {INSTALL_HINT}; or choose --landmarks eyes|none")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise LandmarkError(f"{path} is missing from the face-recognition-models package; reinstall it: {INSTALL_HINT}")
    return path


def _dlib_models():
    """(HOG face detector, 68-point predictor, rectangle type), one set per thread."""
    models = getattr(_local, "dlib", None)
    if models is None:
        try:
            import dlib
        except ImportError:
            raise LandmarkError(f"68-point landmarks need dlib, which is not installed: {INSTALL_HINT}; "
                                "or choose --landmarks eyes|none") from None
        predictor = dlib.shape_predictor(str(predictor_path()))
        models = _local.dlib = (dlib.get_frontal_face_detector(), predictor, dlib.rectangle)
    return models


def dlib68(gray: np.ndarray, box: tuple[int, int, int, int] | None = None, *, upscale_to: int = 0) -> Landmarks:
    """68 points of the largest face in ``gray``; in ``box`` (x, y, w, h) when dlib's detector finds none.

    ``upscale_to``: small images (already-cropped 48x48 faces) are enlarged to this side first.
    """
    detector, predictor, rectangle = _dlib_models()
    scale = upscale_to / min(gray.shape) if upscale_to and min(gray.shape) < upscale_to else 1.0
    image = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    faces = detector(image, 0)
    quality = OK
    if len(faces):
        rect = max(faces, key=lambda r: r.width() * r.height())
    elif box is not None:
        x, y, w, h = (int(round(v * scale)) for v in box)
        rect, quality = rectangle(x, y, x + w, y + h), BOX
    else:
        return missing("dlib68")
    shape = predictor(image, rect)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    points = ((points + 0.5) / scale - 0.5).astype(np.float32)
    if not _inside(points, gray.shape):
        quality = OUTSIDE
    return Landmarks(points, eye_centres(points), "dlib68", quality)


def eye_centres(points: np.ndarray) -> np.ndarray:
    """(2, 2) centres of the image's left and right eye from 68 points."""
    return np.stack([points[LEFT_EYE].mean(axis=0), points[RIGHT_EYE].mean(axis=0)]).astype(np.float32)


def _inside(points: np.ndarray, shape: tuple[int, ...], slack: float = 0.1) -> bool:
    """All points within the image, allowing ``slack`` of its side beyond the border (the chin may be cut)."""
    height, width = shape[:2]
    return bool(np.all((points[:, 0] >= -slack * width) & (points[:, 0] <= (1 + slack) * width)
                       & (points[:, 1] >= -slack * height) & (points[:, 1] <= (1 + slack) * height)))


# ---------------------------------------------------------------------------- eye cascade
def thread_cascade(file: str) -> cv2.CascadeClassifier:
    """OpenCV's Haar cascade ``file``, one per thread: a classifier shared by threads (faces are prepared on
    several) gives other detections from run to run."""
    cascades = getattr(_local, "cascades", None) or {}
    if file not in cascades:
        path = os.path.join(cv2.data.haarcascades, file)
        cascades[file] = cv2.CascadeClassifier(path)
        if cascades[file].empty():
            raise RuntimeError(f"OpenCV's cascade {path} is missing; install opencv-python-headless<5 (its wheel "
                               "ships it)")
        _local.cascades = cascades
    return cascades[file]


def detect_eyes(face: np.ndarray, *, upscale_to: int = 144) -> np.ndarray | None:
    """(2, 2) centres (left, right) of the two eyes of a uint8 face crop, or None.

    The crop is resized to ``upscale_to`` (Haar eyes need ~20 px), histogram-equalised, and searched in
    its upper 60%; of the candidates, the left/right pair most alike in height and size is kept if the
    eye distance is 20-60% of the width and the pair is tilted less than ~20 degrees.
    """
    height, width = face.shape
    scale = upscale_to / width
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    big = cv2.equalizeHist(cv2.resize(face, None, fx=scale, fy=scale, interpolation=interpolation))
    side = big.shape[1]
    boxes = thread_cascade(EYE_CASCADE).detectMultiScale(big[: int(0.6 * big.shape[0])], scaleFactor=1.1,
                                                         minNeighbors=3, minSize=(side // 8, side // 8),
                                                         maxSize=(side // 3, side // 3))
    centres = [((x + w / 2) / scale - 0.5, (y + h / 2) / scale - 0.5, w / scale) for x, y, w, h in boxes]
    left = [c for c in centres if c[0] < width / 2]
    right = [c for c in centres if c[0] >= width / 2]
    pairs = [(abs(l[1] - r[1]) + abs(l[2] - r[2]), l, r) for l in left for r in right
             if 0.2 * width <= r[0] - l[0] <= 0.6 * width and abs(l[1] - r[1]) <= 0.36 * (r[0] - l[0])]
    if not pairs:
        return None
    _, l, r = min(pairs, key=lambda p: p[0])
    return np.array([[l[0], l[1]], [r[0], r[1]]], dtype=np.float32)


def eyes_only(eyes: np.ndarray | None) -> Landmarks:
    """Landmarks that know the eye centres only (the ``eyes`` method)."""
    if eyes is None:
        return missing("eyes")
    return Landmarks(np.full((N_POINTS, 2), np.nan, np.float32), np.asarray(eyes, np.float32), "eyes", OK)


# ---------------------------------------------------------------------------- geometry
def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) points under a 2x3 affine ``matrix`` (NaN stays NaN)."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def crop_matrix(x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """The 2x3 map from source pixel-index coordinates into a ``size`` crop of the square (x0, y0, side)."""
    scale = size / side
    return np.array([[scale, 0.0, (0.5 - x0) * scale - 0.5], [0.0, scale, (0.5 - y0) * scale - 0.5]])


def aligned_eyes(margin: float = ALIGNED_MARGIN) -> np.ndarray:
    """Where aligned crops put the (left, right) eye centres, as fractions of the side (2, 2).

    :data:`ALIGNED_EYES` at the default margin; a crop with another ``margin`` (border per side,
    as a fraction of the face) frames the face as an unaligned crop with that margin would: the
    eyes move towards (larger margin) or away from (smaller) the centre by (1 + 2 * 0.1) / (1 + 2 * margin).
    """
    zoom = (1 + 2 * ALIGNED_MARGIN) / (1 + 2 * margin)
    return 0.5 + (np.asarray(ALIGNED_EYES, dtype=np.float64) - 0.5) * zoom


def alignment_matrix(eyes: np.ndarray, size: int, margin: float = ALIGNED_MARGIN) -> np.ndarray:
    """The similarity transform (2x3) that puts ``eyes`` (left, right) on :func:`aligned_eyes` of a ``size`` crop."""
    source = np.asarray(eyes, dtype=np.float64)
    target = aligned_eyes(margin) * size - 0.5
    src_vec, dst_vec = source[1] - source[0], target[1] - target[0]
    # Complex-number form: dst = a * src + b with a = dst_vec / src_vec (rotation and scale).
    a = complex(*dst_vec) / complex(*src_vec)
    rotation = np.array([[a.real, -a.imag], [a.imag, a.real]])
    shift = target[0] - rotation @ source[0]
    return np.hstack([rotation, shift[:, None]])


def warp_face(gray: np.ndarray, matrix: np.ndarray, size: int, *, supersample: int = 4) -> np.ndarray:
    """The ``size`` x ``size`` crop that ``matrix`` maps ``gray`` onto, edges replicated past the border.

    Warped at ``supersample`` times the size and then area-averaged, so a large photo is not aliased.
    """
    big = size * supersample
    # Pixel-index coordinates at the large size: x_big = (x + 0.5) * s - 0.5.
    up = np.array([[supersample, 0.0, 0.5 * supersample - 0.5], [0.0, supersample, 0.5 * supersample - 0.5]])
    matrix_big = up[:, :2] @ matrix[:, :2], up[:, :2] @ matrix[:, 2] + up[:, 2]
    warped = cv2.warpAffine(gray, np.hstack([matrix_big[0], matrix_big[1][:, None]]), (big, big),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)


def find_landmarks(gray: np.ndarray, method: str, *, box: tuple[int, int, int, int] | None = None,
                   crop: tuple[np.ndarray, np.ndarray] | None = None, upscale_to: int = 0) -> Landmarks:
    """Landmarks of the face in the photo ``gray`` by ``method`` (:data:`LANDMARK_METHODS`), in photo coordinates.

    ``box``: the detector's face box, where dlib's own detector finds no face. ``crop``: (face crop,
    2x3 map from the photo into it); the eye cascade searches the crop and its points are mapped back.
    """
    if method == "dlib68":
        return dlib68(gray, box, upscale_to=upscale_to)
    if method == "eyes":
        if crop is None:
            raise ValueError("the eyes method needs the face crop and its map")
        face, matrix = crop
        eyes = detect_eyes(face)
        if eyes is None:
            return missing("eyes")
        inverse = cv2.invertAffineTransform(matrix)
        return eyes_only(transform_points(eyes, inverse))
    if method == "none":
        return missing("none")
    raise ValueError(f"unknown landmark method {method!r}; choose one of {', '.join(LANDMARK_METHODS)}")
