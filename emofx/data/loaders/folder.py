"""The ``folder`` format: ``ROOT/[split folders/]<emotion>/<image>`` (the FER2013 Kaggle layout)."""

from __future__ import annotations

import os

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import ALIASES, UnknownEmotionError
from emofx.data.faces import FaceOptions
from emofx.data.loaders.common import (
    SourceError,
    _build,
    _existing,
    _face_options,
    _Inputs,
    _is_image_name,
    _spread,
    not_image_reason,
)
from emofx.data.loaders.fer2013 import FER2013_SPLITS
from emofx.data.paths import folder_files


def load_folder(
    source: str | os.PathLike,
    *,
    culture: str = "",
    size: int = 48,
    faces: str = "auto",
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    landmarks: str = "auto",
    align: bool | None = None,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """``ROOT/[split folders/]<emotion>/<image>``: the class is the image's folder, the split the folders above.

    FER2013 file names (``Training_*``, ``PublicTest_*``, ``PrivateTest_*``) set the split
    themselves. ``faces``: ``cropped`` (images are faces already), ``detect``, or ``auto``
    (cropped when a sample of the images are small squares).
    """
    root = _existing(source, "image folder")
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; the folder format expects ROOT/<emotion>/<image>")
    inputs = _Inputs()
    listing = {folder: inputs.recordable(files) for folder, files in folder_files(root).items()}
    stray = listing.pop(root)
    folders = {f: files for f, files in listing.items()
               if any(map(_is_image_name, files)) or f.name.strip().lower() in ALIASES}
    if not folders:
        raise SourceError(f"no class folders with images under {root}; expected ROOT/<emotion>/<image> "
                          f"(e.g. {root / 'happy' / 'img001.jpg'})")
    named = {f for f in folders if f.name.strip().lower() in ALIASES}
    for split_folder in [f for f in folders if f not in named and any(c.parent == f for c in named)]:
        stray += folders.pop(split_folder)  # a split folder (it holds class folders): its own images are strays
    unknown = sorted({f.name for f in folders if f.name.strip().lower() not in ALIASES})
    if unknown:
        raise UnknownEmotionError(
            f"folders {unknown} under {root} are not emotion names; accepted names: {', '.join(sorted(ALIASES))}"
        )
    for path in stray:
        if _is_image_name(path):
            inputs.skip(path, "image is not inside a class folder (expected ROOT/<emotion>/<image>)")
    for folder in sorted(folders):
        files = folders[folder]
        images = [p for p in files if _is_image_name(p)]
        if not images:
            inputs.skip(folder, "class folder has no images")
        for path in files:
            if not _is_image_name(path):
                inputs.skip(path, not_image_reason(path))
        split_folder = folder.parent.relative_to(root).as_posix()
        for path in images:
            prefix = path.name.split("_", 1)[0]
            split = prefix if prefix in FER2013_SPLITS else ("" if split_folder == "." else split_folder)
            inputs.add(path, folder.name, culture=culture, split=split)
    inputs = inputs.take(_spread(len(inputs.files), limit, inputs.labels))
    options = _face_options(faces, inputs.files, size, margin, center_crop_fallback, landmarks, align)
    return _build(inputs, options, source=root, fmt="folder", strict=strict, progress=progress)
