"""'SAME' convolution with Winograd's minimal filtering along the image width.

A stride-1 correlation of a row with an r-tap kernel can produce ``m`` outputs from
``m + r - 1`` multiplications instead of ``m * r`` (Winograd's F(m, r); Lavin & Gray 2016):
the input tile and the kernel are mapped to ``m + r - 1`` interpolation points, multiplied
pointwise, and mapped back. Here that is done along the width only, with m = 4 or 6 (below):
for each point, what remains is an ordinary convolution along the height with kh taps, i.e.
one big matmul with contraction length kh x input channels. For the paper's 5x5 layers that
is 2.5x (tiles of 4) or 3x (tiles of 6) fewer multiply-adds than the direct convolution, while
every matmul keeps a long contraction (5 x 64 or 5 x 128) that runs near the CPU's matmul
rate; a 2D Winograd transform would leave contractions over the input channels alone (64),
which XLA's CPU dots run at a third of that rate.

The Winograd domain is laid out as (1, H, B * T, C) per point, T tiles per row: one long
"image" per point, the layout in which XLA's CPU convolution is fastest for these shapes.

Gradients (a custom VJP, every piece again a Winograd-domain matmul): the input gradient
is the same convolution of the output gradient with the flipped, channel-transposed kernel;
the kernel gradient is a correlation of the saved Winograd-domain input with the output
gradient mapped into the domain, mapped back to the kernel by the transposed kernel
transform. Transforms use the interpolation points 0, +-1, +-2, +-1/2 (exact rational
matrices, rounded once to float32), and +-3/2 for tiles of 6. Both transforms of the output gradient read
one array, the gradient padded once (:func:`_padded_rows`): when the kernel gradient's transform read the
gradient itself, XLA fused what computes it (the next pooling's and activation's gradients, the pooling's
choice recomputed from the saved convolution output) into every point's transform, ten times over. Reading
the padded rows, which XLA writes once, made a training call of the paper's CNN 1.09x faster on 2 Zen 3 cores
(median over runs of the paired ratio of interleaved calls) and cut the time outside matmuls from 33% to 28%
of it on one core (``python -m benchmarks.op_profile train --cores 1``).

The tile follows the matmul precision in force when the convolution is traced
(:mod:`emofx.nets.precision`, :func:`tile_for`): at ``high`` and ``highest``, F(4, kw), which errs
by a few 1e-6 relative (4e-6 for the paper's second layer against a float64 reference); at
``default``, the fast setting training and inference run at, F(6, kw) with the points 0, +-1, +-2,
+-1/2, +-3/2: 3x instead of 2.5x fewer multiply-adds than the direct convolution, about 8% faster training
and inference on 2 cores, at 1-2e-5 relative error (the points +-3 instead of +-3/2: 4e-5), on a CPU,
whose products stay float32 at every precision. Where ``default`` multiplies in TensorFloat-32 or bfloat16
(GPUs, TPUs), the transforms amplify that rounding instead: with TF32 emulated on a CPU
(``benchmarks/emulated_tf32.py``) F(6, 5) erred by 0.8-2.8% of the output's scale on the paper's layers, F(4, 5)
by 0.16-0.37%, the direct convolution by 0.08%; there the tile stays 4 (and ``auto`` takes ``lax`` anyway,
:mod:`emofx.nets.ops`).

Measured on 2 cores and not taken: a 2D transform for the kernel gradient alone saved under 10% at
3x the error; channel-major copies of the kernel gradient's operands (for dots without a transposed
operand) ran slower than the copies they saved; five dots per point on height slices of the domain
instead of the shifted copies (1.3x faster alone for the second layer, the same inside a training
step); the input gradient as the forward pass transposed (the output gradient's domain form, which the kernel
gradient needs anyway, through the height-flipped domain kernels, then the transposed input transform with the
overlapping tiles summed): one transform fewer, 35 ms less a call for the third layer on one core, but as much
more for the second layer's overlap-add and crop (a training call 1598-1635 against 1618 ms); the kernel gradient's
dots with bfloat16 operands (twice the float32 rate on a CPU with bfloat16 dot instructions): 13% off a training call
at 4-6% error in the weight gradient with tiles of 6, 1% with tiles of 4 (benchmark README, run28).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from emofx.nets.precision import FAST_PRECISIONS, precision_in_force

TILE = 4  # at the `high` and `highest` precisions, and wherever products are not float32
FAST_TILE = 6  # at a CPU's `default` precision (module doc)
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2),
          Fraction(3, 2), Fraction(-3, 2), Fraction(3), Fraction(-3))
_NHWC = ("NHWC", "HWIO", "NHWC")

Padding = tuple[int, int]


def tile_for(precision: str, backend: str | None = None) -> int:
    """The tile (outputs per transform) at matmul ``precision`` (named as
    :func:`emofx.nets.precision.precision_in_force` names it) on ``backend`` (default: JAX's default
    backend): :data:`FAST_TILE` at a CPU's default precision, else :data:`TILE` (module doc)."""
    fast_cpu = precision in FAST_PRECISIONS and (backend or jax.default_backend()) == "cpu"
    return FAST_TILE if fast_cpu else TILE


@lru_cache(maxsize=None)
def transforms(tile: int, taps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Winograd F(tile, taps) for correlation, as float64 matrices (AT, G, BT) with
    ``y = AT @ ((G @ kernel) * (BT @ inputs))`` for ``tile + taps - 1`` inputs and ``tile`` outputs.

    Built exactly (rational arithmetic) by Toom-Cook from the first ``tile + taps - 2``
    :data:`POINTS` and the point at infinity.
    """
    alpha = tile + taps - 1
    if alpha - 1 > len(POINTS):
        raise ValueError(f"Winograd F({tile}, {taps}) needs {alpha - 1} interpolation points; "
                         f"only {len(POINTS)} are defined")
    points = POINTS[:alpha - 1]
    output = [[p ** q for p in points] + [int(q == tile - 1)] for q in range(tile)]
    scale = [np.prod([p - other for other in points if other != p]) for p in points]
    kernel = ([[p ** j / s for j in range(taps)] for p, s in zip(points, scale)]
              + [[int(j == taps - 1) for j in range(taps)]])
    inputs = [_poly_without(points, skip) + [Fraction(0)] for skip in range(alpha - 1)] + [_poly_without(points, None)]
    return tuple(np.array([[float(v) for v in row] for row in matrix]) for matrix in (output, kernel, inputs))


def _poly_without(points: tuple[Fraction, ...], skip: int | None) -> list[Fraction]:
    """Coefficients (lowest power first) of prod over points but ``skip`` of (x - point)."""
    coefficients = [Fraction(1)]
    for index, point in enumerate(points):
        if index != skip:
            shifted = [Fraction(0)] + coefficients
            coefficients = [a - point * b for a, b in zip(shifted, coefficients + [Fraction(0)])]
    return coefficients


def _combine(weights: np.ndarray, terms: list[jax.Array]) -> jax.Array:
    """sum_i weights[i] * terms[i] with the weights as compile-time constants (zeros skipped),
    so that XLA fuses each transform into one elementwise loop."""
    total = None
    for weight, term in zip(weights, terms):
        if weight == 0:
            continue
        scaled = term if weight == 1 else -term if weight == -1 else term * np.float32(weight)
        total = scaled if total is None else total + scaled
    return total


def _tiles(width: int, tile: int) -> int:
    return -(-width // tile)


def _padded_rows(x: jax.Array, pad_w: Padding, tile: int) -> jax.Array:
    """NHWC ``x`` zero-padded along the width by ``pad_w`` and to whole tiles (the last tile's outputs past
    the edge read zeros and are cropped), rows first: (H, B, W', C)."""
    extra = _tiles(x.shape[2], tile) * tile - x.shape[2]
    return jnp.pad(x, ((0, 0), (0, 0), (pad_w[0], pad_w[1] + extra), (0, 0))).transpose(1, 0, 2, 3)


def _to_domain(rows: jax.Array, width: int, taps: int, tile: int) -> list[jax.Array]:
    """Rows of an input ``width`` wide (:func:`_padded_rows`) -> per interpolation point, the Winograd-domain
    input (1, H, B * T, C)."""
    h, b, _, c = rows.shape
    t = _tiles(width, tile)
    _, _, inputs = transforms(tile, taps)
    taps_of_tiles = [rows[:, :, q:q + tile * (t - 1) + 1:tile, :] for q in range(tile + taps - 1)]  # (H, B, T, C)
    return [_combine(row, taps_of_tiles).reshape(1, h, b * t, c) for row in inputs]


def _from_domain(products: list[jax.Array], batch: int, width: int, tile: int, taps: int) -> jax.Array:
    """Per-point products (1, H, B * T, O) -> NHWC output (B, H, W, O)."""
    _, h, bt, o = products[0].shape
    t = bt // batch
    output, _, _ = transforms(tile, taps)
    rows = jnp.stack([_combine(row, products).reshape(h, batch, t, o) for row in output], axis=3)
    return rows.reshape(h, batch, t * tile, o)[:, :, :width].transpose(1, 0, 2, 3)


def _grad_to_domain(rows: jax.Array, offset: int, width: int, taps: int, tile: int) -> list[jax.Array]:
    """The output gradient mapped into the domain (the transpose of :func:`_from_domain`), read from its
    rows as :func:`_padded_rows` padded them for the input gradient (``offset``: their left padding)."""
    h, b, _, o = rows.shape
    t = _tiles(width, tile)
    output, _, _ = transforms(tile, taps)
    per_output = [rows[:, :, offset + q:offset + q + tile * (t - 1) + 1:tile] for q in range(tile)]
    return [_combine(column, per_output).reshape(1, h, b * t, o) for column in output.T]


def _kernel_to_domain(kernel: jax.Array, tile: int) -> list[jax.Array]:
    """HWIO kernel -> per point, a (kh, 1, C, O) kernel of the convolution along the height."""
    _, g, _ = transforms(tile, kernel.shape[1])
    columns = [kernel[:, j:j + 1] for j in range(kernel.shape[1])]
    return [_combine(row, columns) for row in g]


def _correlate(rows: jax.Array, width: int, kernel: jax.Array, pad_h: Padding,
               tile: int) -> tuple[jax.Array, list[jax.Array]]:
    """The convolution of an input ``width`` wide given as its padded rows (:func:`_padded_rows`): the NHWC
    output and the input's Winograd domain."""
    taps = kernel.shape[1]
    domain = _to_domain(rows, width, taps, tile)
    products = [jax.lax.conv_general_dilated(d, k, (1, 1), (pad_h, (0, 0)), dimension_numbers=_NHWC)
                for d, k in zip(domain, _kernel_to_domain(kernel, tile))]
    return _from_domain(products, rows.shape[1], width, tile, taps), domain


def _forward(x: jax.Array, kernel: jax.Array, pad_h: Padding, pad_w: Padding,
             tile: int) -> tuple[jax.Array, list[jax.Array]]:
    return _correlate(_padded_rows(x, pad_w, tile), x.shape[2], kernel, pad_h, tile)


def _kernel_grad(domain: list[jax.Array], grad_domain: list[jax.Array], kh: int, kw: int, pad_h: Padding,
                 tile: int) -> jax.Array:
    """d(loss)/d(kernel): per point, the height-shifted copies of the Winograd-domain input
    (kh x C rows, one column per row and tile) times the output gradient mapped into the
    domain (``grad_domain``), then the transposed kernel transform. The shifted copies are materialised with
    rows first because XLA's CPU dot runs that layout about 1.5x faster than a transposed
    operand. The points go one after another (``lax.scan``): side by side, XLA's schedule kept
    every point's copies alive at once, 141 of the 324 MiB a training step of the paper's CNN
    needs (batch 64); one at a time, the step needs 210 MiB at the same speed (measured on 2 cores,
    ``benchmarks/results/benchmark/README.md``, run11-run12)."""
    _, g, _ = transforms(tile, kw)
    _, h, n, c = domain[0].shape

    def one_point(_, operands: tuple[jax.Array, jax.Array]) -> tuple[None, jax.Array]:
        d, gd = operands
        padded = jnp.pad(d[0], (pad_h, (0, 0), (0, 0)))
        shifted = jnp.concatenate([padded[i:i + h] for i in range(kh)], axis=-1).reshape(h * n, kh * c).T
        return None, (shifted @ gd.reshape(h * n, -1)).reshape(kh, c, -1)

    _, per_point = jax.lax.scan(one_point, None, (jnp.stack(domain), jnp.stack(grad_domain)))
    return jnp.stack([_combine(g[:, j], list(per_point)) for j in range(kw)], axis=1)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x: jax.Array, kernel: jax.Array, pad_h: Padding, pad_w: Padding, tile: int) -> jax.Array:
    return _forward(x, kernel, pad_h, pad_w, tile)[0]


def _conv_fwd(x: jax.Array, kernel: jax.Array, pad_h: Padding, pad_w: Padding,
              tile: int) -> tuple[jax.Array, tuple[list[jax.Array], jax.Array]]:
    y, domain = _forward(x, kernel, pad_h, pad_w, tile)
    return y, (domain, kernel)


def _conv_bwd(pad_h: Padding, pad_w: Padding, tile: int, residuals: tuple[list[jax.Array], jax.Array],
              grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    domain, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    # The input gradient of a correlation is a correlation with the flipped kernel whose padding swaps sides.
    # Both transforms of the output gradient read it as padded for that one (module doc: padded rows, once).
    rows = _padded_rows(grad, pad_w[::-1], tile)
    input_grad = _correlate(rows, grad.shape[2], flipped, pad_h[::-1], tile)[0]
    grad_domain = _grad_to_domain(rows, pad_w[1], grad.shape[2], kernel.shape[1], tile)
    return input_grad, _kernel_grad(domain, grad_domain, kernel.shape[0], kernel.shape[1], pad_h, tile)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, padding: tuple[Padding, Padding], tile: int | None = None) -> jax.Array:
    """Stride-1 convolution (correlation, as ``lax.conv``) of NHWC ``x`` with an HWIO ``kernel``
    and zero ``padding`` ((top, bottom), (left, right)) that keeps the image size, by
    Winograd F(``tile``, kw) along the width (``None``: :func:`tile_for` the precision in force)."""
    (pad_h, pad_w), (kh, kw) = padding, kernel.shape[:2]
    if sum(pad_h) != kh - 1 or sum(pad_w) != kw - 1:
        raise ValueError(f"padding {padding} does not keep the size of the image for a {kh}x{kw} kernel")
    return _conv(x, kernel, tuple(pad_h), tuple(pad_w), tile if tile is not None else tile_for(precision_in_force()))
