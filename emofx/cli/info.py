"""Summarise a dataset: images, classes, cultures, subjects, splits, skipped inputs.

    emofx info kdef.npz            # a readable table
    emofx info kdef.npz --json     # exactly one JSON object (n, classes, counts, cultures,
                                   # subjects, image_shape, splits, skipped, ...)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from emofx.data.dataset import FaceDataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' layout
    parser.add_argument("dataset", type=Path, help="a dataset file written by emofx prepare or merge")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def table(dataset: FaceDataset) -> str:
    """The dataset's facts and its images per class (and per split or culture when there are several)."""
    info = dataset.info()
    frame = dataset.to_frame()
    facts = [
        ("images", f"{info['n']} of {'x'.join(map(str, info['image_shape']))} pixels"),
        ("classes", f"{len(info['classes'])}: {', '.join(info['classes'])}"),
        ("subjects", str(info["subjects"])),
        ("cultures", ", ".join(f"{c or '(none)'} {k}" for c, k in info["cultures"].items())),
        ("format", f"{info.get('format', '?')} from {info.get('source', '?')}"),
        ("extras", ", ".join(info["extras"]) or "none"),
        ("skipped", str(len(info["skipped"]))),
    ]
    if dataset.meta.get("dropped"):
        facts.append(("dropped", ", ".join(f"{k} {v}" for k, v in dataset.meta["dropped"].items())))
    if dataset.meta.get("duplicates", {}).get("files"):
        facts.append(("duplicates", f"{dataset.meta['duplicates']['files']} files repeat another's bytes"))
    width = max(len(k) for k, _ in facts)
    lines = [f"{k:<{width}}  {v}" for k, v in facts]
    columns = next((c for c in ("split", "culture") if frame[c].nunique() > 1), None)
    counts = (pd.crosstab(frame["emotion"], frame[columns], margins=True, margins_name="total")
              if columns else frame["emotion"].value_counts().rename("images").to_frame())
    order = [c for c in dataset.classes if c in counts.index] + [i for i in counts.index if i not in dataset.classes]
    lines += ["", counts.loc[order].to_string()]
    if dataset.skipped:
        lines += ["", "skipped:"] + [f"  {s['path']}: {s['reason']}" for s in dataset.skipped[:20]]
        if len(dataset.skipped) > 20:
            lines.append(f"  ... and {len(dataset.skipped) - 20} more (--json lists all)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    dataset = FaceDataset.load(args.dataset)
    print(json.dumps(dataset.info()) if args.json else table(dataset))
    return 0
