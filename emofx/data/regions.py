"""Facial regions (eyes, brows, nose, mouth, rest) and landmarks for aligned face crops.

Saliency is compared between cultures region by region, so every face needs region masks:

- ``truth``: the synthetic generator's ground-truth masks; landmarks from the masks.
- ``eyes``: OpenCV's ``haarcascade_eye`` (shipped in the opencv wheel) finds the two eyes on
  an upscaled crop; the other regions are placed from the eye positions by face proportions.
  A face whose eyes are not found falls back to the template, and each image records which
  method it got.
- ``template``: an aligned mean-face template (eye centres at 33%/67% across and 41% down,
  measured on KDEF and Taiwanese crops made by :mod:`emofx.data.faces`), scaled to the image.

``auto`` is ``truth`` when the dataset carries ground-truth masks, else ``eyes``.
Landmarks are (x, y) in pixel-index coordinates (pixel (row i, column j) has centre (j, i));
"left" and "right" mean the image's left and right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emofx.data.dataset import FaceDataset

FEATURE_REGIONS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth")
REGION_NAMES: tuple[str, ...] = FEATURE_REGIONS + ("rest",)
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "mouth_centre", "mouth_left", "mouth_right")
METHODS: tuple[str, ...] = ("auto", "truth", "eyes", "template")
EYE_CASCADE = "haarcascade_eye.xml"

# Mean-face eye centres as fractions of the crop's width and height.
TEMPLATE_EYES = ((0.33, 0.41), (0.67, 0.41))

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
        method: the method asked for, ``auto`` resolved (``truth``, ``eyes`` or ``template``).
        image_method: str (N,), what each image got (``eyes`` may fall back to ``template``).
    """

    masks: np.ndarray
    region_names: tuple[str, ...]
    landmarks: np.ndarray
    landmark_names: tuple[str, ...]
    method: str
    image_method: np.ndarray

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
    if method not in METHODS:
        raise RegionError(f"unknown region method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "truth" if "region_masks" in dataset.extras else "eyes"
    n, (height, width) = len(dataset), dataset.image_shape
    if method == "truth":
        return _truth_regions(dataset)
    eyes = np.broadcast_to(template_eyes(height, width), (n, 2, 2)).copy()
    image_method = np.full(n, "template", dtype=object)
    if method == "eyes":
        for i in tqdm(range(n), desc="eyes", unit="img", disable=not progress, leave=False):
            found = detect_eyes(dataset.images[i])
            if found is not None:
                eyes[i], image_method[i] = found, "eyes"
    masks, landmarks = regions_from_eyes(eyes, height, width)
    return RegionMaps(masks, REGION_NAMES, landmarks, LANDMARK_NAMES, method, image_method.astype(str))


def template_eyes(height: int, width: int) -> np.ndarray:
    """(2, 2) mean-face eye centres (left, right) as (x, y) pixel-index coordinates."""
    return np.array([[fx * width - 0.5, fy * height - 0.5] for fx, fy in TEMPLATE_EYES], dtype=np.float32)


_EYE_DETECTOR: list[cv2.CascadeClassifier] = []


def _eye_detector() -> cv2.CascadeClassifier:
    if not _EYE_DETECTOR:
        path = os.path.join(cv2.data.haarcascades, EYE_CASCADE)
        detector = cv2.CascadeClassifier(path)
        if detector.empty():
            raise RuntimeError(f"OpenCV's eye cascade {path} is missing; install opencv-python-headless<5")
        _EYE_DETECTOR.append(detector)
    return _EYE_DETECTOR[0]


def detect_eyes(face: np.ndarray, *, upscale_to: int = 144) -> np.ndarray | None:
    """(2, 2) centres (left, right) of the two eyes of an aligned uint8 face crop, or None.

    The crop is upscaled (Haar eyes need ~20 px), histogram-equalised, and searched in its upper
    60%; of the candidates, the left/right pair most alike in height and size is kept if the eye
    distance is 20-60% of the width and the pair is tilted less than ~20 degrees.
    """
    height, width = face.shape
    scale = upscale_to / width
    big = cv2.equalizeHist(cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    side = big.shape[1]
    boxes = _eye_detector().detectMultiScale(big[: int(0.6 * big.shape[0])], scaleFactor=1.1, minNeighbors=3,
                                             minSize=(side // 8, side // 8), maxSize=(side // 3, side // 3))
    centres = [((x + w / 2) / scale - 0.5, (y + h / 2) / scale - 0.5, w / scale) for x, y, w, h in boxes]
    left = [c for c in centres if c[0] < width / 2]
    right = [c for c in centres if c[0] >= width / 2]
    pairs = [(abs(l[1] - r[1]) + abs(l[2] - r[2]), l, r) for l in left for r in right
             if 0.2 * width <= r[0] - l[0] <= 0.6 * width and abs(l[1] - r[1]) <= 0.36 * (r[0] - l[0])]
    if not pairs:
        return None
    _, l, r = min(pairs, key=lambda p: p[0])
    return np.array([[l[0], l[1]], [r[0], r[1]]], dtype=np.float32)


def regions_from_eyes(eyes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N, 5, H, W) and landmarks (N, 6, 2) placed by face proportions from eye centres (N, 2, 2)."""
    eyes = np.asarray(eyes, dtype=np.float64)
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


def _truth_regions(dataset: FaceDataset) -> RegionMaps:
    """Ground-truth masks reordered to :data:`REGION_NAMES`; landmarks from the masks."""
    if "region_masks" not in dataset.extras:
        raise RegionError("this dataset has no ground-truth region masks (only synthetic data has them); "
                          "use method 'eyes' or 'template'")
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
    left_eye, right_eye = centre(eye_points[eye_points[:, 0] < midline]), centre(eye_points[eye_points[:, 0] >= midline])
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
