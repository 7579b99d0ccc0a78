"""Which images of a dataset a run has already seen: those it trained or validated on, found by their pixels.

A model scored on images it learned from looks better than it is. That happens silently when a run is
evaluated on the file it was trained on, on a file of several cultures one of which it learned
(``emofx train all.npz --culture A``), or on a collection that holds copies of its training images.
:func:`unseen_part` finds such images by content (equal pixels, equal digest) in the runs' recorded
training and validation parts, so ``emofx evaluate --data`` scores only images no model has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from emofx.data.dataset import FaceDataset
from emofx.data.dedup import image_digests
from emofx.study.runs import Run, dataset_fingerprint


@dataclass(frozen=True)
class SeenImages:
    """Which images of a dataset the runs trained or validated on.

    Attributes:
        seen: one flag per image of the dataset: equal, pixel for pixel, to an image of a run's training or
            validation part.
        unchecked: the runs whose training images could not be read, each with why (their images are not
            in ``seen``).
    """

    seen: np.ndarray
    unchecked: tuple[str, ...] = ()

    @property
    def n_seen(self) -> int:
        """How many images equal one the runs trained or validated on."""
        return int(self.seen.sum())


def seen_images(runs: Sequence[Run], dataset: FaceDataset) -> SeenImages:
    """Flag the images of ``dataset`` that one of ``runs`` trained or validated on (read from each run's recorded
    dataset and split; a run whose dataset is missing or has changed since is named in ``unchecked``)."""
    trained: list[np.ndarray] = []
    unchecked: list[str] = []
    read: dict[tuple[str, str], FaceDataset] = {}  # a file read once for an ensemble's runs
    for run in runs:
        data = run.metrics.get("data", {})
        path = data.get("path")
        if not path:
            unchecked.append(f"{run.directory}: it does not record its dataset's path")
            continue
        key = (path, data.get("culture") or "")
        try:
            if key not in read:
                read[key] = run.dataset()
            own = read[key]
        except (OSError, ValueError) as err:
            unchecked.append(f"{run.directory}: its dataset {path} could not be read ({err})")
            continue
        if data.get("fingerprint") and data["fingerprint"] != dataset_fingerprint(own):
            unchecked.append(f"{run.directory}: its dataset {path} has changed since the run was trained on it")
            continue
        trained.append(image_digests(own.images[np.concatenate([run.split.train, run.split.val])]))
    seen = np.zeros(len(dataset), dtype=bool)
    if trained and len(dataset):
        seen = np.isin(image_digests(dataset.images), np.concatenate(trained))
    return SeenImages(seen=seen, unchecked=tuple(unchecked))


def unseen_part(runs: Sequence[Run], dataset: FaceDataset) -> tuple[FaceDataset, SeenImages]:
    """The images of ``dataset`` that none of ``runs`` trained or validated on, and which were left out."""
    found = seen_images(runs, dataset)
    return dataset.subset(~found.seen), found
