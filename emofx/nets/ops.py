"""Numeric kernels of the CNN: 'SAME' convolution and 2x2 max pooling.

Kept apart from the model so that faster formulations can be swapped in per backend
without changing what the model computes (outputs and gradients match the plain
``lax.conv`` reference to float32 rounding; ``tests/test_ops.py`` checks it).

Convolution implementations (``ModelConfig.conv_impl``):

``"lax"``
    ``lax.conv_general_dilated`` differentiated by JAX: the reference, and the fast choice
    wherever the backend's own convolution kernels are good (cuDNN on GPU).
``"split-grad"``
    the same forward, with hand-written gradients that XLA's CPU backend runs faster than
    its own backward convolutions (measured on 2 cores: the second layer's kernel gradient
    2x, a whole training step of the paper's CNN about 1.15x): the input gradient is a *forward*
    convolution of the output gradient with the flipped, transposed kernel, and the
    kernel gradient is a correlation of input and output gradient summed over chunks of
    :data:`KERNEL_GRAD_CHUNK` images. Correlating a whole batch of 64 at once makes the
    CPU kernel contract over 64 x H x W values per output element, which falls out of
    cache and runs at half the matmul rate; chunks of 8 run near it. Layers with
    fewer than :data:`FEW_CHANNELS` input channels take their input gradient as a matmul
    plus shifted sums instead (see :func:`conv_input_grad`), and their kernel gradient as one
    matmul of input patches (25 shifted slices stacked) with the output gradient, which ran
    the kernel gradients of the second and third layers 2-3x slower in CPU time than the
    chunks but the first layer's faster (``python -m benchmarks.conv_layers`` times every piece
    of every layer each way).
``"winograd"``
    layers with at least :data:`WINOGRAD_MIN_CHANNELS` input channels and kernels at least
    3 wide go through :mod:`emofx.nets.winograd` (Winograd F(4, kw) along the width, F(6, kw)
    at a CPU's ``default`` precision: 2.5x / 3x fewer multiply-adds for 5x5 kernels, forward and both
    gradients; measured on 2 cores with F(4, 5), the paper's second and third layers' forward +
    backward 1.3x and 1.7x faster than ``split-grad``); other layers take ``split-grad``.
    Narrower layers gain nothing (their Winograd-domain matmuls contract over too few values
    to run fast: a 32->64 layer was 1.2x slower) and compile 4x longer.
``"auto"``
    ``"winograd"`` on CPU, ``"lax"`` on other backends (chosen per ``jax.default_backend()``
    when the model is traced).

On the CPU paths the first layer (few input channels) runs in chunks of :data:`LAYER_CHUNK`
images, activation and pooling included (:func:`layer_batch_chunk`, used by the model).

Pooling is a reshape + max with a hand-written gradient: the forward pass under differentiation
keeps, per window, which of its four positions holds the maximum (int8; the first in raster order
on ties, as ``lax.reduce_window``'s select-and-scatter does), and the backward pass routes the
output gradient there with elementwise selects. JAX's own rule for the max kept the whole float
input and counted the maxima per window with YNNPACK reductions, which with the bias gradients'
sums took 5% of a training call (``python -m benchmarks.op_profile train --cores 1``); the hand-written
rule and pooling before the activation (:class:`emofx.nets.model.EmotionCNN`) made guided saliency
about 1.2x faster on 2 cores, training a few percent (``benchmarks/results/benchmark/README.md``, run18-run19).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from emofx.nets import winograd

CONV_IMPLS = ("lax", "split-grad", "winograd", "auto")
KERNEL_GRAD_CHUNK = 8
FEW_CHANNELS = 8
WINOGRAD_MIN_CHANNELS = 64
LAYER_CHUNK = 8
_NHWC = ("NHWC", "HWIO", "NHWC")


def conv2d_same(x: jax.Array, kernel: jax.Array, impl: str = "auto") -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC ``x`` with an HWIO ``kernel`` by ``impl`` (see module doc)."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown convolution implementation {impl!r}; choose one of {CONV_IMPLS}")
    concrete = resolve_conv_impl(impl)
    if concrete == "winograd" and x.shape[-1] >= WINOGRAD_MIN_CHANNELS and kernel.shape[1] >= 3:
        return winograd.conv2d(x, kernel, (_same_padding(kernel.shape[0]), _same_padding(kernel.shape[1])))
    if concrete in ("split-grad", "winograd"):
        return _conv_split_grad(x, kernel)
    return _conv_lax(x, kernel)


def resolve_conv_impl(impl: str, backend: str | None = None) -> str:
    """The concrete implementation that ``impl`` means on ``backend`` (default: JAX's default backend)."""
    if impl != "auto":
        return impl
    return "winograd" if (backend or jax.default_backend()) == "cpu" else "lax"


def _same_padding(size: int) -> tuple[int, int]:
    """(low, high) zero padding of a stride-1 'SAME' convolution with a kernel of ``size``."""
    return (size - 1) // 2, size // 2


def _conv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding="SAME", dimension_numbers=_NHWC)


@jax.custom_vjp
def _conv_split_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv_lax(x, kernel)


def _conv_split_grad_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _conv_lax(x, kernel), (x, kernel)


def _conv_split_grad_backward(residuals: tuple[jax.Array, jax.Array], grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    return conv_input_grad(grad, kernel), conv_kernel_grad(x, grad, kernel.shape[:2])


_conv_split_grad.defvjp(_conv_split_grad_forward, _conv_split_grad_backward)


def conv_input_grad(grad: jax.Array, kernel: jax.Array) -> jax.Array:
    """d(loss)/d(x) of a 'SAME' convolution: the output gradient convolved with the kernel
    flipped in space and with input/output channels swapped (a forward convolution).

    For inputs of fewer than :data:`FEW_CHANNELS` channels (the grey image of the first
    layer) that convolution has almost no output channels and runs far below the matmul
    rate; there the gradient is a matmul over output channels followed by a sum of shifted
    slices (:func:`_input_grad_few_channels`).
    """
    if kernel.shape[2] < FEW_CHANNELS:
        return _input_grad_few_channels(grad, kernel)
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    (low_h, high_h), (low_w, high_w) = _same_padding(kernel.shape[0]), _same_padding(kernel.shape[1])
    return jax.lax.conv_general_dilated(grad, flipped, (1, 1), ((high_h, low_h), (high_w, low_w)),
                                        dimension_numbers=_NHWC)


def _input_grad_few_channels(grad: jax.Array, kernel: jax.Array) -> jax.Array:
    kh, kw, c_in, _ = kernel.shape
    b, h, w, _ = grad.shape
    # contribution[b, y, x, i, j, c]: what output (y, x) sends back through kernel tap (i, j).
    contribution = jnp.einsum("bhwo,ijco->bhwijc", grad, kernel)
    (low_h, high_h), (low_w, high_w) = _same_padding(kh), _same_padding(kw)
    padded = jnp.pad(contribution, ((0, 0), (high_h, low_h), (high_w, low_w), (0, 0), (0, 0), (0, 0)))
    # Input (u, v) received from output (u + low - i, v + low - j) through tap (i, j).
    return sum(padded[:, kh - 1 - i:kh - 1 - i + h, kw - 1 - j:kw - 1 - j + w, i, j, :]
               for i in range(kh) for j in range(kw))


def conv_kernel_grad(x: jax.Array, grad: jax.Array, kernel_hw: tuple[int, int],
                     chunk: int = KERNEL_GRAD_CHUNK) -> jax.Array:
    """d(loss)/d(kernel) (HWIO) of a 'SAME' convolution: the correlation of the input with the
    output gradient, contracted over images and positions (:func:`correlation_kernel_grad`).

    Inputs of fewer than :data:`FEW_CHANNELS` channels take :func:`patches_kernel_grad` instead:
    for the grey first layer one matmul of its 25 shifted slices ran 1.3x faster than the chunked
    correlation (``python -m benchmarks.conv_layers``), and 8x faster inside a loop over image
    chunks, where XLA runs the correlation as a plain convolution.
    """
    if x.shape[-1] < FEW_CHANNELS:
        return patches_kernel_grad(x, grad, kernel_hw)
    return correlation_kernel_grad(x, grad, kernel_hw, chunk)


def correlation_kernel_grad(x: jax.Array, grad: jax.Array, kernel_hw: tuple[int, int],
                            chunk: int = KERNEL_GRAD_CHUNK) -> jax.Array:
    """d(loss)/d(kernel) (HWIO) as a correlation of input and output gradient (a convolution with
    images as channels), summed over chunks of ``chunk`` images (see the module doc)."""
    padding = (_same_padding(kernel_hw[0]), _same_padding(kernel_hw[1]))

    def correlate(xs: jax.Array, gs: jax.Array) -> jax.Array:
        # Images play the role of input channels and input channels that of the batch,
        # so the result comes out directly as (kh, kw, in, out).
        return jax.lax.conv_general_dilated(xs, gs, (1, 1), padding, dimension_numbers=("CHWN", "IHWO", "HWNC"))

    n = x.shape[0]
    return sum(correlate(x[start:start + chunk], grad[start:start + chunk]) for start in range(0, n, chunk))


def patches_kernel_grad(x: jax.Array, grad: jax.Array, kernel_hw: tuple[int, int]) -> jax.Array:
    """d(loss)/d(kernel) (HWIO) of a 'SAME' convolution as one matmul of input patches with the
    output gradient: dW[i, j] = sum over (b, y, x) of xpad[b, y + i, x + j, :]^T grad[b, y, x, :]."""
    (kh, kw), (b, h, w, c), out = kernel_hw, x.shape, grad.shape[-1]
    padded = jnp.pad(x, ((0, 0), _same_padding(kh), _same_padding(kw), (0, 0)))
    patches = jnp.stack([padded[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=3)
    return (patches.reshape(b * h * w, kh * kw * c).T @ grad.reshape(b * h * w, out)).reshape(kh, kw, c, out)


def layer_batch_chunk(x: jax.Array, impl: str = "auto") -> int | None:
    """Images per chunk in which to run a convolutional layer of NHWC input ``x`` (None: the whole batch).

    On the CPU a layer with few input channels (the grey first layer) writes a large output
    (64 x 48 x 48 x 64 floats for a batch of 64) from little work; XLA allocates it afresh on
    every call and the kernel maps it in page by page, which costs more than the convolution.
    Chunks of :data:`LAYER_CHUNK` images keep it small (:func:`in_batch_chunks`). Measured on 2
    cores (``benchmarks.workloads``' calls, alternating processes): inference and guided saliency
    about 1.1x faster, a training step 1.04x, peak training RSS 10% lower.
    """
    if resolve_conv_impl(impl) == "lax" or x.shape[-1] >= FEW_CHANNELS:
        return None
    return LAYER_CHUNK if x.shape[0] > LAYER_CHUNK and x.shape[0] % LAYER_CHUNK == 0 else None


def in_batch_chunks(fn: Callable[[jax.Array], jax.Array], x: jax.Array, chunk: int | None) -> jax.Array:
    """``fn(x)`` computed on consecutive chunks of ``chunk`` images (all at once when None).

    A loop (``lax.map``) whose body is rematerialised (``jax.checkpoint``): differentiating it
    keeps only the input chunks and recomputes each chunk's forward in the backward loop, rather
    than stacking every chunk's intermediates into whole-batch buffers, which would bring the
    large allocation back.
    """
    if chunk is None:
        return fn(x)
    y = jax.lax.map(jax.checkpoint(fn), x.reshape(x.shape[0] // chunk, chunk, *x.shape[1:]))
    return y.reshape(x.shape[0], *y.shape[2:])


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 on NHWC input (H and W must be even)."""
    b, h, w, c = x.shape
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _max_pool_forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # The window's corners in raster order; the residual is which one holds the maximum (int8),
    # a quarter of the input's positions at a quarter of a float's size, instead of the input.
    first, second, third, fourth = x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    top, bottom = jnp.maximum(first, second), jnp.maximum(third, fourth)
    corner = jnp.where(top >= bottom, jnp.where(first >= second, 0, 1), jnp.where(third >= fourth, 2, 3))
    return jnp.maximum(top, bottom), corner.astype(jnp.int8)


def _max_pool_backward(corner: jax.Array, grad: jax.Array) -> tuple[jax.Array]:
    b, h, w, c = grad.shape
    # Each window's gradient and corner broadcast over its 2 x 2 positions (channels stay innermost).
    spread = lambda a: jnp.broadcast_to(a[:, :, None, :, None, :], (b, h, 2, w, 2, c))  # noqa: E731
    position = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)  # 2 x row + column, as the corners
    return (jnp.where(spread(corner) == position, spread(grad), 0).reshape(b, 2 * h, 2 * w, c),)


max_pool_2x2.defvjp(_max_pool_forward, _max_pool_backward)
