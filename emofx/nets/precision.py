"""Matmul and convolution precision: one setting for every compiled computation in emofx.

XLA computes float32 matmuls and convolutions at a backend-dependent *default* precision:
full float32 on CPUs, TensorFloat-32 (a 10-bit mantissa, relative rounding ~5e-4) on NVIDIA
GPUs since Ampere, bfloat16 passes on TPUs. That is the fast choice for training, but
numerics that claim exactness (comparing two implementations, Integrated Gradients'
completeness, gradient checks) need full float32. The setting:

``default``
    the backend's fast default: TF32 on recent GPUs; float32 on CPUs, where the Winograd
    layers take tiles of 6 (:mod:`emofx.nets.winograd`: about 8% faster training and inference,
    2e-5 relative error per layer instead of 4e-6, 25x under TF32's);
``high``
    TF32 still on NVIDIA GPUs (XLA's GPU backend allows it wherever every operand's precision is at
    most HIGH), three bfloat16 passes on TPUs, float32 on CPUs (with the Winograd layers' exact tiles);
``highest``
    full float32 everywhere.

It comes from, in order: an explicit value (``TrainConfig.precision``, ``emofx train
--precision``), the ``EMOFX_PRECISION`` environment variable (every command and notebook),
else ``default``. It maps onto JAX's ``jax_default_matmul_precision``, which applies to every
``dot_general`` and convolution traced while it is in force (and is part of the key of JAX's
compilation caches, so programs compiled at different precisions never mix).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import jax

PRECISIONS = ("default", "high", "highest")
FAST_PRECISIONS = ("default", "fastest", "bfloat16")  # JAX's names of the backend's default precision
PRECISION_ENV = "EMOFX_PRECISION"
JAX_NAMES = {"float32": "highest", "tensorfloat32": "high", "bfloat16": "default", "fastest": "default"}


def resolve_precision(value: str | None = None) -> str:
    """The precision to use: ``value``, else ``$EMOFX_PRECISION``, else ``default`` (a clear error if unknown)."""
    name = value if value is not None else (os.environ.get(PRECISION_ENV) or "default")
    name = str(name).strip().lower()
    if name not in PRECISIONS:
        source = "" if value is not None else f" (from ${PRECISION_ENV})"
        raise ValueError(f"unknown precision {name!r}{source}; choose one of {', '.join(PRECISIONS)}")
    return name


def precision_for(value: str | None = None) -> str:
    """The precision a computation runs at: ``value`` (resolved by :func:`resolve_precision`), else the one
    in force (``$EMOFX_PRECISION`` from the start, then :func:`set_precision` / :func:`use_precision`), in
    emofx's names (JAX's ``float32``, ``tensorfloat32`` and ``bfloat16`` are ``highest``, ``high``, ``default``)."""
    if value is not None:
        return resolve_precision(value)
    in_force = precision_in_force()
    name = JAX_NAMES.get(in_force, in_force)
    if name not in PRECISIONS:
        raise ValueError(f"the precision in force (jax_default_matmul_precision) is {in_force!r}, none of emofx's; "
                         f"set one of {', '.join(PRECISIONS)} with emofx.nets.precision.set_precision")
    return name


def precision_in_force() -> str:
    """The matmul/convolution precision JAX traces with right now (``default`` when unset)."""
    value = jax.config.jax_default_matmul_precision
    return "default" if value is None else str(value)


@contextmanager
def use_precision(value: str | None = None) -> Iterator[str]:
    """Trace and run the computations inside the block at ``value`` (resolved by :func:`resolve_precision`)."""
    name = resolve_precision(value)
    with jax.default_matmul_precision(name):
        yield name


def set_precision(value: str | None = None) -> str:
    """Set the process-wide precision (``value``, else ``$EMOFX_PRECISION``, else ``default``); returns it."""
    name = resolve_precision(value)
    jax.config.update("jax_default_matmul_precision", name)
    return name


def at_precision(function: Callable, precision: str) -> Callable:
    """``function`` traced at ``precision`` (wrap it before ``jax.jit``: the compiled program keeps it)."""

    def traced(*args, **kwargs):
        with use_precision(precision):
            return function(*args, **kwargs)

    return traced
