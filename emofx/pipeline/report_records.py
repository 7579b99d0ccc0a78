"""What `emofx report` reads from one experiment folder: its runs, the training runs' datasets, the comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.paths import read_json_record
from emofx.data.splits import Split
from emofx.pipeline.figures import COLLECTED, COMPARISON, COMPARISON_DIR, RUN_DIR, TRAINING, comparison_labels
from emofx.pipeline.results import DATASET_FILE, DATASET_KEPT, RESULTS_DIR, read_json, read_runs
from emofx.study.runs import SPLIT_FILE


class ReportError(ValueError):
    """An experiment folder with nothing to report."""


def protocol_of(row: pd.Series) -> str:
    """A run's protocol (runs without one, from before protocols existed, were as collected)."""
    value = row.get("protocol")
    return COLLECTED if value is None or value != value else str(value)


class Experiment:
    """What the report reads from one experiment folder."""

    def __init__(self, directory: Path) -> None:
        runs = read_runs(directory)
        if runs.empty or not (runs["status"] == "ok").any():
            raise ReportError(f"{directory} holds no completed notebook runs; run `emofx batch` first")
        self.directory, self.runs = directory, runs
        self.ok = runs[runs["status"] == "ok"].copy()
        self.ok["protocol"] = [protocol_of(row) for _, row in self.ok.iterrows()]
        self.training = self.ok[self.ok["notebook"] == TRAINING]
        # by label (figures.comparison_labels), with their figures' suffix and their protocol
        self.comparisons: dict[str, dict[str, Any]] = {}
        compared = self.ok[self.ok["notebook"] == COMPARISON].sort_values("run")
        for (label, suffix), (_, run) in zip(comparison_labels(compared), compared.iterrows()):
            record = Path(run["run_dir"]) / RESULTS_DIR / COMPARISON_DIR
            tables = {p.stem: pd.read_csv(p) for p in record.glob("*.csv")}
            self.comparisons[label] = {"summary": read_json(record / "summary.json"), "tables": tables,
                                       "suffix": suffix, "protocol": run["protocol"]}
        # what `emofx prepare` recorded of each culture's data, by (protocol, culture)
        self.datasets = {key: read_json(Path(group["run_dir"].iloc[0]) / RESULTS_DIR / DATASET_FILE)
                         for key, group in self.training.groupby(["protocol", "culture"])} if len(self.training) else {}

    def sources(self) -> dict[str, str]:
        """Each culture's data source as `emofx prepare` recorded it (kdef, synthetic:eyes, a file, ...)."""
        return {culture: info.get("source", "") for (_, culture), info in self.datasets.items()}

    def notebook(self, name: str) -> pd.DataFrame:
        """The completed runs of notebook ``name``."""
        return self.ok[self.ok["notebook"] == name]

    def people_per_part(self) -> pd.DataFrame:
        """How many people each training run's train, validation and test parts hold, mean over trials by protocol
        and culture (a protocol may use fewer people than its dataset has); from each run's split.json and the
        dataset it kept, leaving out runs that kept none or whose images name no people."""
        rows = []
        for _, run in self.training.iterrows():
            results = Path(run["run_dir"]) / RESULTS_DIR
            if not (results / DATASET_KEPT).is_file() or not (results / RUN_DIR / SPLIT_FILE).is_file():
                continue
            subjects = FaceDataset.load(results / DATASET_KEPT).subject
            split = Split.from_dict(read_json_record(results / RUN_DIR / SPLIT_FILE))
            if (subjects == "").any() or len(subjects) != split.n_images:
                continue
            rows.append({"protocol": run["protocol"], "culture": run["culture"],
                         **{f"people_{part}": len(np.unique(subjects[indices]))
                            for part, indices in split.parts().items()}})
        columns = ["protocol", "culture", "people_train", "people_val", "people_test"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.groupby(["protocol", "culture"], as_index=False)[columns[2:]].mean().round(1)
