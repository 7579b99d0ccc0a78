"""The paper's CNN: three 5x5 conv layers (64/128/256) with ReLU and 2x2 max pooling,
a 300-unit dense layer with dropout, and a softmax output (Yousefi et al., Fig. 2;
reference: safooray/EmotionClassificationCNN, Model.py).

The model takes images in [0, 1] and standardises them with the training set's pixel
mean and std (fixed in :class:`ModelConfig`), so saliency and emotion modification work
directly in pixel space. The activation is a module attribute so that guided
backpropagation can swap in a guided ReLU without patching anything; it must be non-decreasing
(both are), because the pooled layers pool before they activate.

``ModelConfig.norm = "batch"`` adds batch normalisation after each convolution and after the
dense layer, before the activation (not in the paper; the layer sizes stay the paper's). The
dense layer needs it too: its units see 9,216 non-negative inputs of unit scale after
normalised convolutions, so early SGD steps push them all below zero and the model stays at
the class prior (measured on FER2013: every dense unit dead after two epochs). Its running statistics live in the Flax
``batch_stats`` collection: training updates them, every other use (evaluation, saliency,
modification) runs in eval mode on the recorded statistics (:func:`model_variables`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from emofx.nets import ops
from emofx.nets.compilation import enable_compilation_cache
from emofx.nets.precision import PRECISION_ENV, set_precision

enable_compilation_cache()  # every process that builds the model re-uses earlier compilations
if os.environ.get(PRECISION_ENV):  # $EMOFX_PRECISION: the matmul/convolution precision of every command and notebook
    try:
        set_precision()
    except ValueError as err:  # reported again, as a one-line error, where a command resolves the precision
        warnings.warn(str(err), stacklevel=2)

NORMS: tuple[str, ...] = ("none", "batch")
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and input standardisation of :class:`EmotionCNN`."""

    num_classes: int
    input_size: int = 48
    widths: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    dense_units: int = 300
    dropout: float = 0.5
    conv_bias: bool = True
    pixel_mean: float = 0.5
    pixel_std: float = 0.25
    conv_impl: str = "auto"  # see emofx.nets.ops: the fast formulation per backend
    norm: str = "none"  # "batch": batch normalisation after each convolution and the dense layer

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.input_size % (2 ** len(self.widths)):
            raise ValueError(
                f"input_size {self.input_size} (the images' side) must be divisible by {2 ** len(self.widths)} "
                f"({len(self.widths)} 2x2 poolings): resize the images, e.g. to 48 (emofx prepare --size 48, or "
                "emofx.data.dataset.resize_dataset)"
            )
        if self.norm not in NORMS:
            raise ValueError(f"unknown normalisation {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes; got {self.num_classes}")
        if not self.widths or min(self.widths) < 1 or self.dense_units < 1:
            raise ValueError(f"every layer needs at least one unit; got widths {list(self.widths)} and "
                             f"{self.dense_units} dense units")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be at least 1; got {self.kernel_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is the share of dense units dropped in training and must lie in [0, 1); "
                             f"got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (for checkpoints and run records)."""
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """The configuration :meth:`to_dict` recorded."""
        return cls(**{**data, "widths": tuple(data["widths"])})

    def architecture(self) -> dict[str, Any]:
        """The fields that decide parameter shapes (what a checkpoint must match)."""
        return {k: v for k, v in self.to_dict().items()
                if k in ("num_classes", "input_size", "widths", "kernel_size", "dense_units", "conv_bias", "norm")}


SMALL_WIDTHS, SMALL_DENSE_UNITS = (16, 32, 64), 128  # the synthetic notebooks' model: fast on a CPU


def chosen_model(num_classes: int, real_faces: bool, widths: Any = None, dense_units: int | None = None,
                 input_size: int = 48) -> tuple[ModelConfig, str]:
    """The model a notebook trains, and a sentence that states it.

    Unless ``widths``/``dense_units`` are given: the paper's model on real faces, the small model
    (``SMALL_WIDTHS``, ``SMALL_DENSE_UNITS``) on synthetic ones. A model other than the paper's is
    called shrunken in the sentence, so outputs never change the paper's model silently.
    """
    paper = ModelConfig(num_classes=num_classes, input_size=input_size)
    default_widths, default_dense = ((paper.widths, paper.dense_units) if real_faces
                                     else (SMALL_WIDTHS, SMALL_DENSE_UNITS))
    config = replace(paper, widths=tuple(widths if widths is not None else default_widths),
                     dense_units=int(dense_units if dense_units is not None else default_dense))
    why = "asked for explicitly" if widths is not None or dense_units is not None else "the synthetic default"
    return config, model_sentence(config.widths, config.dense_units, why)


def model_sentence(widths: Sequence[int], dense_units: int, why: str = "") -> str:
    """``the paper's model (...)`` or ``a SHRUNKEN model, not the paper's (...; why)``: how outputs name a model."""
    paper = ModelConfig(num_classes=2)
    shape = f"conv widths {'/'.join(map(str, widths))}, {dense_units} dense units"
    if (tuple(widths), int(dense_units)) == (paper.widths, paper.dense_units):
        return f"the paper's model ({shape})"
    return f"a SHRUNKEN model, not the paper's ({shape}{'; ' + why if why else ''})"


class Conv(nn.Module):
    """A stride-1 'SAME' convolution whose kernel goes through :func:`emofx.nets.ops.conv2d_same`,
    optionally followed by batch normalisation (batch statistics when ``train``, else running ones).

    The layer's activation and pooling come in as ``activation`` and ``pool`` so that a layer the CPU path
    runs in chunks of images (:func:`emofx.nets.ops.layer_batch_chunk`) computes them inside each chunk.
    Without batch normalisation the bias is added after the pooling: a per-channel constant commutes with the
    max (float rounding is monotone, so the values are the same to the bit), and the bias gradient then sums
    the pooled gradient, a quarter of the positions, which the activation's gradient makes anyway.
    """

    features: int
    kernel_size: int
    use_bias: bool
    impl: str
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False,
                 activation: Callable[[jax.Array], jax.Array] = lambda y: y, pool: bool = False) -> jax.Array:
        """The convolution (+ bias, + batch normalisation), 2x2 max pooling when ``pool``, then ``activation``."""
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        pooled = ops.max_pool_2x2 if pool else lambda y: y
        biased = (lambda y: y) if bias is None else lambda y: y + bias

        if self.batch_norm:  # batch statistics need the whole batch (no chunks), and the bias goes before them
            norm = nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, name="norm")
            return activation(pooled(norm(biased(ops.conv2d_same(x, kernel, self.impl)))))
        layer = lambda images: activation(biased(pooled(ops.conv2d_same(images, kernel, self.impl))))  # noqa: E731
        return ops.in_batch_chunks(layer, x, ops.layer_batch_chunk(x, self.impl))


class EmotionCNN(nn.Module):
    """The paper's emotion classifier; returns logits (softmax is applied by the loss)."""

    config: ModelConfig
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def setup(self) -> None:
        """The layers: one :class:`Conv` per width, the dense layer (with its normalisation) and the output layer."""
        cfg = self.config
        self.convs = [
            Conv(w, cfg.kernel_size, cfg.conv_bias, cfg.conv_impl, cfg.norm == "batch", name=f"conv{i + 1}")
            for i, w in enumerate(cfg.widths)
        ]
        self.dense = nn.Dense(cfg.dense_units, name="dense")
        self.dense_norm = nn.BatchNorm(momentum=BATCH_NORM_MOMENTUM, name="dense_norm") if cfg.norm == "batch" else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Dense(cfg.num_classes, name="output")

    def standardise(self, images: jax.Array) -> jax.Array:
        """[0, 1] images (B, H, W) or (B, H, W, 1) to standardised NHWC float32."""
        x = jnp.asarray(images, jnp.float32)
        if x.ndim == 3:
            x = x[..., None]
        return (x - self.config.pixel_mean) / self.config.pixel_std

    def conv_features(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Output of the last conv layer after its activation, before pooling (for Grad-CAM, filters)."""
        x = self.standardise(images)
        for i, conv in enumerate(self.convs):
            last = i == len(self.convs) - 1
            # Pooling before the activation: the same values (the activation is non-decreasing, so it
            # commutes with the max) and, where a window's maximum is unique, the same gradients, with
            # the activation on a quarter of the positions.
            x = conv(x, train, self.activation, pool=not last)
        return x

    def classify_features(self, features: jax.Array, train: bool = False) -> jax.Array:
        """Logits from last-conv features: pool, flatten, dense + activation + dropout, output."""
        return self.output(self.dropout(self.penultimate_from_features(features, train), deterministic=not train))

    def penultimate_from_features(self, features: jax.Array, train: bool = False) -> jax.Array:
        """The dense layer's activations from the last convolution's output: the representation compared across
        cultures."""
        x = ops.max_pool_2x2(features)
        x = self.dense(x.reshape(x.shape[0], -1))
        if self.dense_norm is not None:
            x = self.dense_norm(x, use_running_average=not train)
        return self.activation(x)

    def penultimate(self, images: jax.Array) -> jax.Array:
        """The 300-unit representation (after activation, without dropout): for CKA."""
        return self.penultimate_from_features(self.conv_features(images))

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        return self.classify_features(self.conv_features(images, train), train=train)


def pixel_free(config: ModelConfig) -> ModelConfig:
    """``config`` with identity standardisation. Compiled code takes the pixel statistics as an
    argument (:func:`pixel_stats`, :func:`standardise`) so that models trained on different data
    share one compilation."""
    return replace(config, pixel_mean=0.0, pixel_std=1.0)


def pixel_stats(config: ModelConfig) -> jax.Array:
    """The training set's pixel (mean, std) of ``config`` as an array."""
    return jnp.asarray([config.pixel_mean, config.pixel_std], jnp.float32)


def standardise(images: jax.Array, stats: jax.Array) -> jax.Array:
    """[0, 1] images standardised with ``stats`` = (mean, std): what EmotionCNN.standardise does
    with the statistics in its config."""
    return (images - stats[0]) / stats[1]


def init_params(config: ModelConfig, seed: int | jax.Array) -> Any:
    """Initial parameters for ``config`` from an integer seed or PRNG key."""
    return init_variables(config, seed)["params"]


def init_variables(config: ModelConfig, seed: int | jax.Array) -> dict[str, Any]:
    """Initial ``params`` and (with batch normalisation) ``batch_stats`` for ``config``."""
    key = jax.random.PRNGKey(int(seed)) if isinstance(seed, (int, np.integer)) else seed
    # Initial values do not depend on the input standardisation: compile once per architecture.
    return dict(_init_variables(_init_config(config), key))


def variable_shapes(config: ModelConfig) -> dict[str, Any]:
    """What :func:`init_variables` returns, as ``jax.ShapeDtypeStruct`` leaves: traced, never run or
    compiled (a template for reading a checkpoint costs no program)."""
    return dict(jax.eval_shape(_init_variables, _init_config(config), jax.ShapeDtypeStruct((2,), jnp.uint32)))


def _init_config(config: ModelConfig) -> ModelConfig:
    """The one config initialisation is traced with: initial values do not depend on the input
    standardisation, so every dataset's model of one architecture shares the program (and the trace)."""
    return replace(config, pixel_mean=0.5, pixel_std=0.25)


@partial(jax.jit, static_argnums=0)
def _init_variables(config: ModelConfig, key: jax.Array) -> Any:
    # Compiled once per config: eager initialisation compiles every random op separately.
    dummy = jnp.zeros((1, config.input_size, config.input_size), jnp.float32)
    return EmotionCNN(config).init(key, dummy)


def model_variables(params: Any, batch_stats: Any = None) -> dict[str, Any]:
    """The variables to apply a model with: its parameters and, when it has batch
    normalisation, the running statistics (eval mode)."""
    return {"params": params} if not batch_stats else {"params": params, "batch_stats": batch_stats}


def count_params(params: Any) -> int:
    """How many numbers the parameter tree holds."""
    return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))
