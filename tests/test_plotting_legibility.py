"""What a reader of the figures needs, read from the matplotlib objects (not pixels): panels that are compared share
their scales, classes come in one order, every axis and colour bar says what it shows, no label runs into another,
and the figures name what they average and what their intervals resample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh

from emofx.data.emotions import EMOTIONS

CLASSES = ["angry", "happy", "sad"]


def _confusion(counts: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(counts, index=CLASSES, columns=CLASSES)


def _overlap(first, second) -> bool:
    return first.x0 < second.x1 and second.x0 < first.x1 and first.y0 < second.y1 and second.y0 < first.y1


def test_confusion_heatmaps_of_two_cultures_are_on_one_colour_scale_with_the_classes_in_order():
    from emofx.plotting.tables import confusion_heatmap

    few = confusion_heatmap(_confusion([[9, 1, 0], [0, 5, 5], [1, 1, 8]]), _confusion([[1, 1, 0]] * 3))
    many = confusion_heatmap(_confusion([[90, 10, 0], [40, 50, 10], [10, 10, 80]]), _confusion([[2, 1, 0]] * 3))
    for fig in (few, many):
        ax = fig.axes[0]
        assert ax.collections[0].get_clim() == (0, 1)  # shares of the true class: the same scale for any counts
        assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
        assert [t.get_text().split(" (")[0] for t in ax.get_yticklabels()] == CLASSES
        assert ax.get_xlabel() == "predicted emotion"
        assert ax.get_ylabel() == "true emotion (test images per trial, mean)"  # what the row totals count
        assert fig.axes[1].get_ylabel() == "share of true class"  # the colour bar
    one_run = confusion_heatmap(_confusion([[9, 1, 0], [0, 5, 5], [1, 1, 8]])).axes[0]
    assert one_run.get_ylabel() == "true emotion (test images)"


def test_misclassification_rows_are_upright_and_the_title_counts_the_trials():
    from emofx.plotting.tables import misclassification_heatmap

    mean = pd.DataFrame([[10.0, 20.0, 15.0], [30.0, 5.0, 17.5]], index=["Swedish", "Taiwanese"],
                        columns=["angry", "happy", "total"])
    ax = misclassification_heatmap(mean, mean / 2).axes[0]
    ax.figure.draw_without_rendering()
    labels = ax.get_yticklabels()
    assert [t.get_text() for t in labels] == ["Swedish", "Taiwanese"]
    assert all(t.get_rotation() == 0 for t in labels)  # upright: stacked vertically they overlapped
    assert not _overlap(*(t.get_window_extent() for t in labels))
    assert ax.get_xlabel() == "true emotion"
    from emofx.pipeline.figures import trials_phrase

    assert trials_phrase({"Swedish": 5, "Taiwanese": 5}) == "5 trials"
    assert trials_phrase({"Swedish": 5, "Taiwanese": 4}) == "trials (Swedish 5, Taiwanese 4)"
    assert trials_phrase({"Swedish": 1, "Taiwanese": 1}) == "1 trial"  # an experiment of one trial: not "1 trials"


def test_a_single_learning_curve_keeps_a_long_title_inside_the_figure_and_off_the_axis_label():
    from emofx.plotting.curves import TITLE_WIDTH, learning_curves

    history = pd.DataFrame({"step": [0, 13, 26, 39], "train_error": [0.9, 0.85, 0.82, 0.79],
                            "val_error": [0.88, 0.86, 0.81, 0.8]})
    title = ("fer2013: mean ± std over 2 folds\n"  # notebook 01's title
             "a SHRUNKEN model, not the paper's (conv widths 32/64/128, 300 dense units; asked for explicitly)")
    fig = learning_curves([history, history], title=title)
    ax = fig.axes[0]
    fig.draw_without_rendering()
    box = ax.title.get_window_extent()
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1  # not cut off when saved
    assert not _overlap(box, ax.yaxis.label.get_window_extent())
    assert all(len(line) <= TITLE_WIDTH for line in ax.get_title().split("\n"))
    assert " ".join(ax.get_title().split()) == " ".join(title.split())  # wrapped, every word kept
    # the training error is the steps' own, of augmented batches with dropout: a gap is not overfitting alone
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training error (augmented batches, dropout on)",
                                                                   "validation error"]


def test_learning_curve_panels_share_their_error_axis_and_titles_do_not_run_into_each_other():
    from emofx.plotting.curves import learning_curve_panels

    low = [pd.DataFrame({"step": [0, 10, 20], "train_error": [0.3, 0.2, 0.1], "val_error": [0.3, 0.25, 0.2]})]
    high = [pd.DataFrame({"step": [0, 10, 20], "train_error": [0.9, 0.5, 0.3], "val_error": [0.85, 0.6, 0.5]})]
    long = "a SHRUNKEN model, not the paper's (conv widths 16/32/64, 128 dense units)"
    fig = learning_curve_panels({f"eyes: mean ± std over 1 trials\n{long}": low,
                                 f"mouth: mean ± std over 1 trials\n{long}": high})
    axes = fig.axes
    assert axes[0].get_ylim() == axes[1].get_ylim()  # the same height means the same error in both panels
    assert axes[0].get_ylim()[0] == 0 and axes[0].get_ylim()[1] >= 0.9  # the higher panel's curve fits
    fig.draw_without_rendering()
    assert not _overlap(*(ax.title.get_window_extent() for ax in axes))
    assert all(ax.get_ylabel() == "error (share of images misclassified)" for ax in axes)
    from emofx.plotting.curves import TITLE_WIDTH

    assert all(len(line) <= TITLE_WIDTH for ax in axes for line in ax.get_title().split("\n"))

    many = learning_curve_panels({f"configuration {k}": low for k in range(7)})
    visible = [ax for ax in many.axes if ax.get_visible()]
    assert len(visible) == 7 and len({round(ax.get_position().y0, 3) for ax in visible}) == 3  # 3 to a row
    with pytest.raises(ValueError, match="no panels to draw"):
        learning_curve_panels({})


def _trials(accuracies_a: list[float], accuracies_b: list[float]) -> pd.DataFrame:
    a, b = len(accuracies_a), len(accuracies_b)
    return pd.DataFrame({"train_culture": ["a"] * a + ["b"] * b, "test_culture": ["a"] * a + ["b"] * b,
                         "trial": [*range(a), *range(b)], "accuracy": [*accuracies_a, *accuracies_b]})


def test_the_accuracy_figure_shows_every_trial_and_names_what_its_interval_resampled():
    from emofx.plotting.comparison import accuracy_by_culture

    # KDEF vs Taiwanese as collected: trials 0 and 3 of Swedish score 69 of 98 each; jittered, one hid the other
    trials = _trials([69 / 98, 80 / 98, 72 / 98, 69 / 98, 79 / 98], [0.607, 0.634, 0.525, 0.64, 0.516])
    current = {"diff": 0.17, "ci_low": 0.08, "ci_high": 0.26, "p_value": 0.00794,
               "p_unit": "trials (5 vs 5; exact over 252 splits)",
               "ci_unit": "trials (5 vs 5; exact over 252 splits): the shifts the permutation test does not reject "
                          "(95% interval)"}
    older = {**current, "p_value": 0.543, "ci_unit": "test images, stratified by trial and class (500 resamples, "
                                                     "95% percentile interval)"}
    fig = accuracy_by_culture(trials, current, names=("Swedish", "Taiwanese"))
    left, right = fig.axes
    fig.draw_without_rendering()
    dots = left.transData.transform(left.collections[0].get_offsets())
    gaps = np.linalg.norm(dots[:, None] - dots[None], axis=-1)[np.triu_indices(len(dots), 1)]
    assert len(dots) == 5 and gaps.min() > 5  # display pixels apart: no trial hidden behind another
    # a summary of older code bootstrapped test images: the figure must not call that interval one over trials
    title = accuracy_by_culture(trials, older).axes[1].get_title().replace("\n", " ")
    assert "interval over test images, stratified by trial and class" in title and "p = 0.543 over trials" in title
    assert left.get_title() == "per trial (dots: 5 a, 5 b) and mean (bar)"
    assert right.get_ylabel() == "accuracy difference"
    assert right.get_title() == "p = 0.00794 over trials\n95% interval over trials"
    bare = {k: current[k] for k in ("diff", "ci_low", "ci_high", "p_value")}  # a record naming neither unit
    assert accuracy_by_culture(trials, bare).axes[1].get_title() == "p = 0.00794 over trials\n95% interval over trials"


def test_the_accuracy_figure_draws_chance_where_the_number_of_classes_is_known():
    from emofx.plotting.comparison import accuracy_by_culture

    trials = _trials([0.75, 0.8], [0.55, 0.6])
    test = {"diff": 0.2, "ci_low": 0.1, "ci_high": 0.3, "p_value": 0.33}
    left = accuracy_by_culture(trials, test, n_classes=7).axes[0]
    chance = [line for line in left.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(1 / 7)
    assert chance[0].get_label() == "chance (1/7: guessing at random)"
    assert left.get_ylim()[0] < 1 / 7  # on the axis, not clipped off it
    assert not [line for line in accuracy_by_culture(trials, test).axes[0].get_lines()
                if line.get_label().startswith("chance")]  # unknown (an older record): no line


def test_difference_labels_carry_no_sign_where_they_round_to_zero():
    from emofx.plotting.comparison import confusion_difference_heatmap, region_difference_heatmap

    confusions = pd.DataFrame([{"true": "happy", "predicted": "sad", "diff": -0.004, "p_adjusted": 0.9,
                                "correction": "maxT"},
                               {"true": "sad", "predicted": "happy", "diff": 0.126, "p_adjusted": 0.004,
                                "correction": "maxT"}])
    ax = confusion_difference_heatmap(confusions, ("Swedish", "Taiwanese")).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["+13**", "0"]  # not "-0": the rounding hid the direction
    regions = pd.DataFrame([{"emotion": "happy", "region": r, "diff": d, "p_adjusted": 0.5, "unit": "trials",
                             "correction": "maxT"} for r, d in (("eyes", -0.0004), ("mouth", -0.0123))])
    ax = region_difference_heatmap(regions).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["-0.012", "0.000"]


def test_region_differences_list_the_emotions_in_the_confusion_matrices_order():
    from emofx.plotting.comparison import region_difference_heatmap

    emotions = ["afraid", "all", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]  # as tables sort them
    tests = pd.DataFrame([{"emotion": e, "region": r, "diff": 0.01 * k, "p_adjusted": 0.5, "unit": "trials",
                           "correction": "maxT"} for k, e in enumerate(emotions) for r in ("eyes", "mouth")])
    ax = region_difference_heatmap(tests, ("Swedish", "Taiwanese")).axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert shown == [*[e for e in EMOTIONS if e in emotions], "all"]
    values = ax.collections[0].get_array().reshape(len(shown), 2)
    assert values[shown.index("afraid"), 0] == pytest.approx(0.0)  # the cells moved with their labels
    assert values[shown.index("surprised"), 1] == pytest.approx(0.07)


def test_confusion_differences_are_upright_in_percentage_points_and_say_what_blank_means():
    from emofx.plotting.comparison import confusion_difference_heatmap

    tests = pd.DataFrame([{"true": t, "predicted": p, "diff": 0.1, "p_adjusted": 0.5, "correction": "maxT"}
                          for t in CLASSES for p in CLASSES if t != p])
    fig = confusion_difference_heatmap(tests, ("Swedish", "Taiwanese"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES == [t.get_text() for t in ax.get_xticklabels()]
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    assert fig.axes[1].get_ylabel() == "percentage points, Swedish - Taiwanese"
    assert "blank: the diagonal" in ax.get_title()


def test_the_two_cultures_mean_saliency_is_drawn_on_one_labelled_colour_scale():
    from emofx.plotting.comparison import pixel_difference_map

    spread = np.full((8, 8), 1 / 64)
    focused = np.zeros((8, 8))
    focused[2:4, 2:4] = 1 / 4  # four times more mass on a pixel than the spread map has anywhere
    pixel = {"mean_a": spread, "mean_b": focused, "difference": spread - focused, "p_fwer": np.ones((8, 8))}
    fig = pixel_difference_map(pixel, ("Swedish", "Taiwanese"))
    panels = [ax for ax in fig.axes if ax.images]
    limits = [ax.images[0].get_clim() for ax in panels]
    assert limits[0] == limits[1] == (0, 0.25)  # the spread map must not look as bright as the focused one
    assert limits[2] == (-0.25 + 1 / 64, 0.25 - 1 / 64)
    bars = [ax for ax in fig.axes if not ax.images]
    assert [ax.get_ylabel() for ax in bars] == ["share of a map's mass per pixel", "difference in share per pixel"]


def test_transfer_and_cka_figures_say_what_they_average():
    from emofx.plotting.comparison import cka_bars, transfer_heatmap

    transfer = pd.DataFrame([{"train_culture": a, "test_culture": b, "trial": t, "accuracy": 0.5}
                             for a in ("x", "y") for b in ("x", "y") for t in range(5)])
    ax = transfer_heatmap(transfer).axes[0]
    assert ax.get_title() == "cross-culture transfer (shared classes), mean over 5 trials"
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    cka = pd.DataFrame({"kind": ["within_a", "within_b", "between"], "cka": [0.8, 0.7, 0.1]})
    assert "bar: mean; dot: one pair of trials' models" in cka_bars(cka).axes[0].get_title()


@pytest.mark.parametrize("overlay, mode, cmap", [(False, "abs", "gray"), (True, "abs", "inferno"),
                                                 (False, "signed", "RdBu_r")])
def test_saliency_grids_say_how_each_map_was_scaled(overlay, mode, cmap):
    from emofx.plotting.saliency import saliency_grid

    rng = np.random.default_rng(0)
    fig = saliency_grid(rng.integers(0, 255, (4, 8, 8), np.uint8), rng.normal(size=(4, 8, 8)), np.array([0, 0, 1, 1]),
                        ["happy", "sad"], per_class=2, overlay=overlay, mode=mode)
    tiles = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(tiles) == 4 and len(bars) == 1
    assert "99th percentile" in bars[0].get_ylabel()
    scale = [c.cmap.name for c in bars[0].collections if isinstance(c, QuadMesh)]  # the bar's colours
    assert scale == [cmap] and tiles[0].images[-1].get_cmap().name == cmap  # the colours the tiles use
