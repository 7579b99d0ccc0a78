"""A GPU's TensorFloat-32 arithmetic, emulated on a CPU: the tests' GPU tolerances, and what a GPU's training gives.

At the ``default`` and ``high`` matmul precisions an NVIDIA GPU (Ampere and later) multiplies float32
operands in TensorFloat-32 (XLA's GPU backend allows TF32 wherever every operand's precision is at most
HIGH, in its cuDNN convolutions and its matmuls alike): each operand keeps 10 of its 23 mantissa bits,
products are summed in float32. The tolerances the tests use there (``float32_rtol(backend="gpu")`` in
``conftest.py``) cannot be measured on a machine without a GPU. This module makes XLA's CPU backend
do the same rounding, so that ``make test`` checks them on every CI run: with it installed, every
float32 ``dot_general`` and convolution traced at ``default`` or ``high`` gets its two operands cut to
TF32 first, forward and backward (autodiff's transposed products are the same two primitives);
products at ``highest`` are left as they are.

The low 13 mantissa bits are dropped (truncation) rather than rounded: a GPU's libraries round or
truncate by kernel, and truncation's error (up to 2**-10 of each operand) is the larger of the two.
With ``gpu_paths``, ``jax.default_backend()`` also reads ``gpu`` inside the block, so that emofx takes a
GPU's paths (``auto`` convolutions by ``lax``, cuDNN's on a GPU; Winograd tiles of 4): ``make test``'s
emulated pass and ``python -m benchmarks.protocol --emulate-tf32`` (what a GPU's training gives, slowly).

A measurement tool, not part of the library: it replaces two lowering rules of JAX's CPU backend through
JAX's internal lowering table (``jax._src.interpreters.mlir``), so it is tied to JAX's internals.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import jax
import numpy as np
from jax import lax

TF32_MASK = np.uint32(0xFFFFE000)  # sign, 8 exponent bits, the top 10 of 23 mantissa bits
TF32_PRECISIONS = {None, lax.Precision.DEFAULT, lax.Precision.HIGH}


def to_tf32(x: jax.Array) -> jax.Array:
    """``x`` (float32) with its low 13 mantissa bits dropped: the value a TF32 operand carries."""
    bits = lax.bitcast_convert_type(x, np.uint32) & TF32_MASK
    return lax.bitcast_convert_type(bits, np.float32)


def _in_tf32(precision) -> bool:
    """Whether a GPU multiplies at a primitive's canonical ``precision`` parameter in TF32."""
    if isinstance(precision, tuple):
        return all(p in TF32_PRECISIONS for p in precision)
    return precision in TF32_PRECISIONS


def _rounding_rule(original):
    """A lowering rule that lowers like ``original`` with float32 operands first cut to TF32 where a GPU would."""
    from jax._src.interpreters import mlir

    lower_to_tf32 = mlir.lower_fun(to_tf32, multiple_results=False)

    def rule(ctx, lhs, rhs, *, precision, **params):
        if _in_tf32(precision):
            operands = []
            for value, aval in zip((lhs, rhs), ctx.avals_in):
                if aval.dtype == np.float32:
                    (value,) = lower_to_tf32(ctx.replace(primitive=None, avals_in=[aval], avals_out=[aval]), value)
                operands.append(value)
            lhs, rhs = operands
        return original(ctx, lhs, rhs, precision=precision, **params)

    return rule


def cpu_lowering_table() -> dict:
    """JAX's table of the CPU backend's lowering rules, which the emulation edits; a RuntimeError that says
    why when this JAX keeps it elsewhere (``make test`` then skips its emulated pass, with that reason)."""
    try:
        from jax._src.interpreters import mlir

        table = mlir._platform_specific_lowerings["cpu"]
        for primitive in (lax.dot_general_p, lax.conv_general_dilated_p):
            table[primitive].rule
    except (ImportError, AttributeError, KeyError) as error:
        raise RuntimeError(f"jax {jax.__version__} keeps its CPU lowering rules elsewhere than "
                           f"jax._src.interpreters.mlir._platform_specific_lowerings ({error!r}); "
                           "benchmarks/emulated_tf32.py needs updating for it") from error
    return table


@contextmanager
def emulated_tf32(gpu_paths: bool = False) -> Iterator[None]:
    """Within the block, the CPU backend multiplies at ``default`` and ``high`` as a GPU does, in TF32
    (and with ``gpu_paths``, emofx takes a GPU's paths: module doc).

    JAX's in-memory caches are cleared on entry and exit, so no program compiled on one side of the
    switch runs on the other; programs in the persistent compilation cache are keyed by their (rounded
    or not) code and cannot mix. JAX's own code asks its backend module, not the public
    ``jax.default_backend``, so only code that asks the public name (emofx's) sees ``gpu``.
    """
    from jax._src.interpreters import mlir

    table = cpu_lowering_table()
    primitives = (lax.dot_general_p, lax.conv_general_dilated_p)
    saved, default_backend = {p: table[p] for p in primitives}, jax.default_backend
    jax.clear_caches()
    try:
        for primitive, entry in saved.items():
            mlir.register_lowering(primitive, _rounding_rule(entry.rule), platform="cpu")
        if gpu_paths:
            jax.default_backend = lambda: "gpu"
        yield
    finally:
        table.update(saved)
        jax.default_backend = default_backend
        jax.clear_caches()
