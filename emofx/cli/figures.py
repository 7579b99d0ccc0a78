"""Regenerate the paper's figures (PNG and PDF) and tables (CSV and Markdown) from recorded runs.

    emofx figures papermill_runs/synthetic_cultures --out figures/

Reads the notebook runs that `emofx batch` recorded under the experiment folder (nothing is
retrained) and writes, with stable names: fig4_learning_curves, table2_confusion_<culture>,
table4_misclassification, fig5_saliency_<culture>, table_saliency_regions, fig7_modification,
and the culture comparison (fig_h1_accuracy, fig_h2_regions, fig_h2_pixel_difference,
fig_transfer_matrix, fig_cka, table_h1_accuracy, table_h2_region_tests, table_transfer,
table_cka). Groups whose notebook has no completed run are skipped and listed.
Figures drawn before from the same experiment are regenerated (those no longer drawn are removed);
figures from another experiment are replaced only with --overwrite (OUT/figures.json says whose they are).
Exit status 1 when a group's records exist but could not be drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx figures` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("experiment", type=Path, help="an experiment folder, e.g. papermill_runs/synthetic_cultures")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default figures/)")
    parser.add_argument("--overwrite", action="store_true", help="replace figures drawn from another experiment")


def run(args: argparse.Namespace) -> int:
    """Run `emofx figures` with the parsed ``args``; returns the exit status."""
    from emofx.pipeline.figures import regenerate

    report = regenerate(args.experiment, args.out, overwrite=args.overwrite)
    for row in report.itertuples():
        print(f"{row.status:8} {row.figure}: {row.files}")
    print(f"figures and tables in {args.out}")
    return 1 if (report["status"] == "failed").any() else 0
