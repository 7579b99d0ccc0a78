"""How well are real faces landmarked? Per prepared dataset: 68-point coverage, dlib vs eye-cascade eyes, mean face.

    python -m benchmarks.landmarks kdef.npz taiwanese.npz --out /tmp/landmarks

Datasets prepared with ``emofx prepare ... --landmarks dlib68`` (aligned or not). Writes
``landmarks.csv``/``landmarks.md``/``landmarks.json`` (one row per dataset: faces, share with 68
points found by dlib's detector (``ok``), in the detector's box (``box``), partly outside the crop
(``outside``), none; the share where OpenCV's eye cascade also finds both eyes and the mean distance
between its eye centres and dlib's, in pixels and in eye distances; the region method each face gets)
and ``mean_face_<dataset>.png``: the mean face with the region polygons of the mean landmarks.
The PNGs show an average face, so they stay out of the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from emofx.data.dataset import FaceDataset  # noqa: E402
from emofx.data.landmarks import detect_eyes  # noqa: E402
from emofx.data.regions import LANDMARK_POLYGONS, face_regions  # noqa: E402

QUALITIES = ("ok", "box", "outside", "missing")


def landmark_row(name: str, dataset: FaceDataset) -> dict:
    """Coverage of the 68 points and agreement of dlib's eye centres with the eye cascade's."""
    if "landmarks" not in dataset.extras:
        raise ValueError(f"{name} carries no landmarks: prepare it with --landmarks dlib68")
    quality = dataset.extras["landmark_quality"]
    row = {"dataset": name, "faces": len(dataset), "aligned": bool(dataset.meta.get("aligned"))}
    row.update({f"share_{q}": float(np.mean(quality == q)) for q in QUALITIES})
    row["share_68_points"] = float(np.mean(np.all(np.isfinite(dataset.extras["landmarks"]), axis=(1, 2))))
    dlib_eyes = dataset.extras["eye_centres"]
    distances, relative = [], []
    for image, eyes in zip(dataset.images, dlib_eyes):
        cascade = detect_eyes(image)
        if cascade is None or not np.all(np.isfinite(eyes)):
            continue
        error = np.linalg.norm(cascade - eyes, axis=1).mean()
        distances.append(error)
        relative.append(error / np.linalg.norm(eyes[1] - eyes[0]))
    row["share_cascade_eyes"] = len(distances) / len(dataset)
    row["eye_distance_px"] = float(np.mean(distances)) if distances else float("nan")
    row["eye_distance_relative"] = float(np.mean(relative)) if relative else float("nan")
    regions = face_regions(dataset)
    row["region_method"] = regions.method
    row.update({f"regions_{k}": v for k, v in regions.info()["image_methods"].items()})
    return row


def mean_face_figure(name: str, dataset: FaceDataset, path: Path) -> None:
    """The mean face with the region polygons drawn through the mean of the 68 points."""
    points = np.nanmean(dataset.extras["landmarks"], axis=0)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(dataset.images.mean(axis=0), cmap="gray")
    colours = {"eyes": "tab:blue", "brows": "tab:green", "nose": "tab:red", "mouth": "tab:orange"}
    for region, polygons in LANDMARK_POLYGONS.items():
        for index in polygons:
            outline = points[list(index) + ([index[0]] if region != "brows" else [])]
            ax.plot(outline[:, 0], outline[:, 1], color=colours[region], lw=1.5, label=region)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="lower right", fontsize=7)
    ax.set_title(f"{name}: mean face, {len(dataset)} images" + (" (aligned)" if dataset.meta.get("aligned") else ""))
    ax.axis("off")
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path, help="prepared datasets with dlib68 landmarks")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.datasets:
        try:
            dataset = FaceDataset.load(path)
            rows.append(landmark_row(path.stem, dataset))
        except (OSError, ValueError) as err:
            parser.error(f"{path}: {err}")
        mean_face_figure(path.stem, dataset, args.out / f"mean_face_{path.stem}.png")
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "landmarks.csv", index=False)
    (args.out / "landmarks.md").write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")
    (args.out / "landmarks.json").write_text(json.dumps(rows, indent=2))
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
