"""Evaluation metrics, class-set handling, aggregation over trials, and the table/curve figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofx.data.dataset import FaceDataset
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig, init_params
from emofx.plotting import save_figure
from emofx.plotting.curves import learning_curves
from emofx.plotting.tables import confusion_heatmap, misclassification_heatmap
from emofx.study.evaluation import (
    EvaluationError,
    aggregate_confusions,
    average_evaluations,
    compare_evaluations,
    evaluate,
    evaluate_probabilities,
    metrics_table,
    accuracy_interval,
    misclassification_table,
    people_of,
)

CLASSES = ("angry", "happy", "sad")


def _evaluation(predictions):
    labels = np.array([0, 0, 1, 1, 2, 2])
    return evaluate_probabilities(labels, np.eye(3)[predictions], CLASSES)


def test_metrics_on_a_hand_checked_example():
    e = _evaluation([0, 1, 1, 1, 2, 0])
    assert e.accuracy == pytest.approx(4 / 6)
    assert e.balanced_accuracy == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert e.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    confusion = e.confusion()
    assert confusion.loc["angry"].tolist() == [1, 1, 0, 2]
    assert confusion.loc["total"].tolist() == [2, 3, 1, 6]
    assert confusion.index.name == "true" and confusion.columns.name == "predicted"
    assert e.per_class_error().round(2).tolist() == [50.0, 0.0, 50.0, 33.33]
    assert e.predictions_frame()["predicted"].tolist() == ["angry", "happy", "happy", "happy", "sad", "angry"]


def test_an_ensemble_averages_probabilities_and_can_beat_its_members():
    labels = np.array([0, 1, 2])
    # Each member is narrowly wrong on one image that the other gets confidently right: the average is right.
    first = evaluate_probabilities(labels, [[0.4, 0.6, 0.0], [0.1, 0.6, 0.3], [0.0, 0.4, 0.6]], CLASSES)
    second = evaluate_probabilities(labels, [[0.9, 0.1, 0.0], [0.1, 0.4, 0.5], [0.1, 0.2, 0.7]], CLASSES)
    ensemble = average_evaluations([first, second])
    np.testing.assert_allclose(ensemble.probabilities[1], [0.1, 0.5, 0.4])
    assert first.accuracy == second.accuracy == pytest.approx(2 / 3) and ensemble.accuracy == 1.0
    assert average_evaluations([first]).probabilities.tolist() == first.probabilities.tolist()
    members = [evaluate_probabilities(labels, np.random.default_rng(k).dirichlet(np.ones(3), 3), CLASSES)
               for k in range(5)]
    orders = [average_evaluations(members[k:] + members[:k]).probabilities.tolist() for k in range(5)]
    assert all(order == orders[0] for order in orders)  # the last bit too: `emofx evaluate a b c` = `c a b`
    with pytest.raises(EvaluationError, match="member 1 scored other images"):
        average_evaluations([first, evaluate_probabilities(labels[::-1], second.probabilities, CLASSES)])


def test_two_evaluations_of_the_same_images_are_compared_image_by_image():
    labels = np.array([0, 1, 2, 0, 1])
    onehot = np.eye(3)
    first = evaluate_probabilities(labels, onehot[[0, 1, 2, 1, 2]], CLASSES)  # right on images 0-2
    second = evaluate_probabilities(labels, onehot[[1, 1, 2, 0, 2]], CLASSES)  # right on images 1-3
    comparison = compare_evaluations(first, second)
    assert (comparison.only_a, comparison.only_b, comparison.n) == (1, 1, 5)
    assert comparison.accuracy_a == comparison.accuracy_b == 0.6 and comparison.p_value == 1.0
    with pytest.raises(EvaluationError, match="second evaluation scored other images"):
        compare_evaluations(first, evaluate_probabilities(labels[::-1], second.probabilities, CLASSES))


def test_evaluations_of_other_images_with_the_same_labels_are_not_compared():
    config = ModelConfig(num_classes=3, widths=(4, 8, 8), dense_units=8)
    model = TrainedModel(config=config, params=init_params(config, 0), classes=CLASSES)
    other_model = TrainedModel(config=config, params=init_params(config, 1), classes=CLASSES)
    rng = np.random.default_rng(0)
    names = ["angry", "happy", "sad", "happy", "sad"]
    faces = FaceDataset.from_label_names(rng.integers(0, 256, (5, 48, 48), dtype=np.uint8), names)
    strangers = FaceDataset.from_label_names(rng.integers(0, 256, (5, 48, 48), dtype=np.uint8), names)
    mine, theirs = evaluate(model, faces), evaluate(other_model, faces)
    assert mine.images_digest == theirs.images_digest is not None
    assert compare_evaluations(mine, theirs).n == 5
    assert average_evaluations([mine, theirs]).images_digest == mine.images_digest
    elsewhere = evaluate(other_model, strangers)  # the same labels in the same order, other pixels
    with pytest.raises(EvaluationError, match="same 5 labels in the same order, but other pixels"):
        compare_evaluations(mine, elsewhere)
    with pytest.raises(EvaluationError, match="member 1 scored other images"):
        average_evaluations([mine, elsewhere])
    labels_only = evaluate_probabilities(mine.labels, elsewhere.probabilities, CLASSES)  # no pixels to tell by
    assert labels_only.images_digest is None and compare_evaluations(mine, labels_only).n == 5


def test_images_of_several_people_are_compared_person_by_person():
    config = ModelConfig(num_classes=2, widths=(4, 8, 8), dense_units=8)
    model = TrainedModel(config=config, params=init_params(config, 0), classes=("happy", "sad"))
    rng = np.random.default_rng(1)
    names = ["happy", "sad", "angry", "happy", "sad", "angry"]  # angry: not scored by a two-class model
    images = rng.integers(0, 256, (6, 48, 48), dtype=np.uint8)
    people = FaceDataset.from_label_names(images, names, subject=["p1", "p1", "p1", "p2", "p2", "p2"])
    evaluation = evaluate(model, people)
    assert evaluation.dropped_data_classes == {"angry": 2}
    np.testing.assert_array_equal(people_of(people, evaluation), ["p1", "p1", "p2", "p2"])
    assert compare_evaluations(evaluation, evaluation, people=people_of(people, evaluation)).clusters == 2
    one_person = FaceDataset.from_label_names(images, names, subject=["p1"] * 6)
    unnamed = FaceDataset.from_label_names(images, names)
    assert people_of(one_person, evaluation) is None and people_of(unnamed, evaluation) is None  # image by image


def test_accuracy_interval_redraws_people_or_takes_the_images_as_independent():
    onehot = np.eye(3)
    labels = np.tile([0, 1, 2], 8)
    right_on_angry = evaluate_probabilities(labels, onehot[np.where(labels == 0, 0, 1)], CLASSES)  # angry, happy
    images = accuracy_interval(right_on_angry)  # each class all right or all wrong: a bootstrap had no width
    # Wilson's score interval for 16 of 24 (by hand: centre 0.6437, half-width 0.1766) and for 24 of 24
    assert (images.low, images.high) == pytest.approx((0.4671, 0.8203), abs=1e-4)
    assert accuracy_interval(evaluate_probabilities(labels, onehot[labels], CLASSES)).low == pytest.approx(0.8620,
                                                                                                        abs=1e-4)
    people = np.repeat(np.arange(6), 4)  # person k's 4 images: all right or all wrong when everything is
    everything = evaluate_probabilities(labels, onehot[np.where(people < 4, labels, (labels + 1) % 3)], CLASSES)
    by_people = accuracy_interval(everything, people)
    assert by_people.low < everything.accuracy < by_people.high  # 4 of 6 people right, redrawn
    assert accuracy_interval(everything).high - accuracy_interval(everything).low < by_people.high - by_people.low
    assert accuracy_interval(everything, people) == by_people  # the same seed, the same numbers
    for wrong, problem in ((dict(people=people[:3]), "one person per scored image \\(24"),
                           (dict(n_boot=0), "n_boot must be at least 1")):
        with pytest.raises(EvaluationError, match=problem):
            accuracy_interval(everything, **wrong)


def test_scores_that_cannot_be_read_as_meant_are_refused():
    uniform = np.full((2, 3), 1 / 3)
    for labels, probabilities, problem in (
            ([0, 5], uniform, r"labels must lie in \[0, 3\) .*got 0..5"),
            (["angry", "happy"], uniform, "labels must be class indices into classes"),
            ([0, 1], [[np.nan] * 3, [1 / 3] * 3], "1 of 2 images have probabilities that are not finite")):
        with pytest.raises(EvaluationError, match=problem):  # NaN would be argmax 0: accuracy 0.5, unannounced
            evaluate_probabilities(np.asarray(labels), np.asarray(probabilities), CLASSES)


def test_aggregation_over_trials_gives_mean_and_std():
    trials = [_evaluation([0, 1, 1, 1, 2, 0]), _evaluation([0, 0, 1, 1, 2, 2])]
    mean, std = aggregate_confusions([t.confusion() for t in trials])
    assert mean.loc["angry", "angry"] == 1.5 and std.loc["angry", "angry"] == pytest.approx(np.std([1, 2], ddof=1))
    assert mean.loc["total", "total"] == 6 and std.loc["total", "total"] == 0
    miss_mean, miss_std = misclassification_table({"A": trials, "B": trials[1:]})
    assert list(miss_mean.columns) == [*CLASSES, "total"]
    assert miss_mean.loc["A", "angry"] == 25.0 and miss_mean.loc["B", "total"] == 0.0
    assert miss_std.loc["A", "sad"] == pytest.approx(np.std([50, 0], ddof=1))
    other = evaluate_probabilities(np.array([0, 1]), np.eye(2), ("afraid", "surprised"))  # classes between theirs
    assert list(misclassification_table({"A": trials, "C": [other]})[0].columns) == [
        "angry", "afraid", "happy", "sad", "surprised", "total"]  # canonical order, not first seen or alphabetical
    table = metrics_table({"A": trials})
    assert table["accuracy"].tolist() == pytest.approx([4 / 6, 1.0])


def test_evaluating_on_another_class_set_uses_shared_classes_and_names_the_dropped():
    config = ModelConfig(num_classes=3, widths=(4, 8, 8), dense_units=8)
    model = TrainedModel(config=config, params=init_params(config, 0), classes=CLASSES)
    rng = np.random.default_rng(0)
    data = FaceDataset.from_label_names(rng.integers(0, 256, (7, 48, 48), dtype=np.uint8),
                                        ["happy", "sad", "surprised", "surprised", "happy", "neutral", "sad"])
    e = evaluate(model, data)
    assert e.classes == ("happy", "sad") and e.n == 4
    assert e.dropped_model_classes == ("angry",)
    assert e.dropped_data_classes == {"surprised": 2, "neutral": 1}
    np.testing.assert_allclose(e.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    summary = e.summary()
    assert summary["dropped_data_classes"] == {"surprised": 2, "neutral": 1}
    assert summary["classes"] == ["happy", "sad"]
    # each row names its image's place in the data, so the predictions join the dataset's own table
    rows = data.to_frame().join(e.predictions_frame(), how="inner")
    assert rows.index.tolist() == [0, 1, 4, 6] and (rows["emotion"] == rows["true"]).all()
    strangers = FaceDataset.from_label_names(data.images[:2], ["surprised", "neutral"])
    with pytest.raises(EvaluationError, match="share no class"):
        evaluate(model, strangers)
    big = FaceDataset.from_label_names(np.zeros((1, 96, 96), np.uint8), ["happy"])
    with pytest.raises(EvaluationError, match="--size 48"):
        evaluate(model, big)


def test_figures_are_written(tmp_path):
    trials = [_evaluation([0, 1, 1, 1, 2, 0]), _evaluation([0, 0, 1, 1, 2, 2])]
    mean, std = aggregate_confusions([t.confusion() for t in trials])
    miss_mean, miss_std = misclassification_table({"A": trials})
    history = pd.DataFrame({"step": [0, 2, 4], "train_error": [np.nan, 0.5, 0.3], "val_error": [0.7, 0.5, 0.4]})
    written = [
        *save_figure(confusion_heatmap(mean, std, title="t"), tmp_path / "confusion"),
        *save_figure(misclassification_heatmap(miss_mean, miss_std), tmp_path / "miss"),
        *save_figure(learning_curves([history, history.assign(val_error=[0.6, 0.4, 0.2])]), tmp_path / "curves"),
    ]
    assert all(p.exists() and p.stat().st_size > 1000 for p in written)
    # no creation date inside: the same figure saves to the same bytes, so a regenerated report changes no file
    again = [save_figure(confusion_heatmap(mean, std, title="t"), tmp_path / name, formats=("png", "pdf"))
             for name in ("first", "second")]
    assert [p.read_bytes() for p in again[0]] == [p.read_bytes() for p in again[1]]
    assert b"CreationDate" not in again[0][1].read_bytes()
    with pytest.raises(ValueError, match="no columns"):
        learning_curves(history, columns=("loss",))
    with pytest.raises(TypeError, match="takes confusion tables \\(DataFrames with class names"):
        confusion_heatmap(mean.to_numpy())
    with pytest.raises(ValueError, match="a std table of shape \\(2, 2\\) for a confusion table of shape \\(3, 3\\)"):
        confusion_heatmap(mean, std.iloc[:2, :2])
    one_run = confusion_heatmap(trials[0].confusion()).axes[0]  # one run's counts are whole numbers
    assert [t.get_text() for t in one_run.get_yticklabels()] == ["angry (2)", "happy (2)", "sad (2)"]
    assert "1.5\n±0.7" in [t.get_text() for t in confusion_heatmap(mean, std).axes[0].texts]


def test_figures_drawn_into_a_subfigure_return_the_whole_figure(tmp_path):
    """A caller's axes inside ``fig.subfigures`` (a subfigure has no tight layout): each figure function draws
    there and returns the whole figure, which saves; the old code raised AttributeError on the subfigure."""
    import matplotlib.pyplot as plt
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    trials = [_evaluation([0, 1, 1, 1, 2, 0]), _evaluation([0, 0, 1, 1, 2, 2])]
    mean, std = aggregate_confusions([t.confusion() for t in trials])
    miss_mean, miss_std = misclassification_table({"A": trials})
    history = pd.DataFrame({"step": [0, 2, 4], "train_error": [np.nan, 0.5, 0.3], "val_error": [0.7, 0.5, 0.4]})
    fig = plt.figure(figsize=(12, 4), layout="constrained")
    axes = [part.subplots() for part in fig.subfigures(1, 3)]
    drawn = [confusion_heatmap(mean, std, title="t", ax=axes[0]),
             misclassification_heatmap(miss_mean, miss_std, ax=axes[1]),
             learning_curves(history, ax=axes[2], title="curves")]
    assert all(d is fig for d in drawn)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["angry (2.0)", "happy (2.0)", "sad (2.0)"]
    assert axes[2].get_title() == "curves" and len(axes[2].get_lines()) == 2
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)  # the caller's layout stays
    written = save_figure(fig, tmp_path / "parts")
    assert written[0].stat().st_size > 1000


def test_resampling_images_without_people_keeps_each_class_count():
    from emofx.study.evaluation import resampled_class_totals

    labels = np.array([0, 0, 0, 1, 1, 2])
    correct = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    right, images = resampled_class_totals(correct, labels, 3, None, 300, np.random.default_rng(0))
    np.testing.assert_array_equal(images, np.tile([3.0, 2.0, 1.0], (300, 1)))  # images redrawn within their class
    assert right[:, 2].tolist() == [1.0] * 300 and set(right[:, 0]) <= {0.0, 1.0, 2.0, 3.0} and right[:, 0].std() > 0
