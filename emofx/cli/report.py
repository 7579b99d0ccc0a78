"""Write one self-contained report about an experiment's recorded runs (Markdown and HTML).

    emofx report papermill_runs/kdef_vs_taiwanese --out reports/kdef_vs_taiwanese/
    emofx report papermill_runs/kdef_vs_taiwanese --out results/kdef_vs_taiwanese/ --no-faces --overwrite

Reads the notebook runs that `emofx batch` recorded (nothing is retrained) and writes report.md,
report.html (figures embedded) and figures/ (every figure and table, PNG/PDF and CSV/Markdown):
datasets and their preparation, accuracy and confusion per culture, chance flags, Table 4,
saliency grids, modification panels, H1 and H2 with effect sizes and corrected p-values, the
transfer matrix, CKA, the filters' regions, the human baseline, what the numbers do and do not
support, wall time per stage and library versions. --no-faces draws no figure showing a face
(for committed results: the datasets' terms forbid publishing their images).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx report` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("experiment", type=Path, help="an experiment folder, e.g. papermill_runs/kdef_vs_taiwanese")
    parser.add_argument("--out", type=Path, required=True, help="the report folder (report.md, report.html, figures/)")
    parser.add_argument("--no-faces", dest="faces", action="store_false", help="draw no figure that shows a face")
    parser.add_argument("--beside", type=Path, help="another experiment folder whose H1 and CKA are set beside")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")


def run(args: argparse.Namespace) -> int:
    """Run `emofx report` with the parsed ``args``; returns the exit status."""
    from emofx.data.paths import RecordError
    from emofx.pipeline.report import results_exist, write_report

    if not args.experiment.is_dir():
        raise FileNotFoundError(f"experiment folder {args.experiment} not found; run `emofx batch` first")
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out {args.out} is a file; the report is a folder (report.md, report.html, "
                              "figures/): choose another --out")
    if results_exist(args.out) and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a report; pass --overwrite to replace it")
    try:
        written = write_report(args.experiment, args.out, faces=args.faces, beside=args.beside)
    except RecordError as err:
        if str(Path(args.experiment).resolve()) not in str(err) and str(args.experiment) not in str(err):
            raise
        raise RecordError(f"{err}; the run that wrote it is damaged: run it again (delete the run's status.json, then "
                          "`emofx batch` with the experiment's configuration)") from None  # a record of a run
    for path in written:
        print(f"wrote {path}")
    return 0
