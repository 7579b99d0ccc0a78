"""Data augmentation in JAX: random horizontal flip and small random rotation.

The paper (section 3.3) flips and rotates training images and deliberately adds no scale
or crop, so that saliency maps stay interpretable. These are pure functions of a PRNG key
and a batch of images (B, H, W) in [0, 1], meant to run inside the compiled training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations the training step applies (reference: flip, +-5 degrees)."""

    flip: bool = True
    rotation_degrees: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"rotation_degrees must lie in [0, 180]; got {self.rotation_degrees}")

    @property
    def enabled(self) -> bool:
        return self.flip or self.rotation_degrees > 0


NO_AUGMENTATION = AugmentConfig(flip=False, rotation_degrees=0.0)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None], images[:, :, ::-1], images)


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
    """Rotate each image (B, H, W) about its centre by ``degrees`` (B,), bilinear, edges replicated."""
    _, h, w = images.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

    def one(image: jax.Array, angle: jax.Array) -> jax.Array:
        theta = jnp.deg2rad(angle)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        # Inverse mapping (where each output pixel comes from); positive angles turn anticlockwise.
        src_rows = cy + cos * (rows - cy) + sin * (cols - cx)
        src_cols = cx - sin * (rows - cy) + cos * (cols - cx)
        return map_coordinates(image, [src_rows, src_cols], order=1, mode="nearest")

    return jax.vmap(one)(images, jnp.asarray(degrees, jnp.float32))


def random_rotation(key: jax.Array, images: jax.Array, max_degrees: float) -> jax.Array:
    """Rotate each image by an angle drawn uniformly from [-max_degrees, max_degrees]."""
    angles = jax.random.uniform(key, (images.shape[0],), minval=-max_degrees, maxval=max_degrees)
    return rotate(images, angles)


def augment(key: jax.Array, images: jax.Array, config: AugmentConfig = AugmentConfig()) -> jax.Array:
    """Apply the augmentations that ``config`` switches on (identity when none is)."""
    flip_key, rotation_key = jax.random.split(key)
    if config.flip:
        images = random_flip(flip_key, images)
    if config.rotation_degrees > 0:
        images = random_rotation(rotation_key, images, config.rotation_degrees)
    return images
