"""Which experiment a folder of figures holds: the check before drawing into it, the manifest written after.

``figures.json`` in the folder lists the files drawn and the experiment they came from (its name, and its folder as
seen from the figures' folder). Figures of another experiment, or files named as figures without a manifest, are
replaced only when asked (``--overwrite``); a figure not drawn again is removed only when its group could be drawn.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emofx.data.paths import RecordError, read_json_record

MANIFEST = "figures.json"  # which experiment the figures in a folder were drawn from, and their files
OUTPUT_PATTERNS = ("fig4_*", "fig5_*", "fig7_*", "fig_*", "table2_*", "table4_*", "table5_*",  # table5_: earlier name
                   "table_*")


def check_output(out: Path, experiment_dir: Path, overwrite: bool) -> set[str]:
    """The earlier figures and tables in ``out`` that a regeneration replaces: those its manifest lists (files
    without one are only written over where a new file takes their name). Raises ``FileExistsError`` (before
    any work) when ``out`` holds figures not drawn from ``experiment_dir`` (:func:`drawn_from`), or files
    named as ours without a manifest, and ``overwrite`` is not set."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another --out")
    manifest = _read_manifest(out / MANIFEST)
    listed = set(manifest.get("files", []))
    existing = listed or {p.name for pattern in OUTPUT_PATTERNS for p in out.glob(pattern) if p.is_file()}
    if not existing or overwrite or drawn_from(manifest, experiment_dir, out):
        return listed
    place = f" at {manifest['from']}" if manifest.get("from") else ""
    origin = (f"figures drawn from experiment {manifest['experiment']!r}{place}" if manifest
              else "figures of unknown origin")
    shown = ", ".join(sorted(existing)[:3]) + (", ..." if len(existing) > 3 else "")
    raise FileExistsError(f"{out} already holds {origin} ({shown}); choose another --out, or pass --overwrite "
                          f"to replace them with those of {experiment_name(experiment_dir)!r}")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return read_json_record(path) if path.is_file() else {}
    except RecordError as err:
        raise RecordError(f"{err}: not the manifest emofx figures writes; remove it, or choose another --out") from None


def experiment_name(experiment_dir: Path) -> str:
    """An experiment's name, as its manifest records it: its folder's name (``papermill_runs/<name>``)."""
    return experiment_dir.resolve().name


def _relative_source(experiment_dir: Path, out: Path) -> str:
    """Where ``experiment_dir`` lies seen from ``out``: the same in every clone of a repository that holds both."""
    return Path(os.path.relpath(experiment_dir.resolve(), out.resolve())).as_posix()


def drawn_from(manifest: dict[str, Any], experiment_dir: Path, out: Path) -> bool:
    """Whether the figures a manifest lists were drawn from ``experiment_dir``: the folder itself, as seen from
    ``out`` (two experiments of one name in different places are different experiments); a manifest of an
    emofx that recorded the name only is matched by name."""
    if manifest.get("from") is not None:
        return manifest["from"] == _relative_source(experiment_dir, out)
    return manifest.get("experiment") == experiment_name(experiment_dir)


def record_output(out: Path, experiment_dir: Path, earlier: set[str], written: set[str], complete: bool) -> None:
    """Remove the earlier figures that were not drawn again (only when every group could be drawn: a failed
    group's earlier figures stay, and stay listed) and record what ``out`` now holds in its manifest."""
    stale = earlier - written
    if complete:
        for name in stale:
            (out / name).unlink(missing_ok=True)
    files = sorted(written if complete else written | stale)
    manifest = {"experiment": experiment_name(experiment_dir), "from": _relative_source(experiment_dir, out),
                "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def foreign_files(out: Path) -> list[str]:
    """The files under ``out`` (relative paths) that its manifest does not list as drawn (without one: not named as
    figures are), hidden files and the desktop's thumbnail caches aside."""
    if not out.is_dir():
        return []
    manifest = _read_manifest(out / MANIFEST)
    drawn = set(manifest.get("files", [])) if manifest else {p.name for pattern in OUTPUT_PATTERNS
                                                              for p in out.glob(pattern)}
    system = {"Thumbs.db", "desktop.ini"}  # with hidden files (.DS_Store): the desktop's, not the user's work
    return sorted(name for p in out.rglob("*") if not p.is_dir() and (name := p.relative_to(out).as_posix())
                  not in drawn | {MANIFEST} and not p.name.startswith(".") and p.name not in system)
