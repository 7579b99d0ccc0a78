"""Train/validation/test splits of a :class:`FaceDataset`, each reproducible from a seed.

Kinds:
- ``random``: the paper's protocol, K random allocations (80/10/10 in the reference code, which
  shuffles all images; emofx stratifies by class); trial k is allocation k.
- ``subject``: subject-independent, no subject in two parts, stratified as far as the
  subjects allow (the default for ``auto`` whenever every image has a subject id and the
  source defines no split of its own).
- ``kfold``: k-fold cross-validation; trial = index of the test fold, a validation part is
  carved from the other folds; folds are grouped by subject when every image has one and there
  are more subjects than folds (``Split.grouped`` records which).
- ``predefined``: the source's own split column (FER2013 Training/PublicTest/PrivateTest, or
  train/val/test); when the source has no validation part it is carved from training. ``auto``
  chooses it whenever every image names a known part and some images are test images: the
  benchmark protocol (FER2013, FER+: train on Training, select on PublicTest, report
  PrivateTest) is then the default.

A split that leaves a class without images in any part, or with fewer than two training
images, is a :class:`SplitError` naming the class and the part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from emofx.data.paths import first_few
from emofx.data.dataset import FaceDataset

PARTS: tuple[str, ...] = ("train", "val", "test")
SPLIT_KINDS: tuple[str, ...] = ("auto", "random", "subject", "kfold", "predefined")
MIN_TRAIN_PER_CLASS = 2

# Source split names (lower case) -> part.
PREDEFINED_NAMES: dict[str, str] = {
    "training": "train", "train": "train",
    "publictest": "val", "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "privatetest": "test", "test": "test",
}


class SplitError(ValueError):
    """A split cannot be made as asked (e.g. a class would be missing from a part)."""


DEFAULT_FOLDS = 4  # kfold: the number of folds (each fold is the test part of one trial)


@dataclass(frozen=True, eq=False)
class Split:
    """Index arrays of the train, validation and test parts of one dataset, with how they were made.

    Attributes:
        train, val, test: sorted int64 indices into the dataset; disjoint.
        kind: ``random``, ``subject``, ``kfold`` or ``predefined`` (``auto`` is resolved).
        seed, trial: the split is a pure function of (dataset, kind, seed, trial, fractions, n_folds).
        fractions: the requested (train, val, test) fractions (for ``kfold``: train/val of the rest).
        n_images: size of the dataset the indices refer to.
        n_folds: number of folds for ``kfold`` (the test fold is ``trial``); None otherwise.
        grouped: whether whole subjects were allocated (no subject in two parts).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    kind: str
    seed: int
    trial: int
    fractions: tuple[float, float, float]
    n_images: int
    n_folds: int | None = None
    grouped: bool = False

    def __post_init__(self) -> None:
        for name in PARTS:
            object.__setattr__(self, name, np.sort(np.asarray(getattr(self, name), dtype=np.int64).reshape(-1)))
        everything = np.concatenate([self.train, self.val, self.test])
        if len(np.unique(everything)) != len(everything):
            raise SplitError("split parts overlap: an image index appears in two parts (or twice in one)")
        if len(everything) and (everything.min() < 0 or everything.max() >= self.n_images):
            raise SplitError(f"split indices must lie in [0, {self.n_images}); "
                             f"got {everything.min()}..{everything.max()}")
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    @property
    def fold(self) -> int | None:
        """The test fold of a k-fold split (None for other kinds)."""
        return self.trial if self.n_folds is not None else None

    def parts(self) -> dict[str, np.ndarray]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in PARTS}

    def datasets(self, dataset: FaceDataset) -> dict[str, FaceDataset]:
        """The three parts as datasets; the dataset must be the one the split was made for."""
        if len(dataset) != self.n_images:
            raise SplitError(
                f"this split indexes a dataset of {self.n_images} images but was given one of {len(dataset)}; "
                "make the split from this dataset with make_split"
            )
        return {name: dataset.subset(idx) for name, idx in self.parts().items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a run directory's split.json holds)."""
        return {
            "kind": self.kind, "seed": self.seed, "trial": self.trial, "fractions": list(self.fractions),
            "n_images": self.n_images, "n_folds": self.n_folds, "grouped": self.grouped,
            **{name: getattr(self, name).tolist() for name in PARTS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Split":
        """The split :meth:`to_dict` recorded; a clear error when a part is missing."""
        missing = [k for k in (*PARTS, "kind", "seed", "trial", "n_images") if k not in data]
        if missing:
            raise SplitError(f"split record lacks {missing}; it was not written by Split.to_dict")
        return cls(
            train=np.asarray(data["train"], dtype=np.int64), val=np.asarray(data["val"], dtype=np.int64),
            test=np.asarray(data["test"], dtype=np.int64), kind=str(data["kind"]), seed=int(data["seed"]),
            trial=int(data["trial"]), fractions=tuple(data.get("fractions", (0.8, 0.1, 0.1))),
            n_images=int(data["n_images"]), n_folds=data.get("n_folds"), grouped=bool(data.get("grouped", False)),
        )


def make_split(
    dataset: FaceDataset,
    kind: str = "auto",
    *,
    seed: int = 0,
    trial: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    n_folds: int = DEFAULT_FOLDS,
) -> Split:
    """Split ``dataset`` into train/val/test, reproducibly from ``(seed, trial)``.

    ``auto`` is ``predefined`` when the source defines a split (:func:`defines_split`), else
    ``subject`` when every image has a subject id, else ``random`` when none has (some but not all: refused,
    as a random split would put the named people's images in several parts). Raises
    :class:`SplitError` for an unknown kind, bad fractions, or a class left empty in a part.
    """
    if kind not in SPLIT_KINDS:
        raise SplitError(f"unknown split kind {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
    fractions = _check_fractions(fractions)
    if int(trial) < 0 or int(seed) < 0:
        raise SplitError(f"the seed and trial of a split must be >= 0; got seed {seed}, trial {trial}")
    if len(dataset) == 0:
        raise SplitError("cannot split an empty dataset")
    if kind == "auto":
        kind = "predefined" if defines_split(dataset) else "subject" if dataset.has_subjects else "random"
        unnamed = np.flatnonzero(dataset.subject == "")
        if kind == "random" and len(unnamed) < len(dataset):  # some people named: at random, theirs would mix
            first = dataset.path[unnamed[0]] or f"image {unnamed[0]}"
            raise SplitError(f"{len(unnamed)} of {len(dataset)} images have no subject id (e.g. {first}): give every "
                             "image its person for a split by person, or ask for kind 'random' (--split random), "
                             "which may put one person's images in training and test")
    if kind == "subject" and not dataset.has_subjects:
        unknown = int(np.sum(dataset.subject == ""))
        raise SplitError(f"a subject split needs a subject id for every image; {unknown} images have none "
                         "(use kind 'random' or 'kfold', or give subjects in the manifest)")
    rng = np.random.default_rng([int(seed), int(trial)])
    groups = dataset.subject if dataset.has_subjects else None
    if kind == "random":
        part_of = _allocate(dataset.labels, None, fractions, rng)
        split = _from_parts(part_of, kind, seed, trial, fractions, grouped=False)
    elif kind == "subject":
        part_of = _allocate(dataset.labels, groups, fractions, rng)
        split = _from_parts(part_of, kind, seed, trial, fractions, grouped=True)
    elif kind == "kfold":
        split = _kfold(dataset, groups, int(n_folds), seed, trial, fractions)
    else:
        split = _predefined(dataset, groups, seed, trial, fractions)
    _check_classes(dataset, split)
    return split


def count_test_copies(dataset: FaceDataset, split: Split) -> int:
    """How many test images equal, pixel for pixel, an image of the training or validation part: a model scored on
    them is scored on images it learned from (314 of FER2013's 3,589 PrivateTest images repeat a Training or
    PublicTest one)."""
    from emofx.data.dedup import image_digests

    learned = image_digests(dataset.images[np.concatenate([split.train, split.val])])
    return int(np.isin(image_digests(dataset.images[split.test]), learned).sum())


def copies_note(copies: int, n_test: int) -> list[str]:
    """The note a run records when ``copies`` of its ``n_test`` test images copy a training or validation image."""
    return [f"{copies} of the {n_test} test images are pixel copies of training or validation images: the test "
            "accuracy counts images the model learned from (remove the copies before training: README, "
            "'deduplicated benchmark')"] if copies else []


def defines_split(dataset: FaceDataset) -> bool:
    """Whether the source split the images itself: every image names a known part, some the test part."""
    names = np.char.lower(dataset.split.astype(str))
    known = np.isin(names, list(PREDEFINED_NAMES))
    return bool(len(names) and known.all() and any(PREDEFINED_NAMES[n] == "test" for n in np.unique(names)))


def balanced_subsample(
    dataset: FaceDataset, indices: np.ndarray, per_class: int | Mapping[str, int], seed: int
) -> np.ndarray:
    """Draw, without replacement, ``per_class`` images of each class from ``indices`` (sorted result).

    ``per_class`` is one count for every class, or a mapping class -> count; classes the mapping
    leaves out are dropped. Asking for more images of a class than ``indices`` holds is an error.
    """
    if int(seed) < 0:
        raise SplitError(f"the seed of a subsample must be >= 0; got {seed}")
    indices = np.asarray(indices, dtype=np.int64)
    wanted = {c: int(per_class) for c in dataset.classes} if isinstance(per_class, (int, np.integer)) \
        else {str(c): int(k) for c, k in per_class.items()}
    unknown = sorted(set(wanted) - set(dataset.classes))
    if unknown:
        raise SplitError(f"balanced_subsample: classes {unknown} are not in the dataset {list(dataset.classes)}")
    rng = np.random.default_rng(int(seed))
    labels = dataset.labels[indices]
    chosen, short = [], []
    for c, name in enumerate(dataset.classes):
        count = wanted.get(name, 0)
        pool = indices[labels == c]
        if count < 0 or count > len(pool):
            short.append(f"{name} (asked {count}, has {len(pool)})")
            continue
        chosen.append(rng.choice(pool, size=count, replace=False))
    if short:
        raise SplitError(f"balanced_subsample cannot draw the requested counts: {', '.join(short)}; "
                         "ask for at most the smallest available count")
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def examples_per_class(labels: np.ndarray, classes: Sequence[int], per_class: int, seed: int) -> list[np.ndarray]:
    """Up to ``per_class`` random positions of each label value in ``classes`` (sorted, one array per class, in
    its order; fewer where a class has fewer): the faces a figure shows or a command explains."""
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(np.flatnonzero(labels == c))[:per_class]) for c in classes]


# ---------------------------------------------------------------------- allocation
def _check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or values[0] <= 0 or not np.isclose(sum(values), 1.0):
        raise SplitError(f"fractions must be three non-negative numbers (train, val, test) summing to 1 with "
                         f"train > 0; got {fractions}")
    return values  # type: ignore[return-value]


def _allocate(labels: np.ndarray, groups: np.ndarray | None, fractions: tuple[float, ...],
              rng: np.random.Generator) -> np.ndarray:
    """Part index (into ``fractions``) of every image, stratified by class; whole groups when given.

    Ungrouped: per class, a random permutation cut at largest-remainder counts (each part with a
    positive fraction gets at least one image of the class when the class has enough). Grouped:
    groups in random order, each to the part whose per-class shortfall it fills most (every part
    with a positive fraction first gets one group).
    """
    fractions = np.asarray(fractions, dtype=float)
    part_of = np.empty(len(labels), dtype=np.int64)
    if groups is None:
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            counts = _part_counts(len(members), fractions, rng)
            part_of[members] = np.repeat(np.arange(len(fractions)), counts)
        return part_of
    names, group_of = np.unique(groups, return_inverse=True)
    n_classes = int(labels.max()) + 1
    per_group = np.zeros((len(names), n_classes))
    np.add.at(per_group, (group_of, labels), 1.0)
    target = fractions[:, None] * per_group.sum(axis=0)[None, :]
    filled = np.zeros_like(target)
    usable = fractions > 0
    group_part = np.empty(len(names), dtype=np.int64)
    for g in rng.permutation(len(names)):
        score = (target - filled) @ per_group[g]
        empty = usable & (filled.sum(axis=1) == 0)
        score = np.where(empty, np.inf, score) if empty.any() else score
        score = np.where(usable, score, -np.inf)
        best = np.flatnonzero(score == score.max())
        group_part[g] = rng.choice(best)
        filled[group_part[g]] += per_group[g]
    return group_part[group_of]


def _part_counts(n: int, fractions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``n`` items by ``fractions`` (largest remainder, random tie order); every positive part gets >= 1 if
    n allows."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    order = np.lexsort((rng.random(len(fractions)), -(raw - counts)))
    counts[order[: n - counts.sum()]] += 1
    for p in np.flatnonzero((fractions > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[p] += 1
    return counts


def _from_parts(part_of: np.ndarray, kind: str, seed: int, trial: int, fractions: tuple[float, float, float],
                *, grouped: bool, n_folds: int | None = None) -> Split:
    return Split(*(np.flatnonzero(part_of == p) for p in range(3)), kind=kind, seed=int(seed), trial=int(trial),
                 fractions=fractions, n_images=len(part_of), n_folds=n_folds, grouped=grouped)


def _carve(labels: np.ndarray, groups: np.ndarray | None, pool: np.ndarray, fractions: tuple[float, float, float],
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split the images ``pool`` into train and val in the ratio fractions[0] : fractions[1]."""
    total = fractions[0] + fractions[1]
    two = (fractions[0] / total, fractions[1] / total)
    part_of = _allocate(labels[pool], None if groups is None else groups[pool], two, rng)
    return pool[part_of == 0], pool[part_of == 1]


def _kfold(dataset: FaceDataset, groups: np.ndarray | None, n_folds: int, seed: int, trial: int,
           fractions: tuple[float, float, float]) -> Split:
    """Test = fold ``trial`` of folds fixed by ``seed``; validation carved from the other folds."""
    if n_folds < 2:
        raise SplitError(f"kfold needs n_folds >= 2; got {n_folds}")
    if not 0 <= trial < n_folds:
        raise SplitError(f"kfold trial is the test fold and must lie in [0, {n_folds}); got {trial}")
    if groups is not None and len(np.unique(groups)) < n_folds + 1:
        groups = None  # too few subjects to group: fall back to image folds
    fold_of = _allocate(dataset.labels, groups, tuple([1.0 / n_folds] * n_folds), np.random.default_rng([int(seed)]))
    rest = np.flatnonzero(fold_of != trial)
    train, val = _carve(dataset.labels, groups, rest, fractions, np.random.default_rng([int(seed), int(trial)]))
    return Split(train, val, np.flatnonzero(fold_of == trial), kind="kfold", seed=int(seed), trial=int(trial),
                 fractions=fractions, n_images=len(dataset), n_folds=n_folds, grouped=groups is not None)


def _predefined(dataset: FaceDataset, groups: np.ndarray | None, seed: int, trial: int,
                fractions: tuple[float, float, float]) -> Split:
    """Parts from the dataset's split column; a missing validation part is carved from training."""
    names = np.char.lower(dataset.split.astype(str))
    unknown = sorted(set(names) - set(PREDEFINED_NAMES) - {""})
    if unknown:
        raise SplitError(f"split names {unknown} are not recognised; known names: {sorted(PREDEFINED_NAMES)}")
    if np.any(names == ""):
        raise SplitError(f"a predefined split needs a split name for every image; {int(np.sum(names == ''))} "
                         "images have none (this source defines no split: use kind 'random', 'subject' or 'kfold')")
    part = np.array([PREDEFINED_NAMES[s] for s in names])
    train, val, test = (np.flatnonzero(part == p) for p in PARTS)
    empty = [p for p, idx in (("train", train), ("test", test)) if not len(idx)]
    if empty:
        present = ", ".join(f"{name} ({count})" for name, count in zip(*np.unique(dataset.split.astype(str),
                                                                                 return_counts=True)))
        raise SplitError(f"a predefined split needs {' and '.join(empty)} images, and the dataset's split column "
                         f"names none (it holds {present}); use kind 'random' or 'subject', or a dataset with them")
    if len(val) == 0:
        train, val = _carve(dataset.labels, groups, train, fractions, np.random.default_rng([int(seed), int(trial)]))
    return Split(train, val, test, kind="predefined", seed=int(seed), trial=int(trial), fractions=fractions,
                 n_images=len(dataset), grouped=False)


def _check_classes(dataset: FaceDataset, split: Split) -> None:
    """Every class in every part the split is meant to fill, and >= 2 training images of each."""
    problems = []
    meant = {"train": True, "val": split.kind in ("kfold", "predefined") or split.fractions[1] > 0,
             "test": split.kind in ("kfold", "predefined") or split.fractions[2] > 0}
    for name, idx in split.parts().items():
        if not meant[name]:
            continue
        counts = np.bincount(dataset.labels[idx], minlength=len(dataset.classes))
        need = MIN_TRAIN_PER_CLASS if name == "train" else 1
        problems += [f"class {c!r} has {k} images in the {name} part (needs >= {need})"
                     for c, k in zip(dataset.classes, counts) if k < need]
    if problems:
        hint = (f"{len(set(dataset.subject))} people are too few to keep each in one part; use more people "
                "(synthetic faces: n_per_class of at least 11, 5 images a person), kind 'random', or other fractions"
                if split.grouped else "the class has too few images; use more images (limit), other fractions, or "
                "drop the class")
        shown = first_few(problems, sep="; ")
        raise SplitError(f"{split.kind} split (seed {split.seed}, trial {split.trial}) is unusable: {shown} ({hint})")
