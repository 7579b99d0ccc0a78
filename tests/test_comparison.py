"""emofx.study.comparison on synthetic arrays (no training) and on tiny trained runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofx.data.splits import make_split
from emofx.data.synthetic import make_synthetic
from emofx.study import accuracy, comparison, cultures, features, stats

QUICK = cultures.CompareConfig(n_permutations=499, n_boot=200, cka_images=20, filter_top_k=5, progress=False)


def test_region_shares_and_normalisation():
    masks = np.zeros((2, 2, 4, 4), bool)
    masks[:, 0, :2] = True
    masks[:, 1, 2:] = True
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = -3.0  # all mass (absolute) in region 0
    shares = features.region_shares(maps, masks)
    np.testing.assert_allclose(shares[0], [1.0, 0.0])
    np.testing.assert_allclose(shares[1], [0.5, 0.5])  # an empty map is spread uniformly
    np.testing.assert_allclose(features.normalised_saliency(maps).sum(axis=(1, 2)), 1.0)
    broken = maps.copy()
    broken[1, 2, 2] = np.nan  # NaN would otherwise pass for an empty map: the regions' areas, unannounced
    with pytest.raises(ValueError, match="1 of 2 saliency maps hold NaN or infinite values \\(first: image 1\\)"):
        features.region_shares(broken, masks)
    for wrong in (maps[:1], np.zeros((2, 8, 8))):  # maps of other images than the regions'
        with pytest.raises(ValueError, match="do not fit region masks of shape \\(2, 2, 4, 4\\)"):
            features.region_shares(wrong, masks)


def test_landmark_distance():
    maps = np.zeros((2, 10, 10))
    maps[:, 2, 7] = 1.0  # the single most salient pixel: x=7, y=2
    landmarks = np.array([[[7.0, 2.0], [0.0, 0.0]], [[np.nan, np.nan], [7.0, 6.0]]])
    distance = features.landmark_distance(maps, landmarks, top_fraction=0.01)
    np.testing.assert_allclose(distance, [0.0, 4.0])
    assert np.isnan(features.landmark_distance(maps[:1], np.full((1, 2, 2), np.nan), 0.01)[0])


def _measures(shift: float, n_trials: int = 5, images: int = 6, seed: int = 3,
              emotions: tuple[str, ...] = ("happy", "sad")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for culture, offset in (("A", shift), ("B", 0.0)):
        for trial in range(n_trials):
            for image in range(images):
                for emotion in emotions:
                    eyes = 0.3 + (offset if emotion == "happy" else 0.0) + rng.normal(0, 0.02)
                    rows.append({"culture": culture, "trial": trial, "image": image + (100 if culture == "B" else 0),
                                 "emotion": emotion, "eyes": eyes, "mouth": 0.4 + rng.normal(0, 0.02)})
    return pd.DataFrame(rows)


def test_measure_tests_find_a_planted_region_with_trials_as_unit():
    table = features.measure_tests(_measures(0.2), "A", "B", ["eyes", "mouth"], QUICK)
    assert set(table.columns) >= {"emotion", "region", "diff", "effect_size", "p_value", "p_adjusted", "unit"}
    planted = table[(table.emotion == "happy") & (table.region == "eyes")].iloc[0]
    assert planted["diff"] == pytest.approx(0.2, abs=0.01)
    assert planted["p_adjusted"] == pytest.approx(2 / 252)  # exact max-T over 252 trial splits
    assert planted["unit"] == "trials" and planted["n_a"] == 5 and planted["exact"]
    pooled = table[(table.emotion == "all") & (table.region == "eyes")].iloc[0]  # region level: mean of 2 emotions
    assert pooled["diff"] == pytest.approx(0.1, abs=0.01) and pooled["p_adjusted"] == pytest.approx(2 / 252)
    assert list(table["emotion"]) == ["happy", "happy", "sad", "sad", "all", "all"]
    others = table.drop([planted.name, pooled.name])
    assert (others["p_adjusted"] > 0.05).all()


@pytest.mark.parametrize("unit", ["trials", "images"])
def test_measure_tests_list_emotions_in_the_vocabularys_order_as_the_figures_do(unit):
    config = cultures.CompareConfig(unit=unit, correction="maxT" if unit == "trials" else "holm", n_permutations=99,
                                    progress=False)
    measures = _measures(0.0, n_trials=3, images=3, emotions=("neutral", "angry", "sad"))
    table = features.measure_tests(measures, "A", "B", ["eyes"], config)
    assert list(table["emotion"]) == ["angry", "sad", "neutral", "all"]  # not alphabetical: the heatmap's rows


def test_unit_values_pool_emotions_with_equal_weight():
    measures = pd.DataFrame({"culture": "A", "trial": 0, "image": [0, 1, 2], "emotion": ["happy", "happy", "sad"],
                             "eyes": [0.2, 0.4, 0.9]})
    values = features.unit_values(measures, ["eyes"], "trials", pooled=True).set_index("emotion")["eyes"]
    assert values.to_dict() == pytest.approx({"happy": 0.3, "sad": 0.9, "all": 0.6})
    assert "all" not in set(features.unit_values(measures, ["eyes"], "trials")["emotion"])


def test_measure_tests_images_unit_with_holm():
    config = cultures.CompareConfig(unit="images", correction="holm", n_permutations=499, progress=False)
    table = features.measure_tests(_measures(0.0), "A", "B", ["eyes", "mouth"], config)
    assert (table["unit"] == "images").all() and (table["n_a"] == 6).all()
    assert (table["p_adjusted"] >= table["p_value"]).all()
    assert table["p_adjusted"].min() > 0.05


def test_independent_splits_give_every_trial_its_own_people():
    dataset = make_synthetic("universal", n_per_class=15, seed=2, size=24, images_per_subject_class=1)
    splits = cultures.culture_splits(dataset, 3, "independent", seed=0, fractions=(0.6, 0.2, 0.2))
    people = [set(dataset.subject[np.concatenate([s.train, s.val, s.test])]) for s in splits]
    assert [len(p) for p in people] == [5, 5, 5] and not (people[0] & people[1] or people[1] & people[2])
    for split in splits:
        assert split.kind == "independent" and split.n_images == len(dataset)
        assert not set(dataset.subject[split.train]) & set(dataset.subject[split.test])  # unseen people tested
        assert len(np.unique(dataset.labels[split.test])) == len(dataset.classes)
    again = cultures.culture_splits(dataset, 3, "independent", seed=0, fractions=(0.6, 0.2, 0.2))
    assert all(np.array_equal(x.test, y.test) for x, y in zip(splits, again))
    with pytest.raises(cultures.ComparisonError, match="3 people per trial"):
        cultures.culture_splits(dataset, 6, "independent", seed=0, fractions=(0.6, 0.2, 0.2))


def test_config_rejects_max_t_with_images():
    with pytest.raises(cultures.ComparisonError, match="maxT"):
        cultures.CompareConfig(unit="images")
    with pytest.raises(cultures.ComparisonError, match="unit"):
        cultures.CompareConfig(unit="pixels")
    for wrong, problem in ((dict(cka_images=0), "cka_images must be at least 1; got 1000, 2000, 0"),
                           (dict(saliency_method="Guided"), "unknown saliency method 'Guided'; choose one of")):
        with pytest.raises(cultures.ComparisonError, match=problem):  # before any work, not at its end
            cultures.CompareConfig(n_permutations=1000, n_boot=2000, **wrong)


def _predictions(culture: str, accuracy_by_trial: list[float], n: int = 20) -> pd.DataFrame:
    rows = []
    for trial, share_correct in enumerate(accuracy_by_trial):
        n_correct = int(round(share_correct * n))
        for image in range(n):
            emotion = "happy" if image % 2 else "sad"
            correct = image < n_correct
            rows.append({"train_culture": culture, "test_culture": culture, "trial": trial, "image": image,
                         "emotion": emotion, "predicted": emotion if correct else "angry"})
    frame = pd.DataFrame(rows)
    frame["correct"] = (frame["emotion"] == frame["predicted"]).astype(float)
    return frame


def test_accuracy_test_states_units_and_finds_a_difference():
    a = _predictions("A", [0.9, 0.95, 0.9, 0.85, 0.9])
    b = _predictions("B", [0.5, 0.55, 0.5, 0.45, 0.5])
    result = accuracy.accuracy_test(a, b, QUICK)
    assert result["diff"] == pytest.approx(0.4)
    assert result["p_value"] == pytest.approx(2 / 252)
    assert result["ci_low"] < 0.4 < result["ci_high"] and result["ci_low"] > 0.25
    assert "trials" in result["p_unit"] and "trials" in result["ci_unit"]
    # the trials' interval inverts the test: its ends are where the shifted trials' p crosses 5%
    trials_a, trials_b = (accuracy.trial_metrics(p)["accuracy"].to_numpy() for p in (a, b))
    for end, inside in ((result["ci_low"], 1e-6), (result["ci_high"], -1e-6)):
        assert stats.permutation_test(trials_a - end - inside, trials_b).p_value > 0.05
        assert stats.permutation_test(trials_a - end + inside, trials_b).p_value <= 0.05
    assert result["measured_ci_low"] < 0.4 < result["measured_ci_high"]
    assert "test images" in result["measured_ci_unit"]  # no subjects in these rows
    same = accuracy.accuracy_test(a, a.assign(train_culture="B", test_culture="B"), QUICK)
    assert same["p_value"] == pytest.approx(1.0) and same["ci_low"] <= 0 <= same["ci_high"]
    assert result["smallest_p"] == pytest.approx(2 / 252)  # reached: the cultures' trials do not overlap


def test_measured_interval_redraws_people_with_all_of_their_images():
    """Images of one person are right or wrong together: redrawing people must see 4 units a trial, not 20."""
    rng = np.random.default_rng(3)

    def clustered(culture: str, accuracy_of_people: float) -> pd.DataFrame:
        frames = []
        for trial in range(5):
            frame = _predictions(culture, [1.0], n=20).assign(trial=trial)
            frame["subject"] = [f"{trial}-{image // 5}" for image in frame["image"]]
            person_right = rng.random(4) < accuracy_of_people
            frame["correct"] = person_right[frame["image"] // 5].astype(float)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    a, b = clustered("A", 0.6), clustered("B", 0.4)
    by_people = accuracy.accuracy_test(a, b, QUICK)
    by_images = accuracy.accuracy_test(a.assign(subject=""), b.assign(subject=""), QUICK)
    assert "test people" in by_people["measured_ci_unit"] and "test images" in by_images["measured_ci_unit"]
    width = {name: r["measured_ci_high"] - r["measured_ci_low"] for name, r in (("people", by_people),
                                                                              ("images", by_images))}
    assert width["people"] > 1.5 * width["images"]  # 5 images a person: about sqrt(5) = 2.2x wider
    assert by_people["ci_low"] == by_images["ci_low"]  # the trials' interval does not depend on people


def test_measured_interval_draws_people_once_for_every_trial_that_tests_them():
    """A subject split tests a person in several trials: one draw of the culture's people serves every trial, so
    five trials of the very same people are no more precise than one (redrawing each trial's people apart made
    them look five times the evidence: a 95% interval covered 86% in simulation)."""
    one = _predictions("A", [1.0], n=40).assign(trial=0)
    one["subject"] = [f"p{image // 4}" for image in one["image"]]  # 10 people, 4 images each
    one["correct"] = (np.random.default_rng(5).random(10) < 0.6)[one["image"] // 4].astype(float)
    five = pd.concat([one.assign(trial=t) for t in range(5)], ignore_index=True)
    spread = {len(set(f["trial"])): accuracy._measured_metric(f, "accuracy", True, 2000, np.random.default_rng(1)
                                                               ).std() for f in (one, five)}
    assert spread[5] == pytest.approx(spread[1], rel=0.1)  # apart, it would be about spread[1] / sqrt(5)
    assert "one draw for every trial" in accuracy.accuracy_test(five, one.assign(train_culture="B",
                                                                                 test_culture="B"), QUICK)[
        "measured_ci_unit"]


def test_floor_note_warns_where_several_tests_sit_at_the_least_p_the_trials_allow():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    a[:, :3] += 10 * np.array([1.0, 2.0, 4.0])  # three features with the trials perfectly apart, one overlapping
    test = stats.permutation_test(a, b, statistic="welch_t")
    smallest = stats.smallest_p(5, 5)
    assert test.p_value[:3] == pytest.approx([smallest] * 3) and test.p_value[3] > 0.05
    passed = int((test.p_fwer[:3] < 0.05).sum())
    note, = comparison.floor_note(test.p_value, test.p_fwer, smallest)
    assert note.startswith(f"3 of the 4 region tests sit at the smallest p the trials allow (0.0079: the cultures' "
                           f"trials perfectly apart), and {passed} of them pass the correction")
    assert comparison.floor_note(test.p_value[2:], test.p_fwer[2:], smallest) == []  # one alone: nothing to tell apart
    assert comparison.floor_note([1 / 3, 1 / 3], [1 / 3, 1 / 3], 1 / 3) == []  # 2 vs 2: the too-few note says it
    assert "2 of the 3 proximity tests" in comparison.floor_note([smallest, smallest, None], [0.01, 0.2, None],
                                                                  smallest, "proximity tests")[0]


@pytest.mark.parametrize("accuracies_a, accuracies_b, smallest", [
    ([0.9, 0.95], [0.5, 0.55], 2 / 6),  # 2 vs 2: however far apart, p = 1/3
    ([0.9, 0.95, 0.9, 0.85], [0.5, 0.55, 0.5, 0.45], 2 / 70),
    ([0.9, 0.95, 0.9], [0.5, 0.55, 0.5, 0.45, 0.5], 1 / 56),  # unequal groups: no mirror split as extreme
])
def test_smallest_p_is_what_the_permutation_test_gives_groups_far_apart(accuracies_a, accuracies_b, smallest):
    result = accuracy.accuracy_test(_predictions("A", accuracies_a), _predictions("B", accuracies_b), QUICK)
    assert result["p_value"] == pytest.approx(smallest) and result["smallest_p"] == pytest.approx(smallest)
    notes = comparison.too_few_trials(len(accuracies_a), len(accuracies_b), QUICK)
    unequal = len(accuracies_a) != len(accuracies_b)
    assert bool(notes) == (smallest >= 0.05 or unequal)
    assert any(n.startswith("unequal trials (3 and 5)") for n in notes) == unequal  # they reject too often
    # a test that cannot reject at 5% rejects no shift: the trials' interval is unbounded, and 0 lies outside it
    # exactly when p <= 0.05
    assert np.isinf([result["ci_low"], result["ci_high"]]).all() == (smallest >= 0.05)
    assert (result["ci_low"] > 0) == (result["p_value"] <= 0.05)
    if smallest >= 0.05:
        assert notes[0].startswith("too few trials: with 2 and 2 trials") and "below 0.33" in notes[0]


def _runs(accuracies: dict[str, list[float]]) -> pd.DataFrame:
    """One row per training run, as the report reads them: culture, trial, test_accuracy."""
    return pd.DataFrame([{"culture": c, "trial": t, "test_accuracy": v}
                         for c, values in accuracies.items() for t, v in enumerate(values)])


def test_gap_change_pairs_trials_and_finds_a_gap_that_widened():
    scratch = {"A": [0.70, 0.75, 0.80, 0.72, 0.78], "B": [0.50, 0.55, 0.45, 0.52, 0.48]}
    lift_a, lift_b = [0.09, 0.10, 0.11, 0.10, 0.10], [0.00, 0.01, -0.01, 0.00, 0.00]
    pretrained = {"A": list(np.add(scratch["A"], lift_a)), "B": list(np.add(scratch["B"], lift_b))}
    result = accuracy.gap_change(_runs(pretrained), _runs(scratch), "A", "B")
    assert result["gap_second"] == pytest.approx(0.25) and result["gap_first"] == pytest.approx(0.35)
    assert result["change"] == pytest.approx(0.10)
    assert result["p_value"] == pytest.approx(2 / 252)  # every A change above every B change: the two extreme splits
    assert result["effect_size"] > 5 and "exact over 252 splits" in result["p_unit"]
    # the same lift for both cultures: no change of the gap, nothing found
    alike = {"A": list(np.add(scratch["A"], lift_a)), "B": list(np.add(scratch["B"], lift_a))}
    same = accuracy.gap_change(_runs(alike), _runs(scratch), "A", "B")
    assert same["change"] == pytest.approx(0.0, abs=1e-12) and same["p_value"] == pytest.approx(1.0)


def test_gap_change_uses_only_the_trials_both_experiments_ran():
    first = _runs({"A": [0.9, 0.8, 0.7], "B": [0.5, 0.6, 0.4]})
    second = _runs({"A": [0.6, 0.7], "B": [0.5, 0.5]})  # no trial 2 here: it is left out of both
    result = accuracy.gap_change(first, second, "A", "B")
    assert result["gap_first"] == pytest.approx(0.85 - 0.55) and result["gap_second"] == pytest.approx(0.65 - 0.5)
    assert "2 vs 2" in result["p_unit"]
    with pytest.raises(cultures.ComparisonError, match="B: 1 trial"):
        accuracy.gap_change(first, second[(second["culture"] == "A") | (second["trial"] == 0)], "A", "B")


def test_person_accuracy_pools_a_persons_images_over_the_trials_that_tested_them():
    frame = _predictions("A", [0.5, 0.75], n=4)  # trial 0: images 0-1 right; trial 1: images 0-2 right
    frame["subject"] = np.where(frame["image"] < 2, "p1", "p2")
    other = frame.assign(test_culture="B")  # another culture's images: not this culture's people
    people = accuracy.person_accuracy(pd.concat([frame, other], ignore_index=True))
    assert people.to_dict(orient="records") == [
        {"culture": "A", "subject": "p1", "images": 4, "trials": 2, "accuracy": 1.0},
        {"culture": "A", "subject": "p2", "images": 4, "trials": 2, "accuracy": 0.25}]
    assert accuracy.person_accuracy(frame.assign(subject="")).empty  # people unknown: no rows


def test_balanced_accuracy_redraws_images_within_their_class():
    frame = _predictions("A", [0.7, 0.6])
    tested = accuracy.accuracy_test(frame, frame.assign(train_culture="B"), QUICK, metric="balanced_accuracy")
    assert tested["culture_a"] == pytest.approx(accuracy.trial_metrics(frame)["balanced_accuracy"].mean())
    # every happy image right, every sad one wrong: redrawn within their class, the balanced accuracy stays 0.5
    half = frame.assign(correct=(frame["emotion"] == "happy").astype(float))
    tested = accuracy.accuracy_test(half, frame.assign(correct=1.0), QUICK, metric="balanced_accuracy")
    assert tested["measured_ci_low"] == tested["measured_ci_high"] == pytest.approx(-0.5)


def test_matched_training_equalises_per_class_counts():
    big = make_synthetic("universal", n_per_class=24, seed=1, size=16, classes=("happy", "sad"), culture="big")
    small = make_synthetic("universal", n_per_class=8, seed=2, size=16, classes=("happy", "sad"), culture="small")
    splits = [[make_split(d, "random", seed=0, trial=t) for t in range(2)] for d in (big, small)]
    chosen = cultures.matched_training((big, small), splits, seed=0)
    for trial in range(2):
        counts = [np.bincount(d.labels[c[trial]]) for d, c in zip((big, small), chosen)]
        np.testing.assert_array_equal(counts[0], counts[1])
        assert counts[0].min() == counts[0].max()
        assert set(chosen[0][trial]) <= set(splits[0][trial].train)


class _FixedFeatures:
    """A stand-in model whose last-conv features are given (for filter_regions)."""

    variables = None

    def __init__(self, features: np.ndarray) -> None:
        self.features = features

    def module(self):
        return self

    def apply(self, variables, images, method):
        assert method == "conv_features"
        return self.features[:len(images)]


def test_a_filter_gets_its_region_from_where_it_fires_not_from_where_it_is_silent():
    activations = np.zeros((2, 2, 2, 2), np.float32)  # 2 images, 2x2 positions, 2 filters
    activations[0, 0, 0, 0], activations[1, 0, 0, 0] = 3.0, 2.0  # filter 0 fires only in the top-left cell
    masks = np.zeros((2, 2, 8, 8), bool)
    masks[:, 0, :4, :4] = True  # region 0: the top-left quadrant
    masks[:, 1] = ~masks[:, 0]  # region 1: the rest
    found = features.filter_regions(_FixedFeatures(activations), np.zeros((2, 8, 8), np.uint8), masks, top_k=8)
    assert found.tolist() == [0, -1]  # its 6 silent positions (all in the rest) do not vote; filter 1 is dead
    with pytest.raises(cultures.ComparisonError, match="filter_top_k must be at least 1"):
        cultures.CompareConfig(filter_top_k=0)


def test_landmark_distance_counts_only_salient_pixels():
    landmarks = np.array([[[10.0, 20.0], [30.0, 30.0]]] * 2)
    maps = np.zeros((2, 48, 48))
    maps[0, 20, 10] = 1.0  # one salient pixel, on the first landmark (row y = 20, column x = 10)
    distance = features.landmark_distance(maps, landmarks, top_fraction=0.05)
    assert distance[0] == 0.0 and np.isnan(distance[1])


def _confusing(culture: str, afraid_as_surprised: list[float], n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Predictions on afraid, surprised and sad faces: per trial, a share of the afraid faces taken for surprised, a
    tenth of every emotion's faces taken for one other at random, the rest right."""
    rng = np.random.default_rng(seed)
    emotions = ("afraid", "surprised", "sad")
    rows = []
    for trial, share in enumerate(afraid_as_surprised):
        for image in range(3 * n):
            emotion = emotions[image % 3]
            predicted = emotion
            if emotion == "afraid" and image // 3 < round(share * n):
                predicted = "surprised"
            elif rng.random() < 0.1:
                predicted = rng.choice([e for e in emotions if e != emotion])
            rows.append({"train_culture": culture, "test_culture": culture, "trial": trial, "image": image,
                         "emotion": emotion, "predicted": predicted})
    frame = pd.DataFrame(rows)
    frame["correct"] = (frame["emotion"] == frame["predicted"]).astype(float)
    return frame


def test_confusion_tests_find_the_confusion_one_culture_makes_more():
    classes = ("afraid", "surprised", "sad")
    a = _confusing("A", [0.40, 0.45, 0.35, 0.40, 0.50], seed=1)
    b = _confusing("B", [0.05, 0.00, 0.10, 0.05, 0.05], seed=2)
    rates = accuracy.confusion_rates(a, classes)
    assert rates.shape == (5, 3, 3)
    np.testing.assert_allclose(rates.sum(axis=2), 1.0)  # each row: every image of the emotion, one label each
    assert 0.40 <= rates[0, 0, 1] <= 0.40 + 0.6 * 0.15  # the planted 40%, plus some random confusions
    table = accuracy.confusion_tests(a, b, classes, QUICK).set_index(["true", "predicted"])
    assert len(table) == 6 and set(table["unit"]) == {"trials"}  # every off-diagonal pair, confused at random
    planted = table.loc[("afraid", "surprised")]
    assert planted["rate_a"] == pytest.approx(rates[:, 0, 1].mean()) and planted["diff"] > 0.3
    assert planted["p_adjusted"] < 0.05  # 5 vs 5 trials: exact, maxT over the 6 pairs
    others = table.drop(index=("afraid", "surprised"))
    assert (others["p_adjusted"] > 0.05).all()  # the random confusions do not differ
    assert (table["p_adjusted"] >= table["p_value"] - 1e-12).all()
    never = accuracy.confusion_tests(a.assign(predicted=a["emotion"]), b.assign(predicted=b["emotion"]), classes,
                                     QUICK)
    assert never.empty and "p_adjusted" in never.columns  # no model confused anything: nothing to test


def test_an_emotion_some_trial_has_no_test_image_of_is_left_untested_not_read_as_no_error():
    """A trial without test images of an emotion has no rate for it: reading 0 there made a culture that simply
    lacked sad test images look as if its models never took sad faces for anything (p = 0.008 for no difference)."""
    classes = ("afraid", "surprised", "sad")
    a = _confusing("A", [0.40, 0.45, 0.35, 0.40, 0.50], seed=1)
    b = _confusing("B", [0.40, 0.45, 0.35, 0.40, 0.50], seed=2)
    a = a[(a["emotion"] != "sad") | (a["trial"] != 2)]  # trial 2 of A has no sad test image
    rates = accuracy.confusion_rates(a, classes)
    assert np.isnan(rates[2, 2]).all() and not np.isnan(np.delete(rates, 2, axis=0)).any()
    table = accuracy.confusion_tests(a, b, classes, QUICK).set_index(["true", "predicted"])
    sad = table.loc["sad"]
    assert (sad["unit"] == accuracy.UNTESTED).all() and sad["p_value"].isna().all() and sad["p_adjusted"].isna().all()
    kept = [t for t in range(5) if t != 2]
    assert sad.loc["afraid", "rate_a"] == pytest.approx(rates[kept, 2, 0].mean())  # over the trials that have it
    others = table[table.index.get_level_values("true") != "sad"]
    assert (others["unit"] == "trials").all() and others["p_value"].notna().all()
    errors = pd.concat([accuracy.class_errors(p) for p in (a, b)], ignore_index=True)
    by_class = accuracy.class_error_tests(errors, "A", "B", QUICK).set_index("emotion")
    assert list(by_class.index) == ["afraid", "surprised", "sad"]  # sad listed, as untested
    assert by_class.loc["sad", "unit"] == accuracy.UNTESTED and np.isnan(by_class.loc["sad", "p_value"])
    assert by_class.loc["sad", "error_a"] == pytest.approx(1 - a[a["emotion"] == "sad"].groupby("trial")[
        "correct"].mean().mean())
    assert by_class.drop(index="sad")["p_value"].notna().all()


def test_class_error_tests_list_emotions_in_the_vocabularys_order_with_the_numbers_of_any_order():
    """As the confusion matrices and the region tests (notebook 05 shows them together), not alphabetically; the
    columns' order changes no p-value (one permutation of the trials serves every column)."""
    rng = np.random.default_rng(4)
    emotions = ["neutral", "angry", "sad", "afraid"]
    errors = pd.DataFrame([{"culture": culture, "trial": trial, "emotion": emotion,
                            "error": rng.uniform(0.1, 0.5) + (0.2 if culture == "A" and emotion == "sad" else 0)}
                           for culture in ("A", "B") for trial in range(4) for emotion in emotions])
    table = accuracy.class_error_tests(errors, "A", "B", QUICK)
    assert list(table["emotion"]) == ["angry", "afraid", "sad", "neutral"]
    alphabetical = sorted(emotions)
    a, b = (errors[errors["culture"] == c].pivot_table(index="trial", columns="emotion", values="error")
            [alphabetical].to_numpy() for c in ("A", "B"))
    test = stats.permutation_test(a, b, statistic="welch_t", n_permutations=QUICK.n_permutations, seed=QUICK.seed)
    by_emotion = table.set_index("emotion").loc[alphabetical]
    np.testing.assert_array_equal(by_emotion["p_value"], test.p_value)
    np.testing.assert_array_equal(by_emotion["p_adjusted"], test.p_fwer)
    np.testing.assert_array_equal(by_emotion["diff"], a.mean(axis=0) - b.mean(axis=0))


def test_too_few_test_people_give_no_interval_over_people():
    """A subject split of synthetic data may test one person a trial: redrawing 3 people says nothing (the
    interval collapsed to the estimate), so none is given."""
    def one_person_a_trial(culture: str, accuracies: list[float]) -> pd.DataFrame:
        frame = _predictions(culture, accuracies, n=20)
        return frame.assign(subject=[f"{culture}{t % 3}" for t in frame["trial"]])

    result = accuracy.accuracy_test(one_person_a_trial("A", [0.8, 0.7, 0.9]), one_person_a_trial("B", [0.5] * 3),
                                    QUICK)
    assert np.isnan(result["measured_ci_low"]) and np.isnan(result["measured_ci_high"])
    assert result["measured_ci_unit"] == "not measured: 3 test people, too few to redraw"
    from emofx.pipeline.report_text import _interval
    assert _interval(result).endswith("; no interval over test people with these models fixed (not measured: 3 "
                                      "test people, too few to redraw)")
    assert "over trials" in _interval(result)


def test_class_error_tests_compare_cultures_of_unequal_numbers_of_trials():
    """Trials are numbered within each culture: 5 against 3 (after exclude_chance, say) tests every emotion, as
    5 against 5 does, instead of reading the smaller culture's missing trial numbers as missing emotions."""
    a = _confusing("A", [0.40, 0.45, 0.35, 0.40, 0.50], seed=1)
    b = _confusing("B", [0.05, 0.00, 0.10], seed=2)
    errors = pd.concat([accuracy.class_errors(p) for p in (a, b)], ignore_index=True)
    table = accuracy.class_error_tests(errors, "A", "B", QUICK).set_index("emotion")
    assert (table["unit"] == "trials").all() and table["p_value"].notna().all()
    assert table.loc["afraid", "error_a"] == pytest.approx(1 - a[a["emotion"] == "afraid"].groupby("trial")[
        "correct"].mean().mean())


def test_a_filter_firing_below_the_centre_line_votes_for_the_region_below():
    """Rows and columns of the feature grid map to image rows and columns: a filter firing in the bottom-left cell
    (row 1, column 0) is centred at pixel (row 6, column 2) of an 8x8 image, in the bottom-left quadrant."""
    activations = np.zeros((1, 2, 2, 1), np.float32)
    activations[0, 1, 0, 0] = 5.0
    masks = np.zeros((1, 2, 8, 8), bool)
    masks[:, 0, 4:, :4] = True  # region 0: the bottom-left quadrant
    masks[:, 1] = ~masks[:, 0]
    found = features.filter_regions(_FixedFeatures(activations), np.zeros((1, 8, 8), np.uint8), masks, top_k=1)
    assert found.tolist() == [0]


def test_filter_shares_count_live_filters_only():
    # A: 2 of its 3 live filters on the eyes, 1 on the mouth (a dead one left out); B: 1 eyes, 3 mouth
    regions = {("A", 0): ["eyes", "eyes", "dead", "mouth"], ("A", 1): ["eyes", "eyes", "mouth", "dead"],
               ("B", 0): ["eyes", "mouth", "mouth", "mouth"], ("B", 1): ["eyes", "mouth", "mouth", "mouth"]}
    filters = pd.DataFrame([{"culture": c, "trial": t, "filter": f, "region": r}
                            for (c, t), names in regions.items() for f, r in enumerate(names)])
    result = features.filter_test(filters, "A", "B", ["eyes", "mouth"], QUICK)
    assert result["share_a"] == pytest.approx({"eyes": 2 / 3, "mouth": 1 / 3})
    assert result["share_b"] == pytest.approx({"eyes": 0.25, "mouth": 0.75})
    assert result["total_variation"] == pytest.approx(2 / 3 - 0.25)  # 0.5 * (|2/3 - 1/4| + |1/3 - 3/4|)
    assert result["unit"] == "models (trials)"


def test_trial_metrics_balanced_accuracy_is_the_mean_of_the_per_class_accuracies():
    # 6 happy faces all right, 2 sad ones half right: accuracy 7/8, balanced accuracy (1 + 1/2) / 2 = 3/4
    frame = pd.DataFrame({"train_culture": "A", "test_culture": "A", "trial": 0, "image": range(8),
                          "emotion": ["happy"] * 6 + ["sad"] * 2, "predicted": ["happy"] * 7 + ["sad"]})
    frame["correct"] = (frame["emotion"] == frame["predicted"]).astype(float)
    row = accuracy.trial_metrics(frame).iloc[0]
    assert (row["accuracy"], row["balanced_accuracy"], row["n_images"]) == pytest.approx((7 / 8, 0.75, 8))
    # from class totals: a class without images (a resample that drew none) is left out, not scored 0
    right, images = np.array([[3.0, 0.0, 1.0]]), np.array([[4.0, 0.0, 2.0]])
    assert accuracy._trial_metric(right, images, "balanced_accuracy") == pytest.approx([(0.75 + 0.5) / 2])
    assert accuracy._trial_metric(right, images, "accuracy") == pytest.approx([4 / 6])


def test_class_errors_count_only_the_cultures_own_test_images():
    own = _predictions("A", [0.75], n=4)  # images 0-2 right: happy (1, 3) half wrong, sad (0, 2) right
    transfer = own.assign(test_culture="B", predicted="angry", correct=0.0)  # on another culture: all wrong
    errors = accuracy.class_errors(pd.concat([own, transfer], ignore_index=True))
    assert errors.to_dict(orient="records") == [{"culture": "A", "trial": 0, "emotion": "happy", "error": 0.5},
                                                {"culture": "A", "trial": 0, "emotion": "sad", "error": 0.0}]


def test_a_resample_that_draws_none_of_a_trials_people_leaves_that_trial_out():
    # every image right, two trials of two people each: whatever people are drawn, the mean accuracy is 1
    frame = pd.concat([_predictions("A", [1.0], n=8).assign(trial=t) for t in range(2)], ignore_index=True)
    frame["subject"] = [f"{trial}-{image // 4}" for trial, image in zip(frame["trial"], frame["image"])]
    resampled = accuracy._measured_metric(frame, "accuracy", True, 200, np.random.default_rng(0))
    np.testing.assert_array_equal(resampled, 1.0)  # about 1 in 16 draws misses a trial's people


class _FixedPenultimate(_FixedFeatures):
    """A stand-in model whose penultimate activations on the probe images are given (for cka_table)."""

    def apply(self, variables, images, method):
        assert method == "penultimate"
        return self.features[:len(images)]


def test_cka_pairs_are_named_between_or_within_the_culture_they_come_from():
    from types import SimpleNamespace

    data = make_synthetic("universal", n_per_class=2, seed=0, size=16, classes=("happy", "sad"))  # 4 probes each
    x, y = np.random.default_rng(4).normal(size=(2, 8, 5))
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(5, 5)))
    a = SimpleNamespace(name="A", dataset=data, models=[_FixedPenultimate(x), _FixedPenultimate(3 * x)])
    b = SimpleNamespace(name="B", dataset=data, models=[_FixedPenultimate(y), _FixedPenultimate(y @ q + 1)])
    table = features.cka_table(a, b, QUICK)
    kinds = {(r.culture_1, r.trial_1, r.culture_2, r.trial_2): r.kind for r in table.itertuples()}
    assert kinds == {("A", 0, "A", 1): "within_a", ("B", 0, "B", 1): "within_b", **{
        ("A", i, "B", j): "between" for i in (0, 1) for j in (0, 1)}}
    np.testing.assert_allclose(table.loc[table["kind"] != "between", "cka"], 1.0)  # scaled, rotated, shifted copies
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    by_hand = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    # float64 end to end (the stand-in models return float64 NumPy activations, stats.linear_cka works in float64;
    # no float32 or JAX on the path), so 1e-9 holds on any CPU or GPU
    np.testing.assert_allclose(table.loc[table["kind"] == "between", "cka"], by_hand, rtol=1e-9)


def test_independent_splits_deal_the_people_from_the_seed():
    dataset = make_synthetic("universal", n_per_class=15, seed=2, size=24, images_per_subject_class=1)
    people = {seed: [frozenset(dataset.subject[np.concatenate([s.train, s.val, s.test])]) for s in
                     cultures.culture_splits(dataset, 3, "independent", seed=seed, fractions=(0.6, 0.2, 0.2))]
              for seed in (0, 1)}
    assert set(people[0]) != set(people[1])  # another seed deals other groups of people


def test_matched_splits_of_the_culture_with_the_fewest_people_differ_from_trial_to_trial():
    """The culture with the fewest people keeps all of them in every trial; its trials must still split them
    differently (by the trial number), or every trial would test the same person."""
    many = make_synthetic("eyes", n_per_class=20, seed=0, images_per_subject_class=2)  # 10 people
    few = make_synthetic("mouth", n_per_class=12, seed=0, images_per_subject_class=2)  # 6 people
    tested = {frozenset(few.subject[cultures.matched_splits([many, few], "subject", seed=0, trial=t)[1].test])
              for t in range(4)}
    assert len(tested) > 1


def test_accuracy_table_reads_as_a_table_of_rounded_numbers():
    """Notebook 05 showed H1's record raw: a dict of 16-digit floats, twice."""
    record = {"metric": "accuracy", "culture_a": 0.7571428571428571, "diff": -0.07857142857142851, "p_value": 0.5428,
              "ci_unit": "trials (4 vs 4; exact over 70 splits)", "measured_ci_low": np.nan, "n": 4}
    result = comparison.Comparison("eyes", "mouth", QUICK, {}, {"accuracy": record})
    table = result.accuracy_table()
    assert list(table.columns) == ["eyes vs mouth"] and list(table.index) == list(record)
    column = table["eyes vs mouth"]
    assert column["culture_a"] == 0.757 and column["diff"] == -0.079 and column["n"] == 4
    assert column["ci_unit"] == record["ci_unit"] and np.isnan(column["measured_ci_low"])
    assert result.accuracy["culture_a"] == 0.7571428571428571  # the record itself keeps every digit
