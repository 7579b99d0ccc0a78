"""What to optimise and how: the training configuration, learning-rate schedules, the optimiser, the loss.

:class:`TrainConfig` is every training choice as one frozen dataclass (its defaults are the
reference implementation, the ``paper`` recipe of :mod:`emofx.nets.recipes`); :class:`StepConfig`
is the part the compiled training step depends on. Reference hyper-parameters
(safooray/EmotionClassificationCNN): learning rate 0.05 decayed x0.999 per epoch (staircase),
momentum 0.9, L2 5e-4 on the dense layers' kernels (the reference decays their biases too), batch 64;
the ``paper`` recipe's other departures from that code are listed in :mod:`emofx.nets.recipes`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from emofx.nets.augment import AugmentConfig
from emofx.nets.precision import precision_for, resolve_precision

DENSE_LAYERS = ("dense", "output")
SCHEDULES = ("exponential", "cosine")


class TrainingError(ValueError):
    """The data or configuration cannot be trained on (reported to the user in one line)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, augmentation, validation schedule, stopping and seed.

    ``eval_every`` is in steps (0: once per epoch); ``patience`` counts validations without
    improvement before stopping early (0: never). ``soft_targets`` trains on the normalised
    vote distributions in ``dataset.extras["votes"]`` instead of the hard labels;
    ``weight_by_agreement`` weighs each training image's loss by its crowd agreement
    (:func:`emofx.nets.targets.agreement_weights`).

    Beyond the reference (all off by default): ``schedule`` ``cosine`` decays the learning
    rate to 0 over the run instead of x``lr_decay`` per epoch, after ``warmup_epochs`` (at most the run) of
    linear warm-up from 0; ``decay_all_layers`` puts the weight decay on every layer's kernel
    (the reference: dense layers only); ``shift``, ``scale``, ``brightness``, ``contrast`` and
    ``erasing`` are augmentations (:class:`emofx.nets.augment.AugmentConfig`); ``label_smoothing``
    mixes that share of the uniform distribution into the targets; ``flip_average`` evaluates
    (validation and test) on the mean of each image's and its mirror image's probabilities;
    ``conv_lr_scale`` multiplies the convolutional layers' updates (fine-tuning: 0 freezes
    them). ``recipe`` names the preset the configuration came from (a label).
    ``unroll_steps`` is how many steps one compiled program runs, unrolled: XLA's CPU backend
    runs ``lax`` and ``split-grad`` convolution gradients inside a compiled loop through a slow
    generic path (jax 0.10.2, 2 cores, the steps of a chunk as a rolled loop: a model of 8/16/16
    filters 3.3x slower a step, the paper CNN's first ``lax`` chunk 243 s instead of 26 to compile
    and run; its Winograd layers alone loop at full speed, 0.97-1.02x), so steps are unrolled
    rather than looped; compile time, and the time a new process spends loading the program from
    the persistent cache, grow with the count (measured on 2 cores, paper CNN at batch 64,
    interleaved: 1 step 97 img/s and 0.3 s to load, 4 steps 163 img/s and 1.4 s, 8 steps 160 img/s
    and 3.3-4 s), so 4 is the default
    (:func:`chunk_lengths` splits a validation interval into chunks).
    ``precision``: of the steps' matmuls and convolutions (:mod:`emofx.nets.precision`).
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    lr_decay: float = 0.999
    weight_decay: float = 5e-4
    flip: bool = True
    rotation_degrees: float = 5.0
    eval_every: int = 0
    patience: int = 10
    soft_targets: bool = False
    weight_by_agreement: bool = False
    seed: int = 0
    eval_batch_size: int = 256
    unroll_steps: int = 4
    recipe: str = "paper"
    schedule: str = "exponential"
    warmup_epochs: float = 0.0
    decay_all_layers: bool = False
    shift: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    erasing: float = 0.0
    label_smoothing: float = 0.0
    flip_average: bool = False
    conv_lr_scale: float = 1.0
    precision: str | None = None  # None: the one in force when the steps are built (emofx.nets.precision.precision_for)

    def __post_init__(self) -> None:
        if self.precision is not None:
            object.__setattr__(self, "precision", resolve_precision(self.precision))  # a clear error if unknown
        counts = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "unroll_steps": 1, "eval_every": 0,
                  "patience": 0}  # whole numbers, with their least value
        for name, least in counts.items():
            value = getattr(self, name)
            whole = isinstance(value, (int, float, np.number)) and float(value).is_integer()
            if isinstance(value, bool) or not whole:
                raise TrainingError(f"{name} must be a whole number; got {value!r}")
            if value < least:
                raise TrainingError(f"{name} must be at least {least}; got {value}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
            raise TrainingError(f"seed must be a whole number in [0, 2**32) (JAX keeps 32 bits of it); got "
                                f"{self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        for field_ in fields(self):
            value = getattr(self, field_.name)
            if field_.type == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise TrainingError(f"{field_.name} must be True or False; got {value!r}")
                object.__setattr__(self, field_.name, bool(value))
            if field_.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
                raise TrainingError(f"{field_.name} must be a number; got {value!r}")
        if not 0 < self.learning_rate < math.inf:
            raise TrainingError(f"learning_rate must be positive and finite; got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise TrainingError(f"lr_decay must lie in (0, 1]; got {self.lr_decay}")
        if not self.weight_decay >= 0 or not 0 <= self.momentum < 1:
            raise TrainingError(f"weight_decay must be >= 0 and momentum in [0, 1); got {self.weight_decay} and "
                                f"{self.momentum}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"unknown learning-rate schedule {self.schedule!r}; "
                                f"choose one of {', '.join(SCHEDULES)}")
        if not self.warmup_epochs >= 0:
            raise TrainingError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise TrainingError(f"label_smoothing must lie in [0, 1); got {self.label_smoothing}")
        if not self.conv_lr_scale >= 0:
            raise TrainingError(f"conv_lr_scale must be >= 0 (0 freezes the convolutional layers); "
                                f"got {self.conv_lr_scale}")
        try:
            self.augmentation  # validates the augmentation bounds
        except ValueError as err:
            raise TrainingError(str(err)) from err

    @property
    def augmentation(self) -> AugmentConfig:
        """The augmentation these settings ask for."""
        return AugmentConfig(flip=self.flip, rotation_degrees=self.rotation_degrees, shift=self.shift,
                             scale=self.scale, brightness=self.brightness, contrast=self.contrast,
                             erasing=self.erasing)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a dict (for run records)."""
        return asdict(self)


@dataclass(frozen=True)
class StepConfig:
    """Everything the compiled training step depends on (the key of its compilation cache).

    ``steps_per_epoch`` is an int, or a traced int32 inside a program shared by several epoch
    lengths (:mod:`emofx.nets.buckets`): the schedules are functions of the step count and it.
    ``warmup_epochs`` and ``epochs`` are only set for schedules that need them (``epochs`` for
    cosine), so runs of different lengths under the reference schedule share one compilation."""

    learning_rate: float
    momentum: float
    lr_decay: float
    weight_decay: float
    augmentation: AugmentConfig
    steps_per_epoch: Any
    precision: str = "default"
    schedule: str = "exponential"
    warmup_epochs: float = 0.0
    epochs: int = 0
    decay_all_layers: bool = False
    label_smoothing: float = 0.0
    conv_lr_scale: float = 1.0

    @classmethod
    def of(cls, config: TrainConfig, steps_per_epoch: int) -> "StepConfig":
        """The step settings of ``config`` for epochs of ``steps_per_epoch`` steps."""
        return cls(config.learning_rate, config.momentum, config.lr_decay, config.weight_decay,
                   config.augmentation, int(steps_per_epoch), precision_for(config.precision), config.schedule,
                   float(min(config.warmup_epochs, config.epochs)),
                   config.epochs if config.schedule == "cosine" else 0, config.decay_all_layers,
                   config.label_smoothing, config.conv_lr_scale)

    @property
    def warmup_steps(self) -> Any:
        """``warmup_epochs`` in steps, rounded (half to even, as Python's ``round``); maybe traced."""
        return jnp.round(self.warmup_epochs * jnp.asarray(self.steps_per_epoch, jnp.float32))


# ---------------------------------------------------------------------------- optimisation


def learning_rates(step_config: StepConfig, n_steps: int) -> np.ndarray:
    """The learning rate at steps 0, 1, ..., ``n_steps`` (a training's history): one compiled program, where op by
    op a new process would trace and load five."""
    return np.asarray(_compiled_schedule(step_config)(np.arange(n_steps + 1, dtype=np.int32)))


@lru_cache(maxsize=16)
def _compiled_schedule(step_config: StepConfig) -> Callable:
    return jax.jit(jax.vmap(learning_rate_schedule(step_config)))


def learning_rate_schedule(step_config: StepConfig) -> optax.Schedule:
    """The reference's per-epoch staircase decay lr * decay ** floor(step / steps_per_epoch), or a
    cosine decay to 0 at the end of the run; either after ``warmup_steps`` of linear warm-up from 0.

    Written as functions of the step count and ``steps_per_epoch`` (optax's
    ``exponential_decay(staircase=True)`` and ``warmup_cosine_decay_schedule`` need both as
    Python numbers) so that ``steps_per_epoch`` may be traced."""
    lr, decay, spe = step_config.learning_rate, step_config.lr_decay, step_config.steps_per_epoch

    def staircase(count: jax.Array) -> jax.Array:
        return lr * decay ** jnp.floor_divide(count, spe).astype(jnp.float32)

    if step_config.schedule == "exponential" and not step_config.warmup_epochs:
        return staircase
    warmup = step_config.warmup_steps
    total = jnp.maximum(step_config.epochs * jnp.asarray(spe, jnp.float32), warmup + 1)

    def cosine(count: jax.Array) -> jax.Array:
        progress = jnp.clip((count - warmup) / (total - warmup), 0.0, 1.0)
        return lr * 0.5 * (1 + jnp.cos(jnp.pi * progress))

    after_warmup = cosine if step_config.schedule == "cosine" else staircase

    def schedule(count: jax.Array) -> jax.Array:
        count = jnp.asarray(count)
        ramp = lr * count.astype(jnp.float32) / jnp.maximum(warmup, 1.0)
        return jnp.where(count < warmup, ramp, after_warmup(count))

    return schedule


def _layer_mask(params: Any, keep: Callable[[str, str], bool]) -> Any:
    """A boolean tree like ``params``: keep(top-level layer, leaf name) for every leaf."""
    return jax.tree_util.tree_map_with_path(lambda path, _: keep(path[0].key, path[-1].key), params)


def make_optimizer(step_config: StepConfig) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay on the dense layers' kernels (or every layer's), the
    convolutional layers' updates optionally scaled (fine-tuning)."""
    decayed = (lambda layer, name: name == "kernel") if step_config.decay_all_layers \
        else (lambda layer, name: layer in DENSE_LAYERS and name == "kernel")
    parts = [
        optax.add_decayed_weights(step_config.weight_decay, mask=lambda params: _layer_mask(params, decayed)),
        optax.sgd(learning_rate_schedule(step_config), momentum=step_config.momentum),
    ]
    if step_config.conv_lr_scale != 1.0:
        convs = lambda params: _layer_mask(params, lambda layer, name: layer.startswith("conv"))  # noqa: E731
        parts.append(optax.masked(optax.scale(step_config.conv_lr_scale), convs))
    return optax.chain(*parts)


def cross_entropy(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Mean cross-entropy against targets: class indices (B,) or distributions (B, C), mixed with
    ``label_smoothing`` of the uniform distribution."""
    if targets.ndim == 1:
        targets = jax.nn.one_hot(targets, logits.shape[-1])
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def chunk_lengths(n_steps: int, unroll_steps: int) -> list[int]:
    """``n_steps`` as the fewest chunks of at most ``unroll_steps`` steps, as equal as they can be
    (longest first): 13 steps at 4 are 4, 3, 3, 3, not 4, 4, 4, 1. A one-step program ran about 3x
    slower per step on a CPU than 2-4 unrolled steps (paper CNN, batch 64, 2 cores: 0.9 s against
    0.29 s), and KDEF's 784 training images (13 steps an epoch) paid that every epoch; and an
    interval needs at most two programs (two lengths) compiled. Programs of 2-4 steps compute
    each step alike, so only step counts that used to end in a lone step change their numbers."""
    count = -(-n_steps // unroll_steps)
    base, longer = divmod(n_steps, count)
    return [base + 1] * longer + [base] * (count - longer)
