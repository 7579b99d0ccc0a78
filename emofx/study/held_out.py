"""Which images of a dataset a run has already seen: those it trained or validated on, found by their pixels.

A model scored on images it learned from looks better than it is. That happens silently when a run is
evaluated on the file it was trained on, on a file of several cultures one of which it learned
(``emofx train all.npz --culture A``), or on a collection that holds copies of its training images.
:func:`unseen_part` finds such images by content (equal pixels, equal digest) in the runs' recorded
training and validation parts, so ``emofx evaluate --data`` scores only images no model has seen, and
:func:`held_out_images` gives ``emofx saliency`` and ``emofx modify`` a run's model with the images it did not learn
from.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from emofx.data.dataset import FaceDataset
from emofx.data.dedup import image_digests
from emofx.data.splits import examples_per_class
from emofx.data.emotions import shared_classes
from emofx.nets.checkpoint import TrainedModel
from emofx.study.run_status import interrupted_note
from emofx.study.runs import Run, dataset_fingerprint, load_run


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


@dataclass(frozen=True)
class HeldOutImages:
    """Images a run did not train on, labelled in the model's class order."""

    model: TrainedModel
    dataset: FaceDataset  # only the held-out images
    indices: np.ndarray  # their positions in the data file
    labels: np.ndarray  # their classes as indices into model.classes
    description: str
    trained_on: str  # what the model learned from (its culture, else its data file's name), for titles


def held_out_images(run_dir: str, data_path: str) -> HeldOutImages:
    """The run's model and the images of ``data_path`` of its classes it has not learned from: the run's test part
    when the data is the run's own, otherwise every image not equal, pixel for pixel, to one it trained or
    validated on (a pooled file, a subset or a collection may hold them: :func:`seen_images`)."""
    recorded = load_run(run_dir)
    if note := interrupted_note(recorded):
        warnings.warn(note, stacklevel=2)
    model = recorded.model
    dataset = recorded.own_part(FaceDataset.load(data_path), data_path)  # a run of one culture of a pooled file
    if dataset.image_shape != (model.config.input_size,) * 2:
        raise ValueError(f"{data_path} holds {dataset.image_shape} images but the model of {run_dir} takes "
                         f"{model.config.input_size}x{model.config.input_size}; prepare the data with "
                         f"--size {model.config.input_size}")
    own = recorded.metrics.get("data", {}).get("fingerprint") == dataset_fingerprint(dataset)
    if own:
        indices, description = np.asarray(recorded.split.test, np.int64), "the run's test images"
    else:
        found = seen_images([recorded], dataset)
        indices = np.flatnonzero(~found.seen)
        if not len(indices):
            raise ValueError(f"every image of {data_path} ({len(dataset)}) is one {run_dir} trained or validated "
                             "on; give --data the run's own dataset (its test images are used) or unseen faces")
        description = "the images it did not train or validate on" + (
            f" ({found.n_seen} of {len(dataset)} left out: the same pixels as its training or validation images)"
            if found.n_seen else "") + "".join(f"; not checked for its training images: {why}"
                                               for why in found.unchecked)
    known = shared_classes(model.classes, dataset.classes)
    if not known:
        raise ValueError(f"{data_path} has classes {list(dataset.classes)}, none of which the model knows "
                         f"({list(model.classes)})")
    candidates, indices = len(indices), indices[np.isin(dataset.label_names[indices], known)]
    if not len(indices):
        pool = "the run's test images" if own else f"its {candidates} images the run did not learn from"
        raise ValueError(f"{data_path}: none of {pool} shows a class the model knows ({', '.join(known)}); give "
                         "--data a dataset with faces of those emotions")
    subset = dataset.subset(indices)
    labels = np.array([model.classes.index(name) for name in subset.label_names], np.int32)
    data = recorded.metrics.get("data", {})
    trained_on = data.get("culture") or Path(data.get("path") or run_dir).stem
    return HeldOutImages(model, subset, indices, labels, description, trained_on)


def spread_over_classes(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Positions of about ``n`` images spread evenly over the classes, at least one of each (all when ``n`` is
    None)."""
    if n is None:
        return np.arange(len(labels))
    if n < 1:
        raise ValueError(f"the number of images must be at least 1; got {n}")
    classes = np.unique(labels)
    return np.sort(np.concatenate(examples_per_class(labels, classes, math.ceil(n / len(classes)), seed)))
