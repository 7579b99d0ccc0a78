"""Combine several datasets into one, keeping each image's culture, subject and source.

    emofx merge kdef.npz taiwanese.npz --out pooled.npz
    emofx merge east_a.npz east_b.npz --out east.npz --culture "East Asian"
    emofx merge fer2013.npz kdef96.npz --out mixed.npz --size 48

Class sets are united. Images of different sizes are an error unless --size resizes them all.
Per-image extras that not every dataset has (e.g. one set's observer ratings) are left out, and named.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from emofx.cli.prepare import summary
from emofx.data.dataset import FaceDataset, merge
from emofx.data.dedup import image_digests
from emofx.data.paths import check_new_file, given_twice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx merge` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("datasets", nargs="+", type=Path, help="dataset files (.npz) to combine")
    parser.add_argument("--out", required=True, type=Path, help="the merged dataset file (.npz)")
    parser.add_argument("--size", type=int, help="resize every image to SIZE x SIZE first")
    parser.add_argument("--culture", help="give every merged image this culture (e.g. two sets as one culture)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")


def run(args: argparse.Namespace) -> int:
    """Run `emofx merge` with the parsed ``args``; returns the exit status."""
    if args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out} must end in .npz")
    check_new_file(args.out, args.overwrite)
    if args.out.resolve() in {p.resolve() for p in args.datasets}:
        raise ValueError(f"--out {args.out} is one of the inputs; write the merged set to a new file")
    twice = given_twice(args.datasets)
    if twice is not None:
        raise ValueError(f"{twice} is given twice; every image would be in the merged set twice")
    datasets = [FaceDataset.load(p) for p in args.datasets]
    merged = merge(datasets, resize=args.size)
    dropped = sorted(set().union(*(d.extras for d in datasets)) - set(merged.extras))
    if args.culture is not None:
        merged = replace(merged, culture=np.full(len(merged), args.culture, dtype=object))
    merged.save(args.out, overwrite=args.overwrite)
    print(summary(merged, args.out))
    if dropped:
        print(f"left out per-image extras that not every dataset has (or has in another shape): {', '.join(dropped)}")
    digests = image_digests(merged.images)
    if len(set(digests)) < len(digests):
        print(f"note: {len(digests) - len(set(digests))} images repeat another image's pixels; a split may put copies "
              "in both training and test (`emofx train` counts them in metrics.json, test_copies_of_training)")
    paths, counts = np.unique(merged.path.astype(str), return_counts=True)
    if (counts > 1).any():
        print(f"note: {int((counts > 1).sum())} image paths occur more than once (e.g. {paths[counts > 1][0]}); "
              "every copy is kept, and crowd answers matched by path reach only one of them")
    return 0
