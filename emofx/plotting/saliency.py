"""Saliency for people: maps normalised for viewing, overlays, the Figure 5-6 grid, the Figure 7 panel."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from emofx.data.splits import examples_per_class
from emofx.explain.modification import ModificationResult

MAP_MODES = ("abs", "signed")


def viewable_maps(maps: np.ndarray, mode: str = "abs", percentile: float = 99.0) -> np.ndarray:
    """Each map scaled by its ``percentile`` of absolute values and clipped: ``abs`` gives
    |map| in [0, 1]; ``signed`` keeps the sign in [-1, 1] (for a diverging colormap)."""
    if mode not in MAP_MODES:
        raise ValueError(f"map mode must be one of {MAP_MODES}; got {mode!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100]; got {percentile}")
    maps = np.asarray(maps, np.float32)
    flat = np.abs(maps).reshape(len(maps), -1)
    scale = np.percentile(flat, percentile, axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    scaled = maps / np.where(scale > 0, scale, 1.0)
    return np.clip(np.abs(scaled), 0, 1) if mode == "abs" else np.clip(scaled, -1, 1)


def map_colours(mode: str = "abs", overlay: bool = False) -> tuple[str, float]:
    """The colour map and lower limit (the upper is 1) that :func:`show_map` draws a ``mode`` map with."""
    if mode == "signed":
        return "RdBu_r", -1.0
    return ("inferno" if overlay else "gray"), 0.0


def show_map(ax: plt.Axes, saliency: np.ndarray, image: np.ndarray | None = None, mode: str = "abs",
             percentile: float = 99.0, alpha: float = 0.6) -> None:
    """Draw one map on ``ax``, over the grayscale ``image`` when given (an overlay)."""
    view = viewable_maps(saliency[None], mode, percentile)[0]
    cmap, low = map_colours(mode, overlay=image is not None)
    if image is not None:
        ax.imshow(image, cmap="gray")
        # Transparent where the map is weak, so the face shows through.
        ax.imshow(view, cmap=cmap, vmin=low, vmax=1, alpha=alpha * np.abs(view))
    else:
        ax.imshow(view, cmap=cmap, vmin=low, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


_SALIENCY_WORDS = {"guided": "guided backpropagation", "gradient": "the vanilla gradient", "smoothgrad": "SmoothGrad",
                   "integrated-gradients": "integrated gradients", "gradcam": "Grad-CAM"}


def saliency_grid(
    images: np.ndarray, maps: np.ndarray, labels: np.ndarray, classes: Sequence[str], *,
    culture: str = "", method: str = "guided", per_class: int = 6, seed: int = 0,
    overlay: bool = False, mode: str = "abs", explained: str = "each image's class node",
) -> plt.Figure:
    """Figures 5-6: rows = emotions (the images' labels), columns = random example faces of that
    emotion, each showing its map (or the map over the face with ``overlay``); the title names the
    culture, the method (a name of :data:`emofx.explain.saliency.METHODS`, written out) and what the maps explain
    (``explained``, e.g. "the happy class"); the colour bar says how each map was scaled (to its own 99th
    percentile: brightness compares within a map, not between maps)."""
    labels = np.asarray(labels)
    if not len(images) == len(maps) == len(labels):
        raise ValueError(f"{len(images)} images, {len(maps)} maps and {len(labels)} labels: give one map and one label "
                         "per image")
    if labels.size and labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be class indices into classes (integers); got {labels.dtype} values")
    examples = [(c, idx) for c, idx in enumerate(examples_per_class(labels, range(len(classes)), per_class, seed))
                if len(idx)]
    if not examples:
        raise ValueError("no images to show in the saliency grid")
    cols = max(len(idx) for _, idx in examples)
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.3 * cols + 1.6, 1.3 * len(examples) + 0.6),
                             squeeze=False, layout="constrained")  # a colour bar beside the grid: tight_layout cannot
    for row, (c, idx) in enumerate(examples):
        for col in range(cols):
            ax = axes[row, col]
            if col < len(idx):
                show_map(ax, maps[idx[col]], images[idx[col]] if overlay else None, mode)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(classes[c])
    cmap, low = map_colours(mode, overlay)
    scale = ScalarMappable(Normalize(low, 1.0), cmap)
    fig.colorbar(scale, ax=axes, shrink=min(1.0, 4 / len(examples) + 0.2),
                 label=("|saliency|" if mode == "abs" else "saliency") + ", each map / its 99th percentile of |values|")
    who = f"{culture} faces" if culture else "faces"
    fig.suptitle(f"Salient features in {who}: {_SALIENCY_WORDS.get(method, method)} from {explained}")
    return fig


def region_share_heatmap(shares: pd.DataFrame, area: pd.Series, *, culture: str = "", method: str = "guided"
                         ) -> plt.Figure:
    """Mean share of the saliency mass per emotion (rows) and facial region (columns), with a last row
    ``area (even map)``: each region's share of the pixels, what a map spread evenly over the face would give."""
    import seaborn as sns

    table = pd.concat([shares, area.rename("area (even map)").to_frame().T])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(table.columns), 1.0 + 0.45 * len(table)))
    sns.heatmap(table.astype(float), annot=True, fmt=".2f", cmap="Purples", vmin=0, ax=ax,
                cbar_kws={"label": "share of saliency mass"}, annot_kws={"fontsize": 8})
    ax.axhline(len(shares), color="white", linewidth=3)  # the area row is a reference, not an emotion
    ax.set_xlabel("facial region")
    ax.set_ylabel("")
    who = f"{culture} faces" if culture else "faces"
    ax.set_title(f"Where the model looks in {who} ({_SALIENCY_WORDS.get(method, method)})", fontsize=10)
    fig.tight_layout()
    return fig


_METHOD_WORDS = {"gradient": "vanilla gradient steps", "guided": "guided-backprop steps"}


def modification_panel(
    result: ModificationResult, images: Sequence[int] | None = None, n_intermediate: int = 3,
    source_names: Sequence[str] | None = None, method: str = "",
) -> plt.Figure:
    """Figure 7: per row one image, columns original, ``n_intermediate`` steps and the result,
    each titled with the target class's probability. ``source_names`` (one per image in
    ``result``, e.g. the original emotions) label the rows; ``method`` (the gradient that made the
    steps) titles the panel."""
    n_steps = len(result.images) - 1
    count = result.images.shape[1]
    rows = list(range(count)) if images is None else list(images)
    if not rows:
        raise ValueError("no images to show in the modification panel")
    if not all(0 <= r < count for r in rows):
        raise ValueError(f"images {rows}: the result holds images 0 to {count - 1}")
    if source_names is not None and len(source_names) != count:
        raise ValueError(f"{len(source_names)} source names for the result's {count} images: give one per image")
    columns = sorted({0, n_steps, *np.linspace(0, n_steps, n_intermediate + 2).round().astype(int)})
    target_probability = result.target_probability()
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.5 * len(columns), 1.7 * len(rows) + 0.4),
                             squeeze=False)
    for r, image in enumerate(rows):
        target = result.classes[result.targets[image]]
        for c, step in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(result.images[step, image], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            name = "original" if step == 0 else ("result" if step == n_steps else f"step {step}")
            ax.set_title(f"{name}\nP({target})={target_probability[step, image]:.2f}", fontsize=8)
        source = f"{source_names[image]} -> " if source_names is not None else "-> "
        axes[r, 0].set_ylabel(f"{source}{target}", fontsize=8)
    fig.suptitle("Emotion modification by gradient ascent"
                 + (f" ({_METHOD_WORDS.get(method, method)})" if method else ""))
    fig.tight_layout()
    return fig


def randomisation_curves(frame: pd.DataFrame) -> plt.Figure:
    """Adebayo et al.'s Figure: mean rank correlation with the trained model's maps as layers
    are re-initialised from the top down (one line per method; absolute and signed maps)."""
    import seaborn as sns

    long = frame.melt(id_vars=["method", "step", "layer"], value_vars=["spearman_abs", "spearman"],
                      var_name="maps", value_name="rank correlation")
    long["maps"] = long["maps"].map({"spearman_abs": "absolute", "spearman": "signed"})
    layers = frame.sort_values("step").drop_duplicates("step")["layer"].tolist()
    fig, ax = plt.subplots(figsize=(1.1 * len(layers) + 2.5, 3.5))
    sns.lineplot(data=long, x="step", y="rank correlation", hue="method", style="maps", marker="o", ax=ax)
    ax.set_xticks(range(len(layers)), ["trained", *(f"+{name}" for name in layers[1:])], rotation=30)
    ax.set_xlabel("layers re-initialised (cumulative, from the top)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Cascading model-parameter randomisation")
    fig.tight_layout()
    return fig
