"""The dataset type: grayscale faces with emotion, culture, subject and provenance.

A :class:`FaceDataset` is the currency of emofx: loaders produce it, splits index it,
training consumes it. It round-trips through one ``.npz`` file and converts to a
pandas DataFrame with one row per image.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emofx.data.emotions import EMOTIONS, canonicalize_all, ordered_classes

FORMAT_TAG = "emofx-dataset"
FORMAT_VERSION = 1
_PER_IMAGE_TEXT = ("culture", "subject", "path", "split")
MIN_SIDE, MAX_SIDE = 8, 1024  # the face sizes (pixels) emofx prepares and resizes to
_ANSWER_EXTRAS = ("votes", "answer_worker", "answer_label")  # meaningful only with meta's vote_names and workers


class DatasetError(ValueError):
    """A dataset file or dataset contents are not usable."""


@dataclass(frozen=True, eq=False)
class FaceDataset:
    """Grayscale face images with labels and per-image metadata.

    Attributes:
        images: uint8 array (N, H, W).
        labels: int32 array (N,), indices into ``classes``.
        classes: canonical emotion names, in canonical order.
        culture, subject, path, split: per-image strings ("" when unknown).
        extras: optional per-image arrays whose first axis is N
            (e.g. ``votes`` (N, 10), ``agreement`` (N,), ``region_masks`` (N, R, H, W)).
        meta: JSON-serialisable facts about the whole set (e.g. ``vote_names``,
            ``region_names``, ``source``, ``format``).
        skipped: inputs that were not turned into images, as ``{"path", "reason"}``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    culture: np.ndarray
    subject: np.ndarray
    path: np.ndarray
    split: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim != 3 or images.dtype != np.uint8:
            channels = images.shape[-1] if images.ndim == 4 else None
            hint = {1: "; one channel: images[..., 0]", 3: "; colour: convert to grayscale first (e.g. "
                    "cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) per image)"}.get(channels, "")
            raise DatasetError(f"images must be uint8 grayscale of shape (N, H, W); got {images.dtype} {images.shape}"
                               f"{hint}")
        n = len(images)
        raw_labels = np.asarray(self.labels)
        if raw_labels.size and raw_labels.dtype.kind not in "iu":
            raise DatasetError(f"labels must be integer class indices; got {raw_labels.dtype} values (emotion names: "
                               "FaceDataset.from_label_names)")
        labels = raw_labels.astype(np.int32).reshape(-1)
        if len(labels) != n:
            raise DatasetError(f"{len(labels)} labels for {n} images")
        classes = (self.classes,) if isinstance(self.classes, str) else tuple(self.classes)  # one class, not letters
        unknown = [c for c in classes if c not in EMOTIONS]
        if unknown:
            raise DatasetError(f"classes {unknown} are not canonical emotions {EMOTIONS}")
        if classes != tuple(e for e in EMOTIONS if e in classes) or len(set(classes)) != len(classes):
            raise DatasetError(f"classes must be distinct and in emofx's order {ordered_classes(classes)}; got "
                               f"{list(classes)} (FaceDataset.from_label_names orders them for you)")
        if n and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DatasetError(f"labels must lie in [0, {len(classes)}); got {labels.min()}..{labels.max()}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", classes)
        for name in _PER_IMAGE_TEXT:
            value = getattr(self, name)
            arr = np.full(n, "", dtype=object) if value is None else np.asarray(value, dtype=object)
            if arr.shape != (n,):
                raise DatasetError(f"{name} must have one entry per image ({n}); got shape {arr.shape}")
            object.__setattr__(self, name, np.array([str(v) for v in arr], dtype=str) if n else np.zeros(0, dtype=str))
        extras = {key: np.asarray(value) for key, value in self.extras.items()}  # lists too, as subset indexes them
        for key, value in extras.items():
            if value.ndim == 0 or len(value) != n:
                raise DatasetError(f"extra {key!r} has {len(value) if value.ndim else 'no'} rows for {n} images")
        object.__setattr__(self, "extras", extras)
        object.__setattr__(self, "skipped", tuple(dict(s) for s in self.skipped))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_label_names(
        cls,
        images: np.ndarray,
        label_names: Sequence[str] | np.ndarray,
        *,
        culture: Sequence[str] | np.ndarray | str = "",
        subject: Sequence[str] | np.ndarray | None = None,
        path: Sequence[str] | np.ndarray | None = None,
        split: Sequence[str] | np.ndarray | None = None,
        extras: dict[str, np.ndarray] | None = None,
        meta: dict[str, Any] | None = None,
        skipped: Sequence[dict[str, str]] = (),
    ) -> "FaceDataset":
        """Build a dataset from emotion names (aliases allowed); classes are those present."""
        names = canonicalize_all(label_names)
        classes = ordered_classes(names)
        index = {c: i for i, c in enumerate(classes)}
        n = len(names)
        pixels = np.asarray(images)
        if len(pixels) != n:
            raise DatasetError(f"{len(pixels)} images for {n} label names")
        if pixels.dtype != np.uint8 and pixels.size and (pixels.dtype.kind not in "iu" or pixels.min() < 0
                                                         or pixels.max() > 255):
            scale = "images.round()" if pixels.max() > 1 else "(images * 255).round()"  # 0-255 floats: no scaling
            raise DatasetError(f"images must be uint8 pixels (0-255); got {pixels.dtype} values {pixels.min()}.."
                               f"{pixels.max()} ({scale}.clip(0, 255).astype(np.uint8) makes them so)")
        if isinstance(culture, str):
            culture = [culture] * n
        return cls(
            images=pixels.astype(np.uint8),
            labels=np.array([index[c] for c in names], dtype=np.int32),
            classes=classes,
            culture=np.asarray(culture, dtype=object),
            subject=np.asarray(subject if subject is not None else [""] * n, dtype=object),
            path=np.asarray(path if path is not None else [""] * n, dtype=object),
            split=np.asarray(split if split is not None else [""] * n, dtype=object),
            extras=dict(extras or {}),
            meta=dict(meta or {}),
            skipped=tuple(skipped),
        )

    # ------------------------------------------------------------------ basic facts
    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def label_names(self) -> np.ndarray:
        """The canonical emotion name of every image."""
        return np.asarray(self.classes, dtype=str)[self.labels] if len(self) else np.zeros(0, dtype=str)

    @property
    def has_subjects(self) -> bool:
        """Whether every image names its person (a subject split needs it)."""
        return bool(len(self)) and bool(np.all(self.subject != ""))

    @property
    def region_names(self) -> tuple[str, ...]:
        """The names of the facial regions the dataset's masks mark (none when it has no masks)."""
        return tuple(self.meta.get("region_names", ()))

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        values = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(v) for c, v in zip(self.classes, values)}

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``emofx info`` prints)."""
        cultures, culture_counts = np.unique(self.culture, return_counts=True)
        out: dict[str, Any] = {
            "n": len(self),
            "classes": list(self.classes),
            "counts": self.counts(),
            "cultures": {str(c): int(k) for c, k in zip(cultures, culture_counts)},
            "subjects": int(len(set(self.subject) - {""})),
            "image_shape": list(self.image_shape),
            "extras": sorted(self.extras),
            "skipped": list(self.skipped),
        }
        if np.any(self.split != ""):
            names, split_counts = np.unique(self.split, return_counts=True)
            out["splits"] = {str(s): int(k) for s, k in zip(names, split_counts)}
        for key in ("source", "format", "dropped", "duplicates"):
            if key in self.meta:
                out[key] = self.meta[key]
        return out

    # ------------------------------------------------------------------ views
    def subset(self, indices: np.ndarray | Sequence[int]) -> "FaceDataset":
        """The images at ``indices`` (a boolean mask or integer indices); classes unchanged. Integer indices that
        are one 0 or 1 per image (of more than two) are refused as a likely mask given as integers."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DatasetError(f"a boolean mask of {idx.shape} for {len(self)} images; give one value per image")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)  # an empty list: no image (numpy would read it as float indices)
        elif not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise DatasetError(f"subset takes a boolean mask or a list of integer indices; got {idx.dtype} values "
                               f"of shape {idx.shape}")
        elif idx.min() < -len(self) or idx.max() >= len(self):
            raise DatasetError(f"index {idx.max() if idx.max() >= len(self) else idx.min()} is outside this dataset "
                               f"of {len(self)} images")
        elif len(self) > 2 and idx.shape == (len(self),) and set(np.unique(idx)) <= {0, 1}:
            raise DatasetError(f"{len(self)} integer indices that are all 0 or 1 (images 0 and 1, over and over) look "
                               "like a mask: give a boolean mask (e.g. mask.astype(bool)) or the indices themselves")
        return replace(
            self,
            images=self.images[idx],
            labels=self.labels[idx],
            culture=self.culture[idx],
            subject=self.subject[idx],
            path=self.path[idx],
            split=self.split[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
        )

    def restrict_classes(self, classes: Sequence[str]) -> "FaceDataset":
        """Keep only images of ``classes`` and relabel so that ``classes`` is the class list."""
        wanted = ordered_classes([classes] if isinstance(classes, str) else classes)  # one name, not its letters
        if not wanted:
            raise DatasetError("restrict_classes needs at least one class to keep")
        missing = [c for c in wanted if c not in self.classes]
        if missing:
            raise DatasetError(f"classes {missing} are not in this dataset (it has {list(self.classes)})")
        keep = np.isin(self.label_names, wanted)
        sub = self.subset(keep)
        index = {c: i for i, c in enumerate(wanted)}
        return replace(sub, labels=np.array([index[c] for c in sub.label_names], dtype=np.int32), classes=wanted)

    def to_frame(self) -> pd.DataFrame:
        """One row per image: index, emotion, label, culture, subject, path, split and scalar extras."""
        frame = pd.DataFrame(
            {
                "emotion": self.label_names,
                "label": self.labels,
                "culture": self.culture,
                "subject": self.subject,
                "path": self.path,
                "split": self.split,
            }
        )
        for key, value in self.extras.items():
            if value.ndim == 1:
                frame[key] = value
            elif value.ndim == 2 and key == "votes" and "vote_names" in self.meta:
                for j, name in enumerate(self.meta["vote_names"]):
                    frame[f"votes_{name}"] = value[:, j]
            elif value.ndim == 2:
                for j in range(value.shape[1]):
                    frame[f"{key}_{j}"] = value[:, j]
        frame.index.name = "image"
        return frame

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the dataset to one ``.npz`` (all but the images deflated); refuses to overwrite unless asked."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; give the name of a file to write")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "classes": list(self.classes),
            "meta": self.meta,
            "skipped": list(self.skipped),
            "extras": sorted(self.extras),
        }
        arrays = {
            "images": self.images,
            "labels": self.labels,
            **{name: getattr(self, name).astype(str) for name in _PER_IMAGE_TEXT},
            **{f"extra__{k}": v for k, v in self.extras.items()},
        }
        tmp = path.with_name(path.name + ".partial.npz")
        try:
            _write_npz(tmp, {"__emofx__": np.array(json.dumps(header)), **arrays}, stored=("images",))
            os.replace(tmp, path)
        except OSError as err:  # named by the file asked for, not the temporary one beside it
            raise OSError(f"cannot write {path}: {err.strerror or err}") from None
        finally:
            tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceDataset":
        """Read a dataset written by :meth:`save`, with a clear error for anything else."""
        path = Path(path)
        if not path.exists():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise FileNotFoundError(f"dataset file {path}{where} does not exist; create one with `emofx prepare`")
        if path.is_file() and not zipfile.is_zipfile(path):
            raise DatasetError(f"{path} is not a readable .npz file (damaged, or another kind of file), so not an "
                               "emofx dataset; create one with `emofx prepare`")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "__emofx__" not in data.files:
                    raise DatasetError(
                        f"{path} is not an emofx dataset (no emofx header); create one with `emofx prepare`"
                    )
                header = json.loads(str(data["__emofx__"]))
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # zlib: a damaged array
            if isinstance(err, DatasetError):
                raise
            raise DatasetError(f"{path} is not a readable emofx dataset ({err}); "
                               "create one with `emofx prepare`") from err
        if header.get("format") != FORMAT_TAG:
            raise DatasetError(f"{path} is not an emofx dataset (format {header.get('format')!r})")
        if not isinstance(header.get("version"), int) or header["version"] > FORMAT_VERSION:
            raise DatasetError(f"{path} is an emofx dataset of format version {header.get('version')!r}, which this "
                               f"emofx (reading up to version {FORMAT_VERSION}) cannot read; update emofx")
        missing = [name for name in ("images", "labels", *_PER_IMAGE_TEXT) if name not in arrays]
        missing += ["classes (header)"] if "classes" not in header else []
        if missing:
            raise DatasetError(f"{path} is a damaged emofx dataset: it lacks {', '.join(missing)}; prepare it again "
                               "with `emofx prepare`")
        return cls(
            images=arrays["images"],
            labels=arrays["labels"],
            classes=tuple(header["classes"]),
            culture=arrays["culture"],
            subject=arrays["subject"],
            path=arrays["path"],
            split=arrays["split"],
            extras={k[len("extra__"):]: v for k, v in arrays.items() if k.startswith("extra__")},
            meta=header.get("meta", {}),
            skipped=tuple(header.get("skipped", ())),
        )


def _write_npz(path: Path, arrays: dict[str, np.ndarray], *, stored: Sequence[str] = ()) -> None:
    """An ``.npz`` (readable by ``np.load``) with ``stored`` members uncompressed and the rest deflated.

    Face photos barely compress (FER2013: 4%) while deflating them takes most of the save time,
    so the images are stored as they are; text and extras (masks, paths) compress well.
    """
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=False)


def merge(datasets: Sequence[FaceDataset], *, resize: int | None = None) -> FaceDataset:
    """Concatenate datasets, uniting class sets and keeping each image's culture, subject and source.

    Images of different sizes are an error unless ``resize`` gives the common side length.
    Extras are kept only when every dataset has them with matching trailing shapes.
    """
    if isinstance(datasets, FaceDataset) or not all(isinstance(d, FaceDataset) for d in datasets):
        raise TypeError("merge takes a list of FaceDatasets (merge([a, b])); got "
                        + (type(datasets).__name__ if isinstance(datasets, FaceDataset) else
                           ", ".join(sorted({type(d).__name__ for d in datasets}))))
    if not datasets:
        raise DatasetError("merge needs at least one dataset")
    if resize is not None:
        datasets = [resize_dataset(d, resize) for d in datasets]
    shapes = {d.image_shape for d in datasets}
    if len(shapes) > 1:
        raise DatasetError(f"cannot merge images of different sizes {sorted(shapes)}; pass resize (CLI: --size)")
    names = np.concatenate([d.label_names for d in datasets])
    meta: dict[str, Any] = {"merged_from": [d.meta.get("source", "") for d in datasets]}
    # kept where every input agrees (face_options but their size: the crops' margin places regions where landmarks
    # are missing)
    for key in ("vote_names", "region_names", "dialect", "signal_regions", "face_options", "aligned"):
        values = {json.dumps(_but_size(d.meta.get(key)), sort_keys=True) for d in datasets}
        if len(values) == 1 and datasets[0].meta.get(key) is not None:
            meta[key] = datasets[0].meta[key]
    if isinstance(meta.get("face_options"), dict):
        meta["face_options"] = {**meta["face_options"], "size": datasets[0].image_shape[0]}
    common = set.intersection(*(set(d.extras) for d in datasets)) - set(_ANSWER_EXTRAS)
    extras = {}
    for key in sorted(common):
        parts = [d.extras[key] for d in datasets]
        if len({p.shape[1:] for p in parts}) == 1:
            extras[key] = np.concatenate(parts)
    if "vote_names" in meta:
        answers, workers = _merge_answers(datasets)
        extras.update(answers)
        if workers is not None:
            meta["workers"] = workers
    return FaceDataset.from_label_names(
        np.concatenate([d.images for d in datasets]),
        list(names),
        culture=list(np.concatenate([d.culture for d in datasets])),
        subject=list(np.concatenate([d.subject for d in datasets])),
        path=list(np.concatenate([d.path for d in datasets])),
        split=list(np.concatenate([d.split for d in datasets])),
        extras=extras,
        meta=meta,
        skipped=[s for d in datasets for s in d.skipped],
    )


def _but_size(value: Any) -> Any:
    return {k: v for k, v in value.items() if k != "size"} if isinstance(value, dict) else value


def _merge_answers(datasets: Sequence[FaceDataset]) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Vote counts and worker answers of datasets that share ``meta["vote_names"]``: the counts
    concatenated, each set's worker indices mapped into the union of the workers (answer slots
    padded with -1 to the widest set). Answers go when a set has counts but no answers."""
    extras = {}
    if all("votes" in d.extras for d in datasets):
        extras["votes"] = np.concatenate([d.extras["votes"] for d in datasets])
    if not all("answer_worker" in d.extras and "workers" in d.meta for d in datasets):
        return extras, None
    workers = list(dict.fromkeys(w for d in datasets for w in d.meta["workers"]))
    code = {w: i for i, w in enumerate(workers)}
    width = max(d.extras["answer_worker"].shape[1] for d in datasets)
    worker_parts, label_parts = [], []
    for d in datasets:
        answer_worker, answer_label = d.extras["answer_worker"], d.extras["answer_label"]
        mapping = np.array([code[w] for w in d.meta["workers"]] + [-1], dtype=np.int32)  # -1 (none) stays -1
        pad = ((0, 0), (0, width - answer_worker.shape[1]))
        worker_parts.append(np.pad(mapping[answer_worker], pad, constant_values=-1))
        label_parts.append(np.pad(answer_label, pad, constant_values=-1))
    extras["answer_worker"] = np.concatenate(worker_parts).astype(np.int32)
    extras["answer_label"] = np.concatenate(label_parts).astype(np.int16)
    return extras, workers


def resize_dataset(dataset: FaceDataset, size: int) -> FaceDataset:
    """Resize every image (and region mask) to ``size`` x ``size`` with area interpolation, and move
    the stored landmarks and eye centres (pixel-index coordinates) with the pixels."""
    import cv2

    if not MIN_SIDE <= size <= MAX_SIDE:
        raise DatasetError(f"image size must be between {MIN_SIDE} and {MAX_SIDE} pixels; got {size}")
    if dataset.image_shape == (size, size):
        return dataset
    images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in dataset.images]) \
        if len(dataset) else np.zeros((0, size, size), np.uint8)
    extras = dict(dataset.extras)
    if "region_masks" in extras:
        masks = extras["region_masks"].astype(np.uint8)
        extras["region_masks"] = np.stack(
            [[cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in ms] for ms in masks]
        ).astype(bool)
    height, width = dataset.image_shape
    scale = np.array([size / width, size / height], dtype=np.float32)
    for key in ("landmarks", "eye_centres"):  # pixel centres map to pixel centres: (x + 1/2) s - 1/2
        if key in extras:
            extras[key] = ((extras[key] + 0.5) * scale - 0.5).astype(extras[key].dtype)
    return replace(dataset, images=images, extras=extras)
