"""Results on a benchmark's own split (FER2013, FER+): tables, histories and learning curves of runs.

Train each configuration and seed with ``emofx train`` (``--split auto`` uses the source's own
split: train on Training, select on PublicTest, report PrivateTest), then collect the runs:

    emofx train fer2013.npz --recipe strong --seed 0 --out runs/fer2013/strong/seed-0
    python -m benchmarks.standard_splits runs/fer2013/*/seed-* --out benchmarks/results/fer2013 \\
        --title "FER2013 PrivateTest"

Writes to ``--out``: ``runs.csv`` (one row per run: recipe, normalisation, targets, peak learning
rate, epochs, for runs started with ``--init-from`` the starting run's configuration and directory,
seed, steps, stop reason, test accuracy, balanced accuracy, macro F1, best validation error,
device, wall seconds, the share of the CPU that other processes and virtual machines took meanwhile),
``summary.csv`` and ``summary.md`` (mean ± std over the seeds of each
configuration, with the commands), ``history/<run>.csv`` and ``curves.png`` (training and
validation error per configuration, three panels to a row on one error axis; ``--redraw`` draws it again from
``--out``'s ``runs.csv`` and ``history/`` alone, when the run directories are gone). Nothing of the images is
written. Runs recorded before metrics.json named its device get ``--device`` (say where they ran), else ``unknown``.

Seeds of one table are often trained in different sessions or on different machines, and run
directories do not last as the committed tables do: rows already in ``--out/runs.csv`` (with their
``history/`` files) are kept, a run of the same configuration and seed replaces its row, and ``command.txt`` collects
every command that added runs (``summary.md`` lists them all).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from emofx.plotting.curves import learning_curve_panels  # noqa: E402
from emofx.study.runs import RunError, load_run  # noqa: E402

CONFIGURATION = ("recipe", "norm", "targets", "lr", "epochs", "init_from")
NUMBERS = ("test_accuracy", "balanced_accuracy", "macro_f1", "best_val_error", "seconds", "cpu_elsewhere")


def cpu_elsewhere(metrics: dict) -> float:
    """The share of the machine's CPU that other processes and virtual machines (steal) took while
    the run trained (``cpu_shares`` of metrics.json; NaN for runs recorded before it was)."""
    shares = metrics.get("cpu_shares")
    return shares["other_processes"] + shares["steal"] if shares else float("nan")


def configuration(metrics: dict) -> str:
    """A run's training configuration in words (``strong, norm batch, 40 epochs``), seed left out."""
    train = metrics["config"]["train"]
    epochs = f"{train['epochs']} epoch{'' if train['epochs'] == 1 else 's'}"
    parts = [metrics["recipe"], *([f"norm {metrics['norm']}"] if metrics.get("norm", "none") != "none" else []),
             *(["soft targets"] if train.get("soft_targets") else []), epochs]
    return ", ".join(parts)


def starting_model(init_from: str | None) -> str:
    """What a fine-tuned or continued run started from, as the starting run's configuration (so that
    runs of several seeds, each continuing its own seed's model, form one group); the directory's
    name when that run can no longer be read; "" for runs trained from scratch."""
    if not init_from:
        return ""
    try:
        return configuration(load_run(init_from).metrics)
    except RunError:
        return Path(init_from).name


def run_row(run, device: str) -> dict:
    """One run's configuration, numbers and provenance as a flat row."""
    m = run.metrics
    train = m["config"]["train"]
    return {
        "run": run.directory.name if run.directory.name not in ("", ".") else str(run.directory),
        "directory": str(run.directory),
        "recipe": m["recipe"], "norm": m.get("norm", "none"),
        "targets": "soft" if train.get("soft_targets") else "hard", "lr": train["learning_rate"],
        "epochs": train["epochs"], "init_from": starting_model(m.get("init_from")),
        "init_run": Path(m["init_from"]).name if m.get("init_from") else "",
        "seed": m["seed"], "steps": m["steps"], "best_step": m["best_step"], "stop_reason": m["stop_reason"],
        "n_train": m["n_train"], "n_val": m["n_val"], "n_test": m["n_test"],
        **{key: m[key] for key in NUMBERS if key != "cpu_elsewhere"}, "cpu_elsewhere": cpu_elsewhere(m),
        "device": m.get("device") or device,
    }


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over the seeds of each configuration (std NaN for a single seed)."""
    grouped = table.groupby(list(CONFIGURATION), sort=False)
    summary = grouped[list(NUMBERS)].agg(["mean", "std"])
    summary.columns = [f"{name}_{stat}" for name, stat in summary.columns]
    summary.insert(0, "seeds", grouped["seed"].apply(lambda s: ",".join(str(v) for v in sorted(s))))
    summary.insert(1, "device", grouped["device"].apply(lambda s: "; ".join(sorted(set(s)))))
    return summary.reset_index()


def parent_and_name(directory: str) -> str:
    """A run's name qualified by its parent folder (``strong/seed-0`` -> ``strong-seed-0``), for names that clash."""
    return str(Path(directory).relative_to(Path(directory).parents[1])).replace("/", "-")


def with_earlier_rows(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """``table`` (with its ``directory`` column) after the rows of ``out/runs.csv`` of other runs: an
    earlier row of the same configuration and seed is replaced, the others are kept; each is
    reported on stderr. A new run whose name an earlier row holds takes its parent folder's name
    too, so no history file is overwritten."""
    path = out / "runs.csv"
    if not path.exists():
        return table
    earlier = pd.read_csv(path)
    missing = sorted(set(CONFIGURATION) - set(earlier.columns))
    if missing:
        raise SystemExit(f"error: {path} has no column {', '.join(missing)} (written by an older version); "
                         "add the column with each earlier run's value, or write to another --out")
    for column in ("init_from", "init_run"):  # "" as written
        if column in earlier:
            earlier[column] = earlier[column].astype(object).where(earlier[column].notna(), "")
    key = [*CONFIGURATION, "seed"]
    given = set(table[key].itertuples(index=False, name=None))
    replaced = [row in given for row in earlier[key].itertuples(index=False, name=None)]
    kept = earlier[[not r for r in replaced]]
    for name, was_replaced in zip(earlier["run"], replaced):
        print(f"{'replaced' if was_replaced else 'kept'} the earlier row of {name} ({path})", file=sys.stderr)
    taken = set(kept["run"])
    table = table.copy()
    table["run"] = [parent_and_name(d) if name in taken else name
                    for name, d in zip(table["run"], table["directory"])]
    if set(table["run"]) & taken:
        raise SystemExit(f"error: runs {sorted(set(table['run']) & taken)} have the names of earlier rows of {path} "
                         "with other settings; rename their directories")
    for name in set(earlier["run"]) - taken - set(table["run"]):  # superseded rows' histories
        (out / "history" / f"{name}.csv").unlink(missing_ok=True)
    return pd.concat([kept, table], ignore_index=True) if len(kept) else table


def pm(row, name: str, scale: float = 100.0, digits: int = 1) -> str:
    """``row``'s ``<name>_mean`` ± ``<name>_std`` times ``scale`` (the mean alone when std is NaN, a
    single run; blank when the mean is NaN, not recorded)."""
    mean, std = row[f"{name}_mean"] * scale, row[f"{name}_std"] * scale
    if pd.isna(mean):  # not recorded (runs from before metrics.json held it)
        return ""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(summary: pd.DataFrame, title: str, commands: list[str]) -> str:
    """The summary as a Markdown table: accuracy as mean ± std in %, and the wall time per run."""
    rows = [{
        "recipe": r["recipe"], "norm": r["norm"], "targets": r["targets"], "lr": f"{r['lr']:g}",
        "epochs": r["epochs"], "init from": r["init_from"],
        "seeds": r["seeds"], "test accuracy %": pm(r, "test_accuracy"),
        "balanced %": pm(r, "balanced_accuracy"), "macro F1": pm(r, "macro_f1", 1.0, 3),
        "wall min per run": pm(r, "seconds", 1 / 60), "CPU elsewhere %": pm(r, "cpu_elsewhere", 100.0, 0),
        "device": r["device"],
    } for _, r in summary.iterrows()]
    made_with = "\n".join(f"    {command}" for command in commands)
    return f"# {title}\n\n{pd.DataFrame(rows).to_markdown(index=False)}\n\nMade with:\n\n{made_with}\n"


def curves_figure(table: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Training and validation error of each configuration (mean ± std over its seeds), a panel each, three to a
    row on one shared error axis (``learning_curve_panels``), titled with the configuration and its seeds."""
    panels = {}
    for rows in table.groupby(list(CONFIGURATION), sort=False, dropna=False).indices.values():
        first = table.iloc[rows[0]]
        after = f", after {first['init_from']}" if isinstance(first["init_from"], str) and first["init_from"] else ""
        runs = [histories[name] for name in table["run"].iloc[rows] if name in histories]
        if runs:
            panels[f"{first['recipe']}, norm {first['norm']}, {first['targets']}, {first['epochs']} ep, "
                   f"lr {first['lr']:g}{after} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"] = runs
    return learning_curve_panels(panels)


def save_curves(table: pd.DataFrame, out: Path) -> Path:
    """``out/curves.png`` from the runs of ``table`` whose histories ``out/history/`` holds."""
    histories = {name: pd.read_csv(path) for name in table["run"] if (path := out / "history" / f"{name}.csv").exists()}
    fig = curves_figure(table, histories)
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    return out / "curves.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run directories (from `emofx train`)")
    parser.add_argument("--out", required=True, help="folder for the tables, histories and curves")
    parser.add_argument("--title", default="Results on the benchmark's own split")
    parser.add_argument("--device", default="unknown",
                        help="device of runs whose metrics.json does not name it (runs from before it did)")
    parser.add_argument("--redraw", action="store_true",
                        help="only draw curves.png again from --out's runs.csv and history/ (no run directories)")
    args = parser.parse_args(argv)
    if args.redraw:
        if args.runs:
            parser.error("--redraw draws from --out alone: give no run directories with it")
        if not (Path(args.out) / "runs.csv").is_file():
            parser.error(f"--redraw needs {Path(args.out) / 'runs.csv'}, written by an earlier call with runs")
        print(f"wrote {save_curves(pd.read_csv(Path(args.out) / 'runs.csv'), Path(args.out))}")
        return 0
    if not args.runs:
        parser.error("give run directories (from `emofx train`), or --redraw to draw curves.png from --out alone")

    runs = []
    for directory in args.runs:
        try:
            runs.append(load_run(directory))
        except RunError as err:
            print(f"skipped: {err}", file=sys.stderr)
    if not runs:
        parser.error("none of the given directories holds a finished run")
    table = pd.DataFrame([run_row(run, args.device) for run in runs])
    if table["run"].duplicated().any():
        table["run"] = [parent_and_name(d) for d in table["directory"]]
    out = Path(args.out)
    (out / "history").mkdir(parents=True, exist_ok=True)
    table = with_earlier_rows(table, out)
    for name, run in zip(table["run"].iloc[len(table) - len(runs):], runs):
        run.history.to_csv(out / "history" / f"{name}.csv", index=False)
    table = table.drop(columns="directory")
    table.to_csv(out / "runs.csv", index=False)
    summary = summarise(table)
    summary.to_csv(out / "summary.csv", index=False)
    command = "python -m benchmarks.standard_splits " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    with open(out / "command.txt", "a") as commands:
        commands.write(command + "\n")
    (out / "summary.md").write_text(markdown(summary, args.title, (out / "command.txt").read_text().splitlines()))

    save_curves(table, out)
    print(summary.to_string(index=False))
    print(f"wrote runs.csv, summary.csv, summary.md, history/ and curves.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
