"""A dataset's faces, one column per emotion: a look at the data before training on it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from emofx.data.dataset import FaceDataset
from emofx.data.splits import examples_per_class


def class_examples(dataset: FaceDataset, per_class: int = 1, seed: int | None = None) -> Figure:
    """``per_class`` faces of each of the dataset's classes, a column per class in its order: the first ones, or
    random ones drawn from ``seed``; a class with fewer faces leaves its lower cells empty."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1; got {per_class}")
    if seed is None:
        chosen = [np.flatnonzero(dataset.labels == c)[:per_class] for c in range(len(dataset.classes))]
    else:
        chosen = examples_per_class(dataset.labels, range(len(dataset.classes)), per_class, seed)
    columns = len(dataset.classes)
    fig, axes = plt.subplots(per_class, columns, figsize=(1.6 * columns, 1.7 * per_class + 0.3), squeeze=False)
    for column, (name, indices) in enumerate(zip(dataset.classes, chosen)):
        axes[0, column].set_title(name)
        for row in range(per_class):
            ax = axes[row, column]
            if row < len(indices):
                ax.imshow(dataset.images[indices[row]], cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
    fig.tight_layout()
    return fig
