"""The report's *Beside* section (`emofx report --beside OTHER`): one experiment set beside another on the
same cultures, e.g. trained from scratch beside fine-tuned from a pre-trained model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emofx.pipeline.figures import RUN_DIR, markdown_table, mean_std_text
from emofx.pipeline.report_records import Experiment
from emofx.pipeline.results import RESULTS_DIR, read_json
from emofx.study.accuracy import gap_change, trial_pairs
from emofx.study.cultures import ComparisonError


def beside_section(exp: Experiment, other: Experiment) -> str:
    """The report's *Beside* section: two experiments' accuracies, H1 and CKA side by side, whether the gap between
    the cultures changes from ``other`` to ``exp``, and each trial's model against the same trial's there."""
    accuracy, frames = [], []
    for name, e in ((exp.directory.name, exp), (other.directory.name, other)):
        if not e.training.empty:
            metrics = ["test_accuracy", "balanced_accuracy"]
            grouped = e.training.groupby(["protocol", "culture"])[metrics]
            table = mean_std_text(grouped.mean(), grouped.std(ddof=1).fillna(0.0), ".3f")
            table["trials"] = e.training.groupby(["protocol", "culture"]).size()
            table.insert(0, "training", _training_kind(e))
            accuracy.append(table.reset_index().assign(experiment=name))
        for protocol, record in e.comparisons.items():
            acc = record["summary"]["accuracy"]
            frames.append({"experiment": name, "protocol": protocol, "a": acc["culture_a"], "b": acc["culture_b"],
                           "diff": acc["diff"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
                           "ci_over": "trials" if "measured_ci_low" in acc else "test images (older record)",
                           "p_value": acc["p_value"], "cka_between": record["summary"]["cka"]["between"]})
    columns = ["experiment", "training", "protocol", "culture", "test_accuracy", "balanced_accuracy", "trials"]
    parts = []
    if accuracy:
        parts.append("Test accuracy of both experiments, mean ± std over trials:\n\n"
                     + markdown_table(pd.concat(accuracy, ignore_index=True)[columns]))
    parts.append("H1 and CKA of both experiments side by side:\n\n" + markdown_table(pd.DataFrame(frames)))
    changes = _gap_changes(exp, other)
    if not changes.empty:
        parts.append(f"Does the gap between the cultures change from {other.directory.name} to {exp.directory.name}? "
                     "Per culture, each trial's test accuracy here minus the same trial's there; the gap's change is "
                     "culture a's mean change minus culture b's, tested by reassigning the trials' changes between "
                     "the cultures:\n\n" + markdown_table(changes))
    pairs = _trial_pairs(exp, other)
    if not pairs.empty:
        parts.append("Each trial's model here against the same trial's there, image by image on the trial's test "
                     "images (McNemar's test, clustered by person where the images name their `people`: a person's "
                     "images count as one unit of evidence; `only` counts the images one of the two gets right; Holm "
                     "over the table):\n\n" + markdown_table(pairs.dropna(axis=1, how="all"), floatfmt=".4g"))
    return "\n\n".join(parts)


def _trial_pairs(exp: Experiment, other: Experiment) -> pd.DataFrame:
    """:func:`trial_pairs` of the two experiments' training runs, with the experiments' names in the columns."""
    keys = ["protocol", "culture", "trial"]
    runs = [e.training[keys].assign(run=[str(Path(d) / RESULTS_DIR / RUN_DIR) for d in e.training["run_dir"]])
            for e in (exp, other)]
    table = trial_pairs(*runs, keys=keys)
    names = {"first": exp.directory.name, "second": other.directory.name}
    return table.rename(columns=lambda c: "_".join(names.get(part, part) for part in c.split("_")))


def _gap_changes(exp: Experiment, other: Experiment) -> pd.DataFrame:
    """:func:`gap_change` per protocol both experiments trained two cultures in (in the comparison's order)."""
    rows = []
    for protocol in sorted(set(exp.training["protocol"]) & set(other.training["protocol"])):
        first, second = (e.training[e.training["protocol"] == protocol] for e in (exp, other))
        named = exp.comparisons.get(protocol, {}).get("summary", {}).get("cultures")
        cultures = [named["a"], named["b"]] if named else sorted(first["culture"].unique())
        if len(cultures) != 2 or not set(cultures) <= set(second["culture"]):
            continue
        try:
            rows.append({"protocol": protocol, **gap_change(first, second, *cultures)})
        except ComparisonError as err:  # too few shared trials: say so in the table rather than fail the report
            rows.append({"protocol": protocol, "culture_a": cultures[0], "culture_b": cultures[1], "p_unit": str(err)})
    names = {"gap_first": f"gap {exp.directory.name}", "gap_second": f"gap {other.directory.name}"}
    return pd.DataFrame(rows).rename(columns=names)


def _training_kind(exp: Experiment) -> str:
    """How an experiment's models were trained: recipe, and the run they started from (or from scratch)."""
    metrics = read_json(Path(exp.training["run_dir"].iloc[0]) / RESULTS_DIR / RUN_DIR / "metrics.json")
    start = f"fine-tuned from {Path(metrics['init_from']).name}" if metrics.get("init_from") else "from scratch"
    return f"{metrics.get('recipe', '?')} recipe, {start}"
