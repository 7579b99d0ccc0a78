"""Starting weights for a training: fresh, or another trained model's (pre-training, fine-tuning).

A model to start from must have the same architecture (input size, layers, normalisation);
its classes may differ, and output units are then carried over by class name.
"""

from __future__ import annotations

from typing import Any

import jax

from emofx.nets.checkpoint import CheckpointError, TrainedModel
from emofx.nets.model import ModelConfig, init_variables

__all__ = ["initial_variables"]


def initial_variables(model_config: ModelConfig, key: jax.Array, init_from: TrainedModel | None,
                      classes: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """Fresh variables (parameters, running statistics), or ``init_from``'s. When the class sets differ,
    each output unit of a class ``init_from`` knows (matched by name) starts from that class's trained
    unit and the other units start fresh, so fine-tuning keeps what the shared classes learned.
    An ``init_from`` of another architecture is a :class:`CheckpointError`."""
    if init_from is None:
        return init_variables(model_config, key), []
    mine, theirs = model_config.architecture(), init_from.config.architecture()
    differ = [f"{k} {theirs.get(k)} (this training: {mine[k]})" for k in mine
              if k != "num_classes" and theirs.get(k) != mine[k]]
    if differ:
        raise CheckpointError(f"the --init-from model differs in {', '.join(differ)}; start from a model with the "
                              "same input size, layers and normalisation")
    loaded = jax.device_put(init_from.variables)  # one transfer; jnp.asarray per array compiles a program each
    if tuple(init_from.classes) == classes:
        return loaded, []  # no fresh variables needed: making them would cost a program
    fresh_output = init_variables(model_config, key)["params"]["output"]
    loaded["params"] = {**loaded["params"], "output": _output_by_class(loaded["params"]["output"], fresh_output,
                                                                       tuple(init_from.classes), classes)}
    kept = [c for c in classes if c in init_from.classes]
    fresh = [c for c in classes if c not in init_from.classes]
    return loaded, [f"initial weights' classes {list(init_from.classes)} differ from these {list(classes)}: "
                    f"output units kept for {kept or 'no class'}, freshly initialised for {fresh or 'no class'}"]


def _output_by_class(trained: dict[str, jax.Array], fresh: dict[str, jax.Array], trained_classes: tuple[str, ...],
                     classes: tuple[str, ...]) -> dict[str, jax.Array]:
    """The output layer for ``classes``: a class's column of ``trained`` where it has one, else of ``fresh``."""
    columns = [column for column, label in enumerate(classes) if label in trained_classes]
    sources = [trained_classes.index(classes[column]) for column in columns]
    return {name: values.at[..., columns].set(trained[name][..., sources]) for name, values in fresh.items()}
