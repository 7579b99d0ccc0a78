"""Evaluate a trained run on any emofx dataset, on the classes the model and the data share.

With --data, every image of that dataset whose class the model knows is scored (this is how
cross-culture transfer is measured); the classes dropped on either side are named. Images a run
trained or validated on (the same pixels, e.g. the run's own file, or its culture in a file of
several) are left out and counted, unless --include-seen; a dataset of several cultures is also
scored culture by culture. Without --data, the run's own test images are scored again from the
dataset recorded in the run. --predictions writes one row per scored image: its place in the data
(data_index), path, subject and culture, the true and predicted emotion and the probabilities.

Several run directories are scored as one ensemble: each image's probabilities are averaged over
the models. Without --data they must share their test images (the same dataset and split, e.g. one
trial fine-tuned from different pre-trained models).

The accuracy comes with a 95% interval over the images' people, each redrawn with all of their
images (the model fixed), or over the images of each class where people are unknown.

--against scores a second run (or ensemble) on the same images and compares the two image by image:
the accuracy difference with its 95% interval, the images only one of them gets right, and McNemar's
exact p (e.g. two recipes on one test split: `emofx evaluate runs/strong --against runs/paper`); where the
images name their people, McNemar's test clustered by person (Durkalski), a person's images one unit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from emofx.data.dataset import FaceDataset
    from emofx.study.evaluation import Evaluation
    from emofx.study.runs import Run
    from emofx.study.stats import PairedAccuracy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx evaluate` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("runs", metavar="RUN_DIR", nargs="+",
                        help="a run directory (from `emofx train`); several are scored as one ensemble")
    parser.add_argument("--against", metavar="RUN_DIR", nargs="+",
                        help="compare with this run (several: their ensemble) on the same images, image by image")
    parser.add_argument("--data", metavar="OTHER.npz", help="dataset to evaluate on (default: the run's test images)")
    parser.add_argument("--include-seen", action="store_true",
                        help="with --data, also score the images a run trained or validated on (left out by default: "
                             "they inflate the accuracy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--predictions", metavar="CSV", help="also write per-image predictions to this CSV")
    parser.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="average each image's probabilities with its mirror image's "
                             "(default: as the run was evaluated, i.e. its recipe's setting)")


def run(args: argparse.Namespace) -> int:
    """Run `emofx evaluate` with the parsed ``args``; returns the exit status."""
    from dataclasses import asdict

    import numpy as np

    from emofx.data.dataset import FaceDataset
    from emofx.study.evaluation import accuracy_interval, compare_evaluations, people_of, per_culture_accuracy
    from emofx.study.run_status import interrupted_note
    from emofx.study.runs import evaluate_runs, load_run, shared_test_images

    if args.include_seen and not args.data:
        raise ValueError("--include-seen applies to a dataset given with --data (the run's own test images hold "
                         "no image it trained on)")
    target = Path(args.predictions) if args.predictions else None
    if target is not None and target.exists():  # refused before the work, as a folder it lacks is made
        raise FileExistsError(f"{target} already exists; choose another --predictions file")
    members = [load_run(directory) for directory in args.runs]
    rivals = [load_run(directory) for directory in args.against or []]
    names = [str(member.directory) for member in members]
    notes: list[str] = []
    left_out = 0
    if args.data:
        images, source = FaceDataset.load(args.data), str(Path(args.data).resolve())
        positions = np.arange(len(images))  # each image's place in the data file, for --predictions
        if not args.include_seen:
            given = len(images)
            images, positions, notes = _unseen(members + rivals, images, args.data)
            left_out = given - len(images)
    else:
        images, positions = shared_test_images(members + rivals), _file_positions(members[0])
        whose = "the run's" if len(members + rivals) == 1 else "the runs'"
        source = f"{members[0].metrics['data']['path']} ({whose} test images)"
    notes += [note for note in map(interrupted_note, members + rivals) if note]
    evaluation = evaluate_runs(members, images, flip_average=args.flip_average, progress=True)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        _with_provenance(evaluation.predictions_frame(), images, positions, evaluation).to_csv(target)
    by_culture = per_culture_accuracy(images, evaluation)
    people = people_of(images, evaluation)
    interval = accuracy_interval(evaluation, people)
    summary = {"run": _named(names), "data": source, **evaluation.summary(), "accuracy_low": interval.low,
               "accuracy_high": interval.high, "accuracy_interval_unit": _interval_unit(people),
               "left_out_seen": left_out, "notes": notes}
    if by_culture is not None:
        summary["by_culture"] = by_culture.reset_index().to_dict(orient="records")
    if rivals:
        rival = evaluate_runs(rivals, images, flip_average=args.flip_average, progress=True)
        comparison = compare_evaluations(evaluation, rival, people=people)
        summary.update(against={"run": _named([str(r.directory) for r in rivals]), **rival.summary()},
                       comparison=asdict(comparison))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{_scored(names)} on {source}")
    for note in notes:
        print(f"note: {note}")
    print(f"accuracy {evaluation.accuracy:.4f}  balanced accuracy {evaluation.balanced_accuracy:.4f}  "
          f"macro F1 {evaluation.macro_f1:.4f}  ({evaluation.n} images)")
    print(f"accuracy 95% interval {interval.low:.4f} to {interval.high:.4f}, {_interval_unit(people)}")
    if by_culture is not None:
        print("by culture:\n" + by_culture.round(4).to_string())
    if rivals:
        print(f"against {_scored([str(r.directory) for r in rivals])}: {_comparison_line(comparison)}")
    if evaluation.dropped_model_classes:
        print(f"model classes absent from the data (not predicted): {', '.join(evaluation.dropped_model_classes)}")
    if evaluation.dropped_data_classes:
        dropped = ", ".join(f"{c} ({n} images)" for c, n in evaluation.dropped_data_classes.items())
        print(f"data classes the model does not know (left out): {dropped}")
    print("\nconfusion (rows true, columns predicted):")
    print(evaluation.confusion().to_string())
    print("\n% misclassified:")
    print(evaluation.per_class_error().round(1).to_string())
    return 0


def _file_positions(run: "Run") -> "np.ndarray":
    """The places in the run's data file of its test images: its split indexes the culture's part of a file of
    several cultures (`emofx train --culture`), which keeps that culture's images in the file's order."""
    import numpy as np

    from emofx.data.dataset import FaceDataset

    culture, test = run.metrics.get("data", {}).get("culture"), np.asarray(run.split.test)
    if not culture:
        return test
    whole = FaceDataset.load(run.metrics["data"]["path"])
    return np.flatnonzero(whole.culture == culture)[test] if len(set(whole.culture) - {""}) > 1 else test


def _unseen(runs: list["Run"], dataset: "FaceDataset", path: str) -> tuple["FaceDataset", "np.ndarray", list[str]]:
    """``dataset`` without the images a run trained or validated on, the positions of those kept, and notes saying
    what was left out."""
    import numpy as np

    from emofx.study.held_out import unseen_part

    unseen, found = unseen_part(runs, dataset)
    notes = [f"could not check for images the run trained on: {why}" for why in found.unchecked]
    if found.n_seen and not len(unseen):
        raise ValueError(f"every image of {path} ({len(dataset)}) is one the run trained or validated on; evaluate "
                         "without --data to score its test images, or pass --include-seen to score them anyway")
    if found.n_seen:
        notes.append(f"left out {found.n_seen} of the {len(dataset)} images of {path}: the same pixels as images the "
                     f"run trained or validated on (--include-seen scores them too); scoring the other {len(unseen)}")
    return unseen, np.flatnonzero(~found.seen), notes


def _with_provenance(frame: "pd.DataFrame", images: "FaceDataset", positions: "np.ndarray",
                     evaluation: "Evaluation") -> "pd.DataFrame":
    """The per-image predictions with each scored image's place in the data (``data_index``; without --data, in
    the run's dataset), path, subject and culture in front, so that they join with the data (the images of classes
    the model lacks, and seen ones, were left out before scoring); rows numbered ``row``."""
    import numpy as np

    from emofx.study.evaluation import scored_images

    scored = scored_images(images, evaluation)
    for column in ("culture", "subject", "path"):
        frame.insert(0, column, getattr(scored, column))
    frame.insert(0, "data_index", np.asarray(positions)[evaluation.positions])
    return frame.set_axis(np.arange(len(frame)), axis=0).rename_axis("row")


def _named(names: list[str]) -> str | list[str]:
    return names[0] if len(names) == 1 else names


def _scored(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"ensemble of {len(names)} runs ({', '.join(names)})"


def _comparison_line(c: "PairedAccuracy") -> str:
    return (f"accuracy {c.accuracy_a:.4f} vs {c.accuracy_b:.4f}, difference {100 * c.difference:+.1f} points "
            f"({100 * c.confidence:.0f}% interval {100 * c.low:+.1f} to {100 * c.high:+.1f}); right only here "
            f"{c.only_a}, only there {c.only_b} of {c.n} images; {_test_name(c)} p = {c.p_value:.3g}")


def _interval_unit(people: "np.ndarray | None") -> str:
    if people is None:
        return "Wilson's score interval over the images, taken as independent (the model fixed)"
    return f"over the {len(set(people))} people, each redrawn with their images (the model fixed)"


def _test_name(c: "PairedAccuracy") -> str:
    return c.test if c.clusters == c.n else f"McNemar's test clustered by person ({c.clusters} people; Durkalski)"
