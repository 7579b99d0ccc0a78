"""Splits: subjects kept apart, stratification, reproducibility, k-fold, predefined parts, errors."""

from __future__ import annotations

import json

from dataclasses import replace

import numpy as np
import pytest

from emofx.data.dataset import FaceDataset
from emofx.data.splits import (Split, SplitError, balanced_subsample, count_test_copies, examples_per_class,
                               make_split)
from emofx.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def faces():
    """7 classes x 60 images, 12 subjects posing every class 5 times."""
    return make_synthetic("universal", n_per_class=60, seed=0, size=16)


def _labels_only(labels, subjects=None, split=None):
    n = len(labels)
    return FaceDataset.from_label_names(np.zeros((n, 4, 4), np.uint8), labels, subject=subjects, split=split)


def _assert_partition(split, n):
    everything = np.concatenate([split.train, split.val, split.test])
    assert len(everything) == n and len(np.unique(everything)) == n


def test_random_split_is_stratified_80_10_10(faces):
    split = make_split(faces, "random", seed=1, trial=0)
    _assert_partition(split, len(faces))
    for part, expected in (("train", 48), ("val", 6), ("test", 6)):
        counts = np.bincount(faces.labels[getattr(split, part)], minlength=7)
        assert np.array_equal(counts, np.full(7, expected)), part
    assert split.kind == "random" and not split.grouped


def test_reproducible_from_seed_and_trials_differ(faces):
    a = make_split(faces, "random", seed=4, trial=2)
    b = make_split(faces, "random", seed=4, trial=2)
    assert all(np.array_equal(a.parts()[p], b.parts()[p]) for p in a.parts())
    c = make_split(faces, "random", seed=4, trial=3)
    assert not np.array_equal(a.test, c.test)
    assert not np.array_equal(a.test, make_split(faces, "random", seed=5, trial=2).test)


def test_auto_is_subject_split_and_keeps_subjects_apart(faces):
    split = make_split(faces, seed=0)
    assert split.kind == "subject" and split.grouped
    _assert_partition(split, len(faces))
    owners = [set(faces.subject[idx]) for idx in (split.train, split.val, split.test)]
    assert not (owners[0] & owners[1]) and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    # 12 subjects of 35 images: closest to 80/10/10 is 10/1/1 subjects.
    assert [len(o) for o in owners] == [10, 1, 1]
    # Every subject poses every class equally, so the parts are exactly balanced.
    assert len(set(np.bincount(faces.labels[split.test], minlength=7))) == 1
    other_trials = {tuple(sorted(set(faces.subject[make_split(faces, seed=0, trial=t).test]))) for t in range(5)}
    assert len(other_trials) > 1


def test_subject_split_stratifies_unbalanced_subjects():
    """Subjects that pose different classes: the greedy allocation still puts every class in every part."""
    rng = np.random.default_rng(0)
    labels, subjects = [], []
    for s in range(30):
        for emotion in rng.choice(["happy", "sad", "angry"], size=rng.integers(2, 4), replace=False):
            labels += [emotion] * 3
            subjects += [f"p{s}"] * 3
    ds = _labels_only(labels, subjects)
    for trial in range(5):
        split = make_split(ds, "subject", trial=trial)
        for part in split.parts().values():
            assert np.all(np.bincount(ds.labels[part], minlength=3) > 0)
        assert not set(ds.subject[split.train]) & set(ds.subject[split.test])
        assert 0.65 < len(split.train) / len(ds) < 0.9


def test_kfold_folds_partition_the_data_and_are_grouped(faces):
    splits = [make_split(faces, "kfold", seed=2, trial=k, n_folds=4) for k in range(4)]
    tests = np.concatenate([s.test for s in splits])
    assert np.array_equal(np.sort(tests), np.arange(len(faces)))  # every image tested exactly once
    for s in splits:
        _assert_partition(s, len(faces))
        assert s.grouped and s.n_folds == 4 and s.fold == s.trial
        assert not set(faces.subject[s.test]) & (set(faces.subject[s.train]) | set(faces.subject[s.val]))
        assert not set(faces.subject[s.train]) & set(faces.subject[s.val])
    with pytest.raises(SplitError, match="test fold"):
        make_split(faces, "kfold", trial=4, n_folds=4)


def test_kfold_without_subjects_stratifies_images():
    ds = _labels_only(["happy"] * 40 + ["sad"] * 20)
    split = make_split(ds, "kfold", trial=1, n_folds=4)
    assert not split.grouped
    assert np.array_equal(np.bincount(ds.labels[split.test]), [10, 5])


def test_predefined_fer2013_names_and_carved_validation():
    labels = ["happy", "sad"] * 30
    usage = ["Training"] * 40 + ["PublicTest"] * 10 + ["PrivateTest"] * 10
    split = make_split(_labels_only(labels, split=usage), "predefined")
    assert (len(split.train), len(split.val), len(split.test)) == (40, 10, 10)
    assert np.array_equal(split.val, np.arange(40, 50))
    # Generic train/test only: validation carved from training, 1/9 of each class (80:10):
    # 23 happy -> 3 (2.56 rounded), 22 sad -> 2 (2.44).
    ds = _labels_only(labels, split=["train"] * 45 + ["test"] * 15)
    split = make_split(ds, "predefined", seed=3)
    assert len(split.test) == 15 and len(split.train) == 40
    assert np.array_equal(np.bincount(ds.labels[split.val]), [3, 2])
    assert set(split.val) | set(split.train) == set(range(45))


def test_round_trip_through_json(faces):
    split = make_split(faces, "kfold", seed=1, trial=2)
    again = Split.from_dict(json.loads(json.dumps(split.to_dict())))
    assert again.to_dict() == split.to_dict()
    parts = again.datasets(faces)
    assert len(parts["train"]) == len(split.train) and parts["test"].classes == faces.classes


def test_empty_class_in_a_part_is_an_error_naming_class_and_part():
    ds = _labels_only(["happy"] * 20 + ["sad"] * 20, split=["train"] * 30 + ["test"] * 10)
    # The test part holds only sad faces.
    with pytest.raises(SplitError, match=r"'happy' has 0 images in the test part"):
        make_split(ds, "predefined")
    # A class with too few images for three parts.
    with pytest.raises(SplitError, match=r"'sad'.*(val|test) part"):
        make_split(_labels_only(["happy"] * 20 + ["sad"] * 2), "random")
    # One subject holds all afraid faces: it cannot be in train, val and test at once.
    subjects = [f"s{i % 10}" for i in range(50)] + ["lonely"] * 5
    with pytest.raises(SplitError, match="afraid"):
        make_split(_labels_only(["happy"] * 50 + ["afraid"] * 5, subjects), "subject")


def test_many_empty_classes_are_summed_up_after_three():
    """Two people for seven classes: 14 class-part pairs empty, three named and the rest counted (one line to read)."""
    faces = make_synthetic("eyes", n_per_class=6, seed=0)
    with pytest.raises(SplitError) as error:
        make_split(faces, "subject")
    message = str(error.value)
    assert message.count(" images in the ") == 3 and " and 4 more (2 people are too few" in message


def test_a_negative_seed_is_named():
    ds = _labels_only(["happy"] * 20 + ["sad"] * 20)
    with pytest.raises(SplitError, match="seed and trial of a split must be >= 0; got seed -1"):
        make_split(ds, "kfold", seed=-1)
    with pytest.raises(SplitError, match="seed of a subsample must be >= 0"):
        balanced_subsample(ds, np.arange(len(ds)), 2, seed=-3)


def test_fewer_than_two_training_images_is_an_error():
    ds = _labels_only(["happy"] * 10 + ["sad"] * 3)
    with pytest.raises(SplitError, match=r"'sad' has 1 images in the train part \(needs >= 2\)"):
        make_split(ds, "random")


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "stratified"}, "unknown split kind"),
    ({"kind": "random", "fractions": (0.5, 0.1, 0.1)}, "fractions"),
    ({"kind": "random", "trial": -1}, "trial"),
    ({"kind": "predefined"}, "split name"),
])
def test_bad_requests(faces, kwargs, message):
    with pytest.raises(SplitError, match=message):
        make_split(faces, **kwargs)


def test_subject_kind_needs_subjects():
    with pytest.raises(SplitError, match="subject id"):
        make_split(_labels_only(["happy", "sad"] * 10), "subject")


def test_balanced_subsample(faces):
    split = make_split(faces, "random")
    small = balanced_subsample(faces, split.train, 10, seed=0)
    assert set(small) <= set(split.train)
    assert np.array_equal(np.bincount(faces.labels[small], minlength=7), np.full(7, 10))
    assert np.array_equal(small, balanced_subsample(faces, split.train, 10, seed=0))
    picked = balanced_subsample(faces, split.train, {"happy": 5, "sad": 7}, seed=1)
    assert sorted(faces.label_names[picked].tolist()) == ["happy"] * 5 + ["sad"] * 7
    with pytest.raises(SplitError, match=r"happy \(asked 100, has 48\)"):
        balanced_subsample(faces, split.train, {"happy": 100}, seed=0)
    with pytest.raises(SplitError, match="glee"):
        balanced_subsample(faces, split.train, {"glee": 1}, seed=0)


def test_examples_per_class_draws_up_to_the_count_of_each_class_in_its_order():
    labels = np.array([2, 0, 2, 2, 1, 2, 0, 2])
    picks = examples_per_class(labels, [2, 0, 3], per_class=3, seed=4)
    assert [len(p) for p in picks] == [3, 2, 0]  # class 0 has two, class 3 none: fewer, never an error
    assert set(picks[0]) <= {0, 2, 3, 5, 7} and list(picks[0]) == sorted(picks[0]) and set(picks[1]) == {1, 6}
    assert all(np.array_equal(a, b) for a, b in zip(picks, examples_per_class(labels, [2, 0, 3], 3, seed=4)))
    drawn = {tuple(examples_per_class(labels, [2], 3, seed)[0]) for seed in range(40)}
    assert len(drawn) > 5  # random, not the first three: C(5, 3) = 10 possible


def test_kdef_subject_split_keeps_actors_apart(shared_dataset):
    """The KDEF loader's subjects (sex and actor of AF01ANS.JPG: session, sex, actor, expression, angle)
    keep each actor in one part of a subject split."""
    from emofx.data.loaders.kdef import kdef_inputs

    inputs, _ = kdef_inputs(shared_dataset("kdef/frontal"))
    assert len(inputs.files) == 980
    ds = _labels_only(inputs.labels, subjects=inputs.subject)
    assert len(set(ds.subject)) == 70
    split = make_split(ds, seed=0)
    assert split.kind == "subject"
    parts = [set(ds.subject[idx]) for idx in split.parts().values()]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert [len(p) for p in parts] == [56, 7, 7]
    assert np.all(np.bincount(ds.labels[split.test], minlength=7) == 14)


def test_test_images_that_copy_a_training_image_are_counted():
    faces = make_synthetic("mouth", n_per_class=6, seed=0, size=16, classes=("happy", "sad"))
    split = Split(train=np.arange(0, 6), val=np.arange(6, 8), test=np.arange(8, 12), kind="random", seed=0, trial=0,
                  fractions=(0.5, 0.17, 0.33), n_images=12)
    assert count_test_copies(faces, split) == 0
    images = faces.images.copy()
    images[8], images[9] = images[0], images[7]  # a test image equal to a training one, another to a validation one
    copied = FaceDataset.from_label_names(images, faces.label_names)
    assert count_test_copies(copied, split) == 2


def test_a_predefined_split_without_test_images_says_so():
    dataset = _labels_only(np.tile(["happy", "sad"], 10), split=np.array(["Training"] * 16 + ["PublicTest"] * 4))
    with pytest.raises(SplitError, match=r"a predefined split needs test images, and the dataset's split column names "
                                         r"none \(it holds PublicTest \(4\), Training \(16\)\)"):
        make_split(dataset, "predefined")


def test_a_subject_split_of_too_few_people_says_how_many_and_what_to_change():
    faces = make_synthetic("eyes", n_per_class=10, seed=0, size=16)  # 5 images a person: 2 people
    with pytest.raises(SplitError, match=r"2 people are too few to keep each in one part; use more people "
                                         r"\(synthetic faces: n_per_class of at least 11"):
        make_split(faces, "subject", seed=0, trial=0)


def test_auto_refuses_a_random_split_of_images_of_which_only_some_name_their_person():
    """Three rows without a person in a collection of named people: at random, the named people's images would
    land in training and test; auto says so instead of quietly splitting at random."""
    faces = make_synthetic("eyes", n_per_class=12, seed=0)
    subject = faces.subject.copy()
    subject[[3, 10, 11]] = ""
    partly = replace(faces, subject=subject)
    with pytest.raises(SplitError, match=r"3 of 84 images have no subject id .*--split random"):
        make_split(partly, "auto")
    assert make_split(partly, "random").kind == "random"  # asked for: as asked
    assert make_split(replace(faces, subject=np.full(len(faces), "")), "auto").kind == "random"  # nobody named


def test_a_part_with_fraction_zero_stays_empty_and_the_others_get_largest_remainder_counts():
    """fractions (0.9, 0, 0.1): no validation image is asked for, so none is drawn (nor demanded per class); 20 images
    of a class split 18 / 0 / 2."""
    ds = _labels_only(["happy"] * 20 + ["sad"] * 20)
    split = make_split(ds, "random", seed=3, fractions=(0.9, 0.0, 0.1))
    assert len(split.val) == 0
    assert np.bincount(ds.labels[split.train]).tolist() == [18, 18]
    assert np.bincount(ds.labels[split.test]).tolist() == [2, 2]


def test_kfold_groups_by_subject_only_with_more_subjects_than_folds():
    """Four people for four folds would leave one person per test fold: image folds instead; five people: grouped."""
    for people, grouped in ((4, False), (5, True)):
        labels = ["happy", "sad"] * (6 * people)
        subjects = [f"p{i % people}" for i in range(len(labels))]
        split = make_split(_labels_only(labels, subjects), "kfold", seed=0, trial=0, n_folds=4)
        assert split.grouped is grouped, people


def test_auto_is_predefined_only_for_a_split_column_with_test_images_in_any_letter_case():
    labels = ["happy", "sad"] * 20
    fer = _labels_only(labels, split=["TRAINING"] * 30 + ["PublicTest"] * 4 + ["privatetest"] * 6)
    split = make_split(fer, "auto")
    assert split.kind == "predefined"
    assert (len(split.train), len(split.val), len(split.test)) == (30, 4, 6)
    no_test = _labels_only(labels, split=["train"] * 32 + ["val"] * 8)  # names parts, but none of them the test part
    assert make_split(no_test, "auto").kind == "random"


def test_a_split_index_equal_to_the_number_of_images_is_refused():
    with pytest.raises(SplitError, match=r"must lie in \[0, 3\); got 0..3"):
        Split(train=np.array([0, 3]), val=np.array([1]), test=np.array([2]), kind="random", seed=0, trial=0,
              fractions=(0.5, 0.25, 0.25), n_images=3)


def test_balanced_subsample_draws_distinct_images_from_its_seed_and_may_take_a_whole_class(faces):
    split = make_split(faces, "random")
    small = balanced_subsample(faces, split.train, 10, seed=0)
    assert len(np.unique(small)) == len(small) == 70  # without replacement: no image twice
    assert not np.array_equal(small, balanced_subsample(faces, split.train, 10, seed=1))  # the seed is used
    everything = balanced_subsample(faces, split.train, {"happy": 48}, seed=0)  # exactly as many as the part has
    happy = faces.classes.index("happy")
    assert np.array_equal(everything, np.sort(split.train[faces.labels[split.train] == happy]))
