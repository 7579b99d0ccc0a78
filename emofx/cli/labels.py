"""Crowd labels: attach crowd answers to a dataset, and aggregate them into labels.

Examples:

    emofx labels import nfw.npz --answers Batch_123_batch_results.csv --out nfw_answers.npz
    emofx labels import nfw.npz --answers answers.csv --out nfw_answers.npz    # image,worker,label[,time]
    emofx labels import fer2013.npz --ferplus ../shared/data/ferplus --out fer2013_votes.npz
    emofx labels import taiwanese.npz --observers --out taiwanese_votes.npz
    emofx labels aggregate nfw_answers.npz --method ds --out nfw_ds.npz --table nfw_ds.csv --workers workers.csv
    emofx labels aggregate fer2013_votes.npz --method mv --out fer2013_plurality.npz

`import` writes the answers into the dataset as vote counts (and, when workers are named, who
answered what). `aggregate` relabels the images (mv, ferplus, ds, glad, mace, wawa), stores
per-image agreement (for `emofx train --weight-by-agreement`), answer entropy and the label
distribution; `emofx train --soft-targets` learns from the shares of the answers themselves, whichever
method set the labels. It reports inter-annotator agreement (Krippendorff's
alpha, Fleiss' kappa) and per-worker quality. ds/glad/mace/wawa need named workers and crowd-kit
(the `crowd` extra, part of `make quickstart`'s install).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from emofx.crowd.aggregate import METHODS, QUALITY_MEANING
from emofx.data.paths import check_new_file, given_twice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx labels` to ``parser`` (the module docstring is its help)."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="attach crowd answers or votes to a dataset",
                         description="Attach crowd answers (an MTurk batch or a long-format CSV), FER+ votes or the "
                                     "Taiwanese set's observer ratings to a dataset as vote counts, written to a new "
                                     "dataset file. Examples: `emofx labels --help`.")
    imp.add_argument("data", metavar="DATA.npz", help="the dataset the answers are about")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--answers", metavar="CSV", help="long-format answers: Mechanical Turk batch results "
                                                         "or image,worker,label[,time]")
    source.add_argument("--ferplus", metavar="DIR", help="FER+ folder (fer2013new.csv, ferplus_to_fer2013.csv) "
                                                         "for a FER2013 folder dataset")
    source.add_argument("--observers", action="store_true",
                        help="the Taiwanese set's observer proportions (attached by "
                             "`emofx prepare --format taiwanese`)")
    imp.add_argument("--out", required=True, type=Path, metavar="OUT.npz",
                     help="the dataset with the answers attached (DATA.npz is left as it is)")
    imp.add_argument("--strict", action="store_true",
                     help="stop when any answer is left out (empty row, unknown label, repeated, image not in the "
                          "dataset; rejected MTurk assignments are always left out and never stop it)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out when it exists")

    agg = sub.add_parser("aggregate", help="aggregate the attached answers into labels",
                         description="Relabel a dataset's images from its attached answers, storing per-image "
                                     "agreement, answer entropy and the label distribution, and report inter-annotator "
                                     "agreement and per-worker quality. Examples: `emofx labels --help`.")
    agg.add_argument("data", metavar="DATA.npz", help="a dataset with answers (from `emofx labels import`)")
    agg.add_argument("--method", choices=METHODS, default="mv",
                     help="mv (plurality, the default), ferplus (FER+ majority rule), ds (Dawid-Skene), glad, "
                          "mace, wawa")
    agg.add_argument("--out", required=True, type=Path, metavar="OUT.npz", help="the relabelled dataset")
    agg.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and MACE's restarts (default 0)")
    agg.add_argument("--table", type=Path, metavar="CSV", help="write per-image labels, agreement, entropy, "
                                                              "distribution")
    agg.add_argument("--workers", type=Path, metavar="CSV", help="write per-worker answers, agreement, quality")
    agg.add_argument("--agreement", type=Path, metavar="CSV", help="write Krippendorff's alpha / Fleiss' kappa "
                                                                  "per class")
    agg.add_argument("--drop-unanswered", action="store_true", default=None,
                     help="leave out images nobody answered (default: they keep their label; under FER+ votes they "
                          "are dropped, FER+ having left them out)")
    agg.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _check_outputs(paths: list[Path | None], data: str, overwrite: bool) -> None:
    given = [p for p in paths if p is not None]
    same = given_twice(given)
    if same is not None:
        raise ValueError(f"{same} is given for two outputs; each output needs a file of its own")
    for path in given:
        if path.resolve() == Path(data).resolve():
            raise ValueError(f"{path} is the input dataset; write to another file")
        check_new_file(path, overwrite, option="")  # a folder is refused even with --overwrite
    if paths[0] is not None and paths[0].suffix != ".npz":
        raise ValueError(f"--out {paths[0]} must end in .npz")


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    from emofx.data.paths import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, frame.to_csv())


def run_import(args: argparse.Namespace) -> int:
    """`emofx labels import`: attach crowd answers, FER+ votes or observer ratings to a dataset."""
    from emofx.crowd.answers import attach_answers, attach_ferplus_votes, attach_observer_votes, read_answers
    from emofx.data.dataset import FaceDataset

    _check_outputs([args.out], args.data, args.overwrite)
    dataset = FaceDataset.load(args.data)
    if args.answers:
        answers = read_answers(args.answers)
        print(answers.summary())
        attached, report = attach_answers(dataset, answers)
        # answers the requester rejected (MTurk) are left out by choice, not a problem with the file
        left_out = (sum(v for k, v in answers.dropped.items() if k != "rejected") + report.not_in_dataset
                    + report.repeated)
    elif args.ferplus:
        attached, report = attach_ferplus_votes(dataset, args.ferplus)
        left_out = 0
    else:
        attached, report = attach_observer_votes(dataset)
        left_out = 0
    print(report.summary())
    if args.strict and left_out:
        raise ValueError(f"{left_out} answers were left out (strict mode); nothing written")
    attached.save(args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}: votes over {', '.join(attached.meta['vote_names'])}")
    return 0


def run_aggregate(args: argparse.Namespace) -> int:
    """`emofx labels aggregate`: one label per image from the attached answers, with the agreement table."""
    from emofx.crowd.aggregate import aggregate, apply_aggregation
    from emofx.crowd.agreement import agreement_table
    from emofx.data.dataset import FaceDataset

    _check_outputs([args.out, args.table, args.workers, args.agreement], args.data, args.overwrite)
    dataset = FaceDataset.load(args.data)
    if args.workers and "answer_worker" not in dataset.extras:
        raise ValueError(f"{args.data} has vote counts without worker identities (e.g. FER+), so there is no "
                         "worker table: leave out --workers, or attach named answers with `emofx labels import "
                         "--answers`")
    result = aggregate(dataset, args.method, seed=args.seed)
    relabelled, dropped = apply_aggregation(dataset, result, keep_unanswered=False if args.drop_unanswered else None)
    votes = np.asarray(dataset.extras["votes"])
    try:
        agreement = agreement_table(votes, result.vote_names)
    except ImportError as err:
        agreement = None
        print(f"note: {err}")
    answered = result.n_answers > 0
    previous = dataset.label_names[answered]
    changed = int(np.sum(result.label_names()[answered] != previous))
    print(f"{args.method}: {int(answered.sum())} answered images, {changed} labels differ from the dataset's; "
          f"mean agreement {np.nanmean(result.agreement):.3f}, "
          f"mean answer entropy {np.nanmean(result.entropy):.3f} bits")
    print("left out: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    earlier = dataset.meta.get("dropped", {}) if dataset.meta.get("format") == "ferplus" else {}
    if earlier.get("total"):
        kinds = ", ".join(f"{label} {earlier.get(key, 0)}" for key, label in
                          (("no_majority", "no majority"), ("unknown", "unknown"), ("not_face", "not a face")))
        print(f"note: `emofx prepare --format ferplus` kept only the images with a FER+ majority (it dropped "
              f"{earlier['total']}: {kinds}); for labels of every FER2013 image, prepare the image folder (--format "
              "folder) and attach the votes with `emofx labels import --ferplus`")
    if agreement is not None:
        overall = agreement.loc["all"]
        print(f"Krippendorff's alpha {overall['krippendorff_alpha']:.3f} ({int(overall['alpha_images'])} images), "
              f"Fleiss' kappa {overall['fleiss_kappa']:.3f} ({int(overall['fleiss_images'])} images)")
    if result.workers is not None:
        worst = result.workers.sort_values("quality").head(3)
        print(f"worker quality = {QUALITY_MEANING[args.method]}; lowest: "
              + ", ".join(f"{w} {q:.2f} ({n} answers)" for w, q, n in zip(worst.index, worst["quality"],
                                                                          worst["answers"])))
    relabelled.save(args.out, overwrite=args.overwrite)
    if args.table:
        table = result.per_image().assign(path=dataset.path, previous_label=dataset.label_names)
        _write_csv(table, args.table)
    if args.workers and result.workers is not None:
        _write_csv(result.workers.sort_values("quality"), args.workers)
    if args.agreement and agreement is not None:
        _write_csv(agreement, args.agreement)
    print(f"wrote {args.out}: {len(relabelled)} images, classes {', '.join(relabelled.classes)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `emofx labels import` or `emofx labels aggregate`, as ``args.action`` says."""
    return run_import(args) if args.action == "import" else run_aggregate(args)
