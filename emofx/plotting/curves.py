"""Learning curves: training and validation error against steps (the paper's Figure 4).

Several histories (trials or folds) are drawn as their mean with a band of one standard
deviation, the way the paper shows its four cross-validation folds, up to the last step every one of them reached;
past it (a run stopped early), each run goes on as a thin line of its own, so that the mean never silently changes
which runs it averages.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

CURVES = {"train_error": "training error", "val_error": "validation error"}


def learning_curves(histories: Sequence[pd.DataFrame] | pd.DataFrame, *, columns: Sequence[str] = tuple(CURVES),
                    title: str = "", ax: plt.Axes | None = None) -> plt.Figure:
    """Mean (markers) and ± std band (shaded) over histories of each column, by step; the band is cut to [0, 1],
    the range an error can take."""
    histories = [histories] if isinstance(histories, pd.DataFrame) else list(histories)
    if not histories:
        raise ValueError("no histories to plot")
    missing = [c for c in columns if c not in histories[0].columns]
    if missing:
        raise ValueError(f"histories have no columns {missing}; they have {list(histories[0].columns)}")
    long = pd.concat([h.assign(trial=i) for i, h in enumerate(histories)], ignore_index=True)
    shared_until = min(h["step"].max() for h in histories)  # the last step every run reached
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.5))
    for column in columns:
        stats = long[long["step"] <= shared_until].groupby("step")[column].agg(["mean", "std"]).dropna(subset=["mean"])
        spread = stats["std"].fillna(0.0)
        line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=CURVES.get(column, column))
        ax.fill_between(stats.index, (stats["mean"] - spread).clip(lower=0.0), (stats["mean"] + spread).clip(upper=1.0),
                        color=line.get_color(), alpha=0.2)
        for history in histories:  # past the shortest run: each run alone
            alone = history[history["step"] >= shared_until].dropna(subset=[column])
            if len(alone) > 1:
                ax.plot(alone["step"], alone[column], color=line.get_color(), linewidth=0.8, alpha=0.6)
    if long["step"].max() > shared_until:
        ax.axvline(shared_until, color="grey", linestyle=":", linewidth=1,
                   label=f"a run stopped at step {shared_until:g}: each run alone past it")
    ax.set_xlabel("training step")
    ax.set_ylabel("error")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(title or (f"mean ± std over {len(histories)} runs" if len(histories) > 1 else ""))
    fig.tight_layout()
    return fig
