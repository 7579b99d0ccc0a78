"""Culture-comparison figures: accuracy by culture and by test person, confusion differences, region-share differences,
the pixel-wise difference map, the transfer matrix and CKA.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no display
backend needed), so they can be saved from scripts and the CLI as well as shown in notebooks.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from emofx.data.emotions import emotion_order
from emofx.plotting import save_figure
from emofx.study.cultures import ALL_EMOTIONS
from emofx.study.stats import ALPHA

if TYPE_CHECKING:
    from emofx.study.comparison import Comparison


def _significance_mark(p: float) -> str:
    return "**" if p < 0.01 else "*" if p < ALPHA else ""


def _signed(value: float, digits: int) -> str:
    """``value`` with its sign at ``digits`` decimals, and no sign where it rounds to zero: "-0" would read as a
    difference in one direction that the rounding hid."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def _stripplot(**kwargs: Any) -> None:
    """``sns.stripplot`` with its jitter drawn from a fixed seed, so the same numbers draw the same figure.

    Seaborn draws the jitter from NumPy's global generator; it is seeded for the call and put back after."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        sns.stripplot(**kwargs)
    finally:
        np.random.set_state(state)


def _unit_words(unit: Any) -> str:
    """What a recorded ``p_unit``/``ci_unit`` resampled, without its details: ``trials (5 vs 5; ...): ...`` ->
    ``trials``; "trials" for a record that does not say."""
    return re.split(r" \(|:", str(unit))[0].strip() if isinstance(unit, str) and unit.strip() else "trials"


def accuracy_by_culture(trial_metrics: pd.DataFrame, test: dict[str, Any], metric: str = "accuracy",
                        names: tuple[str, str] = ("a", "b"), n_classes: int | None = None) -> Figure:
    """Per-trial accuracy of each culture on its own test images (every trial a dot, none hidden behind another),
    and the difference (``names``: a minus b) with its interval, each named by what the record says it resampled
    (``p_unit``, ``ci_unit``: a summary of older code bootstrapped test images, not trials). Given ``n_classes``,
    a line at chance: 1 / ``n_classes``, what guessing at random scores in expectation, accuracy or balanced."""
    own = trial_metrics[trial_metrics["train_culture"] == trial_metrics["test_culture"]]
    fig = Figure(figsize=(7.5, 3.6))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    sns.swarmplot(data=own, x="train_culture", y=metric, ax=left, size=7, color="0.3")
    sns.pointplot(data=own, x="train_culture", y=metric, ax=left, errorbar=None, color="C3", markers="_",
                  markersize=30, linestyle="none")
    if n_classes:
        left.axhline(1 / n_classes, color="0.5", lw=0.8, ls=":", label=f"chance (1/{n_classes}: guessing at random)")
        left.legend(loc="lower right", fontsize=8, frameon=False)
    counts = own.groupby("train_culture", sort=False).size()
    words = metric.replace("_", " ")
    left.set(xlabel="culture (test images of its own)", ylabel=words,
             title="per trial (dots: " + ", ".join(f"{n} {c}" for c, n in counts.items()) + ") and mean (bar)")
    bounded = all(test.get(k) is not None and np.isfinite(test[k]) for k in ("ci_low", "ci_high"))
    errors = [[test["diff"] - test["ci_low"]], [test["ci_high"] - test["diff"]]] if bounded else None
    right.errorbar([0], [test["diff"]], yerr=errors, fmt="o", color="C0", capsize=6)
    right.axhline(0, color="0.5", lw=0.8, ls="--")
    level = re.search(r"(\d+)% ", str(test.get("ci_unit", "")))
    interval = (f"{level.group(1) if level else 95}% interval over {_unit_words(test.get('ci_unit'))}" if bounded
                else "interval unbounded: too few trials")
    right.set(xticks=[0], xticklabels=[f"{names[0]} - {names[1]}"], xlim=(-1, 1), ylabel=f"{words} difference",
              title=textwrap.fill(f"p = {test['p_value']:.3g} over {_unit_words(test.get('p_unit'))}", 32) + "\n"
              + textwrap.fill(interval, 32))
    right.title.set_fontsize(10)
    fig.tight_layout()
    return fig


def accuracy_by_person(person_accuracy: pd.DataFrame) -> Figure:
    """Accuracy of each test person (pooled over the trials that tested them), per culture, with the median:
    whether a culture's accuracy is carried by most of its people or by a few. People of equal accuracy are laid
    side by side (a swarm), so that every person is seen."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    sns.swarmplot(data=person_accuracy, x="culture", y="accuracy", ax=ax, size=5, color="0.3")
    sns.pointplot(data=person_accuracy, x="culture", y="accuracy", ax=ax, estimator="median", errorbar=None,
                  color="C3", markers="_", markersize=30, linestyle="none")
    counts = person_accuracy.groupby("culture", sort=False).size()
    ax.set(xlabel="culture", ylabel="accuracy on the person's images",
           title="per test person, and the median: " + ", ".join(f"{n} {c}" for c, n in counts.items()))
    fig.tight_layout()
    return fig


def region_difference_heatmap(region_tests: pd.DataFrame, names: tuple[str, str] = ("a", "b")) -> Figure:
    """Emotion x region heatmap of the saliency-share difference (``names``: a minus b); * p_adj < .05, ** < .01."""
    diff = region_tests.pivot(index="emotion", columns="region", values="diff")
    marks = region_tests.assign(mark=region_tests["p_adjusted"].map(_significance_mark)).pivot(
        index="emotion", columns="region", values="mark")
    regions = list(dict.fromkeys(region_tests["region"]))
    emotions = sorted(set(region_tests["emotion"]), key=lambda name: emotion_order(name, ALL_EMOTIONS))
    diff, marks = diff.loc[emotions, regions], marks.loc[emotions, regions]
    labels = np.array([[f"{_signed(v, 3)}{m}" for v, m in zip(dr, mr)]
                       for dr, mr in zip(diff.to_numpy(), marks.to_numpy())])
    limit = float(np.nanmax(np.abs(diff.to_numpy()))) or 1.0
    fig = Figure(figsize=(1.3 * len(regions) + 2, 0.5 * len(diff) + 1.5))
    ax = fig.subplots()
    sns.heatmap(diff, annot=labels, fmt="", cmap="RdBu_r", vmin=-limit, vmax=limit, ax=ax,
                cbar_kws={"label": f"share difference ({names[0]} - {names[1]})"})
    correction = region_tests["correction"].iloc[0] if "correction" in region_tests else ""
    ax.set_title(f"saliency mass share, {names[0]} - {names[1]} ({region_tests['unit'].iloc[0]} as unit; {correction}: "
                 "* < .05, ** < .01)")
    fig.tight_layout()
    return fig


def confusion_difference_heatmap(confusion_tests: pd.DataFrame, names: tuple[str, str] = ("a", "b")) -> Figure:
    """True x predicted heatmap of the confusion-rate difference (a minus b, share of the true emotion's test
    images); * p_adj < .05, ** < .01; blank: the diagonal (the per-class error tests) and pairs never confused."""
    classes = list(dict.fromkeys([*confusion_tests["true"], *confusion_tests["predicted"]]))
    diff = confusion_tests.pivot(index="true", columns="predicted", values="diff").reindex(index=classes,
                                                                                          columns=classes)
    marks = confusion_tests.assign(mark=confusion_tests["p_adjusted"].map(_significance_mark)).pivot(
        index="true", columns="predicted", values="mark").reindex(index=classes, columns=classes)
    labels = np.array([[f"{_signed(100 * v, 0)}{m}" if v == v else "" for v, m in zip(dr, mr)]
                       for dr, mr in zip(diff.to_numpy(float), marks.to_numpy())])
    limit = float(np.nanmax(np.abs(diff.to_numpy(float)))) if len(confusion_tests) else 0.0
    fig = Figure(figsize=(0.8 * len(classes) + 2.5, 0.6 * len(classes) + 1.5))
    ax = fig.subplots()
    sns.heatmap(100 * diff.astype(float), annot=labels, fmt="", cmap="RdBu_r", vmin=-100 * (limit or 1),
                vmax=100 * (limit or 1), ax=ax, cbar_kws={"label": f"percentage points, {names[0]} - {names[1]}"},
                annot_kws={"fontsize": 8})
    ax.set(xlabel="predicted emotion", ylabel="true emotion")
    ax.tick_params(axis="y", labelrotation=0)
    correction = confusion_tests["correction"].iloc[0] if len(confusion_tests) else ""
    ax.set_title(f"confusions: share of the true emotion's images, {names[0]} - {names[1]}\n(trials as unit; "
                 f"{correction}: * < .05, ** < .01; blank: the diagonal, and pairs never confused)", fontsize=10)
    fig.tight_layout()
    return fig


def pixel_difference_map(pixel: dict[str, np.ndarray], names: tuple[str, str] = ("a", "b"),
                         alpha: float = ALPHA) -> Figure:
    """Mean saliency of each culture, on one colour scale so that the two compare, and their difference,
    outlining pixels with FWER p < ``alpha``. Each map is |saliency| scaled to unit mass before the means
    (:func:`emofx.study.features.normalised_saliency`): a pixel's value is its share of a map's mass."""
    fig = Figure(figsize=(10.5, 3.4), layout="constrained")  # one colour bar spans two panels: tight_layout cannot
    axes = fig.subplots(1, 3)
    top = float(max(np.max(pixel["mean_a"]), np.max(pixel["mean_b"]))) or 1.0
    for ax, key, name in zip(axes[:2], ("mean_a", "mean_b"), names):
        image = ax.imshow(pixel[key], cmap="magma", vmin=0, vmax=top)
        ax.set_title(f"mean saliency: {name}", fontsize=10)
    fig.colorbar(image, ax=list(axes[:2]), shrink=0.9, label="share of a map's mass per pixel")
    limit = float(np.abs(pixel["difference"]).max()) or 1.0
    image = axes[2].imshow(pixel["difference"], cmap="RdBu_r", vmin=-limit, vmax=limit)
    significant = pixel["p_fwer"] < alpha
    if significant.any():
        axes[2].contour(significant.astype(float), levels=[0.5], colors="k", linewidths=1)
    axes[2].set_title(f"{names[0]} - {names[1]}\n(outline: FWER p < {alpha})", fontsize=10)
    fig.colorbar(image, ax=axes[2], shrink=0.9, label="difference in share per pixel")
    for ax in axes:
        ax.set_axis_off()
    return fig


def transfer_heatmap(transfer: pd.DataFrame, metric: str = "accuracy") -> Figure:
    """Train culture x test culture mean accuracy over trials (the in-group advantage); the title says over how
    many trials."""
    matrix = transfer.pivot_table(index="train_culture", columns="test_culture", values=metric, aggfunc="mean")
    trials = transfer.groupby(["train_culture", "test_culture"]).size().unique() if "trial" in transfer else []
    over = f"mean over {trials[0]} trials" if len(trials) == 1 else "mean over trials"
    fig = Figure(figsize=(1.6 * len(matrix.columns) + 2, 1.2 * len(matrix) + 1.2))
    ax = fig.subplots()
    sns.heatmap(matrix, annot=True, fmt=".3f", cmap="viridis", vmin=0, vmax=1, ax=ax,
                cbar_kws={"label": metric.replace("_", " ")})
    ax.tick_params(axis="y", labelrotation=0)
    ax.set(xlabel="test culture", ylabel="train culture", title=f"cross-culture transfer (shared classes), {over}")
    fig.tight_layout()
    return fig


def cka_bars(cka: pd.DataFrame, names: tuple[str, str] = ("a", "b")) -> Figure:
    """Mean linear CKA between cultures and within each culture (between trials), with every pair of models;
    ``names`` (the two cultures) label the bars."""
    words = {"within_a": f"within {names[0]}", "within_b": f"within {names[1]}", "between": "between"}
    order = [words[k] for k in words if k in set(cka["kind"])]
    cka = cka.assign(kind=cka["kind"].map(words))
    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.subplots()
    sns.barplot(data=cka, x="kind", y="cka", order=order, ax=ax, errorbar=None, color="C0", alpha=0.6)
    _stripplot(data=cka, x="kind", y="cka", order=order, ax=ax, color="0.2", size=4)
    ax.set(ylim=(0, 1), xlabel="", ylabel="linear CKA (penultimate layer)",
           title="representational similarity\n(bar: mean; dot: one pair of trials' models)")
    fig.tight_layout()
    return fig


FIGURE_NAMES = ("accuracy_by_culture", "confusion_differences", "accuracy_by_person", "region_differences",
                "pixel_difference", "transfer_matrix", "cka")  # every figure comparison_figures may draw


def comparison_figures(tables: dict[str, pd.DataFrame], accuracy: dict[str, Any], pixel: dict[str, np.ndarray],
                       names: tuple[str, str], n_classes: int | None = None) -> dict[str, Figure]:
    """Every comparison figure by name, from a comparison's tables (``trial_metrics``, ``region_tests``,
    ``transfer``, ``cka``; ``confusion_tests`` and ``person_accuracy`` where the comparison has them), its
    accuracy test, its pixel-wise maps, the two cultures' names and, where known, how many classes they share
    (the accuracy figure's chance line)."""
    figures = {"accuracy_by_culture": accuracy_by_culture(tables["trial_metrics"], accuracy, names=names,
                                                          n_classes=n_classes)}
    if "confusion_tests" in tables:  # comparisons recorded before emofx tested confusions have no such table
        figures["confusion_differences"] = confusion_difference_heatmap(tables["confusion_tests"], names)
    if len(tables.get("person_accuracy", ())):  # none where the images do not name their people, or recorded before
        figures["accuracy_by_person"] = accuracy_by_person(tables["person_accuracy"])
    return {
        **figures,
        "region_differences": region_difference_heatmap(tables["region_tests"], names),
        "pixel_difference": pixel_difference_map(pixel, names),
        "transfer_matrix": transfer_heatmap(tables["transfer"]),
        "cka": cka_bars(tables["cka"], names),
    }


def save_comparison_figures(comparison: "Comparison", out: str | Path) -> list[Path]:
    """Every comparison figure as a PNG in ``out``; returns the written paths."""
    figures = comparison_figures(comparison.tables, comparison.accuracy, comparison.pixel,
                                 (comparison.culture_a, comparison.culture_b),
                                 n_classes=len(comparison.shared_classes))
    return [path for name, fig in figures.items() for path in save_figure(fig, Path(out) / name)]
