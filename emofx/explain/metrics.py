"""Is a saliency map faithful? Sanity checks and quality scores for :mod:`emofx.explain.saliency`.

- :func:`cascading_randomisation`: Adebayo et al. (2018): re-initialise the layers from the
  top down and measure the Spearman rank correlation of each map with the trained model's.
  A map that explains the model should decorrelate; one that mostly reflects the input
  (guided backprop is known for it) stays correlated.
- :func:`deletion_insertion_curves` and :func:`curve_auc`: the target's probability as the
  most salient pixels are removed (deletion: lower AUC is better) or restored on a blurred
  copy (insertion: higher is better), after Petsiuk et al. (2018).
- :func:`region_scores` / :func:`summarise_region_scores`: the pointing game and the saliency
  mass ratio against ground-truth region masks (the synthetic faces have them); the region
  that carries the signal comes from :func:`signal_region_masks`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import integrate, ndimage, stats

from emofx.data.dataset import FaceDataset
from emofx.data.progress import tqdm
from emofx.explain.saliency import attribute, check_maps, target_scores
from emofx.nets.checkpoint import TrainedModel, as_unit_float, check_model_inputs
from emofx.nets.model import init_variables

# Where each synthetic dialect puts its emotion signal (used when the dataset's meta does
# not list ``signal_regions`` itself).
SIGNAL_REGIONS_BY_DIALECT: dict[str, tuple[str, ...]] = {
    "universal": ("eyes", "brows", "nose", "mouth"),
    "eyes": ("eyes", "brows"),
    "mouth": ("mouth",),
}


# ---------------------------------------------------------------------------- randomisation
def randomisation_order(params: Mapping[str, Any]) -> list[str]:
    """Layer names from the top of the network down: output, dense, then convs last to first."""
    convs = sorted((name for name in params if name.startswith("conv")), key=lambda n: int(n[4:]), reverse=True)
    top = [name for name in ("output", "dense") if name in params]
    return top + convs


def randomise_layers(model: TrainedModel, layers: Sequence[str], seed: int) -> TrainedModel:
    """A copy of ``model`` whose ``layers`` hold freshly initialised parameters (``seed``): with batch
    normalisation, a layer's normalisation too (``dense`` with ``dense_norm``, a conv's own) and
    its running statistics, so nothing trained of a randomised layer is left."""
    unknown = [name for name in layers if name not in model.params]
    if unknown:
        raise ValueError(f"layers {unknown} are not in the model; it has {list(model.params)}")
    fresh = init_variables(model.config, seed)
    chosen = set(layers) | {f"{name}_norm" for name in layers}
    params = {name: (fresh["params"][name] if name in chosen else value) for name, value in model.params.items()}
    batch_stats = model.batch_stats if model.batch_stats is None else {
        name: (fresh["batch_stats"][name] if name in chosen else value) for name, value in model.batch_stats.items()}
    return replace(model, params=params, batch_stats=batch_stats)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N, ...) -> (N,)."""
    ra = stats.rankdata(np.asarray(a).reshape(len(a), -1), axis=1)
    rb = stats.rankdata(np.asarray(b).reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    return (ra * rb).sum(axis=1) / np.where(denominator > 0, denominator, np.nan)


def cascading_randomisation(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray,
    methods: Sequence[str] = ("gradient", "guided"), seed: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None, batch_size: int = 64, progress: bool = False,
) -> pd.DataFrame:
    """Cascading model-parameter randomisation (Adebayo et al. 2018).

    Step k re-initialises the top k layers (:func:`randomisation_order`); step 0 is the trained
    model. Returns one row per (method, step, image) with ``layer`` (the layer randomised at
    that step), ``spearman_abs`` (rank correlation of absolute maps, the paper's main measure)
    and ``spearman`` (signed maps) against the trained model's maps.
    """
    method_options = dict(method_options or {})
    order = randomisation_order(model.params)
    steps = [("none", model)] + [
        (layer, randomise_layers(model, order[: k + 1], seed)) for k, layer in enumerate(order)
    ]
    rows = []
    for method in methods:
        options = dict(method_options.get(method, {}))
        reference = attribute(model, images, targets, method, batch_size=batch_size, **options)
        bar = tqdm(steps, desc=f"randomisation ({method})", disable=not progress, leave=False)
        for step, (layer, randomised) in enumerate(bar):
            maps = (reference if step == 0
                    else attribute(randomised, images, targets, method, batch_size=batch_size, **options))
            rows.append(pd.DataFrame({
                "method": method,
                "step": step,
                "layer": layer,
                "image": np.arange(len(images)),
                "spearman_abs": rank_correlation(np.abs(reference), np.abs(maps)),
                "spearman": rank_correlation(reference, maps),
            }))
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------- deletion / insertion
def baseline_images(images: np.ndarray, baseline: float | str) -> np.ndarray:
    """The 'removed' version of [0, 1] images: a constant value, or ``"blur"`` (Gaussian, sigma 5)."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a pixel value in [0, 1] or 'blur'; got {baseline!r}")
        return ndimage.gaussian_filter(images, sigma=(0, 5, 5), mode="nearest").astype(np.float32)
    return np.full_like(images, float(baseline))


def deletion_insertion_curves(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, maps: np.ndarray,
    steps: int = 20, deletion_baseline: float | str = 0.0, insertion_baseline: float | str = "blur",
    score: str = "probability", batch_size: int = 256, progress: bool = False,
) -> pd.DataFrame:
    """The target's score as the most salient pixels (by absolute map value) are deleted
    (replaced by ``deletion_baseline``) or inserted into ``insertion_baseline``, at
    ``steps + 1`` fractions from 0 to 1 (a compiled pass over the images each). Rows: image, curve, fraction,
    score."""
    targets = check_model_inputs(model, images, targets)
    x = np.asarray(as_unit_float(images))
    n, h, w = x.shape
    check_maps(maps, x.shape)
    order = np.argsort(-np.abs(np.asarray(maps)).reshape(n, -1), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    rank = rank.reshape(n, h, w)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    frames = []
    bar = tqdm(total=2 * len(fractions), desc="deletion/insertion", unit="step", disable=not progress, leave=False)
    for curve, base in (("deletion", deletion_baseline), ("insertion", insertion_baseline)):
        filler = baseline_images(x, base)
        for fraction in fractions:
            chosen = rank < round(fraction * h * w)
            perturbed = np.where(chosen, filler, x) if curve == "deletion" else np.where(chosen, x, filler)
            values = target_scores(model, perturbed, targets, score, batch_size)
            bar.update()
            frames.append(pd.DataFrame({"image": np.arange(n), "curve": curve, "fraction": fraction, "score": values}))
    bar.close()
    return pd.concat(frames, ignore_index=True)


def curve_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Area under each image's deletion and insertion curve (trapezoid over the fraction)."""
    rows = [
        {"image": image, "curve": curve, "auc": float(integrate.trapezoid(g["score"], g["fraction"]))}
        for (image, curve), g in curves.sort_values("fraction").groupby(["image", "curve"])
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- regions
def signal_regions(dataset: FaceDataset) -> tuple[str, ...]:
    """Names of the regions that carry the emotion signal: ``meta["signal_regions"]``, else
    looked up from ``meta["dialect"]`` in :data:`SIGNAL_REGIONS_BY_DIALECT`."""
    if "signal_regions" in dataset.meta:
        return tuple(dataset.meta["signal_regions"])
    dialect = dataset.meta.get("dialect")
    if dialect not in SIGNAL_REGIONS_BY_DIALECT:
        raise ValueError(
            f"cannot tell which regions carry the signal: dataset meta has no 'signal_regions' and its "
            f"dialect {dialect!r} is not one of {sorted(SIGNAL_REGIONS_BY_DIALECT)}"
        )
    return SIGNAL_REGIONS_BY_DIALECT[dialect]


def signal_region_masks(dataset: FaceDataset) -> np.ndarray:
    """Boolean (N, H, W): the union of each image's signal-region masks."""
    if "region_masks" not in dataset.extras:
        raise ValueError("the dataset has no region masks (extras['region_masks']); only synthetic data has them")
    names = list(dataset.region_names)
    wanted = signal_regions(dataset)
    missing = [r for r in wanted if r not in names]
    if missing:
        raise ValueError(f"signal regions {missing} are not among the dataset's region names {names}")
    return dataset.extras["region_masks"][:, [names.index(r) for r in wanted]].any(axis=1)


def region_scores(maps: np.ndarray, masks: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Per image: ``hit`` (the absolute map's maximum lies in the mask), ``mass_share`` (share
    of absolute saliency inside the mask), ``area_share`` and ``mass_ratio`` (their ratio). A map
    without saliency (all zero) has no maximum and no mass: ``hit`` and the shares are NaN."""
    saliency = np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1)
    inside = np.asarray(masks, bool).reshape(len(masks), -1)
    if saliency.shape != inside.shape:
        raise ValueError(f"maps {np.shape(maps)} and region masks {np.shape(masks)} differ in shape")
    total = saliency.sum(axis=1)
    hit = np.where(total > 0, inside[np.arange(len(inside)), saliency.argmax(axis=1)], np.nan)
    mass_share = (saliency * inside).sum(axis=1) / np.where(total > 0, total, np.nan)
    area_share = inside.mean(axis=1)
    frame = pd.DataFrame({
        "correct": np.asarray(correct, bool),
        "hit": hit,
        "mass_share": mass_share,
        "area_share": area_share,
        "mass_ratio": mass_share / np.where(area_share > 0, area_share, np.nan),
    })
    frame.index.name = "image"
    return frame


def summarise_region_scores(scores: pd.DataFrame) -> dict[str, float]:
    """``pointing_game``: hit rate over correctly classified images; ``mass_ratio``: mean
    per-image mass ratio over all images (and over the correct ones). Maps without saliency are
    left out of every mean and counted in ``n_empty_maps``; ``n_scored_maps`` counts the others."""
    empty = scores["hit"].isna()
    n_empty = int(empty.sum())
    scores = scores[~empty]
    correct = scores[scores["correct"]]
    return {
        "pointing_game": float(correct["hit"].mean()) if len(correct) else float("nan"),
        "mass_ratio": float(scores["mass_ratio"].mean()),
        "mass_ratio_correct": float(correct["mass_ratio"].mean()) if len(correct) else float("nan"),
        "mass_share": float(scores["mass_share"].mean()),
        "area_share": float(scores["area_share"].mean()),
        "n_scored_maps": int(len(scores)),
        "n_correct": int(len(correct)),
        "n_empty_maps": n_empty,
    }
