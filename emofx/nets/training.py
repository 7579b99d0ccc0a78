"""Training the paper's CNN: SGD with momentum, a learning-rate schedule, augmentation, best checkpoint.

The numeric core is pure and compiled: the training set lives on the device, and each chunk of
``unroll_steps`` steps is one program that samples, augments and updates (state buffers donated).
Python queues chunks, moves the progress bar and, at each validation (one compiled, batched
function), keeps the best parameters, stops early, checks for NaN and records the history.

What is optimised and how (:class:`TrainConfig`, schedules, optimiser, loss) lives in
:mod:`emofx.nets.optimisation` and is re-exported here; the defaults are the reference
implementation, the ``paper`` recipe of :mod:`emofx.nets.recipes`.

With ``state_path``, :func:`fit` writes the full training state (parameters, running
statistics, optimiser state, step, data key, best-so-far, history, early-stopping counter) at
the first validation and then at the first validation after every ``state_every`` seconds, and
resumes from it: a resumed run ends with the numbers of an uninterrupted one
(:mod:`emofx.nets.train_state`). Writing it is not free (0.16 s for the paper CNN on a 2-core
CPU: 3 s of a 20-epoch KDEF run of 90 s), so short epochs do not each pay for it; a killed run
loses at most about ``state_every`` seconds of training, an interrupted one (Ctrl-C) the steps since its
last validation.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.progress import tqdm
from emofx.nets.augment import augment
from emofx.nets.buckets import pad_to_bucket
from emofx.nets.checkpoint import TrainedModel, as_unit_float
from emofx.nets.compilation import (compile_in_background, compile_seconds, joined_on_error, process_seconds,
                                    release_after_first_run)
from emofx.nets.interrupts import caught_interrupts
from emofx.nets.model import (EmotionCNN, ModelConfig, init_variables, model_variables, pixel_free, pixel_stats,
                              standardise)
from emofx.nets.optimisation import (DENSE_LAYERS, SCHEDULES, StepConfig, TrainConfig, TrainingError, chunk_lengths,
                                     cross_entropy, learning_rate_schedule, learning_rates, make_optimizer)
from emofx.nets.precision import at_precision, precision_for
from emofx.nets.targets import training_targets, weighted_targets
from emofx.nets.train_state import (LoopProgress, best_model, copied, describe_stop, history_row, improves,
                                     load_training_state, save_training_state, snapshot)
from emofx.nets.transfer import initial_variables

__all__ = ["DENSE_LAYERS", "SCHEDULES", "StepConfig", "TrainConfig", "TrainingError", "cross_entropy",
           "learning_rate_schedule", "make_optimizer", "TrainState", "init_state", "make_train_step",
           "make_train_chunk", "chunk_lengths", "make_evaluator", "training_targets", "pixel_statistics",
           "check_trainable", "TrainResult", "fit"]

STATE_EVERY_SECONDS = 60.0  # how much training a killed run may lose, at most
HISTORY_COLUMNS = ("step", "epoch", "lr", "train_loss", "train_error", "val_error", "val_loss")


class TrainState(NamedTuple):
    """The training state threaded through the compiled step: step counter, parameters, optimiser
    state and, for a model with batch normalisation, its running statistics (else None)."""

    step: jax.Array
    params: Any
    opt_state: Any
    batch_stats: Any = None


def init_state(params: Any, train_config: TrainConfig, steps_per_epoch: int = 1,
               batch_stats: Any = None) -> TrainState:
    """The state at step 0 for ``params`` and, with batch normalisation, ``batch_stats``
    (see :func:`emofx.nets.model.init_variables`)."""
    step, optimizer_state = _optimizer_start(StepConfig.of(train_config, steps_per_epoch))(params)
    return TrainState(step, params, optimizer_state, batch_stats or None)


@lru_cache(maxsize=16)
def _optimizer_start(step_config: StepConfig) -> Callable:
    """The step counter and optimiser state at step 0 as one compiled program (op by op: one per parameter)."""
    optimizer = make_optimizer(step_config)

    def optimizer_start(params: Any) -> tuple[jax.Array, Any]:
        return jnp.zeros((), jnp.int32), optimizer.init(params)

    return jax.jit(optimizer_start)


# ---------------------------------------------------------------------------- compiled step
def _train_step(model_config: ModelConfig, step_config: StepConfig, state: TrainState, images: jax.Array,
                targets: jax.Array, key: jax.Array, stats: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on a batch: augment, standardise, forward with dropout (and batch statistics),
    backward, update."""
    augment_key, dropout_key = jax.random.split(key)
    x = standardise(augment(augment_key, as_unit_float(images), step_config.augmentation), stats)
    module = EmotionCNN(pixel_free(model_config))

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        variables = model_variables(params, state.batch_stats)
        if state.batch_stats is None:
            logits, batch_stats = module.apply(variables, x, train=True, rngs={"dropout": dropout_key}), None
        else:
            logits, updated = module.apply(variables, x, train=True, rngs={"dropout": dropout_key},
                                           mutable=["batch_stats"])
            batch_stats = updated["batch_stats"]
        return cross_entropy(logits, targets, step_config.label_smoothing), (logits, batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = make_optimizer(step_config).update(grads, state.opt_state, state.params)
    truth = targets if targets.ndim == 1 else jnp.argmax(targets, axis=-1)
    error = jnp.mean(jnp.argmax(logits, axis=-1) != truth)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state, batch_stats)
    return new_state, {"loss": loss, "error": error}


@lru_cache(maxsize=16)
def make_train_step(model_config: ModelConfig, train_config: TrainConfig, steps_per_epoch: int = 1) -> Callable:
    """A compiled ``step(state, images, labels, key) -> (state, {"loss", "error"})`` over one batch.

    ``images`` are uint8 or [0, 1] floats (B, H, W); ``labels`` class indices (B,) or target
    distributions (B, C). The state's buffers are donated. Build the state with :func:`init_state`.
    """
    step_config, stats = StepConfig.of(train_config, steps_per_epoch), pixel_stats(model_config)
    step = lambda state, images, labels, key: _train_step(  # noqa: E731
        model_config, step_config, state, images, labels, key, stats)
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


def chunk_function(model_config: ModelConfig, step_config: StepConfig, batch_size: int, n_steps: int,
                   masked: bool = False) -> Callable:
    """The pure (uncompiled) ``chunk(state, images, targets, key, stats, n, spe, limit) -> (state, metrics)``
    behind :func:`make_train_chunk`. ``masked`` (:mod:`emofx.nets.lanes`): steps at or past ``limit``
    leave the state as it was (metrics ``active`` False); unmasked, every step runs (no selects)."""
    def chunk(state: TrainState, images: jax.Array, targets: jax.Array, key: jax.Array, stats: jax.Array,
              n: jax.Array, spe: jax.Array, limit: jax.Array):
        traced_config = replace(step_config, steps_per_epoch=spe)
        order_key, step_key = jax.random.split(key)
        length = -(-images.shape[0] // batch_size) * batch_size  # room for every batch of an epoch of n <= rows
        new_order = lambda epoch: epoch_order(order_key, epoch, n, length)  # noqa: E731

        def body(carry, _):
            state, order = carry
            epoch, position = state.step // spe, state.step % spe
            order = jax.lax.cond(position == 0, lambda: new_order(epoch), lambda: order)
            batch = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
            stepped, metrics = _train_step(model_config, traced_config, state, images[batch], targets[batch],
                                           jax.random.fold_in(step_key, state.step), stats)
            if not masked:
                return (stepped, order), metrics
            active = state.step < limit
            state = jax.tree.map(lambda new, old: jnp.where(active, new, old), stepped, state)
            return (state, order), {**metrics, "active": active}

        (state, _), metrics = jax.lax.scan(body, (state, new_order(state.step // spe)), None, length=n_steps,
                                           unroll=True)
        return state, metrics

    return chunk


@lru_cache(maxsize=16)
def _compiled_chunk(model_config: ModelConfig, step_config: StepConfig, batch_size: int, n_steps: int) -> Callable:
    chunk = chunk_function(model_config, step_config, batch_size, n_steps)
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
    ``dispatched`` is called once the steps are queued, before the wait that follows a program's first run
    (:func:`emofx.nets.compilation.release_after_first_run`).
    """
    step_config = StepConfig.of(train_config, 1)  # steps_per_epoch is passed as data
    compiled = _compiled_chunk(pixel_free(model_config), step_config, train_config.batch_size, int(n_steps))
    spe = np.int32(steps_per_epoch)

    def chunk(state: TrainState, images: jax.Array, targets: jax.Array, key: jax.Array, stats: jax.Array,
              n: int | None = None, dispatched: Callable[[], Any] | None = None
              ) -> tuple[TrainState, dict[str, jax.Array]]:
        result = compiled(state, images, targets, key, stats, np.int32(images.shape[0] if n is None else n), spe,
                          np.int32(np.iinfo(np.int32).max))
        if dispatched is not None:  # the steps are running: a program's first run is waited for just below
            dispatched()
        release_after_first_run(compiled, (images.shape, targets.shape), result)
        return result

    return chunk


def evaluator_function(model_config: ModelConfig, batch_size: int, flip_average: bool) -> Callable:
    """The pure (uncompiled) ``evaluate(variables, images, targets, stats, n)`` behind :func:`make_evaluator`."""
    module = EmotionCNN(model_config)

    def log_probabilities(variables: Any, x: jax.Array) -> jax.Array:
        if not flip_average:
            return jax.nn.log_softmax(module.apply(variables, x))
        both = jnp.stack([jax.nn.log_softmax(module.apply(variables, v)) for v in (x, x[:, :, ::-1])])
        return jax.nn.logsumexp(both, axis=0) - jnp.log(2.0)

    def evaluate(variables: Any, images: jax.Array, targets: jax.Array, stats: jax.Array,
                 n: jax.Array) -> tuple[jax.Array, jax.Array]:
        n_batches = -(-images.shape[0] // batch_size)
        pad = n_batches * batch_size - images.shape[0]
        valid = jnp.arange(images.shape[0] + pad) < n
        x = jnp.pad(images, ((0, pad), (0, 0), (0, 0))).reshape(n_batches, batch_size, *images.shape[1:])
        t = jnp.pad(targets, ((0, pad), (0, 0))).reshape(n_batches, batch_size, -1)

        def one(batch):
            log_p = log_probabilities(variables, standardise(as_unit_float(batch[0]), stats))
            wrong = jnp.argmax(log_p, -1) != jnp.argmax(batch[1], -1)
            nll = -jnp.sum(batch[1] * log_p, axis=-1)
            return wrong, nll

        wrong, nll = jax.lax.map(one, (x, t))
        wrong, nll = wrong.reshape(-1), nll.reshape(-1)
        return jnp.sum(wrong * valid) / n, jnp.sum(jnp.where(valid, nll, 0.0)) / n

    return evaluate


@lru_cache(maxsize=16)
def _compiled_evaluator(model_config: ModelConfig, batch_size: int, flip_average: bool, precision: str) -> Callable:
    return jax.jit(at_precision(evaluator_function(model_config, batch_size, flip_average), precision))


def make_evaluator(model_config: ModelConfig, batch_size: int = 256, flip_average: bool = False,
                   precision: str | None = None) -> Callable:
    """A compiled ``evaluate(variables, images, targets, stats, n=None) -> (error rate, mean loss)``,
    in batches of ``batch_size`` (the last one padded and masked) over the first ``n`` rows
    (default all; the rest is padding); ``variables`` as :func:`emofx.nets.model.model_variables`
    gives them (eval mode), ``stats`` as for :func:`make_train_chunk`. ``flip_average`` scores
    the mean probabilities of each image and its mirror image. ``precision``: the matmul precision
    (:mod:`emofx.nets.precision`; ``None``: the one in force now), a training's own for its validation."""
    compiled = _compiled_evaluator(pixel_free(model_config), batch_size, flip_average, precision_for(precision))

    def evaluate(variables: Any, images: jax.Array, targets: jax.Array, stats: jax.Array,
                 n: int | None = None) -> tuple[jax.Array, jax.Array]:
        return compiled(variables, images, targets, stats, np.int32(images.shape[0] if n is None else n))

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
        raise TrainingError(f"the training part has fewer than 2 images of classes {scarce}; use more data, another "
                            "split, or drop those classes")
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
    output units that started fresh). ``step_seconds`` is the time spent inside compiled training
    chunks (the rest of ``seconds`` is overhead: validation, bookkeeping, compilation aside);
    ``compile_seconds`` the time spent compiling or loading compiled programs (in or out of steps);
    ``ready_seconds`` how long after the process started the first training step was dispatched
    (imports, data, initial validation and compiling or loading the step: the cost of a new process);
    ``side_by_side`` how many trainings ran as one program (:func:`emofx.nets.lanes.fit_lanes`), all of whose
    times these are (1: this training alone).
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
    ready_seconds: float = float("nan")
    side_by_side: int = 1  # trainings run together as one program (emofx.nets.lanes), whose times these are


def fit(
    train_set: FaceDataset,
    val_set: FaceDataset,
    config: TrainConfig = TrainConfig(),
    model: ModelConfig | None = None,
    *,
    trial: int = 0,
    init_from: TrainedModel | None = None,
    progress: bool = True,
    state_path: str | Path | None = None,
    resume: bool = False,
    tag: Mapping[str, Any] | None = None,
    state_every: float = STATE_EVERY_SECONDS,
) -> TrainResult:
    """Train on ``train_set``, validating on ``val_set``; returns the best-validation model.

    ``model`` gives the architecture (widths, dense units, normalisation, ...); the class count, input size and pixel
    statistics are taken from ``train_set``. Randomness flows from ``(config.seed, trial)``. Ctrl-C stops training
    and still returns the best model. With ``state_path`` the full training state is saved there at the first
    validation and then at the first validation after every ``state_every`` seconds (0: at every one), and ``resume``
    continues from it (refused when it was saved by another training: other data sizes, settings, trial or ``tag``).
    The progress bar shows from the start, "compiling" until the first step runs (up to a minute the first time).
    """
    started, compiled_before = time.perf_counter(), compile_seconds()
    for value, kind in ((train_set, FaceDataset), (val_set, FaceDataset), (config, TrainConfig)):
        if not isinstance(value, kind):
            raise TypeError(f"fit takes two FaceDatasets and a TrainConfig; got a {type(value).__name__} for a "
                            f"{kind.__name__}")
    check_trainable(train_set, val_set)
    if config.batch_size > len(train_set):
        warnings.warn(f"the batch ({config.batch_size}) is larger than the {len(train_set)} training images: every "
                      "step repeats some of them and costs a whole batch; choose a batch size of at most "
                      f"{len(train_set)}", stacklevel=2)
    model_config = model_for(train_set, model)
    spe = math.ceil(len(train_set) / config.batch_size)
    total_steps = config.epochs * spe
    eval_every = config.eval_every or spe
    (images, targets), n_train = pad_to_bucket(train_set.images, weighted_targets(train_set, config))
    (val_images, val_targets), n_val = pad_to_bucket(val_set.images, training_targets(val_set, config.soft_targets))
    init_key, data_key = training_keys(config.seed, trial)
    stats = pixel_stats(model_config)
    first_chunk = _prepare_first_chunk(model_config, config, spe,
                                       chunk_lengths(min(eval_every, total_steps), config.unroll_steps)[0],
                                       images, targets, data_key, stats)
    bar = tqdm(total=total_steps, desc="train", unit="step", disable=not progress, leave=False, postfix="compiling")
    with joined_on_error(first_chunk):  # e.g. an --init-from model of another shape
        variables, notes = initial_variables(model_config, init_key, init_from, train_set.classes)
        state = init_state(variables["params"], config, spe, variables.get("batch_stats"))
        rates = learning_rates(StepConfig.of(config, spe), total_steps)
        images, targets, val_images, val_targets = jax.device_put((images, targets, val_images, val_targets))
        evaluate = make_evaluator(model_config, min(config.eval_batch_size, len(val_images)),  # small sets unpadded
                                  config.flip_average, precision_for(config.precision))
        validate = lambda s: tuple(float(v) for v in evaluate(model_variables(s.params, s.batch_stats),  # noqa: E731
                                                              val_images, val_targets, stats, n_val))
        state_tag = {"tag": dict(tag or {}), "model": model_config.to_dict(), "train": config.to_dict(), "trial": trial,
                     "n_train": len(train_set), "n_val": len(val_set)}

        if resume:
            if state_path is None:
                raise TrainingError("resuming needs the state_path the interrupted training saved its state to")
            state, data_key, loop = load_training_state(state_path, state_tag, state, state.params)
        else:
            val_error, val_loss = validate(state)
            loop = LoopProgress(
                rows=[history_row(0, spe, rates[0], np.nan, np.nan, val_error, val_loss)],
                best=snapshot(state, 0, val_error, val_loss), since_best=0, step=0)
        earlier_seconds, step_seconds, loop_compile_seconds = loop.seconds, loop.step_seconds, loop.compile_seconds
        stop_reason = "early_stopping" if config.patience and loop.since_best >= config.patience else "completed"
        bar.update(loop.step)  # a resumed training's steps
        first_step, last_save = [], -math.inf  # when the first step was dispatched (process seconds)
    first_chunk.join()
    bar.set_postfix_str("", refresh=False)  # compiled: the first validation's numbers replace it
    unsaved = None  # the state at the last validation while not written: Ctrl-C writes it (resumed from there)
    try:
        with caught_interrupts() as stop_if_interrupted:
            while stop_reason == "completed" and loop.step < total_steps:
                n_steps = min(eval_every, total_steps - loop.step)
                tick = time.perf_counter()
                pieces = []
                for length in chunk_lengths(n_steps, config.unroll_steps):
                    stop_if_interrupted()  # a Ctrl-C that Python swallowed (in a callback) stops here
                    chunk = make_train_chunk(model_config, config, spe, length)
                    state, metrics = chunk(state, images, targets, data_key, stats, n_train,
                                           dispatched=None if first_step else lambda: first_step.append(
                                               process_seconds()))  # compiled and queued: the first step runs
                    pieces.append((metrics["loss"], metrics["error"]))
                    if len(pieces) > 1:  # the bar follows finished chunks while the next one is queued
                        bar.update(len(jax.block_until_ready(pieces[-2][0])))
                losses, errors = (np.concatenate(m) for m in zip(*jax.device_get(pieces)))
                step_seconds += time.perf_counter() - tick
                bar.update(len(pieces[-1][0]))
                if not np.all(np.isfinite(losses)):
                    first_bad = int(np.argmin(np.isfinite(losses)))
                    stop_reason, loop.step = "nan_loss", loop.step + first_bad + 1
                    break
                loop.step += n_steps
                val_error, val_loss = validate(state)
                if not np.isfinite(val_loss):  # parameters so large that the logits overflow
                    stop_reason = "nan_loss"
                    break
                loop.rows.append(history_row(loop.step, spe, rates[loop.step - 1], losses, errors, val_error,
                                             val_loss))
                bar.set_postfix(loss=f"{losses.mean():.3f}", val_err=f"{val_error:.3f}", refresh=False)
                if improves(val_error, val_loss, loop.best):
                    loop.best, loop.since_best = snapshot(state, loop.step, val_error, val_loss), 0
                else:
                    loop.since_best += 1
                if state_path is not None:
                    loop.seconds, loop.step_seconds = earlier_seconds + time.perf_counter() - started, step_seconds
                    loop.compile_seconds = loop_compile_seconds + compile_seconds() - compiled_before
                    if time.perf_counter() - last_save >= state_every:
                        unsaved = (state, loop)  # written again by Ctrl-C should it cut this write short
                        save_training_state(state_path, state_tag, state, data_key, loop)
                        unsaved, last_save = None, time.perf_counter()  # written: the next chunk takes its buffers
                    else:
                        unsaved = (copied(state), replace(loop, rows=list(loop.rows)))
                if config.patience and loop.since_best >= config.patience:
                    stop_reason = "early_stopping"
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        if unsaved is not None:
            try:
                save_training_state(state_path, state_tag, unsaved[0], data_key, unsaved[1])
            except KeyboardInterrupt:  # a second Ctrl-C: the state stays as last written, the run is still recorded
                pass
    finally:
        bar.close()

    best, step = loop.best, loop.step
    stop_message = describe_stop(stop_reason, step, loop.since_best, best, config)
    trained = best_model(model_config, best, train_set.classes, config, trial)
    return TrainResult(
        model=trained,
        history=pd.DataFrame(loop.rows, columns=list(HISTORY_COLUMNS)),
        best_step=int(best["step"]),
        best_val_error=float(best["error"]),
        steps=step,
        stop_reason=stop_reason,
        stop_message=stop_message,
        notes=tuple(notes),
        seconds=earlier_seconds + time.perf_counter() - started,
        step_seconds=step_seconds,
        compile_seconds=loop_compile_seconds + compile_seconds() - compiled_before,
        ready_seconds=first_step[0] if first_step else float("nan"),
    )


def _prepare_first_chunk(model_config: ModelConfig, config: TrainConfig, spe: int, n_steps: int, images: np.ndarray,
                         targets: np.ndarray, key: jax.Array, stats: jax.Array) -> threading.Thread:
    """Get the first training chunk's program in the background while the loop is being set up
    (:func:`emofx.nets.compilation.compile_in_background`): a new process starts training sooner."""
    def arguments() -> tuple:
        fresh = jax.eval_shape(partial(init_variables, model_config), key)  # the shapes of any initial variables
        state = jax.eval_shape(lambda v: init_state(v["params"], config, spe, v.get("batch_stats")), fresh)
        like = lambda a: jax.ShapeDtypeStruct(a.shape, jax.dtypes.canonicalize_dtype(a.dtype))  # noqa: E731
        return state, like(images), like(targets), key, stats, np.int32(len(images)), np.int32(spe), np.int32(0)

    chunk = _compiled_chunk(pixel_free(model_config), StepConfig.of(config, 1), config.batch_size, n_steps)
    return compile_in_background(chunk, arguments)


def model_for(train_set: FaceDataset, model: ModelConfig | None) -> ModelConfig:
    """``model`` (default: the paper's CNN) sized for ``train_set``: its classes, input size and pixel statistics."""
    mean, std = pixel_statistics(train_set.images)
    return replace(model or ModelConfig(num_classes=len(train_set.classes)), num_classes=len(train_set.classes),
                   input_size=train_set.image_shape[0], pixel_mean=mean, pixel_std=std)


@jax.jit
def training_keys(seed: int, trial: int) -> tuple[jax.Array, jax.Array]:
    """The initialisation and data keys every random choice of a training flows from, split off the key of
    ``(seed, trial)`` in one compiled program."""
    init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), trial))
    return init_key, data_key
