"""KDEF photos; expression, actor and angle come from the file names (``AF01ANS.JPG``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from emofx.data.dataset import FaceDataset
from emofx.data.faces import FaceOptions
from emofx.data.loaders.common import (
    FILE_NAME_CODES,
    _build,
    _existing,
    _image_files,
    _Inputs,
    _is_image_name,
    _spread,
    no_images_error,
    not_image_reason,
    photo_options,
)

KDEF_EXPRESSIONS: dict[str, str] = {
    "AF": "afraid", "AN": "angry", "DI": "disgusted", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprised",
}
KDEF_ANGLES: tuple[str, ...] = ("S", "HL", "HR", "FL", "FR")
_KDEF_NAME = FILE_NAME_CODES["kdef"]


def load_kdef(
    source: str | os.PathLike,
    *,
    culture: str = "Swedish",
    angles: Sequence[str] = ("S",),
    size: int = 48,
    margin: float = FaceOptions.margin,
    center_crop_fallback: bool = False,
    landmarks: str = "auto",
    align: bool | None = None,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """KDEF photos named by code: session (A/B), sex (F/M), actor, expression, angle (``AF01ANS.JPG``).

    Only the straight (``S``) view by default; ``angles`` may add HL, HR, FL, FR. Subject is the
    actor with sex (``F01``), so subject-independent splits are possible.
    """
    root = _existing(source, "KDEF folder")
    inputs, other_angles = kdef_inputs(root, culture, angles)
    inputs = inputs.take(_spread(len(inputs.files), limit, inputs.labels))
    options = photo_options(size, margin, center_crop_fallback, landmarks, align)
    return _build(inputs, options, source=root, fmt="kdef", strict=strict, progress=progress,
                  meta={"angles": sorted({a.upper() for a in angles}), "other_angles_ignored": other_angles})


def kdef_inputs(root: Path, culture: str = "Swedish", angles: Sequence[str] = ("S",)) -> tuple[_Inputs, int]:
    """The KDEF photos of ``angles`` under ``root`` with their expression and subject (from the file names
    alone, no image read), and how many photos of other angles were left out."""
    wanted = {a.upper() for a in angles}
    bad = sorted(wanted - set(KDEF_ANGLES))
    if bad or not wanted:
        raise ValueError(f"{f'unknown KDEF angle(s) {bad}' if bad else 'no KDEF angle given'}; choose from "
                         f"{list(KDEF_ANGLES)}")
    inputs, other_angles = _Inputs(), 0
    for path in inputs.recordable(_image_files(root)):
        match = _KDEF_NAME.match(path.stem) if _is_image_name(path) else None
        if match is None:
            inputs.skip(path, "file name does not follow the KDEF code (e.g. AF01ANS.JPG)"
                        if _is_image_name(path) else not_image_reason(path))
            continue
        _session, sex, actor, expression, angle = (g.upper() for g in match.groups())
        if angle not in wanted:
            other_angles += 1
            continue
        inputs.add(path, KDEF_EXPRESSIONS[expression], culture=culture, subject=f"{sex}{actor}")
    if not inputs.files:
        raise no_images_error(f"KDEF photos with angle(s) {sorted(wanted)}", root, inputs,
                              f"{other_angles} photos of other angles (--angles)" if other_angles else "")
    return inputs, other_angles
