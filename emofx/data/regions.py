"""Facial regions (eyes, brows, nose, mouth, rest) and landmarks for aligned face crops.

Saliency is compared between cultures region by region, so every face needs region masks:

- ``truth``: the synthetic generator's ground-truth masks; landmarks from the masks.
- ``landmarks``: polygons through the 68 landmarks stored with the dataset (``emofx prepare
  --landmarks dlib68``; :mod:`emofx.data.landmarks`): each eye (points 36-41, 42-47), each brow
  (17-21, 22-26, as a band :data:`BROW_DEPTH` eye distances deep), the nose (27-35) and the outer
  lips (48-59), each dilated by :data:`REGION_MARGIN` eye distances. A face without 68 points falls
  back to ``eyes`` (its stored or detected eye centres), then to ``template``; each image records
  which method it got.
- ``eyes``: OpenCV's ``haarcascade_eye`` (shipped in the opencv wheel) finds the two eyes on
  an upscaled crop; the other regions are placed from the eye positions by face proportions.
  A face whose eyes are not found falls back to the template, and each image records which
  method it got.
- ``template``: an aligned mean-face template (eye centres at 33%/67% across and 41% down,
  measured on KDEF and Taiwanese crops made by :mod:`emofx.data.faces`), scaled to the image.

``auto`` is ``truth`` when the dataset carries ground-truth masks, else ``landmarks`` when it
carries 68-point landmarks, else ``eyes``.
Landmarks are (x, y) in pixel-index coordinates (pixel (row i, column j) has centre (j, i));
"left" and "right" mean the image's left and right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.dedup import content_digest
from emofx.data.landmarks import ALIGNED_MARGIN, LEFT_EYE, RIGHT_EYE, aligned_eyes, detect_eyes
from emofx.data.progress import tqdm

FEATURE_REGIONS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth")
REGION_NAMES: tuple[str, ...] = FEATURE_REGIONS + ("rest",)
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "mouth_centre", "mouth_left", "mouth_right")
METHODS: tuple[str, ...] = ("auto", "truth", "landmarks", "eyes", "template")
REGION_MARGIN = 0.08  # landmark polygons are dilated by this many eye distances
BROW_DEPTH = 0.12  # a brow's band below its five points, in eye distances
# The 68-point indices of each region's polygons (iBUG 300-W layout), in the priority order of _REGION_SHAPES.
LANDMARK_POLYGONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "eyes": (tuple(range(36, 42)), tuple(range(42, 48))),
    "brows": (tuple(range(17, 22)), tuple(range(22, 27))),
    "mouth": (tuple(range(48, 60)),),
    "nose": (tuple(range(27, 36)),),
}
_RASTER = 8  # polygons are drawn at 8x and area-averaged

# Region ellipses in the eye frame: centre (u, v) and semi-axes (a, b) in units of the eye distance;
# u runs from the midpoint between the eyes towards the right eye, v perpendicular, down the face.
# Listed in priority order: where two overlap, the earlier one keeps the pixel.
_REGION_SHAPES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "eyes": ((-0.5, 0.0, 0.28, 0.17), (0.5, 0.0, 0.28, 0.17)),
    "brows": ((-0.5, -0.34, 0.34, 0.14), (0.5, -0.34, 0.34, 0.14)),
    "mouth": ((0.0, 1.02, 0.52, 0.24),),
    "nose": ((0.0, 0.42, 0.2, 0.32),),
}
# Landmarks other than the eyes, in the same frame.
_LANDMARK_FRAME = {"nose_tip": (0.0, 0.66), "mouth_centre": (0.0, 1.02),
                   "mouth_left": (-0.42, 1.02), "mouth_right": (0.42, 1.02)}


class RegionError(ValueError):
    """Regions cannot be computed as asked."""


@dataclass(frozen=True, eq=False)
class RegionMaps:
    """Region masks and landmarks of every image of a dataset, with how they were found.

    Attributes:
        masks: bool (N, R, H, W), disjoint; ``rest`` is every pixel in none of the others.
        region_names: the R names (``eyes``, ``brows``, ``nose``, ``mouth``, ``rest``).
        landmarks: float32 (N, L, 2), (x, y) pixel-index coordinates.
        landmark_names: the L names (:data:`LANDMARK_NAMES`).
        method: the method asked for, ``auto`` resolved (``truth``, ``landmarks``, ``eyes`` or ``template``).
        image_method: str (N,), what each image got (``landmarks`` may fall back to ``eyes``, and
            ``eyes`` to ``template``).
        images_digest: :func:`emofx.data.dedup.content_digest` of the images the regions were found on (None:
            unknown), so that regions are not used for another dataset of as many images.
    """

    masks: np.ndarray
    region_names: tuple[str, ...]
    landmarks: np.ndarray
    landmark_names: tuple[str, ...]
    method: str
    image_method: np.ndarray
    images_digest: int | None = None

    def region(self, name: str) -> np.ndarray:
        """The (N, H, W) mask of one region."""
        if name not in self.region_names:
            raise RegionError(f"unknown region {name!r}; regions are {list(self.region_names)}")
        return self.masks[:, self.region_names.index(name)]

    def to_frame(self) -> pd.DataFrame:
        """One row per image: the method used, each landmark's x and y, and each region's area in pixels."""
        frame = pd.DataFrame({"region_method": self.image_method})
        for k, name in enumerate(self.landmark_names):
            frame[f"{name}_x"], frame[f"{name}_y"] = self.landmarks[:, k, 0], self.landmarks[:, k, 1]
        for r, name in enumerate(self.region_names):
            frame[f"{name}_area"] = self.masks[:, r].sum(axis=(1, 2))
        frame.index.name = "image"
        return frame

    def info(self) -> dict[str, Any]:
        """JSON-ready record of the choice: method asked and how many images got each method."""
        names, counts = np.unique(self.image_method, return_counts=True)
        return {"method": self.method, "image_methods": {str(m): int(c) for m, c in zip(names, counts)},
                "regions": list(self.region_names), "landmarks": list(self.landmark_names)}


def face_regions(dataset: FaceDataset, method: str = "auto", *, progress: bool = False) -> RegionMaps:
    """Region masks and landmarks of every face in ``dataset`` (aligned crops) by ``method``."""
    regions = _found_regions(dataset, method, progress)
    return replace(regions, images_digest=images_digest(dataset))


def images_digest(dataset: FaceDataset) -> int:
    """What :attr:`RegionMaps.images_digest` holds of regions found on ``dataset``."""
    return content_digest(np.ascontiguousarray(dataset.images))


def _found_regions(dataset: FaceDataset, method: str, progress: bool) -> RegionMaps:
    if method not in METHODS:
        raise RegionError(f"unknown region method {method!r}; choose one of {', '.join(METHODS)}")
    points = dataset.extras.get("landmarks")
    # some image with all 68 points (a dataset prepared with --landmarks eyes stores an all-NaN array)
    has_points = (points is not None and points.ndim == 3 and points.shape[1] == 68
                  and bool(np.all(np.isfinite(points), axis=(1, 2)).any()))
    if method == "auto":
        method = "truth" if "region_masks" in dataset.extras else "landmarks" if has_points else "eyes"
    n, (height, width) = len(dataset), dataset.image_shape
    if method == "truth":
        return _truth_regions(dataset)
    if method == "landmarks" and not has_points:
        raise RegionError("this dataset has no 68-point landmarks; prepare it with --landmarks dlib68, "
                          "or use the region method 'eyes' or 'template'")
    eyes = np.broadcast_to(template_eyes(height, width, crop_margin(dataset)), (n, 2, 2)).copy()
    image_method = np.full(n, "template", dtype=object)
    with_68 = np.zeros(n, dtype=bool)
    if method == "landmarks":
        with_68 = np.all(np.isfinite(points), axis=(1, 2))
        stored_eyes = dataset.extras.get("eye_centres")
        if stored_eyes is not None:
            known = np.all(np.isfinite(stored_eyes), axis=(1, 2))
            eyes[known], image_method[known] = stored_eyes[known], "eyes"
    if method in ("eyes", "landmarks"):
        for i in tqdm(np.flatnonzero(image_method == "template"), desc="eyes", unit="img", disable=not progress,
                      leave=False):
            found = detect_eyes(dataset.images[i])
            if found is not None:
                eyes[i], image_method[i] = found, "eyes"
    masks, landmarks = regions_from_eyes(eyes, height, width)
    if with_68.any():
        masks[with_68], landmarks[with_68] = regions_from_landmarks(points[with_68], height, width)
        image_method[with_68] = "landmarks"
    return RegionMaps(masks, REGION_NAMES, landmarks, LANDMARK_NAMES, method, image_method.astype(str))


def template_eyes(height: int, width: int, margin: float = ALIGNED_MARGIN) -> np.ndarray:
    """(2, 2) mean-face eye centres (left, right) as (x, y) pixel-index coordinates, in crops with a
    face ``margin`` per side (:func:`emofx.data.landmarks.aligned_eyes`)."""
    return (aligned_eyes(margin) * np.array([width, height]) - 0.5).astype(np.float32)


def crop_margin(dataset: FaceDataset) -> float:
    """The face margin the dataset's crops were cut or aligned with (``emofx prepare --margin``); the mean
    face's default for images taken as they are (already-cropped faces, synthetic data)."""
    options = dataset.meta.get("face_options") or {}
    if options.get("detect") or options.get("align"):
        return float(options.get("margin", ALIGNED_MARGIN))
    return ALIGNED_MARGIN


def regions_from_eyes(eyes: np.ndarray, height: int, width: int,
                      chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N, 5, H, W) and landmarks (N, 6, 2) placed by face proportions from eye centres (N, 2, 2), ``chunk``
    faces at a time (each face's coordinate grids are float64 arrays of its size: FER2013's all at once took GBs)."""
    eyes = np.asarray(eyes, dtype=np.float64)
    masks = np.zeros((len(eyes), len(REGION_NAMES), height, width), dtype=bool)
    landmarks = np.zeros((len(eyes), len(LANDMARK_NAMES), 2), dtype=np.float32)
    for start in range(0, len(eyes), chunk):
        part = slice(start, start + chunk)
        masks[part], landmarks[part] = _eye_regions(eyes[part], height, width)
    return masks, landmarks


def _eye_regions(eyes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`regions_from_eyes` of a few faces at once."""
    mid = eyes.mean(axis=1)  # (N, 2)
    axis = eyes[:, 1] - eyes[:, 0]
    distance = np.linalg.norm(axis, axis=1)
    along = axis / distance[:, None]
    down = np.stack([-along[:, 1], along[:, 0]], axis=1)  # 90 degrees clockwise in image coordinates: down the face
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs[None] - mid[:, 0, None, None], ys[None] - mid[:, 1, None, None]
    u = (dx * along[:, 0, None, None] + dy * along[:, 1, None, None]) / distance[:, None, None]
    v = (dx * down[:, 0, None, None] + dy * down[:, 1, None, None]) / distance[:, None, None]
    taken = np.zeros((len(eyes), height, width), dtype=bool)
    masks = {}
    for name, ellipses in _REGION_SHAPES.items():
        inside = np.zeros_like(taken)
        for cu, cv, a, b in ellipses:
            inside |= ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 <= 1.0
        masks[name] = inside & ~taken
        taken |= inside
    stacked = np.stack([masks[r] for r in FEATURE_REGIONS] + [~taken], axis=1)
    frame_points = np.array([_LANDMARK_FRAME[k] for k in LANDMARK_NAMES[2:]])  # (4, 2) in (u, v)
    others = (mid[:, None, :] + distance[:, None, None]
              * (frame_points[None, :, :1] * along[:, None, :] + frame_points[None, :, 1:] * down[:, None, :]))
    landmarks = np.concatenate([eyes, others], axis=1).astype(np.float32)
    return stacked, landmarks


def regions_from_landmarks(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N, 5, H, W) and landmarks (N, 6, 2) from 68-point landmarks (N, 68, 2): the polygons of
    :data:`LANDMARK_POLYGONS`, dilated by :data:`REGION_MARGIN` eye distances, disjoint by priority."""
    points = np.asarray(points, dtype=np.float64)
    masks = np.zeros((len(points), len(REGION_NAMES), height, width), dtype=bool)
    for i, face in enumerate(points):
        eyes = np.stack([face[LEFT_EYE].mean(axis=0), face[RIGHT_EYE].mean(axis=0)])
        distance = max(float(np.linalg.norm(eyes[1] - eyes[0])), 1.0)
        taken = np.zeros((height, width), dtype=bool)
        for name, polygons in LANDMARK_POLYGONS.items():
            shapes = [face[list(idx)] for idx in polygons]
            if name == "brows":
                down = _down_direction(eyes) * BROW_DEPTH * distance
                shapes = [np.concatenate([brow, brow[::-1] + down]) for brow in shapes]
            inside = _rasterise(shapes, height, width, REGION_MARGIN * distance)
            masks[i, FEATURE_REGIONS.index(name)] = inside & ~taken
            taken |= inside
        masks[i, -1] = ~taken
    named = np.stack([points[:, LEFT_EYE].mean(axis=1), points[:, RIGHT_EYE].mean(axis=1), points[:, 30],
                      points[:, 48:60].mean(axis=1), points[:, 48], points[:, 54]], axis=1)
    return masks, named.astype(np.float32)


def _down_direction(eyes: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to the eye line, pointing down the face."""
    along = (eyes[1] - eyes[0]) / max(float(np.linalg.norm(eyes[1] - eyes[0])), 1e-9)
    return np.array([-along[1], along[0]])


def _rasterise(polygons: list[np.ndarray], height: int, width: int, margin: float) -> np.ndarray:
    """Pixels covered at least half by the convex hulls of ``polygons`` grown by ``margin`` pixels."""
    canvas = np.zeros((height * _RASTER, width * _RASTER), dtype=np.uint8)
    for polygon in polygons:
        hull = cv2.convexHull((((polygon + 0.5) * _RASTER - 0.5) * 16).round().astype(np.int32))  # 4 fractional bits
        cv2.fillConvexPoly(canvas, hull, 255, lineType=cv2.LINE_8, shift=4)
    radius = int(round(margin * _RASTER))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        canvas = cv2.dilate(canvas, kernel)
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA) >= 128


def _truth_regions(dataset: FaceDataset) -> RegionMaps:
    """Ground-truth masks reordered to :data:`REGION_NAMES`; landmarks from the masks."""
    if "region_masks" not in dataset.extras:
        raise RegionError("this dataset has no ground-truth region masks (only synthetic data has them); "
                          "use method 'landmarks' (where it was prepared with --landmarks dlib68), 'eyes' or "
                          "'template'")
    names = list(dataset.region_names)
    missing = [r for r in FEATURE_REGIONS if r not in names]
    if missing:
        raise RegionError(f"the dataset's region masks lack {missing} (it has {names})")
    truth = dataset.extras["region_masks"].astype(bool)
    features = np.stack([truth[:, names.index(r)] for r in FEATURE_REGIONS], axis=1)
    if np.any(features.sum(axis=1) > 1):
        # Keep the regions disjoint by the same priority as the template: eyes, brows, mouth, nose.
        order = [FEATURE_REGIONS.index(r) for r in _REGION_SHAPES]
        taken = np.zeros_like(features[:, 0])
        for r in order:
            features[:, r] &= ~taken
            taken |= features[:, r]
    masks = np.concatenate([features, ~features.any(axis=1, keepdims=True)], axis=1)
    landmarks = np.stack([_landmarks_from_masks(m) for m in features]) if len(dataset) \
        else np.zeros((0, len(LANDMARK_NAMES), 2), np.float32)
    return RegionMaps(masks, REGION_NAMES, landmarks, LANDMARK_NAMES, "truth",
                      np.full(len(dataset), "truth"))


def _landmarks_from_masks(masks: np.ndarray) -> np.ndarray:
    """(6, 2) landmarks of one face from its (4, H, W) feature masks (NaN where a region is empty)."""
    points = {r: np.argwhere(masks[i])[:, ::-1].astype(np.float64) for i, r in enumerate(FEATURE_REGIONS)}
    centre = lambda p: p.mean(axis=0) if len(p) else np.full(2, np.nan)  # noqa: E731 - local shorthand
    midline = centre(points["nose"])[0] if len(points["nose"]) else masks.shape[2] / 2 - 0.5
    eye_points = points["eyes"]
    left_eye, right_eye = (centre(eye_points[eye_points[:, 0] < midline]),
                           centre(eye_points[eye_points[:, 0] >= midline]))
    along = right_eye - left_eye
    along = along / np.linalg.norm(along) if np.all(np.isfinite(along)) and np.any(along) else np.array([1.0, 0.0])
    down = np.array([-along[1], along[0]])
    nose, mouth = points["nose"], points["mouth"]
    nose_tip = centre(nose[nose @ down >= (nose @ down).max() - 1.5]) if len(nose) else np.full(2, np.nan)
    if len(mouth):
        across = mouth @ along
        mouth_left, mouth_right = mouth[np.argmin(across)], mouth[np.argmax(across)]
    else:
        mouth_left = mouth_right = np.full(2, np.nan)
    return np.stack([left_eye, right_eye, nose_tip, centre(mouth), mouth_left, mouth_right]).astype(np.float32)
