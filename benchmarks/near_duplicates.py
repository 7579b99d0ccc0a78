"""Does `emofx collect` drop copies of a photo and keep a person's other photos? On real posed series.

    python -m benchmarks.near_duplicates --out benchmarks/results/collect

1. KDEF's frontal photos (70 actors x 7 expressions x 2 sessions, 980 distinct photos) and the Taiwanese
   performers' photos, collected as they are: every image dropped as a near duplicate is a distinct photo of a
   posed series (for the Taiwanese set, some are consecutive shots of one performance, nearly identical:
   a group within one performer and expression is such a burst, a group across performers or expressions
   is an error).
2. The first ``--actors`` KDEF actors' photos plus five copies of each (half and quarter size, JPEG quality 50,
   4% of the border cut away, 15% brighter), written to a temporary folder: how many copies each setting
   drops, and how many distinct photos it keeps.

Each part runs with the faces aligned on their eyes (dlib's 68 points, compared by correlation) and with the
crops compared by a 64-bit pHash alone (``--landmarks none``: emofx's behaviour before 2026-12-06). Writes
``near_duplicates.csv``/``.md``/``.json`` to ``--out``; the copies stay in the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image, ImageEnhance

from emofx.data.collect import CollectConfig, collect
from emofx.data.landmarks import dlib_available
from emofx.data.paths import shared_data_root

SETTINGS = {"aligned (dlib68, correlation)": "dlib68", "crops by 64-bit pHash": "none"}
COPIES = {
    "half": lambda im: im.resize((im.width // 2, im.height // 2), Image.LANCZOS),
    "quarter": lambda im: im.resize((im.width // 4, im.height // 4), Image.LANCZOS),
    "q50": lambda im: im,
    "reframed": lambda im: im.crop((im.width // 25, im.height // 25, im.width - im.width // 25,
                                    im.height - im.height // 25)),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
}
KDEF_NAME = re.compile(r"([AB])([FM]\d\d)([A-Z]{2})S")
TAIWANESE_NAME = re.compile(r"(\d\d)(\d)\d([a-g]?)\d\d")  # no letter: a neutral performance (type 0)


def write_copies(photos: list[Path], folder: Path) -> None:
    """Each photo (as a link) and its copies, named ``<photo>_<copy>.jpg``."""
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
        image = Image.open(photo).convert("RGB")
        for name, make in COPIES.items():
            make(image).save(folder / f"{photo.stem}_{name}.jpg", quality=50 if name == "q50" else 85)


def series_row(name: str, folder: Path, pattern: re.Pattern, landmarks: str) -> dict:
    """Distinct photos of a posed series dropped as near duplicates, and how their groups span people."""
    started = time.perf_counter()
    result = collect(folder, CollectConfig(landmarks=landmarks))
    groups = result.duplicates[result.duplicates["kind"] == "near"]
    keys = groups["source"].map(lambda s: pattern.search(Path(s).name).groups())
    person = keys.map(lambda k: k[1] if pattern is KDEF_NAME else k[0])
    expression = keys.map(lambda k: k[2])
    span = pd.DataFrame({"group": groups["group"], "person": person, "expression": expression}).groupby("group")
    return {"data": name, "setting": landmarks, "photos": result.summary["files"],
            "dropped_as_near_duplicates": int((result.dropped["reason"] == "near duplicate").sum()),
            "groups": int(span.ngroups), "groups_across_people": int((span["person"].nunique() > 1).sum()),
            "groups_across_expressions": int((span["expression"].nunique() > 1).sum()),
            "largest_group": int(span.size().max()) if span.ngroups else 0,
            "seconds": round(time.perf_counter() - started, 1)}


def copies_row(folder: Path, n_photos: int, landmarks: str) -> dict:
    """Copies caught (share per kind of copy) and distinct photos kept."""
    result = collect(folder, CollectConfig(landmarks=landmarks))
    names = result.kept["source"].map(lambda s: Path(s).stem)
    kept_copies = names[names.str.contains("_")].str.rsplit("_", n=1).str[-1].value_counts()
    row = {"data": f"KDEF, {n_photos} photos + copies", "setting": landmarks,
           "distinct_photos_kept": int(names.str.split("_").str[0].nunique()), "of": n_photos}
    row.update({f"caught_{name}": round(1 - kept_copies.get(name, 0) / n_photos, 3) for name in COPIES})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=20, help="KDEF actors whose photos are copied (default 20)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables")
    args = parser.parse_args(argv)
    root = shared_data_root()
    kdef, taiwanese = root / "kdef" / "frontal", root / "taiwanese" / "faces_256x256"
    if not kdef.is_dir() or not taiwanese.is_dir():
        parser.error(f"KDEF or the Taiwanese set is missing under {root}; set EMOFX_DATA to the shared data folder")
    if not dlib_available():
        parser.error('the aligned setting needs dlib: pip install -e ".[landmarks]"')
    args.out.mkdir(parents=True, exist_ok=True)
    series, copies = [], []
    with tempfile.TemporaryDirectory() as scratch:
        photos = sorted(kdef.glob("*.JPG"))[:7 * args.actors]
        write_copies(photos, Path(scratch))
        for landmarks in SETTINGS.values():
            series.append(series_row("KDEF frontal", kdef, KDEF_NAME, landmarks))
            series.append(series_row("Taiwanese", taiwanese, TAIWANESE_NAME, landmarks))
            copies.append(copies_row(Path(scratch), len(photos), landmarks))
    tables = {"series": pd.DataFrame(series), "copies": pd.DataFrame(copies)}
    for name, table in tables.items():
        table.to_csv(args.out / f"near_duplicates_{name}.csv", index=False)
    (args.out / "near_duplicates.md").write_text("\n\n".join(t.to_markdown(index=False) for t in tables.values())
                                                 + "\n")
    (args.out / "near_duplicates.json").write_text(json.dumps({k: t.to_dict(orient="records")
                                                               for k, t in tables.items()}, indent=2) + "\n")
    print("\n\n".join(t.to_string(index=False) for t in tables.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
