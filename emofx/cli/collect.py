"""Clean a folder of downloaded web images into a face collection ready for annotation.

Examples:

    emofx collect downloads/ --queries queries.csv --out collection/ --min-face 40 --min-sharpness 30
    emofx collect downloads/ --queries queries.csv --out collection/ --against fer2013.npz
    emofx collect ../shared/data/fer2013 --faces cropped --min-face 0 --no-write-faces --out fer2013_dedup/
    emofx prepare ../shared/data/fer2013 --format folder --exclude fer2013_dedup/exclude.csv --out fer2013_dedup.npz

Reads every image (JPEG, PNG, WebP, GIF: first frame, TIFF, BMP; HEIC/HEIF with pillow-heif),
detects and crops the faces, filters by face size, blur (variance of the Laplacian) and
optionally the eyes, and removes exact and near duplicates within the collection and against other
datasets (--against): faces aligned on their eyes (dlib's landmarks, where installed) by the correlation
of their thumbnails (--aligned-threshold), other faces by perceptual hash (--near-threshold bits of 64).
queries.csv has columns file, query, emotion, language, culture (which search found each file). OUT/ receives
manifest.csv (for `emofx prepare --format manifest` and notebook 06), faces/, dropped.csv (every
dropped file and why), duplicates.csv (the groups), exclude.csv (the duplicates removed, for
`emofx prepare --exclude`) and report.json. OUT is written completely or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emofx.data.collect import FACE_MODES, CollectConfig
from emofx.data.dedup import HASH_METHODS
from emofx.data.landmarks import LANDMARK_METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx collect` to ``parser`` (the module docstring is its help)."""
    defaults = CollectConfig()
    parser.add_argument("source", help="folder of downloaded images (read only)")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (must not exist unless --overwrite)")
    parser.add_argument("--queries", type=Path, help="CSV: file, query, emotion, language, culture")
    parser.add_argument("--against", action="append", default=[], metavar="DATASET",
                        help="also drop copies of this dataset's images (.npz or folder of images): exact copies "
                             "of its files, and near copies of its faces (of an aligned dataset: where this "
                             "collection aligns its faces too, with the same --margin); repeatable")
    parser.add_argument("--faces", choices=FACE_MODES, default=defaults.faces,
                        help="detect faces, or take images as cropped faces (default detect)")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help=f"face side in pixels (default {defaults.size})")
    parser.add_argument("--margin", type=float, default=defaults.margin, help=f"default {defaults.margin}")
    parser.add_argument("--min-face", type=int, default=defaults.min_face,
                        help=f"smallest face side in source pixels (default {defaults.min_face})")
    parser.add_argument("--min-sharpness", type=float, default=defaults.min_sharpness,
                        help="smallest variance of the Laplacian of the face (default 0: keep blurred faces)")
    parser.add_argument("--require-eyes", action="store_true", help="drop faces whose two eyes are not found")
    parser.add_argument("--near-threshold", type=int, default=defaults.near_threshold,
                        help=f"near duplicates differ in at most this many hash bits of 64 "
                             f"(default {defaults.near_threshold}; -1 no near-duplicate search)")
    parser.add_argument("--hash", choices=HASH_METHODS, default=defaults.hash_method,
                        help=f"perceptual hash (default {defaults.hash_method})")
    parser.add_argument("--landmarks", choices=("auto", *LANDMARK_METHODS), default=defaults.landmarks,
                        help=f"align faces on their eyes for the near-duplicate search (default {defaults.landmarks}; "
                             "auto: dlib's 68 points where faces are detected and dlib is installed; none: compare "
                             "crops by hash alone)")
    parser.add_argument("--aligned-threshold", type=float, default=defaults.aligned_threshold,
                        help="two aligned faces are near duplicates when their 16x16 thumbnails correlate within this "
                             f"of 1 (default {defaults.aligned_threshold})")
    parser.add_argument("--no-write-faces", action="store_true",
                        help="do not write face PNGs (the manifest then points at the source files)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the collection in OUT (files of yours beside it are kept)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def report_lines(summary: dict) -> list[str]:
    """What the collection kept, dropped and grouped, in a few lines."""
    lines = [f"{summary['files']} files: kept {summary['kept']}"]
    lines += [f"  dropped {count}: {reason}" for reason, count in summary["dropped"].items()]
    if summary.get("animated_first_frame"):
        lines.append(f"  animated images (first frame kept): {summary['animated_first_frame']}")
    if summary.get("several_faces"):
        lines.append(f"  images with several faces found (the largest kept; manifest column faces_found): "
                     f"{summary['several_faces']}")
    if summary.get("not_in_query_table"):
        lines.append(f"  kept images missing from the query table: {summary['not_in_query_table']}")
    if summary.get("query_rows_without_file"):
        lines.append(f"  files of the query table not under the source: {summary['query_rows_without_file']}")
    if summary.get("groups_across_emotions"):
        lines.append(f"  note: {summary['groups_across_emotions']} duplicate groups join images found for different "
                     "emotions (one copy kept, with its emotion): duplicates.csv has each copy's emotion")
    method = summary.get("config", {}).get("landmarks", "none")
    if method != "none":
        lines.append(f"  near duplicates: {summary.get('aligned_faces', 0)} faces aligned on their eyes ({method}) "
                     "compared by correlation, any others by hash")
    if summary["duplicate_groups"]:
        lines.append("  duplicate groups (kind, splits spanned: groups / images / removed):")
        lines += [f"    {g['kind']:13s} {g['splits']:35s} {g['groups']:6d} / {g['images']:6d} / {g['removed']:6d}"
                  for g in summary["duplicate_groups"]]
    unaligned = summary.get("config", {}).get("landmarks") == "none"  # the collection's own faces not aligned
    for source in summary.get("against", {}).get("aligned", []) if unaligned else []:
        lines.append(f"  note: {source} holds aligned faces (rotated and scaled to put the eyes in place): only exact "
                     "copies of its files were found; for near copies (re-encoded, resized), give --against its "
                     "source folder")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run `emofx collect` with the parsed ``args``; returns the exit status."""
    from emofx.data.collect import collect
    from emofx.data.collection_files import write_collection

    if args.out.is_file():
        raise FileExistsError(f"--out {args.out} is a file; a collection is a folder: choose another --out")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it")
    if args.near_threshold >= 0 or args.against:
        from emofx.data.dedup import perceptual_hash  # fails now, with the pip command, when imagehash is missing
        import numpy as np

        perceptual_hash(np.zeros((8, 8), np.uint8), args.hash)
    config = CollectConfig(size=args.size, faces=args.faces, margin=args.margin, min_face=args.min_face,
                           min_sharpness=args.min_sharpness, require_eyes=args.require_eyes,
                           near_threshold=args.near_threshold, hash_method=args.hash, landmarks=args.landmarks,
                           aligned_threshold=args.aligned_threshold)
    collection = collect(args.source, config, queries=args.queries, against=args.against, progress=not args.quiet)
    out = write_collection(collection, args.out, write_faces=not args.no_write_faces, overwrite=args.overwrite)
    print("\n".join(report_lines(collection.summary)))
    print(f"wrote {out}/manifest.csv ({len(collection.kept)} images), dropped.csv, duplicates.csv, exclude.csv "
          f"({len(collection.exclusion_list())} duplicates to exclude), report.json")
    return 0
