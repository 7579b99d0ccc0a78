"""Writing a web collection (:class:`emofx.data.collect.Collection`) to a folder: the manifest, the faces, what
was dropped and why, the duplicate groups, the exclusion list and the summary, all at once or not at all; and
leaving the images an exclusion list names out of a dataset (``emofx prepare --exclude``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from emofx.data.collect import Collection, CollectError
from emofx.data.dataset import FaceDataset
from emofx.data.loaders.common import read_text_table

COLLECTION_FILES = ("faces", "manifest.csv", "dropped.csv", "duplicates.csv", "exclude.csv", "report.json")


def write_collection(collection: Collection, out: str | os.PathLike, *, write_faces: bool = True,
                     overwrite: bool = False) -> Path:
    """Write the manifest, faces, drop report, duplicate groups, exclusion list and summary into ``out``.

    Everything is written into a temporary folder first and moved into place at the end, so
    ``out`` is either complete or absent; replacing an earlier collection keeps any other file in it (and refuses
    when its ``faces/`` holds files that collection did not write). With ``write_faces`` the manifest's ``path``
    is the face PNG, named by its source file's content (``faces/<content_hash>.png``: a face keeps its name when
    the collection is made again from more downloads, so answers given for it still attach to it); otherwise the
    source file.
    """
    out = Path(out).expanduser()
    if out.is_file():
        raise CollectError(f"--out {out} is a file; a collection is a folder: choose another --out")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    source = Path(collection.summary["source"])
    if out.resolve().is_relative_to(source.resolve()):
        raise CollectError(f"--out {out} lies inside the source {source}; sources are only read")
    if source.resolve().is_relative_to(out.resolve()):
        raise CollectError(f"--out {out} contains the source {source}; replacing it would delete the source")
    if out.exists() and not (out / "report.json").is_file():
        raise CollectError(f"--out {out} exists and is not a collection (no report.json); --overwrite only "
                           "replaces an earlier collection: choose another --out")
    if out.exists():
        _check_no_faces_of_yours(out)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        (partial / "faces").mkdir(parents=True)
    except OSError as err:
        raise CollectError(f"cannot write --out {out}: {err.strerror or err} in {out.parent.absolute()}") from None
    try:  # written aside; an error or Ctrl-C here leaves no half collection behind
        _write_parts(partial, collection, write_faces)
        for item in out.iterdir() if out.exists() else ():  # files the user put beside an earlier collection stay
            if item.name not in COLLECTION_FILES:
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, partial / item.name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def _write_parts(partial: Path, collection: Collection, write_faces: bool) -> None:
    """The collection's files (faces, manifest, tables, report) into the folder ``partial``."""
    manifest = collection.kept.copy()
    if write_faces:
        names = [f"faces/{digest}.png" for digest in manifest["content_hash"]]
        for name, face in zip(names, collection.faces):
            Image.fromarray(face).save(partial / name)
        manifest.insert(0, "path", names)
    else:
        (partial / "faces").rmdir()
        manifest.insert(0, "path", manifest["source"])
    manifest.to_csv(partial / "manifest.csv", index=False)
    collection.dropped.to_csv(partial / "dropped.csv", index=False)
    collection.duplicates.to_csv(partial / "duplicates.csv", index=False)
    collection.exclusion_list().to_csv(partial / "exclude.csv", index=False)
    (partial / "report.json").write_text(json.dumps(collection.summary, indent=2, default=str) + "\n")


def _check_no_faces_of_yours(out: Path) -> None:
    """Refuse to replace a collection whose ``faces/`` holds files its manifest does not name (the user's)."""
    faces = out / "faces"
    if not faces.is_dir():
        return
    try:
        written = set(pd.read_csv(out / "manifest.csv", usecols=["path"], dtype=str)["path"])
    except (OSError, ValueError, pd.errors.ParserError):
        written = set()
    yours = sorted(p.name for p in faces.iterdir() if f"faces/{p.name}" not in written and not p.name.startswith("."))
    if yours:
        raise CollectError(f"{faces} holds {len(yours)} files the earlier collection did not write (e.g. {yours[0]}); "
                           "--overwrite replaces that folder: move them out first")


def exclude_listed(dataset: FaceDataset, listing: Path, sample: bool = False) -> tuple[FaceDataset, int]:
    """The dataset without the images listed in ``listing``'s ``path`` column.

    Absolute paths match the image's path (where none does, its path with symbolic links resolved); relative
    ones match its trailing path components (``fer2013/train/angry/Training_1.jpg``), so a list travels with the
    data. A list naming none of the images is an error (its paths likely have another form), unless the dataset
    is a ``sample`` (``--limit``), which may simply hold none of them.
    """
    table = read_text_table(listing, ["path"],
                            "for --exclude a CSV with a path column, e.g. emofx collect's exclude.csv")
    entries = [Path(p.strip()) for p in table["path"] if p.strip()]
    drop = np.zeros(len(dataset), dtype=bool)
    # Each entry names the image at that path; only an entry that names none as written is matched once symbolic
    # links are resolved (a dataset read through a linked folder), so a link and its target, both in the dataset
    # (one dropped by emofx collect as a copy of the other), are not both left out.
    given = [Path(os.path.abspath(p)) for p in dataset.path]
    real = [Path(p).resolve() for p in dataset.path]
    for resolve in (False, True):
        where = _path_keys(real if resolve else given)
        matched = [where.get(_entry_key(e, resolve), []) for e in entries]
        if resolve:  # several images that are one file (a link and its target): the file itself, not the link
            matched = [[i for i in found if given[i] == real[i]] or found for found in matched]
        for indices in matched:
            drop[indices] = True
        entries = [e for e, indices in zip(entries, matched) if not indices]
    if given and not drop.any() and not sample:
        raise ValueError(f"no image of the dataset is listed in --exclude {listing} "
                         f"(listed paths look like {given[0]})")
    return dataset.subset(~drop), int(drop.sum())


def _path_keys(paths: list[Path]) -> dict[str, list[int]]:
    """Each path's absolute form and every trailing run of its components (``train/angry/x.jpg``, ...), to the
    indices of the paths that end so."""
    keys: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        keys.setdefault(str(path), []).append(i)
        for depth in range(1, len(path.parts)):
            keys.setdefault("/".join(path.parts[-depth:]), []).append(i)
    return keys


def _entry_key(entry: Path, resolve: bool) -> str:
    if not entry.is_absolute():
        return entry.as_posix()
    return str(entry.resolve() if resolve else Path(os.path.abspath(entry)))
