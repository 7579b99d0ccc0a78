"""Numeric kernels of the CNN: 'SAME' convolution and 2x2 max pooling.

Kept apart from the model so that faster formulations can be swapped in per backend
without changing what the model computes. ``impl="lax"`` is the plain reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CONV_IMPLS = ("lax",)


def conv2d_same(x: jax.Array, kernel: jax.Array, impl: str = "lax") -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC ``x`` with an HWIO ``kernel``."""
    if impl != "lax":
        raise ValueError(f"unknown convolution implementation {impl!r}; choose one of {CONV_IMPLS}")
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 on NHWC input (H and W must be even)."""
    b, h, w, c = x.shape
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))
