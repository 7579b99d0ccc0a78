"""A dataset as a reader sees it: its facts and its images per class, as text (`emofx info`, the notebooks)."""

from __future__ import annotations

import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.loaders import describe_landmarks


def dataset_table(dataset: FaceDataset) -> str:
    """The dataset's facts and its images per class (and per split or culture when there are several), one fact a
    line: what `emofx info` prints and what the notebooks show (``info()``, the JSON record, ran to 45 lines)."""
    info = dataset.info()
    frame = dataset.to_frame()
    facts = [
        ("images", f"{info['n']} of {'x'.join(map(str, info['image_shape']))} pixels"),
        ("classes", f"{len(info['classes'])}: {', '.join(info['classes'])}"),
        ("subjects", str(info["subjects"])),
        ("cultures", ", ".join(f"{c or '(none)'} {k}" for c, k in info["cultures"].items())),
        ("format", f"{info.get('format', '?')} from {info.get('source', '?')}" if "merged_from" not in dataset.meta
         else "merged from " + ", ".join(source or "?" for source in dataset.meta["merged_from"])),
        ("extras", ", ".join(info["extras"]) or "none"),
        ("skipped", str(len(info["skipped"]))),
    ]
    if isinstance(dataset.meta.get("landmarks"), dict):
        facts.append(("landmarks", describe_landmarks(dataset.meta["landmarks"])))
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
    lines += ["", counts.loc[order].to_string() if len(dataset) else "no images"]
    if dataset.skipped:
        lines += ["", "skipped:"] + [f"  {s['path']}: {s['reason']}" for s in dataset.skipped[:20]]
        if len(dataset.skipped) > 20:
            lines.append(f"  ... and {len(dataset.skipped) - 20} more (--json lists all)")
    return "\n".join(lines)
