"""Cultures pooled into one training set, each keeping its own subject-independent split.

Does a culture's model gain from the other culture's faces? For each trial of an arm fine-tuned per
culture (``ROOT/<dataset>/<arm>/trial-<k>``), this writes one dataset holding every culture's
images whose split column is each culture's own split of that trial, so that a model trained on it
with ``--split predefined`` is selected on the cultures' validation parts together and tested on
exactly the images the per-culture runs were tested on:

    python -m benchmarks.pooled_cultures runs/finetune --arm fer40+20s2 --datasets kdef taiwanese --out runs/pooled
    emofx train runs/pooled/trial-$k.npz --split predefined --trial $k ... \\
        --out runs/finetune/pooled/fer40+20s2/trial-$k
    python -m benchmarks.finetune_trials runs/finetune --out benchmarks/results/finetune --pooled fer40+20s2

(``finetune_trials --pooled`` scores each pooled run on each culture's test images, as rows of arm
``pooled <arm>`` beside the per-culture arms.) Extras that not every culture has, such as the
Taiwanese observers' ratings, are left out of the pooled set; the scoring reads them from the
culture's own dataset.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.finetune_trials import trial_directories
from emofx.data.dataset import DatasetError, FaceDataset, merge
from emofx.study.runs import Run, RunError, load_run


def with_split_column(run: Run) -> FaceDataset:
    """The run's dataset with each image's part of the run's split (train/val/test) as its split name."""
    data = run.dataset()
    if run.split.n_images != len(data):
        raise RunError(f"{run.directory}'s split indexes {run.split.n_images} images, but its dataset "
                       f"{run.metrics['data']['path']} now holds {len(data)}; was the file prepared again?")
    column = np.full(len(data), "", dtype=object)
    for part, indices in run.split.parts().items():
        column[indices] = part
    if np.any(column == ""):
        raise RunError(f"{run.directory}'s split leaves {int(np.sum(column == ''))} images in no part (a --limit "
                       "run?); pool runs whose splits cover their datasets")
    return replace(data, split=column)


def pooled_dataset(runs: Sequence[Run]) -> FaceDataset:
    """One dataset of the runs' datasets, every image in the part its own run's split put it in.

    ``meta["split_from"]`` names the runs whose splits it keeps."""
    pooled = merge([with_split_column(run) for run in runs])
    return replace(pooled, meta={**pooled.meta, "split_from": [str(run.directory) for run in runs]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder holding <dataset>/<arm>/trial-<k> run directories")
    parser.add_argument("--arm", required=True, help="the per-culture arm whose splits to keep")
    parser.add_argument("--datasets", nargs="+", default=["kdef", "taiwanese"], help="the cultures to pool")
    parser.add_argument("--out", type=Path, required=True, help="folder for trial-<k>.npz")
    parser.add_argument("--overwrite", action="store_true", help="replace pooled datasets already written")
    args = parser.parse_args(argv)
    found = [trial_directories(args.root, dataset, args.arm) for dataset in args.datasets]
    trials = sorted(set.intersection(*(set(f) for f in found)))
    if not trials:
        print(f"error: no trial of arm {args.arm} is finished for every one of {args.datasets} under {args.root}",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for trial in trials:
            pooled = pooled_dataset([load_run(f[trial]) for f in found])
            path = pooled.save(args.out / f"trial-{trial}.npz", overwrite=args.overwrite)
            sizes = ", ".join(f"{part} {int(np.sum(pooled.split == part))}" for part in ("train", "val", "test"))
            print(f"trial {trial}: {len(pooled)} images ({sizes}) -> {path}")
    except (RunError, DatasetError, OSError) as err:  # a changed or missing dataset file, an existing --out file
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
