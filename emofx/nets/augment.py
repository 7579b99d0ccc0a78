"""Data augmentation in JAX: flips, small affine warps, brightness/contrast and random erasing.

The paper (section 3.3) flips and rotates training images and deliberately adds no scale
or crop, so that saliency maps stay interpretable; that is the default. The stronger recipe
(:mod:`emofx.nets.recipes`) adds random shifts (crops of a padded image), small scaling,
brightness and contrast jitter and random erasing (Zhong et al. 2020). These are pure
functions of a PRNG key and a batch of images (B, H, W) in [0, 1], meant to run inside the
compiled training step; options left at zero draw no random numbers and cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

# Random erasing draws a rectangle of this share of the image area and this aspect ratio range.
ERASE_AREA = (0.02, 0.25)
ERASE_ASPECT = (0.3, 3.3)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations the training step applies (reference: flip, +-5 degrees, nothing else).

    ``shift``: largest translation as a fraction of the side; ``scale``: largest relative zoom
    (a factor in [1 - scale, 1 + scale]); ``brightness``: largest additive change of the [0, 1]
    pixel values; ``contrast``: largest relative change of the contrast about the image mean;
    ``erasing``: probability of erasing one random rectangle with noise.
    """

    flip: bool = True
    rotation_degrees: float = 5.0
    shift: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erasing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"rotation_degrees must lie in [0, 180]; got {self.rotation_degrees}")
        bounded = {"shift": self.shift, "scale": self.scale, "brightness": self.brightness,
                   "contrast": self.contrast, "erasing": self.erasing}
        for name, value in bounded.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1); got {value}")

    @property
    def photometric(self) -> bool:
        """Whether brightness or contrast is changed."""
        return self.brightness > 0 or self.contrast > 0


NO_AUGMENTATION = AugmentConfig(flip=False, rotation_degrees=0.0)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None], images[:, :, ::-1], images)


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotate each image (B, H, W) about its centre by ``degrees`` (B,), bilinear, edges replicated."""
    ones, zeros = jnp.ones(images.shape[0], jnp.float32), jnp.zeros((images.shape[0], 2), jnp.float32)
    return warp(images, degrees, ones, zeros)


def warp(images: jax.Array, degrees: jax.Array, scales: jax.Array, shifts: jax.Array) -> jax.Array:
    """Rotate by ``degrees`` (B,) and zoom by ``scales`` (B,) about the centre, then translate by
    ``shifts`` (B, 2) pixels (rows, columns); bilinear, edges replicated."""
    _, h, w = images.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

    def one(image: jax.Array, angle: jax.Array, zoom: jax.Array, shift: jax.Array) -> jax.Array:
        theta = jnp.deg2rad(angle)
        cos, sin = jnp.cos(theta) / zoom, jnp.sin(theta) / zoom
        # Inverse mapping (where each output pixel comes from); positive angles turn anticlockwise.
        dy, dx = rows - cy - shift[0], cols - cx - shift[1]
        src_rows = cy + cos * dy + sin * dx
        src_cols = cx - sin * dy + cos * dx
        return map_coordinates(image, [src_rows, src_cols], order=1, mode="nearest")

    return jax.vmap(one)(images, jnp.asarray(degrees, jnp.float32), jnp.asarray(scales, jnp.float32),
                         jnp.asarray(shifts, jnp.float32))


def random_rotation(key: jax.Array, images: jax.Array, max_degrees: float) -> jax.Array:
    """Rotate each image by an angle drawn uniformly from [-max_degrees, max_degrees]."""
    return rotate(images, _uniform(key, images.shape[0], max_degrees))


def random_warp(key: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
    """Rotation, zoom and shift drawn uniformly within the bounds of ``config``, applied in one resampling."""
    b, h, w = images.shape
    rotation_key, scale_key, shift_key = jax.random.split(key, 3)
    angles = _uniform(rotation_key, b, config.rotation_degrees)
    scales = 1.0 + _uniform(scale_key, b, config.scale)
    shifts = _uniform(shift_key, (b, 2), config.shift) * jnp.asarray([h, w], jnp.float32)
    return warp(images, angles, scales, shifts)


def random_photometric(key: jax.Array, images: jax.Array, brightness: float, contrast: float) -> jax.Array:
    """Scale each image's contrast about its mean by 1 +- ``contrast``, add +- ``brightness``, clip to [0, 1]."""
    contrast_key, brightness_key = jax.random.split(key)
    b = images.shape[0]
    factor = 1.0 + _uniform(contrast_key, b, contrast)[:, None, None]
    offset = _uniform(brightness_key, b, brightness)[:, None, None]
    mean = images.mean(axis=(1, 2), keepdims=True)
    return jnp.clip((images - mean) * factor + mean + offset, 0.0, 1.0)


def random_erasing(key: jax.Array, images: jax.Array, probability: float) -> jax.Array:
    """With ``probability`` per image, replace one random rectangle (2-25% of the area, aspect
    0.3-3.3, clipped to the image) with uniform noise."""
    b, h, w = images.shape
    keys = jax.random.split(key, 6)
    erase = jax.random.bernoulli(keys[0], probability, (b,))
    area = jax.random.uniform(keys[1], (b,), minval=ERASE_AREA[0], maxval=ERASE_AREA[1]) * h * w
    log_aspect = jax.random.uniform(keys[2], (b,), minval=jnp.log(ERASE_ASPECT[0]), maxval=jnp.log(ERASE_ASPECT[1]))
    height = jnp.clip(jnp.sqrt(area * jnp.exp(log_aspect)), 1.0, h)
    width = jnp.clip(jnp.sqrt(area / jnp.exp(log_aspect)), 1.0, w)
    top = jax.random.uniform(keys[3], (b,)) * (h - height)
    left = jax.random.uniform(keys[4], (b,)) * (w - width)
    rows, cols = jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + height)[:, None])
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < (left + width)[:, None])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & erase[:, None, None]
    return jnp.where(mask, jax.random.uniform(keys[5], images.shape), images)


def augment(key: jax.Array, images: jax.Array, config: AugmentConfig = AugmentConfig()) -> jax.Array:
    """Apply the augmentations that ``config`` switches on (identity when none is).

    Flip and rotation alone draw from the same keys as they always did, so the reference
    recipe's random numbers do not depend on the options it leaves off.
    """
    flip_key, rotation_key = jax.random.split(key)
    warp_key, photometric_key, erasing_key = jax.random.split(jax.random.fold_in(key, 1), 3)
    if config.flip:
        images = random_flip(flip_key, images)
    if config.shift > 0 or config.scale > 0:
        images = random_warp(warp_key, images, config)
    elif config.rotation_degrees > 0:
        images = random_rotation(rotation_key, images, config.rotation_degrees)
    if config.photometric:
        images = random_photometric(photometric_key, images, config.brightness, config.contrast)
    if config.erasing > 0:
        images = random_erasing(erasing_key, images, config.erasing)
    return images


def _uniform(key: jax.Array, shape: int | tuple[int, ...], bound: float) -> jax.Array:
    """Uniform draws in [-bound, bound] (zeros without drawing when bound is 0)."""
    shape = (shape,) if isinstance(shape, int) else shape
    if bound <= 0:
        return jnp.zeros(shape, jnp.float32)
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
