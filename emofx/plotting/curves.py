"""Learning curves: training and validation error against steps (the paper's Figure 4).

Several histories (trials or folds) are drawn as their mean with a band of one standard
deviation, the way the paper shows its four cross-validation folds, up to the last step every one of them reached
(each run interpolated between its own validations: runs of other training sizes validate at other steps); past
it, each run goes on as a thin line of its own, so that the mean never silently changes which runs it averages.
"""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emofx.plotting import laid_out_figure

# the training error is the steps' own: of augmented batches, with dropout on (the validation error: of the images as
# they are, with every unit); the legend says so, lest a gap between the two be read as overfitting alone
CURVES = {"train_error": "training error (augmented batches, dropout on)", "val_error": "validation error"}
TITLE_WIDTH = 60  # characters of a panel's title line: longer lines are wrapped, not run into the next panel's


def _on_shared_steps(histories: Sequence[pd.DataFrame], column: str, until: float) -> tuple[pd.Series, pd.Series]:
    """Mean and std over runs of ``column`` at every step any run validated at up to ``until``, each run
    interpolated linearly between its own validations (trials of other training sizes validate at other steps)."""
    grid = np.unique(np.concatenate([h.loc[h["step"] <= until, "step"].to_numpy(float) for h in histories]))
    curves = []
    for history in histories:
        known = history.dropna(subset=[column])
        inside = grid[(grid >= known["step"].min()) & (grid <= known["step"].max())] if len(known) else grid[:0]
        curves.append(pd.Series(np.interp(inside, known["step"], known[column]), index=inside))
    table = pd.concat(curves, axis=1)
    return table.mean(axis=1), table.std(axis=1).fillna(0.0)


def learning_curves(histories: Sequence[pd.DataFrame] | pd.DataFrame, *, columns: Sequence[str] = tuple(CURVES),
                    title: str = "", ax: plt.Axes | None = None) -> plt.Figure:
    """Mean (markers) and ± std band (shaded) over histories of each column, by step; the band is cut to [0, 1],
    the range an error can take. The title is wrapped (:func:`wrapped`): a long one ran off the figure."""
    histories = [histories] if isinstance(histories, pd.DataFrame) else list(histories)
    if not histories:
        raise ValueError("no histories to plot")
    missing = [c for c in columns if c not in histories[0].columns]
    if missing:
        raise ValueError(f"histories have no columns {missing}; they have {list(histories[0].columns)}")
    shared_until = min(h["step"].max() for h in histories)  # the last step every run reached
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
    for column in columns:
        mean, spread = _on_shared_steps(histories, column, shared_until)
        line, = ax.plot(mean.index, mean, marker="o", markersize=3, label=CURVES.get(column, column))
        ax.fill_between(mean.index, (mean - spread).clip(lower=0.0), (mean + spread).clip(upper=1.0),
                        color=line.get_color(), alpha=0.2)
        for history in histories:  # past the shortest run: each run alone, from its last point within the mean
            known = history.dropna(subset=[column])
            alone = known[known["step"] >= known.loc[known["step"] <= shared_until, "step"].max()]
            if len(alone) > 1:
                ax.plot(alone["step"], alone[column], color=line.get_color(), linewidth=0.8, alpha=0.6)
    ends = [h["epoch"].max() if "epoch" in h else h["step"].max() for h in histories]
    if max(ends) > min(ends) + 1e-9:  # one stopped early (runs of other sizes validate at other steps)
        ax.axvline(shared_until, color="grey", linestyle=":", linewidth=1,
                   label=f"a run stopped at step {shared_until:g}: each run alone past it")
    ax.set_xlabel("training step")
    ax.set_ylabel("error (share of images misclassified)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(wrapped(title) or (f"mean ± std over {len(histories)} runs" if len(histories) > 1 else ""))
    return laid_out_figure(ax)


def wrapped(title: str, width: int = TITLE_WIDTH) -> str:
    """``title`` with each of its lines wrapped at ``width`` characters (a panel's title must not reach into the
    next panel's)."""
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def learning_curve_panels(panels: Mapping[str, Sequence[pd.DataFrame]], columns: int = 3) -> Figure:
    """Figure 4 with a panel per group of runs: :func:`learning_curves` of each title's histories, up to
    ``columns`` side by side. The panels share their error axis, so that their heights compare; titles are wrapped."""
    if not panels:
        raise ValueError("no panels to draw: give at least one group of histories")
    width = min(columns, len(panels))
    rows = -(-len(panels) // width)
    fig, axes = plt.subplots(rows, width, figsize=(6 * width, 4.1 * rows), squeeze=False, sharey=True)
    for ax, (title, histories) in zip(axes.flat, panels.items()):
        learning_curves(list(histories), ax=ax, title=wrapped(title))
        ax.yaxis.set_tick_params(labelleft=True)  # one scale, but every panel keeps its numbers and label
    drawn = axes.flat[:len(panels)]
    # learning_curves fixed the shared top at the first panel's data: the highest panel's must fit as well
    axes.flat[0].set_ylim(0, 1.05 * max(ax.dataLim.y1 for ax in drawn))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
