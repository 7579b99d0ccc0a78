"""Emotion modification: gradient ascent on the image toward a target class (paper section 4.3).

Each step adds ``step_size`` x the gradient of the target's log-probability divided by its standard
deviation over the image (optionally minus an L2 pull toward the original) and clips pixels to [0, 1].
The step is the reference code's (0.01 x gradient / std, pixels on a scale of width 1); the rest is
emofx's: the reference takes one step, on the gradient of the batch's mean logit of the class normalised
by one std over the whole batch, without clipping, whereas the paper's text ascends "gradients from
Softmax nodes". emofx takes 10 steps by default on the log-probability (the probability's gradient
divided by p > 0: after the normalisation the same step, without underflow when p is tiny), normalised
per image so that every image moves alike. A vanilla-gradient step that would lower an image's objective is
not taken and that image's step is halved (backtracking): a fixed normalised step overshoots once the target
is near certain, so without it intensifying an already-confident face could lower its probability. Guided
steps, not the objective's gradient, are taken as they come (they may go downhill and climb again). The
probabilities ascended and recorded are the network's on the image alone, also for a model whose recipe
scores the mean over the image and its mirror image (``strong``). With the target equal to the image's
class this intensifies the emotion; otherwise it converts it (the paper's Figure 7: happy to afraid,
happy to sad, neutral to happy).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.progress import tqdm
from emofx.explain.saliency import class_scores
from emofx.nets.checkpoint import TrainedModel, as_unit_float, check_model_inputs
from emofx.nets.model import EmotionCNN, ModelConfig, pixel_free, pixel_stats, standardise

GRADIENTS = ("gradient", "guided")


@dataclass(frozen=True)
class ModificationConfig:
    """How to walk an image toward a class.

    Attributes:
        steps: number of gradient steps.
        step_size: pixel change per unit of normalised gradient (``gradient``: halved for an image each time
            a step would lower its objective).
        method: ``gradient`` (vanilla) or ``guided`` (guided backprop; the reference code defines a guided
            ReLU gradient for its ascent).
            Guided gradients pass only through units that are already active, so toward a class
            with no evidence in the image they often vanish (the image then stays unchanged) or lower
            the target probability; vanilla gradients convert reliably, hence the default.
        l2_penalty: weight of ||x - original||^2 subtracted from the target's log-probability.
    """

    steps: int = 10
    step_size: float = 0.01
    method: str = "gradient"
    l2_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in GRADIENTS:
            raise ValueError(f"modification method must be one of {GRADIENTS}; got {self.method!r}")
        if self.steps < 1 or not 0 < self.step_size < math.inf or not 0 <= self.l2_penalty < math.inf:
            raise ValueError(
                f"need steps >= 1, a finite step_size > 0 and a finite l2_penalty >= 0; got {self.steps}, "
                f"{self.step_size}, {self.l2_penalty}"
            )


@dataclass(frozen=True)
class ModificationResult:
    """Images and class probabilities at every step (step 0 is the original).

    Attributes:
        images: float32 (steps + 1, N, H, W) in [0, 1].
        probabilities: float32 (steps + 1, N, C).
        targets: int (N,) target class per image.
        classes: the model's class names.
    """

    images: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]

    @property
    def final_images(self) -> np.ndarray:
        """The images after the last step."""
        return self.images[-1]

    def target_probability(self) -> np.ndarray:
        """(steps + 1, N): each image's target-class probability at every step."""
        return np.take_along_axis(self.probabilities, self.targets[None, :, None], axis=2)[..., 0]

    def mean_abs_change(self) -> float:
        """Mean absolute change per pixel between the original and the final images."""
        return float(np.abs(self.images[-1] - self.images[0]).mean())

    def unchanged(self) -> np.ndarray:
        """(N,) bool: images the ascent did not move at all (their gradient vanished, or every vanilla step
        would have lowered the objective)."""
        return np.all(self.images[-1] == self.images[0], axis=(1, 2))

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (image, step, class) with its probability."""
        steps, n, c = self.probabilities.shape
        step, image, klass = np.meshgrid(np.arange(steps), np.arange(n), np.arange(c), indexing="ij")
        return pd.DataFrame({
            "image": image.ravel(),
            "step": step.ravel(),
            "class": np.asarray(self.classes)[klass.ravel()],
            "probability": self.probabilities.ravel(),
        })

    def summary(self) -> pd.DataFrame:
        """Per step: mean target probability and mean absolute change from the original."""
        change = np.abs(self.images - self.images[:1]).mean(axis=(1, 2, 3))
        return pd.DataFrame({
            "step": np.arange(len(self.images)),
            "target_probability": self.target_probability().mean(axis=1),
            "mean_abs_change": change,
        })


@partial(jax.jit, static_argnames=("config", "activation", "steps"))
def _ascend(config: ModelConfig, variables, stats, images, targets, step_size, l2_penalty, activation, steps):
    """All ``steps`` of the ascent in one compiled scan; returns images (steps+1, B, H, W) and logits."""
    original = images

    def objectives(x):
        fit = class_scores(config, variables, standardise(x, stats), targets, activation, "log-probability")
        values = fit - l2_penalty * ((x - original) ** 2).sum(axis=(1, 2))
        return values.sum(), values

    def evaluated(x):
        (_, values), grad = jax.value_and_grad(objectives, has_aux=True)(x)
        return values, grad

    def step(carry, _):
        x, value, grad, size = carry
        scale = grad.std(axis=(1, 2), keepdims=True)
        proposal = jnp.clip(x + size[:, None, None] * grad / jnp.maximum(scale, 1e-20), 0.0, 1.0)
        new_value, new_grad = evaluated(proposal)
        # backtracking: a gradient step that lowers the objective is not taken; a guided step, not the
        # objective's gradient, is taken as it is (it may go downhill and climb again)
        better = (new_value >= value) | (activation == "guided")
        x = jnp.where(better[:, None, None], proposal, x)
        carry = (x, jnp.where(better, new_value, value), jnp.where(better[:, None, None], new_grad, grad),
                 jnp.where(better, size, size / 2))
        return carry, x

    start = (images, *evaluated(images), jnp.full(images.shape[:1], step_size, jnp.float32))
    _, path = jax.lax.scan(step, start, None, length=steps)
    path = jnp.concatenate([images[None], path])
    logits = jax.vmap(lambda x: EmotionCNN(config).apply(variables, standardise(x, stats)))(path)
    return path, logits


def _check_memory(steps: int, shape: tuple[int, ...]) -> None:
    """Refuse a walk whose every step's images (kept, float32) would not fit in half of this machine's memory."""
    need = (steps + 1) * math.prod(shape) * 4
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a modest machine
        memory = 16 * 2**30
    if need > memory // 2:
        raise ValueError(f"keeping every step's images needs {need / 2**30:.1f} GiB ({steps + 1} steps x "
                         f"{shape[0]} images of {shape[1]}x{shape[2]} float32), over half of this machine's memory "
                         f"({memory / 2**30:.0f} GiB); use fewer steps or images")


def modify(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray,
    config: ModificationConfig = ModificationConfig(), batch_size: int = 64, progress: bool = False,
) -> ModificationResult:
    """Walk uint8 or [0, 1] ``images`` (N, H, W) toward class indices ``targets`` (N,)."""
    if not isinstance(config, ModificationConfig):
        raise TypeError(f"config must be a ModificationConfig (e.g. ModificationConfig(steps=2)); got "
                        f"{type(config).__name__}")
    targets = check_model_inputs(model, images, targets)
    if np.ndim(images) == 4:  # one grayscale channel, as check_images allows
        images = np.asarray(images)[..., 0]
    if np.ndim(images) != 3:
        raise ValueError(f"need images (N, H, W); got shape {np.shape(images)}")
    if not len(images):
        raise ValueError("no images to modify (an empty selection?); give at least one")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    _check_memory(config.steps, np.shape(images))
    x = np.asarray(as_unit_float(images))
    activation = "guided" if config.method == "guided" else "relu"
    paths, probabilities = [], []
    for start in tqdm(range(0, len(x), batch_size), desc="modification", disable=not progress, leave=False):
        path, logits = _ascend(
            pixel_free(model.config), model.variables, pixel_stats(model.config),
            jnp.asarray(x[start:start + batch_size]),
            jnp.asarray(targets[start:start + batch_size]), jnp.float32(config.step_size),
            jnp.float32(config.l2_penalty), activation, config.steps,
        )
        paths.append(np.asarray(path))
        probabilities.append(np.asarray(jax.nn.softmax(logits)))
    steps, c = config.steps + 1, len(model.classes)
    return ModificationResult(
        images=np.concatenate(paths, axis=1) if paths else np.zeros((steps, *x.shape), np.float32),
        probabilities=np.concatenate(probabilities, axis=1) if probabilities else np.zeros((steps, 0, c), np.float32),
        targets=targets,
        classes=tuple(model.classes),
    )


def modification_examples(dataset: FaceDataset, changes: Sequence[Sequence[str]], per_change: int = 1,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images to modify for Figure 7: for each ``[source, target]`` class pair (``source == target``
    intensifies), ``per_change`` random images of ``source``; returns images, target indices, row names."""
    rng = np.random.default_rng(seed)
    picked, targets, names = [], [], []
    for change in changes:
        if len(change) != 2:
            raise ValueError(f"each change is [source, target]; got {change!r}")
        source, target = change
        missing = [c for c in (source, target) if c not in dataset.classes]
        if missing:
            raise ValueError(f"class {missing[0]!r} is not in the dataset's classes {list(dataset.classes)}")
        pool = np.flatnonzero(dataset.labels == dataset.classes.index(source))
        if len(pool) == 0:
            raise ValueError(f"the dataset has no {source!r} image to modify")
        chosen = rng.choice(pool, size=min(per_change, len(pool)), replace=False)
        picked.extend(chosen)
        targets += [dataset.classes.index(target)] * len(chosen)
        names += [source] * len(chosen)
    return dataset.images[np.asarray(picked, int)], np.asarray(targets, np.int32), names
