"""Datasets by name: the shared real cultures under ``$EMOFX_DATA``, synthetic cultures, or a prepared file.

Notebooks and experiments name their data with one short *source* string so that the same
notebook runs on real faces and on synthetic stand-ins:

| source | dataset |
|---|---|
| ``kdef`` | KDEF front views (``kdef/frontal`` under :func:`emofx.data.paths.shared_data_root`), culture Swedish |
| ``taiwanese`` | the Taiwanese performers' front views with observer ratings (``taiwanese``), culture Taiwanese |
| ``synthetic`` | the synthetic dialect named by the culture (``eyes``, ``mouth``, ``universal``) |
| ``synthetic:<dialect>`` | that synthetic dialect, recorded under the requested culture name (a stand-in) |
| a path ending in ``.npz`` | a dataset file written by ``emofx prepare`` or ``emofx merge``: where it holds \
several cultures, the requested culture's images (:func:`culture_part`) |

Real photos are prepared as ``emofx prepare`` does (faces found, 68 landmarks, aligned by the eyes,
results cached under ``$EMOFX_CACHE``), so the second run of a notebook prepares nothing again.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, replace
from pathlib import Path

from emofx.data.dataset import FaceDataset
from emofx.data.loaders.common import part_summary
from emofx.data.paths import DATA_ENV, shared_data_root

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SharedSource:
    """A real dataset under the shared data root: its folder, ``emofx.data.loaders`` format and culture."""

    folder: str
    format: str
    culture: str


SHARED_SOURCES: dict[str, SharedSource] = {
    "kdef": SharedSource("kdef/frontal", "kdef", "Swedish"),
    "taiwanese": SharedSource("taiwanese", "taiwanese", "Taiwanese"),
}


class SourceNameError(ValueError):
    """A dataset source that is neither a known name nor a dataset file."""


def is_real(source: str, dataset: FaceDataset | None = None) -> bool:
    """Whether ``source`` names real faces (a shared dataset or a prepared file), not synthetic ones; given the
    ``dataset`` it names, by its contents (synthetic faces carry their true region masks, also saved to a file)."""
    if dataset is not None:
        return "region_masks" not in dataset.extras
    source = str(source)
    return not (source == SYNTHETIC or source.startswith(SYNTHETIC + ":"))


def culture_part(dataset: FaceDataset, culture: str, source: str) -> FaceDataset:
    """The images of ``culture`` where ``dataset`` holds several cultures (a merged or culture-labelled collection),
    over the classes it has images of (a culture whose collection lacks some emotions the others have is trained on
    its own); a dataset of one culture whole, whatever that culture is called (a file standing in for a culture)."""
    cultures = sorted(set(dataset.culture) - {""})
    if len(cultures) < 2:
        return dataset
    if culture not in cultures:
        raise SourceNameError(f"{source} holds the cultures {', '.join(cultures)}, not {culture!r}: name one of "
                              "them, or give this culture a file of its own")
    part = dataset.subset(dataset.culture == culture)
    known = any("culture" in entry for entry in part.skipped)  # an older file's skips name no culture: all kept
    part = replace(part, meta=part_summary(part), skipped=tuple(
        s for s in part.skipped if not known or s.get("culture") == culture))
    present = [c for c in part.classes if (part.label_names == c).any()]
    return part if len(present) == len(part.classes) else part.restrict_classes(present)


def load_source(source: str, culture: str, *, size: int = 48, landmarks: str = "auto", align: bool | None = None,
                n_per_class: int = 60, seed: int = 0, progress: bool = False) -> FaceDataset:
    """The dataset named by ``source`` (see the module's table) for ``culture``.

    ``size``, ``landmarks`` and ``align`` prepare real photos (as ``emofx prepare`` does);
    ``n_per_class`` and ``seed`` generate synthetic faces.
    """
    source = str(source)
    if source == SYNTHETIC or source.startswith(SYNTHETIC + ":"):
        from emofx.data.synthetic import make_synthetic

        dialect = source.split(":", 1)[1] if ":" in source else culture
        return make_synthetic(dialect, n_per_class=n_per_class, seed=seed, size=size, culture=culture)
    if source in SHARED_SOURCES:
        from emofx.data.loaders import load

        shared = SHARED_SOURCES[source]
        folder = shared_data_root() / shared.folder
        if not folder.is_dir():
            raise FileNotFoundError(f"the {source} dataset is not at {folder}; put the shared data there or set "
                                    f"{DATA_ENV} to the folder that holds {shared.folder}")
        from emofx.data.synthetic import DIALECTS

        if culture in DIALECTS:  # a notebook's synthetic default left in place: the photos are of their own culture
            warnings.warn(f"culture {culture!r} is a synthetic dialect; the {source} photos are labelled "
                          f"{shared.culture} (set culture to name them otherwise)", stacklevel=2)
        named = shared.culture if not culture or culture in DIALECTS else culture
        return load(folder, shared.format, culture=named, size=size, landmarks=landmarks, align=align,
                    progress=progress)
    if source.endswith(".npz"):
        dataset = culture_part(FaceDataset.load(Path(source)), culture, source)
        if dataset.image_shape != (size, size):  # a prepared file is taken as it is
            height, width = dataset.image_shape
            warnings.warn(f"{source} holds {height}x{width} faces, not the {size}x{size} asked for: size applies to "
                          f"photos prepared from a named source; prepare the file with --size {size} to train at "
                          "that size", stacklevel=2)
        return dataset
    raise SourceNameError(f"unknown dataset {source!r}: give {', '.join(sorted(SHARED_SOURCES))}, {SYNTHETIC}, "
                          f"{SYNTHETIC}:<dialect> or a .npz file from `emofx prepare`")
