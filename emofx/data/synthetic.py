"""Procedural faces whose geometry encodes emotion; cultures as dialects; true region masks.

The embedded synthetic dataset is generated from a seed, with no data files: grayscale
faces (head, eyes, brows, nose, mouth) drawn with anti-aliased signed-distance shapes in
numpy. Each emotion is a displacement of facial *action parameters* (eye opening, lower-lid
raise, brow raise/inner raise/knit, nose wrinkle, mouth-corner lift, opening, stretch,
press, upper-lip raise, smirk), each parameter belonging to one facial region. A *dialect*
(a culture's way of producing an emotion, cf. Jack et al. 2012) multiplies the displacement
of every region by a per-emotion gain: the ``eyes`` dialect carries its signal in eyes and
brows with a nearly neutral mouth, the ``mouth`` dialect the reverse, ``universal`` uses all.

Identities (face shape, feature placement, skin tone, brow darkness) are drawn per subject;
pose (small rotation, scale, shift), intensity, lighting gradient and noise per image. Every
image keeps its ground-truth region masks (``extras["region_masks"]``, (N, 4, H, W) bool,
disjoint) so saliency can be scored against the truth.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import EMOTIONS, canonicalize_all, ordered_classes

REGIONS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth")
BASIC_EMOTIONS: tuple[str, ...] = tuple(e for e in EMOTIONS if e != "contempt")
GENERATOR_VERSION = 1
_CHUNK = 256  # images rendered at once (bounds memory for large sets)

# Action parameters: name -> region it moves. Units are image half-widths (0.1 = 2.4 px at 48 px)
# except eye_open, lid_raise, stretch and press, which are relative changes.
ACTIONS: dict[str, str] = {
    "eye_open": "eyes",  # both lids: + wide, - squint
    "lid_raise": "eyes",  # lower lid pushed up (smiling eyes)
    "brow_raise": "brows",  # whole brow up (+) or down (-)
    "brow_inner": "brows",  # inner end up (+) or down (-)
    "brow_knit": "brows",  # inner ends drawn together
    "wrinkle": "nose",  # wrinkle lines across the nose bridge (0..1 ink)
    "corner_lift": "mouth",  # mouth corners up (+) or down (-)
    "mouth_open": "mouth",  # gap between the lips
    "stretch": "mouth",  # relative mouth width
    "press": "mouth",  # relative lip thinning
    "upper_lip": "mouth",  # upper lip raised in the middle
    "smirk": "mouth",  # one corner up, the other down
}

# Full-intensity displacement of each emotion from neutral (FACS-inspired, exaggerated for 48 px).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"lid_raise": 0.6, "eye_open": -0.15, "brow_raise": 0.02,
              "corner_lift": 0.18, "stretch": 0.3, "mouth_open": 0.04},
    "surprised": {"eye_open": 1.0, "brow_raise": 0.14,
                  "mouth_open": 0.26, "stretch": -0.4},
    "sad": {"eye_open": -0.3, "brow_inner": 0.13, "brow_raise": -0.03,
            "corner_lift": -0.15, "stretch": -0.1},
    "angry": {"eye_open": 0.3, "brow_raise": -0.08, "brow_inner": -0.06, "brow_knit": 0.09,
              "press": 0.8, "stretch": -0.3, "corner_lift": -0.04},
    "afraid": {"eye_open": 0.7, "brow_raise": 0.11, "brow_inner": 0.06, "brow_knit": 0.07,
               "stretch": 0.45, "mouth_open": 0.1, "corner_lift": -0.07},
    "disgusted": {"eye_open": -0.5, "brow_raise": -0.07, "brow_knit": 0.04, "wrinkle": 1.0,
                  "upper_lip": 0.11, "corner_lift": -0.06, "mouth_open": 0.03},
    "contempt": {"eye_open": -0.1, "smirk": 0.13},
}


@dataclass(frozen=True)
class Dialect:
    """A culture's expression style: per emotion, a gain on each facial region's displacement."""

    name: str
    description: str
    gains: Mapping[str, Mapping[str, float]]

    def gain(self, emotion: str, region: str) -> float:
        """How strongly ``region`` moves for ``emotion`` in this dialect (1.0: as in the universal face)."""
        return float(self.gains.get(emotion, {}).get(region, 1.0))


def _uniform_gains(region_gain: Mapping[str, float]) -> Mapping[str, Mapping[str, float]]:
    """The same region gains for every emotion."""
    return MappingProxyType({e: MappingProxyType(dict(region_gain)) for e in EMOTIONS})


DIALECTS: dict[str, Dialect] = {
    "universal": Dialect("universal", "all regions move", _uniform_gains({r: 1.0 for r in REGIONS})),
    "eyes": Dialect(
        "eyes", "signal in eyes and brows; the mouth stays nearly neutral",
        _uniform_gains({"eyes": 1.25, "brows": 1.25, "nose": 0.5, "mouth": 0.1}),
    ),
    "mouth": Dialect(
        "mouth", "signal in the mouth; eyes and brows stay nearly neutral",
        _uniform_gains({"eyes": 0.1, "brows": 0.1, "nose": 0.5, "mouth": 1.25}),
    ),
}


class SyntheticError(ValueError):
    """Invalid options for the synthetic generator."""


def make_synthetic(
    dialect: str = "universal",
    n_per_class: int = 100,
    seed: int = 0,
    size: int = 48,
    culture: str | None = None,
    classes: Sequence[str] | None = None,
    intensity: tuple[float, float] = (0.7, 1.0),
    *,
    images_per_subject_class: int = 5,
    noise: tuple[float, float] = (0.01, 0.03),
    max_rotation: float = 8.0,
) -> FaceDataset:
    """Generate ``n_per_class`` faces of each class in one dialect, reproducibly from ``seed``.

    Args:
        dialect: a key of :data:`DIALECTS` (``universal``, ``eyes``, ``mouth``).
        n_per_class: images per emotion.
        seed: every random choice flows from it (with the culture name, so two cultures
            generated with one seed do not share identities).
        size: image side in pixels.
        culture: culture name recorded per image; default the dialect name.
        classes: emotions to generate (aliases allowed); default the seven basic ones.
        intensity: range of the per-image expression intensity (0 = neutral face, 1 = full).
        images_per_subject_class: how many images of each class one identity poses
            (subjects = ceil(n_per_class / this)); several per subject make subject splits work.
        noise: range of the per-image Gaussian pixel-noise standard deviation (in [0, 1] units).
        max_rotation: largest in-plane head rotation in degrees.

    Returns:
        A :class:`FaceDataset` with subject ids, ``extras["region_masks"]`` (N, 4, H, W) bool,
        ``extras["intensity"]`` (N,) and ``meta`` recording dialect, seed and region gains.
    """
    if dialect not in DIALECTS:
        raise SyntheticError(f"unknown dialect {dialect!r}; choose one of {sorted(DIALECTS)}")
    if int(n_per_class) < 1:
        raise SyntheticError(f"n_per_class must be at least 1; got {n_per_class}")
    if int(size) < 16:
        raise SyntheticError(f"size must be at least 16 pixels; got {size}")
    lo, hi = (float(v) for v in intensity)
    if not 0.0 <= lo <= hi <= 2.0:
        raise SyntheticError(f"intensity must be a range (low, high) with 0 <= low <= high <= 2; got {intensity}")
    if int(images_per_subject_class) < 1:
        raise SyntheticError(f"images_per_subject_class must be at least 1; got {images_per_subject_class}")
    wanted = ordered_classes(canonicalize_all(classes)) if classes is not None else BASIC_EMOTIONS
    if not wanted:
        raise SyntheticError("classes is empty; give at least one emotion")
    culture = dialect if culture is None else str(culture)
    style = DIALECTS[dialect]
    n_per_class, size = int(n_per_class), int(size)

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(culture.encode())]))
    n_subjects = -(-n_per_class // int(images_per_subject_class))
    identities = _draw_identities(rng, n_subjects)
    labels = np.repeat(np.arange(len(wanted)), n_per_class).astype(np.int32)
    subject_index = np.tile(np.arange(n_per_class) % n_subjects, len(wanted))
    n = len(labels)
    strength = np.where(np.array(wanted)[labels] == "neutral", 0.0, rng.uniform(lo, hi, n))
    actions = _expression_actions(wanted, style)[labels] * strength[:, None]
    pose = _draw_pose(rng, n, max_rotation, noise)
    pixel_noise_seed = int(rng.integers(2**63 - 1))

    images = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, len(REGIONS), size, size), bool)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(n, start + _CHUNK))
        params = {k: v[subject_index[part]] for k, v in identities.items()}
        params.update({k: v[part] for k, v in pose.items()})
        noise_rng = np.random.default_rng([pixel_noise_seed, start])
        images[part], masks[part] = _render(params, actions[part], size, noise_rng)

    subjects = np.array([f"{culture}-s{i:03d}" for i in range(n_subjects)])[subject_index]
    return FaceDataset(
        images=images,
        labels=labels,
        classes=wanted,
        culture=np.full(n, culture, dtype=object),
        subject=subjects.astype(object),
        path=np.array([f"synthetic/{dialect}/seed{seed}/{i:05d}" for i in range(n)], dtype=object),
        split=np.full(n, "", dtype=object),
        extras={"region_masks": masks, "intensity": strength.astype(np.float32)},
        meta={
            "source": "synthetic",
            "format": "synthetic",
            "dialect": dialect,
            "culture": culture,
            "seed": int(seed),
            "n_per_class": n_per_class,
            "intensity": [lo, hi],
            "region_names": list(REGIONS),
            "region_gains": {e: {r: style.gain(e, r) for r in REGIONS} for e in wanted},
            "generator_version": GENERATOR_VERSION,
        },
    )


def _expression_actions(classes: Sequence[str], style: Dialect) -> np.ndarray:
    """(C, A) full-intensity action displacements of each class, scaled by the dialect's region gains."""
    names = list(ACTIONS)
    table = np.zeros((len(classes), len(names)))
    for c, emotion in enumerate(classes):
        for a, name in enumerate(names):
            table[c, a] = EXPRESSIONS[emotion].get(name, 0.0) * style.gain(emotion, ACTIONS[name])
    return table


def _draw_identities(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-subject face shape, feature placement and tones (image half-width units)."""
    u = lambda a, b: rng.uniform(a, b, n)  # noqa: E731 - local shorthand
    return {
        "head_a": u(0.76, 0.86), "head_b": u(0.98, 1.10), "head_y": u(0.04, 0.12),
        "eye_x": u(0.31, 0.37), "eye_y": u(-0.22, -0.16), "eye_w": u(0.14, 0.17), "eye_h": u(0.068, 0.080),
        "brow_gap": u(0.20, 0.23), "brow_len": u(0.16, 0.20), "brow_t": u(0.055, 0.07),
        "brow_tilt": u(-0.02, 0.02), "nose_y": u(0.17, 0.23), "nose_w": u(0.06, 0.08),
        "mouth_y": u(0.46, 0.54), "mouth_w": u(0.25, 0.29), "lip_t": u(0.04, 0.05),
        "skin": u(0.50, 0.85), "brow_ink": u(0.15, 0.35), "lip_ink": u(0.40, 0.60),
        "background": u(0.05, 0.45),
    }


def _draw_pose(rng: np.random.Generator, n: int, max_rotation: float, noise: tuple[float, float]
               ) -> dict[str, np.ndarray]:
    """Per-image rotation, scale, shift, lighting gradient and noise level."""
    return {
        "angle": np.deg2rad(rng.uniform(-max_rotation, max_rotation, n)),
        "scale": rng.uniform(0.95, 1.05, n),
        "shift_x": rng.uniform(-0.05, 0.05, n), "shift_y": rng.uniform(-0.05, 0.05, n),
        "light_dir": rng.uniform(0, 2 * np.pi, n), "light": rng.uniform(0.0, 0.3, n),
        "noise": rng.uniform(noise[0], noise[1], n),
    }


# ---------------------------------------------------------------------- rendering
def _ellipse_sdf(x, y, cx, cy, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    dx, dy = x - cx, y - cy
    r = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    grad = np.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2) + 1e-9
    return (r - 1.0) * r / grad


def _capsule_sdf(x, y, x0, y0, x1, y1, radius):
    """Signed distance to a thick segment from (x0, y0) to (x1, y1)."""
    px, py, vx, vy = x - x0, y - y0, x1 - x0, y1 - y0
    t = np.clip((px * vx + py * vy) / (vx**2 + vy**2 + 1e-12), 0.0, 1.0)
    return np.hypot(px - t * vx, py - t * vy) - radius


def _coverage(sdf: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape from its signed distance (one-pixel ramp)."""
    return np.clip(0.5 - sdf / pixel, 0.0, 1.0)


def _render(p: dict[str, np.ndarray], actions: np.ndarray, size: int, noise_rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Draw a batch of faces: uint8 images (B, S, S) and disjoint region masks (B, 4, S, S)."""
    act = {name: actions[:, i, None, None].astype(np.float32) for i, name in enumerate(ACTIONS)}
    p = {k: np.asarray(v, np.float32)[:, None, None] for k, v in p.items()}
    grid = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    gx, gy = grid[None, None, :], grid[None, :, None]
    # Face coordinates: undo shift, rotation and scale of the head.
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    qx, qy = gx - p["shift_x"], gy - p["shift_y"]
    x = (cos * qx + sin * qy) / p["scale"]
    y = (-sin * qx + cos * qy) / p["scale"]
    pixel = 2.0 / size / p["scale"]  # one pixel in face units
    ax = np.abs(x)  # the face is symmetric except for the smirk

    # Eyes: asymmetric ellipses (upper and lower lid), an iris inside.
    eye_h = p["eye_h"] * np.clip(1.0 + act["eye_open"], 0.25, None)
    lower_h = eye_h * np.clip(1.0 - act["lid_raise"], 0.2, None)
    dy_eye = y - p["eye_y"]
    eye_sdf = _ellipse_sdf(ax, y, p["eye_x"], p["eye_y"], p["eye_w"], np.where(dy_eye < 0, eye_h, lower_h))
    iris_sdf = np.maximum(_ellipse_sdf(ax, y, p["eye_x"], p["eye_y"], 0.55 * p["eye_w"], 0.55 * p["eye_w"]), eye_sdf)

    # Brows: a thick segment from the inner to the outer end.
    brow_y = p["eye_y"] - p["brow_gap"] - act["brow_raise"]
    inner_x = np.maximum(p["eye_x"] - 0.55 * p["eye_w"] - act["brow_knit"], 0.05)
    inner_y = brow_y - act["brow_inner"] + p["brow_tilt"]
    outer_x = inner_x + 2 * p["brow_len"]
    outer_y = brow_y - p["brow_tilt"] + 0.3 * act["brow_inner"]
    brow_sdf = _capsule_sdf(ax, y, inner_x, inner_y, outer_x, outer_y, 0.5 * p["brow_t"])

    # Nose: a faint bridge, two nostrils, wrinkle lines across the bridge when disgusted.
    top = p["eye_y"] + 0.02
    bridge_sdf = _capsule_sdf(x, y, 0.0, top, 0.0, p["nose_y"] - 0.03, 0.018)
    nostril_sdf = _ellipse_sdf(ax, y, p["nose_w"], p["nose_y"], 0.04, 0.022)
    wrinkle_sdf = np.minimum.reduce([
        _capsule_sdf(x, y, -0.07, top + k * 0.05, 0.07, top + k * 0.05 - 0.01, 0.012) for k in (0, 1, 2)
    ])
    nose_sdf = np.minimum(np.minimum(bridge_sdf, nostril_sdf), np.where(act["wrinkle"] > 0.05, wrinkle_sdf, np.inf))

    # Mouth: a band between the upper and lower lip curves, dark inside when open.
    half_w = p["mouth_w"] * (1.0 + act["stretch"])
    t = x / half_w
    bulge = np.clip(1.0 - t**2, 0.0, None)
    centre = p["mouth_y"] - act["corner_lift"] * t**2 - act["smirk"] * t * np.abs(t)
    upper = centre - (0.5 * act["mouth_open"] + act["upper_lip"]) * bulge
    lower = centre + 0.5 * act["mouth_open"] * bulge
    lip = p["lip_t"] * np.clip(1.0 - act["press"] * 0.6, 0.3, None) * (0.45 + 0.55 * bulge)
    across = (np.abs(t) - 1.0) * half_w
    mouth_sdf = np.maximum(np.maximum(upper - lip - y, y - lower - lip), across)
    gap_sdf = np.maximum(np.maximum(upper - y, y - lower), across)

    # Composite: background, head with skin tone, then features as ink.
    head_sdf = _ellipse_sdf(x, y, 0.0, p["head_y"], p["head_a"], p["head_b"])
    skin = p["skin"]
    image = p["background"] + (skin - p["background"]) * _coverage(head_sdf, pixel)
    for sdf, ink, alpha in (
        (bridge_sdf, 0.85 * skin, 0.6),
        (nostril_sdf, 0.45 * skin, 1.0),
        (wrinkle_sdf, 0.55 * skin, np.clip(act["wrinkle"], 0.0, 1.0)),
        (eye_sdf, 0.92, 1.0),
        (iris_sdf, 0.12, 1.0),
        (brow_sdf, p["brow_ink"] * skin, 1.0),
        (mouth_sdf, p["lip_ink"] * skin, 1.0),
        (gap_sdf, 0.08, 1.0),
    ):
        image = image + (ink - image) * alpha * _coverage(sdf, pixel)
    light = 1.0 + p["light"] * (np.cos(p["light_dir"]) * gx + np.sin(p["light_dir"]) * gy)
    image = image * light + noise_rng.standard_normal(image.shape) * p["noise"]
    images = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)

    # Region masks: within one pixel of a feature; where two are that close, the nearer wins.
    region_sdf = np.stack([eye_sdf, brow_sdf, nose_sdf, mouth_sdf], axis=1) / pixel[:, None]
    nearest = np.argmin(region_sdf, axis=1)
    masks = (region_sdf < 1.0) & (nearest[:, None] == np.arange(len(REGIONS))[None, :, None, None])
    return images, masks
