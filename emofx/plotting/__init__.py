"""Figures for people: one module per family of figures.

- :mod:`emofx.plotting.faces`: a dataset's faces, one column per emotion.
- :mod:`emofx.plotting.tables`: confusion-matrix heatmaps and misclassification bars.
- :mod:`emofx.plotting.curves`: learning curves (the paper's Figure 4).
- :mod:`emofx.plotting.saliency`: saliency maps for viewing, overlays, Figure 5-6 grids, Figure 7 panels.
- :mod:`emofx.plotting.comparison`: culture-comparison figures (H1/H2, transfer, CKA).

All functions return a matplotlib Figure and never call ``plt.show``; use :func:`save_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


_UNDATED = {"pdf": {"CreationDate": None}}


def laid_out_figure(ax: Axes) -> Figure:
    """The whole figure ``ax`` is drawn in (what :func:`save_figure` saves), laid out tightly where ``ax`` is the
    figure's own; an ``ax`` of a subfigure (``fig.subfigures``) is left to the layout of the figure it is part of,
    since a subfigure has no tight layout of its own."""
    from matplotlib.figure import SubFigure

    figure = ax.figure
    if isinstance(figure, SubFigure):
        return figure.figure
    figure.tight_layout()
    return figure


def save_figure(fig: Figure, path: str | Path, formats: Iterable[str] = ("png",), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the written paths.

    No creation date is written into PDF files, so the same figure saves to the same PNG and PDF bytes
    (a regenerated report changes no file whose figure did not change)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=dpi, bbox_inches="tight", metadata=_UNDATED.get(fmt))
        written.append(target)
    plt.close(fig)
    return written
