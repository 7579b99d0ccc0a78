"""Confusion-matrix and misclassification heatmaps (the paper's Tables 2-4 as figures).

Inputs are the DataFrames of :mod:`emofx.study.evaluation` (means, optionally with the std across
trials); ``total`` rows and columns are left out of the colour scale but kept in the labels.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emofx.plotting import laid_out_figure
from emofx.study.evaluation import TOTAL


def _annotations(mean: pd.DataFrame, std: pd.DataFrame | None, fmt: str) -> np.ndarray:
    if std is None:
        return np.vectorize(lambda m: format(m, fmt))(mean.to_numpy())
    return np.vectorize(lambda m, s: f"{m:{fmt}}\n±{s:{fmt}}")(mean.to_numpy(), std.to_numpy())


def _without_totals(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(index=TOTAL, columns=TOTAL, errors="ignore")


def confusion_heatmap(mean: pd.DataFrame, std: pd.DataFrame | None = None, *, title: str = "",
                      fmt: str | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """Heatmap of (mean) confusion counts, rows true and columns predicted, annotated mean ± std.

    Row totals are appended to the row labels; the colour encodes the share of each true class. ``fmt``: of the
    numbers (default: whole numbers for one run's counts, one decimal for means over runs).
    """
    if not isinstance(mean, pd.DataFrame) or not (std is None or isinstance(std, pd.DataFrame)):
        raise TypeError("confusion_heatmap takes confusion tables (DataFrames with class names, e.g. "
                        "Evaluation.confusion() or emofx.study.evaluation.aggregate_confusions), not bare arrays")
    counts = _without_totals(mean)
    spread = _without_totals(std) if std is not None else None
    if spread is not None and spread.shape != counts.shape:
        raise ValueError(f"a std table of shape {spread.shape} for a confusion table of shape {counts.shape}")
    whole = spread is None and bool(np.all(np.asarray(counts, float) == np.round(np.asarray(counts, float))))
    fmt = fmt or (".0f" if whole else ".1f")
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    ax = ax if ax is not None else plt.subplots(figsize=(1.0 + 0.9 * len(counts.columns), 0.8 + 0.75 * len(counts)))[1]
    sns.heatmap(shares, annot=_annotations(counts, spread, fmt), fmt="", cmap="Blues", vmin=0, vmax=1,
                cbar_kws={"label": "share of true class"}, ax=ax, annot_kws={"fontsize": 8})
    ax.set_yticklabels([f"{c} ({n:{fmt}})" for c, n in zip(counts.index, counts.sum(axis=1))], rotation=0)
    ax.set_xlabel("predicted emotion")
    ax.set_ylabel("true emotion (test images" + (" per trial, mean)" if spread is not None else ")"))
    ax.set_title(title)
    return laid_out_figure(ax)


def misclassification_heatmap(mean: pd.DataFrame, std: pd.DataFrame | None = None, *,
                              title: str = "% misclassified", ax: plt.Axes | None = None) -> plt.Figure:
    """Heatmap of per-class misclassification % (rows: groups such as cultures, their names upright so that
    neighbours do not overlap; last column: total)."""
    ax = ax if ax is not None else plt.subplots(figsize=(1.5 + 0.9 * len(mean.columns), 1.0 + 0.6 * len(mean)))[1]
    sns.heatmap(mean.astype(float),
                annot=_annotations(mean.astype(float), None if std is None else std.astype(float), ".1f"),
                fmt="", cmap="Reds", vmin=0, vmax=100, cbar_kws={"label": "% misclassified"}, ax=ax,
                annot_kws={"fontsize": 8})
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("true emotion")
    ax.set_ylabel("")
    ax.set_title(title)
    return laid_out_figure(ax)
