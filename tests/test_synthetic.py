"""The synthetic face generator: determinism, labels and subjects, masks, and where each dialect's signal lives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emofx.data.synthetic import DIALECTS, REGIONS, SyntheticError, make_synthetic


@pytest.fixture(scope="module")
def universal():
    return make_synthetic("universal", n_per_class=20, seed=3)


def test_shapes_labels_and_meta(universal):
    ds = universal
    assert ds.images.shape == (140, 48, 48) and ds.images.dtype == np.uint8
    assert ds.classes == ("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")
    assert set(ds.counts().values()) == {20}
    assert ds.extras["region_masks"].shape == (140, 4, 48, 48) and ds.extras["region_masks"].dtype == bool
    assert ds.meta["region_names"] == list(REGIONS) == ["eyes", "brows", "nose", "mouth"]
    assert ds.meta["source"] == "synthetic" and ds.meta["dialect"] == "universal"
    assert set(ds.culture) == {"universal"}
    # The faces are not blank: real contrast, and the full uint8 range is not clipped away.
    assert ds.images.std() > 20 and 0 < ds.images.mean() < 255


def test_same_seed_same_bytes_and_seeds_or_cultures_differ():
    a = make_synthetic("eyes", n_per_class=6, seed=0)
    b = make_synthetic("eyes", n_per_class=6, seed=0)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.extras["region_masks"].tobytes() == b.extras["region_masks"].tobytes()
    assert not np.array_equal(a.images, make_synthetic("eyes", n_per_class=6, seed=1).images)
    other = make_synthetic("eyes", n_per_class=6, seed=0, culture="Elsewhere")
    assert set(other.culture) == {"Elsewhere"} and not np.array_equal(a.images, other.images)


def test_subjects_pose_every_class_several_times():
    ds = make_synthetic("mouth", n_per_class=12, seed=0, images_per_subject_class=4)
    subjects = np.unique(ds.subject)
    assert len(subjects) == 3 and all(s.startswith("mouth-s") for s in subjects)
    for s in subjects:
        assert np.array_equal(np.bincount(ds.labels[ds.subject == s], minlength=7), np.full(7, 4))


def test_masks_are_disjoint_non_empty_and_ordered_top_to_bottom(universal):
    masks = universal.extras["region_masks"]
    assert masks.sum(axis=1).max() == 1  # disjoint
    assert masks.any(axis=(2, 3)).all()  # every region present in every image
    rows = np.arange(48)[None, None, :, None]
    centre_row = (masks * rows).sum(axis=(2, 3)) / masks.sum(axis=(2, 3))
    brows, eyes, nose, mouth = (centre_row[:, REGIONS.index(r)] for r in ("brows", "eyes", "nose", "mouth"))
    assert np.all(brows < eyes) and np.all(eyes < nose) and np.all(nose < mouth)


def test_masks_cover_the_drawn_features():
    """Without pixel noise, every pixel that stands out from its surroundings in the feature zone lies in a mask."""
    ds = make_synthetic("universal", n_per_class=10, seed=5, noise=(0.0, 0.0))
    inked = in_mask = 0
    for image, masks in zip(ds.images, ds.extras["region_masks"]):
        background = cv2.medianBlur(image, 7).astype(int)
        ink = np.abs(image.astype(int) - background) > 25
        zone = np.zeros_like(ink)
        zone[8:44, 12:36] = True  # inside the head for every pose: excludes the head outline
        grown = cv2.dilate(masks.any(axis=0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        inked += int((ink & zone).sum())
        in_mask += int((ink & zone & grown).sum())
    assert inked > 500
    assert in_mask / inked > 0.98


def _mask_features(ds, regions):
    """Per-image shape descriptors of the given regions' masks: area, height, width, centre row."""
    masks = ds.extras["region_masks"]
    feats = []
    for r in regions:
        m = masks[:, REGIONS.index(r)]
        rows, cols = m.any(axis=2), m.any(axis=1)
        ys = np.arange(48)[None, :]
        centre = (m.sum(axis=2) * ys).sum(axis=1) / np.maximum(m.sum(axis=(1, 2)), 1)
        feats += [m.sum(axis=(1, 2)), rows.sum(axis=1), cols.sum(axis=1), centre]
    return np.stack(feats, axis=1).astype(float)


def _nearest_mean_accuracy(train, test, regions):
    """Accuracy of a nearest-class-mean classifier on standardised mask descriptors of ``regions``."""
    xtr, xte = _mask_features(train, regions), _mask_features(test, regions)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    means = np.stack([((xtr - mu) / sd)[train.labels == c].mean(0) for c in range(len(train.classes))])
    distances = ((((xte - mu) / sd)[:, None, :] - means[None]) ** 2).sum(-1)
    pred = np.argmin(distances, axis=1)
    return float(np.mean(pred == test.labels))


@pytest.mark.parametrize("dialect, signal, silent", [
    ("eyes", ("eyes", "brows"), ("mouth",)),
    ("mouth", ("mouth",), ("eyes", "brows")),
])
def test_dialect_carries_its_signal_in_its_regions(dialect, signal, silent):
    train = make_synthetic(dialect, n_per_class=40, seed=0)
    test = make_synthetic(dialect, n_per_class=40, seed=1)
    assert _nearest_mean_accuracy(train, test, signal) > 0.6
    assert _nearest_mean_accuracy(train, test, silent) < 0.35  # chance is 1/7


def test_zero_intensity_makes_every_class_neutral():
    ds = make_synthetic("universal", n_per_class=30, seed=2, intensity=(0.0, 0.0))
    assert np.all(ds.extras["intensity"] == 0)
    area = ds.extras["region_masks"].sum(axis=(2, 3)).astype(float)
    per_class = np.stack([area[ds.labels == c].mean(0) for c in range(7)])
    assert np.all(per_class.std(0) / per_class.mean(0) < 0.08)


def test_class_subset_aliases_contempt_and_size():
    ds = make_synthetic(n_per_class=3, classes=["fear", "happiness", "contempt"], size=64)
    assert ds.classes == ("afraid", "happy", "contempt") and ds.image_shape == (64, 64)
    assert ds.extras["region_masks"].shape[2:] == (64, 64)


@pytest.mark.parametrize("kwargs, message", [
    ({"dialect": "klingon"}, "unknown dialect"),
    ({"n_per_class": 0}, "n_per_class"),
    ({"intensity": (0.9, 0.2)}, "intensity"),
    ({"size": 8}, "size"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(SyntheticError, match=message):
        make_synthetic(**kwargs)


def test_unknown_class_names_are_listed():
    with pytest.raises(ValueError, match="glee"):
        make_synthetic(classes=["happy", "glee"])


def test_dialect_table():
    assert set(DIALECTS) == {"universal", "eyes", "mouth"}
    assert DIALECTS["eyes"].gain("happy", "mouth") < 0.2 < DIALECTS["eyes"].gain("happy", "eyes")
    assert DIALECTS["mouth"].gain("sad", "brows") < 0.2 < DIALECTS["mouth"].gain("sad", "mouth")
