"""Training the paper's CNN: SGD with momentum, exponential decay, augmentation, best checkpoint.

The numeric core is pure and compiled: the training set lives on the device, and a chunk of
``eval_every`` steps (by default one epoch) runs as one ``lax.scan`` that samples each batch
from a PRNG key, augments it and updates the parameters, with the state's buffers donated.
Python only runs between chunks: validation (itself one compiled, batched function),
keeping the best parameters, early stopping, the NaN check, history and the progress bar.

Reference hyper-parameters (safooray/EmotionClassificationCNN): learning rate 0.05 decayed
x0.999 per epoch (staircase), momentum 0.9, L2 5e-4 on the dense layers, batch 64.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from tqdm.auto import tqdm

from emofx.data.dataset import FaceDataset
from emofx.nets.augment import AugmentConfig, augment
from emofx.nets.buckets import pad_to_bucket
from emofx.nets.checkpoint import CheckpointError, TrainedModel, as_unit_float
from emofx.nets.compilation import compile_seconds
from emofx.nets.model import EmotionCNN, ModelConfig, init_params, pixel_free, pixel_stats, standardise
from emofx.nets.precision import at_precision, resolve_precision
from emofx.nets.targets import TrainingError, agreement_weights, training_targets

DENSE_LAYERS = ("dense", "output")
HISTORY_COLUMNS = ("step", "epoch", "lr", "train_loss", "train_error", "val_error", "val_loss")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, augmentation, validation schedule, stopping and seed.

    ``eval_every`` is in steps (0: once per epoch); ``patience`` counts validations without
    improvement before stopping early (0: never). ``soft_targets`` trains on the normalised
    vote distributions in ``dataset.extras["votes"]`` instead of the hard labels;
    ``weight_by_agreement`` weighs each training image's loss by its crowd agreement
    (:func:`agreement_weights`).
    ``unroll_steps`` is how many steps one compiled program runs, unrolled: XLA's CPU backend
    runs convolution gradients inside a compiled loop through a generic path about 100x
    slower than outside it, so steps are unrolled rather than looped; compile time grows
    with the count. ``precision``: of the steps' matmuls and convolutions (:mod:`emofx.nets.precision`).
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
    unroll_steps: int = 8
    precision: str | None = None  # None: the process's setting ($EMOFX_PRECISION, else default)

    def __post_init__(self) -> None:
        if self.precision is not None:
            object.__setattr__(self, "precision", resolve_precision(self.precision))  # a clear error if unknown
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
                    "unroll_steps": self.unroll_steps}
        for name, value in positive.items():
            if int(value) < 1:
                raise TrainingError(f"{name} must be at least 1; got {value}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be positive; got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise TrainingError(f"lr_decay must lie in (0, 1]; got {self.lr_decay}")
        if self.eval_every < 0 or self.patience < 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise TrainingError(
                "eval_every, patience and weight_decay must be >= 0 and momentum in [0, 1); "
                f"got {self.eval_every}, {self.patience}, {self.weight_decay}, {self.momentum}"
            )
        AugmentConfig(self.flip, self.rotation_degrees)  # validates rotation_degrees

    @property
    def augmentation(self) -> AugmentConfig:
        return AugmentConfig(flip=self.flip, rotation_degrees=self.rotation_degrees)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**data)


@dataclass(frozen=True)
class StepConfig:
    """Everything the compiled training step depends on (the key of its compilation cache)."""

    learning_rate: float
    momentum: float
    lr_decay: float
    weight_decay: float
    augmentation: AugmentConfig
    steps_per_epoch: Any  # an int, or a traced int32 inside a program shared by several epoch lengths
    precision: str = "default"

    @classmethod
    def of(cls, config: TrainConfig, steps_per_epoch: int) -> "StepConfig":
        return cls(config.learning_rate, config.momentum, config.lr_decay, config.weight_decay,
                   config.augmentation, int(steps_per_epoch), resolve_precision(config.precision))


class TrainState(NamedTuple):
    """The training state threaded through the compiled step: step counter, parameters, optimiser."""

    step: jax.Array
    params: Any
    opt_state: Any


# ---------------------------------------------------------------------------- optimisation


def learning_rate_schedule(step_config: StepConfig) -> optax.Schedule:
    """lr * decay ** floor(step / steps_per_epoch): the reference's per-epoch staircase decay
    (optax's ``exponential_decay(staircase=True)``, written out so that ``steps_per_epoch`` may be traced)."""
    lr, decay, spe = step_config.learning_rate, step_config.lr_decay, step_config.steps_per_epoch
    return lambda count: lr * decay ** jnp.floor_divide(count, spe).astype(jnp.float32)


def make_optimizer(step_config: StepConfig) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay on the dense layers' kernels only."""

    def dense_kernels(params: Any) -> Any:
        return {layer: {name: layer in DENSE_LAYERS and name == "kernel" for name in sub}
                for layer, sub in params.items()}

    return optax.chain(
        optax.add_decayed_weights(step_config.weight_decay, mask=dense_kernels),
        optax.sgd(learning_rate_schedule(step_config), momentum=step_config.momentum),
    )


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy against targets: class indices (B,) or distributions (B, C)."""
    if targets.ndim == 1:
        targets = jax.nn.one_hot(targets, logits.shape[-1])
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def init_state(params: Any, train_config: TrainConfig, steps_per_epoch: int = 1) -> TrainState:
    """The state at step 0 for ``params`` (see :func:`emofx.nets.model.init_params`)."""
    optimizer = make_optimizer(StepConfig.of(train_config, steps_per_epoch))
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


# ---------------------------------------------------------------------------- compiled step


def _train_step(model_config: ModelConfig, step_config: StepConfig, state: TrainState, images: jax.Array,
                targets: jax.Array, key: jax.Array, stats: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on a batch: augment, standardise, forward with dropout, backward, update."""
    augment_key, dropout_key = jax.random.split(key)
    x = standardise(augment(augment_key, as_unit_float(images), step_config.augmentation), stats)
    module = EmotionCNN(pixel_free(model_config))

    def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
        logits = module.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
        return cross_entropy(logits, targets), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = make_optimizer(step_config).update(grads, state.opt_state, state.params)
    truth = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    error = jnp.mean(jnp.argmax(logits, axis=-1) != truth)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
    return new_state, {"loss": loss, "error": error}


@lru_cache(maxsize=16)
def make_train_step(model_config: ModelConfig, train_config: TrainConfig, steps_per_epoch: int = 1) -> Callable:
    """A compiled ``step(state, images, labels, key) -> (state, {"loss", "error"})`` over one batch.

    ``images`` are uint8 or [0, 1] floats (B, H, W); ``labels`` class indices (B,) or target
    distributions (B, C). The state's buffers are donated. Build the state with :func:`init_state`.
    """
    step_config, stats = StepConfig.of(train_config, steps_per_epoch), pixel_stats(model_config)
    step = lambda state, images, labels, key: _train_step(model_config, step_config, state, images, labels,  # noqa: E731
                                                          key, stats)
    return jax.jit(at_precision(step, step_config.precision), donate_argnums=0)


def epoch_order(key: jax.Array, epoch: jax.Array, n: jax.Array | int, length: int) -> jax.Array:
    """A fresh permutation of the first ``n`` (maybe traced) of ``length`` rows for ``epoch``, wrapped
    around to ``length`` entries. Each row draws its sort key from ``(key, epoch, row)`` and padding
    rows sort last, so the real rows' order does not depend on the padding (:mod:`emofx.nets.buckets`)."""
    epoch_key = jax.random.fold_in(key, epoch)
    rows = jnp.arange(length)
    sort_keys = jax.vmap(lambda row: jax.random.bits(jax.random.fold_in(epoch_key, row), (), jnp.uint32))(rows)
    order = jnp.lexsort((sort_keys, rows >= n))  # real rows first, each group by its random key
    return order[rows % n]


@lru_cache(maxsize=16)
def _compiled_chunk(model_config: ModelConfig, step_config: StepConfig, batch_size: int, n_steps: int) -> Callable:
    def chunk(state: TrainState, images: jax.Array, targets: jax.Array, key: jax.Array, stats: jax.Array,
              n: jax.Array, spe: jax.Array):
        traced_config = replace(step_config, steps_per_epoch=spe)
        order_key, step_key = jax.random.split(key)
        length = -(-images.shape[0] // batch_size) * batch_size  # room for every batch of an epoch of n <= rows
        new_order = lambda epoch: epoch_order(order_key, epoch, n, length)  # noqa: E731

        def body(carry, _):
            state, order = carry
            epoch, position = state.step // spe, state.step % spe
            order = jax.lax.cond(position == 0, lambda: new_order(epoch), lambda: order)
            batch = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
            state, metrics = _train_step(model_config, traced_config, state, images[batch], targets[batch],
                                         jax.random.fold_in(step_key, state.step), stats)
            return (state, order), metrics

        (state, _), metrics = jax.lax.scan(body, (state, new_order(state.step // spe)), None, length=n_steps,
                                           unroll=True)
        return state, metrics

    return jax.jit(at_precision(chunk, step_config.precision), donate_argnums=0)


def make_train_chunk(model_config: ModelConfig, train_config: TrainConfig, steps_per_epoch: int,
                     n_steps: int) -> Callable:
    """A compiled ``chunk(state, images, targets, key, stats, n=None) -> (state, metrics)`` of ``n_steps`` steps.

    The steps run on the device with no host round trip between them (unrolled, see
    :class:`TrainConfig`), and successive chunks are dispatched asynchronously.
    ``images`` (N, H, W) uint8 and ``targets`` (N, C) are the whole training set on the device;
    each epoch visits a fresh permutation of it (from ``key`` and the epoch number), the last
    batch topped up from the start of that permutation. ``stats`` is :func:`pixel_stats` of the
    model; ``metrics`` holds per-step arrays. ``n`` (default: all) counts the leading rows that
    are real data, the rest being padding (:func:`emofx.nets.buckets.pad_to_bucket`): one program
    serves every set of the same padded size, whatever its true size, epoch length or statistics.
    """
    step_config = StepConfig.of(train_config, 1)  # steps_per_epoch is passed as data
    compiled = _compiled_chunk(pixel_free(model_config), step_config, train_config.batch_size, int(n_steps))
    spe = np.int32(steps_per_epoch)

    def chunk(state: TrainState, images: jax.Array, targets: jax.Array, key: jax.Array, stats: jax.Array,
              n: int | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
        return compiled(state, images, targets, key, stats, np.int32(images.shape[0] if n is None else n), spe)

    return chunk


@lru_cache(maxsize=16)
def _compiled_evaluator(model_config: ModelConfig, batch_size: int) -> Callable:
    module = EmotionCNN(model_config)

    def evaluate(params: Any, images: jax.Array, targets: jax.Array, stats: jax.Array,
                 n: jax.Array) -> tuple[jax.Array, jax.Array]:
        n_batches = -(-images.shape[0] // batch_size)
        pad = n_batches * batch_size - images.shape[0]
        valid = jnp.arange(images.shape[0] + pad) < n
        x = jnp.pad(images, ((0, pad), (0, 0), (0, 0))).reshape(n_batches, batch_size, *images.shape[1:])
        t = jnp.pad(targets, ((0, pad), (0, 0))).reshape(n_batches, batch_size, -1)

        def one(batch):
            logits = module.apply({"params": params}, standardise(as_unit_float(batch[0]), stats))
            wrong = jnp.argmax(logits, -1) != jnp.argmax(batch[1], -1)
            nll = -jnp.sum(batch[1] * jax.nn.log_softmax(logits), axis=-1)
            return wrong, nll

        wrong, nll = jax.lax.map(one, (x, t))
        wrong, nll = wrong.reshape(-1), nll.reshape(-1)
        return jnp.sum(wrong * valid) / n, jnp.sum(jnp.where(valid, nll, 0.0)) / n

    return jax.jit(evaluate)


def make_evaluator(model_config: ModelConfig, batch_size: int = 256) -> Callable:
    """A compiled ``evaluate(params, images, targets, stats, n=None) -> (error rate, mean loss)``, in batches
    of ``batch_size`` (the last one padded and masked) over the first ``n`` rows (default all; the
    rest is padding); ``stats`` as for :func:`make_train_chunk`."""
    compiled = _compiled_evaluator(pixel_free(model_config), batch_size)

    def evaluate(params: Any, images: jax.Array, targets: jax.Array, stats: jax.Array,
                 n: int | None = None) -> tuple[jax.Array, jax.Array]:
        return compiled(params, images, targets, stats, np.int32(images.shape[0] if n is None else n))

    return evaluate


# ---------------------------------------------------------------------------- data preparation


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of the [0, 1] pixel values (the model's standardisation)."""
    x = np.asarray(images, np.float64) / 255.0
    return float(x.mean()), float(max(x.std(), 1e-3))


def check_trainable(train_set: FaceDataset, val_set: FaceDataset) -> None:
    """Clear errors for data that cannot be trained on, before any time is spent."""
    h, w = train_set.image_shape
    if h != w:
        raise TrainingError(f"images are {h}x{w}; the CNN needs square images (prepare with --size 48)")
    counts = train_set.counts()
    scarce = {c: k for c, k in counts.items() if k < 2}
    if scarce:
        raise TrainingError(
            f"the training part has fewer than 2 images of classes {scarce}; use more data, another split, "
            "or drop those classes"
        )
    if len(val_set) == 0:
        raise TrainingError("the validation part is empty; the best checkpoint is chosen on validation data")
    if val_set.classes != train_set.classes:
        raise TrainingError(f"validation classes {list(val_set.classes)} differ from training classes "
                            f"{list(train_set.classes)}")


# ---------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class TrainResult:
    """A finished training: the best-validation model and how training went.

    ``stop_reason`` is one of ``completed``, ``early_stopping``, ``nan_loss``, ``interrupted``
    and ``stop_message`` says it in a sentence; ``notes`` are other messages for the user (e.g.
    a replaced output layer). ``step_seconds`` is the time spent inside compiled training
    chunks (the rest of ``seconds`` is overhead: validation, bookkeeping, compilation aside);
    ``compile_seconds`` the time spent compiling or loading compiled programs (in or out of steps).
    """

    model: TrainedModel
    history: pd.DataFrame
    best_step: int
    best_val_error: float
    steps: int
    stop_reason: str
    stop_message: str
    notes: tuple[str, ...]
    seconds: float
    step_seconds: float
    compile_seconds: float = 0.0


def initial_params(model_config: ModelConfig, key: jax.Array, init_from: TrainedModel | None,
                   classes: tuple[str, ...]) -> tuple[Any, list[str]]:
    """Fresh parameters, or ``init_from``'s weights (a fresh output layer when the class sets differ)."""
    params = init_params(model_config, key)
    if init_from is None:
        return params, []
    mine, theirs = model_config.architecture(), init_from.config.architecture()
    mine.pop("num_classes"), theirs.pop("num_classes")
    if mine != theirs:
        raise CheckpointError(f"--init-from model has architecture {theirs}, but this training uses {mine}")
    if tuple(init_from.classes) == classes:
        return jax.tree.map(jnp.asarray, init_from.params), []
    merged = {**jax.tree.map(jnp.asarray, init_from.params), "output": params["output"]}
    return merged, [f"initial weights' classes {list(init_from.classes)} differ from these {list(classes)}: "
                    "the output layer was replaced by a freshly initialised one"]


def fit(
    train_set: FaceDataset,
    val_set: FaceDataset,
    config: TrainConfig = TrainConfig(),
    model: ModelConfig | None = None,
    *,
    trial: int = 0,
    init_from: TrainedModel | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on ``train_set``, validating on ``val_set``; returns the best-validation model.

    ``model`` gives the architecture (widths, dense units, ...); the class count, input size
    and pixel statistics are taken from ``train_set``. Randomness flows from
    ``(config.seed, trial)``. Ctrl-C stops training and still returns the best model.
    """
    started, compiled_before = time.perf_counter(), compile_seconds()
    check_trainable(train_set, val_set)
    mean, std = pixel_statistics(train_set.images)
    model_config = replace(model or ModelConfig(num_classes=len(train_set.classes)),
                           num_classes=len(train_set.classes), input_size=train_set.image_shape[0],
                           pixel_mean=mean, pixel_std=std)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), trial)
    init_key, data_key = jax.random.split(key)
    params, notes = initial_params(model_config, init_key, init_from, train_set.classes)

    spe = math.ceil(len(train_set) / config.batch_size)
    total_steps = config.epochs * spe
    eval_every = config.eval_every or spe
    state = init_state(params, config, spe)
    schedule = learning_rate_schedule(StepConfig.of(config, spe))
    learning_rates = np.asarray(jax.vmap(schedule)(jnp.arange(total_steps + 1)))  # one call, not one per validation
    train_targets = training_targets(train_set, config.soft_targets)
    if config.weight_by_agreement:
        train_targets = train_targets * agreement_weights(train_set)[:, None]
    (images, targets), n_train = pad_to_bucket(train_set.images, train_targets)
    (val_images, val_targets), n_val = pad_to_bucket(val_set.images, training_targets(val_set, config.soft_targets))
    images, targets, val_images, val_targets = jax.device_put((images, targets, val_images, val_targets))
    stats = pixel_stats(model_config)
    evaluate = make_evaluator(model_config, min(config.eval_batch_size, len(val_images)))  # no padding of small sets

    val_error, val_loss = (float(v) for v in evaluate(state.params, val_images, val_targets, stats, n_val))
    rows = [dict(step=0, epoch=0.0, lr=float(learning_rates[0]), train_loss=np.nan, train_error=np.nan,
                 val_error=val_error, val_loss=val_loss)]
    best = dict(params=jax.tree.map(jnp.copy, state.params), step=0, error=val_error, loss=val_loss)
    stop_reason, since_best, step, step_seconds = "completed", 0, 0, 0.0
    bar = tqdm(total=total_steps, desc="train", unit="step", disable=not progress, leave=False)
    try:
        while step < total_steps:
            n_steps = min(eval_every, total_steps - step)
            tick = time.perf_counter()
            pieces = []
            for start in range(0, n_steps, config.unroll_steps):
                chunk = make_train_chunk(model_config, config, spe, min(config.unroll_steps, n_steps - start))
                state, metrics = chunk(state, images, targets, data_key, stats, n_train)
                pieces.append((metrics["loss"], metrics["error"]))
            losses, errors = (np.concatenate(m) for m in zip(*jax.device_get(pieces)))
            step_seconds += time.perf_counter() - tick
            bar.update(n_steps)
            if not np.all(np.isfinite(losses)):
                first_bad = int(np.argmin(np.isfinite(losses)))
                stop_reason, step = "nan_loss", step + first_bad + 1
                break
            step += n_steps
            val_error, val_loss = (float(v) for v in evaluate(state.params, val_images, val_targets, stats, n_val))
            if not np.isfinite(val_loss):  # parameters so large that the logits overflow
                stop_reason = "nan_loss"
                break
            rows.append(dict(step=step, epoch=step / spe, lr=float(learning_rates[step - 1]),
                             train_loss=float(losses.mean()), train_error=float(errors.mean()),
                             val_error=val_error, val_loss=val_loss))
            bar.set_postfix(loss=f"{losses.mean():.3f}", val_err=f"{val_error:.3f}")
            if (val_error, val_loss) < (best["error"], best["loss"]):
                best = dict(params=jax.tree.map(jnp.copy, state.params), step=step, error=val_error, loss=val_loss)
                since_best = 0
            else:
                since_best += 1
            if config.patience and since_best >= config.patience:
                stop_reason = "early_stopping"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    finally:
        bar.close()

    kept = f"kept the best checkpoint from step {best['step']} (validation error {best['error']:.4f})"
    stop_message = {
        "completed": f"trained {step} steps ({config.epochs} epochs); {kept}",
        "early_stopping": f"validation error did not improve for {since_best} validations: "
                          f"stopped at step {step}; {kept}",
        "nan_loss": f"the loss became NaN or infinite at step {step} (is the learning rate {config.learning_rate} "
                    f"too high?): stopped; {kept}",
        "interrupted": f"interrupted at step {step}; {kept}",
    }[stop_reason]
    trained = TrainedModel(config=model_config, params=jax.device_get(best["params"]), classes=train_set.classes,
                           info={"train_config": config.to_dict(), "trial": trial, "best_step": best["step"]})
    return TrainResult(
        model=trained,
        history=pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)),
        best_step=int(best["step"]),
        best_val_error=float(best["error"]),
        steps=step,
        stop_reason=stop_reason,
        stop_message=stop_message,
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
        compile_seconds=compile_seconds() - compiled_before,
    )
