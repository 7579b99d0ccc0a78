"""Several trainings as one program: K trials trained side by side by ``jax.vmap``.

The paper's protocol trains many small models (5 trials x each culture, ~1000 images each): on
a GPU each one fills a small part of the device and its run time is mostly dispatch and
validation overhead. :func:`fit_lanes` stacks K trainings (*lanes*: other trials, seeds,
splits or cultures of the same image size and classes) along a leading axis and runs them as
one vmapped program: one dispatch per chunk of steps and one validation call for all of them.

Each lane is the training :func:`emofx.nets.training.fit` runs for the same data, seed and
trial: the same initial parameters, batches, augmentation and dropout (every random choice
comes from the lane's own key), so a lane ends with the numbers of one-at-a-time training
within float tolerance (batched convolutions may add in another order). Lanes advance one
validation interval at a time together: within it each lane runs its own number of steps
(training sets of different sizes have different epoch lengths) and a lane that has finished
waits with its steps masked; each lane keeps its own best parameters, stops early on its own
(it then waits until the others finish) and stops on a NaN loss on its own.

Use it for many short trainings on a GPU. On a CPU it is slower: XLA's CPU backend ran 10 lanes
of the paper's CNN about 3x slower per image than 10 separate trainings (2 cores,
``benchmarks/results/protocol/lanes-vs-one-cpu-2026-12-02.json``). A long single training, which
needs resuming after an interruption, is :func:`emofx.nets.training.fit`'s job.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.progress import tqdm
from emofx.nets.buckets import bucket_size, pad_rows
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.compilation import compile_seconds, process_seconds
from emofx.nets.interrupts import caught_interrupts
from emofx.nets.model import ModelConfig, model_variables, pixel_free, pixel_stats
from emofx.nets.optimisation import StepConfig, TrainConfig, TrainingError, learning_rates
from emofx.nets.precision import at_precision
from emofx.nets.targets import training_targets, weighted_targets
from emofx.nets.training import (HISTORY_COLUMNS, TrainResult, check_trainable, chunk_function, chunk_lengths,
                                 evaluator_function, init_state, model_for, training_keys)
from emofx.nets.train_state import best_model, describe_stop, history_row, improves, snapshot
from emofx.nets.transfer import initial_variables


@dataclass(frozen=True)
class Lane:
    """One training of a batch: its data, its trial (and seed, default the config's) and initial weights."""

    train_set: FaceDataset
    val_set: FaceDataset
    trial: int = 0
    seed: int | None = None
    init_from: TrainedModel | None = None


def lanes_pay_off(backend: str | None = None) -> bool:
    """Whether training runs side by side beats one after another on ``backend`` (default: JAX's):
    on an accelerator, where small trainings leave the device idle between dispatches; not on a
    CPU, where the vmapped step runs about 3x slower per image (the module doc)."""
    return (backend or jax.default_backend()) != "cpu"


@lru_cache(maxsize=16)
def _lanes_chunk(model_config: ModelConfig, step_config: StepConfig, batch_size: int, n_steps: int) -> Callable:
    chunk = jax.vmap(chunk_function(model_config, step_config, batch_size, n_steps, masked=True))
    return jax.jit(at_precision(chunk, step_config.precision), donate_argnums=0)


@lru_cache(maxsize=16)
def _lanes_evaluator(model_config: ModelConfig, batch_size: int, flip_average: bool, precision: str) -> Callable:
    return jax.jit(at_precision(jax.vmap(evaluator_function(model_config, batch_size, flip_average)), precision))


def _stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Arrays of different lengths zero-padded to one bucket and stacked on a new leading axis."""
    size = bucket_size(max(len(a) for a in arrays))
    return np.stack([pad_rows(a, size) for a in arrays])


def _lane(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda leaf: leaf[index], tree)


def _check_lanes(lanes: Sequence[Lane]) -> None:
    if not lanes:
        raise TrainingError("no trainings to run: give at least one lane")
    first = lanes[0].train_set
    for number, lane in enumerate(lanes):
        check_trainable(lane.train_set, lane.val_set)
        if lane.train_set.classes != first.classes or lane.train_set.image_shape != first.image_shape:
            raise TrainingError(
                f"lane {number} has classes {list(lane.train_set.classes)} and {lane.train_set.image_shape} images, "
                f"lane 0 {list(first.classes)} and {first.image_shape}: only trainings with the same classes and "
                "image size run as one program; train the others separately")


def fit_lanes(lanes: Sequence[Lane], config: TrainConfig = TrainConfig(), model: ModelConfig | None = None, *,
              progress: bool = True) -> list[TrainResult]:
    """Train every lane with ``config`` and ``model`` as one vmapped program; one result per lane.

    Each result is what :func:`emofx.nets.training.fit` returns for that lane (within float
    tolerance), except the times: ``seconds``, ``step_seconds``, ``compile_seconds`` and
    ``ready_seconds`` are those of the whole batch, shared by its lanes.
    """
    started, compiled_before = time.perf_counter(), compile_seconds()
    _check_lanes(lanes)
    configs = [replace(config, seed=config.seed if lane.seed is None else lane.seed) for lane in lanes]
    model_configs = [model_for(lane.train_set, model) for lane in lanes]
    keys = [training_keys(c.seed, lane.trial) for c, lane in zip(configs, lanes)]
    initial = [initial_variables(m, k[0], lane.init_from, lane.train_set.classes)
               for m, k, lane in zip(model_configs, keys, lanes)]
    spe = np.array([math.ceil(len(lane.train_set) / config.batch_size) for lane in lanes], np.int32)
    totals = config.epochs * spe
    intervals = np.full_like(spe, config.eval_every) if config.eval_every else spe
    states = [init_state(v["params"], config, s, v.get("batch_stats")) for (v, _), s in zip(initial, spe)]
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    rates = [learning_rates(StepConfig.of(config, s), t) for s, t in zip(spe, totals)]

    images = _stacked([lane.train_set.images for lane in lanes])
    targets = _stacked([weighted_targets(lane.train_set, c) for lane, c in zip(lanes, configs)])
    val_images = _stacked([lane.val_set.images for lane in lanes])
    val_targets = _stacked([training_targets(lane.val_set, config.soft_targets) for lane in lanes])
    n_train = np.array([len(lane.train_set) for lane in lanes], np.int32)
    n_val = np.array([len(lane.val_set) for lane in lanes], np.int32)
    stats = jnp.stack([pixel_stats(m) for m in model_configs])
    data_keys = jnp.stack([k[1] for k in keys])
    images, targets, val_images, val_targets = jax.device_put((images, targets, val_images, val_targets))

    shared = pixel_free(model_configs[0])
    step_config = StepConfig.of(config, 1)  # steps_per_epoch is passed as data
    evaluator = _lanes_evaluator(shared, min(config.eval_batch_size, val_images.shape[1]), config.flip_average,
                                 step_config.precision)

    def validate(state: Any) -> tuple[np.ndarray, np.ndarray]:
        errors, losses = evaluator(model_variables(state.params, state.batch_stats), val_images, val_targets,
                                   stats, n_val)
        return np.asarray(errors, np.float64), np.asarray(losses, np.float64)

    errors, losses = validate(state)
    rows = [[dict(step=0, epoch=0.0, lr=float(lr[0]), train_loss=np.nan, train_error=np.nan,
                  val_error=float(e), val_loss=float(v))] for lr, e, v in zip(rates, errors, losses)]
    best = [snapshot(_lane(state, k), 0, float(errors[k]), float(losses[k])) for k in range(len(lanes))]
    since_best = [0] * len(lanes)
    reasons = ["completed"] * len(lanes)
    steps = np.zeros(len(lanes), np.int32)
    step_seconds, ready_seconds = 0.0, float("nan")
    bar = tqdm(total=int(totals.sum()), desc=f"train {len(lanes)} lanes", unit="step", disable=not progress,
               leave=False)
    try:
        with caught_interrupts() as stop_if_interrupted:
            while True:
                running = np.array([r == "completed" for r in reasons]) & (steps < totals)
                if not running.any():
                    break
                limit = np.where(running, np.minimum(steps + intervals, totals), steps).astype(np.int32)
                ticks = int((limit - steps).max())
                tick = time.perf_counter()
                pieces = []
                for length in chunk_lengths(ticks, config.unroll_steps):
                    stop_if_interrupted()  # a Ctrl-C that Python swallowed (in a callback) stops here
                    chunk = _lanes_chunk(shared, step_config, config.batch_size, length)
                    state, metrics = chunk(state, images, targets, data_keys, stats, n_train, spe, limit)
                    if np.isnan(ready_seconds):
                        ready_seconds = process_seconds()
                    pieces.append((metrics["loss"], metrics["error"], metrics["active"]))
                lane_losses, lane_errors, active = (np.concatenate(m, axis=1) for m in zip(*jax.device_get(pieces)))
                step_seconds += time.perf_counter() - tick
                bar.update(int((limit - steps).sum()))
                errors, losses = validate(state)
                for k in np.flatnonzero(running):
                    done = active[k]
                    train_losses, train_errors = lane_losses[k][done], lane_errors[k][done]
                    if not np.all(np.isfinite(train_losses)) or not np.isfinite(losses[k]):
                        bad = np.flatnonzero(~np.isfinite(train_losses))
                        reasons[k], steps[k] = "nan_loss", steps[k] + (bad[0] + 1 if len(bad) else len(train_losses))
                        continue
                    steps[k] = limit[k]
                    rows[k].append(history_row(steps[k], spe[k], rates[k][steps[k] - 1], train_losses,
                                               train_errors, errors[k], losses[k]))
                    if improves(float(errors[k]), float(losses[k]), best[k]):
                        best[k], since_best[k] = snapshot(_lane(state, k), int(steps[k]), float(errors[k]),
                                                          float(losses[k])), 0
                    else:
                        since_best[k] += 1
                    if config.patience and since_best[k] >= config.patience:
                        reasons[k] = "early_stopping"
                bar.set_postfix(val_err=f"{np.mean(errors):.3f}", refresh=False)  # drawn at the next update
    except KeyboardInterrupt:
        reasons = ["interrupted" if r == "completed" and s < t else r for r, s, t in zip(reasons, steps, totals)]
    finally:
        bar.close()

    seconds, compiled = time.perf_counter() - started, compile_seconds() - compiled_before
    return [TrainResult(
        model=best_model(model_configs[k], best[k], lanes[k].train_set.classes, configs[k], lanes[k].trial),
        history=pd.DataFrame(rows[k], columns=list(HISTORY_COLUMNS)),
        best_step=int(best[k]["step"]),
        best_val_error=float(best[k]["error"]),
        steps=int(steps[k]),
        stop_reason=reasons[k],
        stop_message=describe_stop(reasons[k], int(steps[k]), since_best[k], best[k], configs[k]),
        notes=tuple(initial[k][1]),
        seconds=seconds,
        step_seconds=step_seconds,
        compile_seconds=compiled,
        ready_seconds=ready_seconds,
        side_by_side=len(lanes),
    ) for k in range(len(lanes))]
