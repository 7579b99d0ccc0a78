"""The full state of a training run on disk, so that a killed run resumes to the same numbers.

One file, written atomically at validations (:func:`emofx.nets.training.fit` says which), holds
the compiled state (step, parameters, running statistics, optimiser state), the data key, the best parameters so far
and the loop's bookkeeping (history rows, best step and error, early-stopping counter,
elapsed time). Its ``tag`` says which training it belongs to; resuming under another tag is
refused, so a state is never continued with other data or settings. The loop's bookkeeping in memory is here
too: the best model so far (:func:`snapshot`, :func:`improves`, :func:`best_model`) and how a training ended
(:func:`describe_stop`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from emofx.data.paths import atomic_write
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig
from emofx.nets.optimisation import TrainConfig

STATE_FILE = "training_state.msgpack"


class TrainStateError(ValueError):
    """A saved training state is missing, corrupt, or belongs to another training."""


@dataclass
class LoopProgress:
    """What the training loop carries between validations besides the compiled state.

    ``best`` holds ``params``, ``batch_stats``, ``step``, ``error`` and ``loss`` of the best
    validation so far; ``seconds``, ``step_seconds`` and ``compile_seconds`` are the time spent
    in earlier sessions.
    """

    rows: list[dict[str, float]]
    best: dict[str, Any]
    since_best: int
    step: int
    seconds: float = 0.0
    step_seconds: float = 0.0
    compile_seconds: float = 0.0


def history_row(step: int, steps_per_epoch: int, lr: float, train_losses: np.ndarray | float,
                train_errors: np.ndarray | float, val_error: float, val_loss: float) -> dict[str, float]:
    """One row of a training history (``HISTORY_COLUMNS`` of :mod:`emofx.nets.training`): a validation
    after ``step`` steps, with the mean training loss and error of the steps since the previous one (NaN before
    the first step)."""
    return dict(step=int(step), epoch=float(step / steps_per_epoch), lr=float(lr),
                train_loss=float(np.mean(train_losses)), train_error=float(np.mean(train_errors)),
                val_error=float(val_error), val_loss=float(val_loss))


def improves(val_error: float, val_loss: float, best: Mapping[str, Any]) -> bool:
    """Whether a validation beats the ``best`` so far: a lower error, ties broken by a lower loss."""
    return (val_error, val_loss) < (best["error"], best["loss"])


def snapshot(state: Any, step: int, error: float, loss: float) -> dict[str, Any]:
    """A copy of the state's parameters and running statistics with their validation scores."""
    params, batch_stats = copied((state.params, state.batch_stats))
    return dict(params=params, batch_stats=batch_stats, step=step, error=error, loss=loss)


@jax.jit
def copied(tree: Any) -> Any:
    """A copy of every array of ``tree`` as one program (op by op: one per array, ten for the paper's model)."""
    return jax.tree.map(jnp.copy, tree)


def save_training_state(path: str | Path, tag: Mapping[str, Any], state: Any, key: jax.Array,
                        progress: LoopProgress) -> None:
    """Write ``state`` (a pytree), the data ``key`` and ``progress`` to ``path`` in one atomic write."""
    best = progress.best
    meta = {"tag": tag, "rows": progress.rows, "since_best": progress.since_best, "step": progress.step,
            "seconds": progress.seconds, "step_seconds": progress.step_seconds,
            "compile_seconds": progress.compile_seconds,
            "best": {k: best[k] for k in ("step", "error", "loss")}}
    payload = {
        "state": flax.serialization.to_state_dict(jax.device_get(state)),
        "best_params": flax.serialization.to_state_dict(jax.device_get(best["params"])),
        "best_batch_stats": flax.serialization.to_state_dict(jax.device_get(best["batch_stats"])),
        "key": np.asarray(jax.device_get(key)),
        "meta": json.dumps(meta, default=_json_number),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, flax.serialization.msgpack_serialize(payload))


def read_tag(path: str | Path) -> dict[str, Any]:
    """The tag a saved state was written with (which training it belongs to)."""
    return _meta(_read(Path(path)), Path(path))["tag"]


def read_progress(path: str | Path) -> dict[str, Any]:
    """How far the saved training got: ``step``, ``epoch`` (of the last validation), ``epochs`` and
    ``steps`` planned, the best validation (``best_step``, ``best_val_error``), ``since_best`` and the
    training ``seconds`` so far; for reporting on a run in flight or killed."""
    path = Path(path)
    meta = _meta(_read(path), path)
    tag, last = meta["tag"], (meta["rows"] or [{}])[-1]
    train = tag.get("train", {})
    steps = None  # as fit() counts them: whole epochs of ceil(n_train / batch_size) steps
    if {"epochs", "batch_size"} <= train.keys() and "n_train" in tag:
        steps = int(train["epochs"]) * math.ceil(int(tag["n_train"]) / int(train["batch_size"]))
    return {"step": int(meta["step"]), "epoch": last.get("epoch"), "epochs": train.get("epochs"), "steps": steps,
            "best_step": meta["best"]["step"], "best_val_error": meta["best"]["error"],
            "since_best": int(meta["since_best"]), "seconds": float(meta["seconds"])}


def load_training_state(path: str | Path, tag: Mapping[str, Any], state_template: Any,
                        params_template: Any) -> tuple[Any, jax.Array, LoopProgress]:
    """The state, data key and progress saved at ``path``, shaped like the templates.

    Raises :class:`TrainStateError` when the file is missing or corrupt, or was written under
    another ``tag``.
    """
    path = Path(path)
    raw = _read(path)
    meta = _meta(raw, path)
    if meta["tag"] != json.loads(json.dumps(tag, default=_json_number)):
        raise TrainStateError(f"the training state in {path.parent} belongs to another run (different data, split, "
                              "seed, trial or settings); resume it with its own settings, or start afresh "
                              "(emofx train --overwrite)")
    try:
        state = flax.serialization.from_state_dict(state_template, raw["state"])
        best_params = flax.serialization.from_state_dict(params_template, raw["best_params"])
        best_stats = flax.serialization.from_state_dict(state_template.batch_stats, raw["best_batch_stats"])
    except (ValueError, KeyError, TypeError) as err:
        raise TrainStateError(f"the training state in {path.parent} does not fit this model ({err})") from err
    best = {**meta["best"], "params": best_params, "batch_stats": best_stats}
    progress = LoopProgress(rows=meta["rows"], best=best, since_best=int(meta["since_best"]), step=int(meta["step"]),
                            seconds=float(meta["seconds"]), step_seconds=float(meta["step_seconds"]),
                            compile_seconds=float(meta.get("compile_seconds", 0.0)))
    return state, jax.numpy.asarray(raw["key"]), progress


def _read(path: Path) -> dict[str, Any]:
    try:
        return flax.serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError as err:
        raise TrainStateError(f"no saved training state in {path.parent} to resume") from err
    except Exception as err:  # msgpack raises several unrelated types for a damaged file
        raise TrainStateError(f"the training state {path} is corrupt ({type(err).__name__}: not a whole msgpack file "
                              "of emofx); train the run afresh (emofx train --overwrite)") from err


def _meta(raw: Any, path: Path) -> dict[str, Any]:
    try:
        return json.loads(raw["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise TrainStateError(f"{path} is not an emofx training state; train the run afresh (emofx train --overwrite)"
                              ) from err


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot record {type(value).__name__} in a training state")


def describe_stop(stop_reason: str, step: int, since_best: int, best: Mapping[str, Any], config: TrainConfig) -> str:
    """One sentence on how a training ended and which checkpoint it kept."""
    kept = f"kept the best checkpoint from step {best['step']} (validation error {best['error']:.4f})"
    plural = lambda n, noun: f"{n} {noun}{'s' * (n != 1)}"  # noqa: E731
    return {"completed": f"trained {plural(step, 'step')} ({plural(config.epochs, 'epoch')}); {kept}",
            "early_stopping": f"validation error did not improve for {since_best} validations: stopped at step {step}; "
                              f"{kept}",
            "nan_loss": f"the loss became NaN or infinite at step {step} (is the learning rate "
                        f"{config.learning_rate} too high?): stopped; {kept}",
            "interrupted": f"interrupted at step {step}; {kept}"}[stop_reason]


def best_model(model_config: ModelConfig, best: Mapping[str, Any], classes: tuple[str, ...], config: TrainConfig,
               trial: int) -> TrainedModel:
    """The kept (best-validation) parameters as a :class:`TrainedModel` on the host."""
    return TrainedModel(config=model_config, params=jax.device_get(best["params"]), classes=classes,
                        info={"recipe": config.recipe, "train_config": config.to_dict(), "trial": trial,
                              "best_step": best["step"]},
                        batch_stats=jax.device_get(best["batch_stats"]))
