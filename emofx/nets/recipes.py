"""Named training recipes: frozen presets of :class:`emofx.nets.training.TrainConfig`.

``paper`` is the reference implementation's optimisation (safooray/EmotionClassificationCNN, which
the paper links; the paper's text gives none of these numbers), the defaults of :class:`TrainConfig`:
SGD with momentum 0.9, batch 64, learning rate 0.05 decayed x0.999 per epoch, L2 5e-4 on the dense
layers' kernels, flips and +-5 degree rotations. Where emofx departs from that code, on purpose:
training runs for a set number of epochs (30 in the studies here, not the paper's 10,000, so the x0.999
per-epoch decay lowers the rate by 3% rather than 22,000-fold: nearly constant here) with early
stopping after 10 validations without improvement, keeping the best validation checkpoint (the paper
tests after the last epoch); the dense layers' biases are not decayed (the reference decays them
too); weights start from Flax's LeCun-normal initialisation with zero biases (the reference: a
truncated normal of std 0.01, dense biases 0.1); inputs are standardised by the training set's
pixel mean and std (the reference: a fixed (x - 127.5) / 255); rotations turn about the image
centre with replicated edges (the reference's skimage warp turns about the top-left corner and
fills with grey). Use it to reproduce the paper's setting.

``strong`` adds what the best small-CNN results on FER2013 use (e.g. Khaireddin & Chen 2021;
Zhong et al. 2020 for random erasing; Szegedy et al. 2016 for label smoothing): a linear
warm-up then cosine decay of the learning rate, weight decay on every layer, random shifts,
zoom, rotation up to 10 degrees, brightness/contrast jitter and random erasing inside the
compiled step, label smoothing 0.1, and test-time flip averaging; early stopping as in
``paper``. Batch normalisation is an architecture switch (``ModelConfig.norm``), not part of
a recipe. :data:`CHANGES` names the groups of settings that make up the difference, for
ablations (``benchmarks/ablation.py``).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from emofx.nets.optimisation import TrainConfig, TrainingError

PAPER = TrainConfig()

STRONG = TrainConfig(
    recipe="strong",
    schedule="cosine",
    warmup_epochs=2.0,
    decay_all_layers=True,
    rotation_degrees=10.0,
    shift=0.1,
    scale=0.1,
    brightness=0.2,
    contrast=0.2,
    erasing=0.5,
    label_smoothing=0.1,
    flip_average=True,
)

RECIPES: dict[str, TrainConfig] = {"paper": PAPER, "strong": STRONG}

# Each change from paper to strong, as the TrainConfig fields that carry it.
CHANGES: dict[str, tuple[str, ...]] = {
    "schedule": ("schedule", "warmup_epochs"),
    "weight_decay": ("decay_all_layers",),
    "augmentation": ("rotation_degrees", "shift", "scale", "brightness", "contrast", "erasing"),
    "label_smoothing": ("label_smoothing",),
    "flip_average": ("flip_average",),
}

def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` (TrainConfig fields) applied; unknown names are a
    one-line :class:`TrainingError`."""
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TrainingError(f"unknown training settings {unknown}; known: {', '.join(sorted(known))}")
    return replace(RECIPES[name], **overrides)


def with_change(base: TrainConfig, change: str, source: TrainConfig = STRONG, label: str | None = None) -> TrainConfig:
    """``base`` with the settings of ``change`` (a key of :data:`CHANGES`) copied from ``source``;
    ``label`` names the result's recipe (default: ``base``'s)."""
    if change not in CHANGES:
        raise TrainingError(f"unknown change {change!r}; choose one of {', '.join(CHANGES)}")
    copied = {name: getattr(source, name) for name in CHANGES[change]}
    return replace(base, **copied, recipe=label or base.recipe)
