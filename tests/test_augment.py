"""Augmentation: flip, rotation, shift/zoom, brightness/contrast, random erasing; the key; the off switch."""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np
import pytest

from emofx.nets.augment import (NO_AUGMENTATION, AugmentConfig, augment, random_erasing, random_flip,
                                random_photometric, random_rotation, rotate, warp)

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((64, 12, 12)).astype(np.float32)


def test_flip_mirrors_about_half_of_the_images(images):
    out = np.asarray(random_flip(KEY, images))
    same = np.all(out == images, axis=(1, 2))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2))
    assert np.all(same | mirrored)
    assert 16 < mirrored.sum() < 48


def test_rotation_by_zero_is_identity_and_by_90_degrees_is_rot90(images):
    np.testing.assert_allclose(rotate(images[:2], np.zeros(2)), images[:2], atol=1e-6)
    # Positive angles turn the picture anticlockwise, like np.rot90.
    np.testing.assert_allclose(rotate(images[:2], np.full(2, 90.0)), np.rot90(images[:2], axes=(1, 2)), atol=1e-5)


def test_small_rotation_interpolates_within_pixel_range(images):
    out = np.asarray(random_rotation(KEY, images, 5.0))
    assert out.shape == images.shape
    assert out.min() >= images.min() - 1e-6 and out.max() <= images.max() + 1e-6
    assert not np.allclose(out, images)
    # Rotations are small: the centre pixel's neighbourhood barely moves.
    assert np.abs(out[:, 5:7, 5:7] - images[:, 5:7, 5:7]).mean() < np.abs(images - images[::-1]).mean()


def test_augment_is_a_function_of_the_key_and_can_be_switched_off(images):
    config = AugmentConfig(flip=True, rotation_degrees=5.0)
    np.testing.assert_array_equal(augment(KEY, images, config), augment(KEY, images, config))
    assert not np.allclose(augment(KEY, images, config), augment(jax.random.PRNGKey(1), images, config))
    np.testing.assert_array_equal(augment(KEY, images, NO_AUGMENTATION), images)


def test_rotation_range_is_validated():
    with pytest.raises(ValueError, match="rotation_degrees"):
        AugmentConfig(rotation_degrees=-1.0)
    with pytest.raises(ValueError, match=r"erasing must lie in \[0, 1\)"):
        AugmentConfig(erasing=1.5)


def test_warp_shifts_by_whole_pixels_and_zooms_about_the_centre(images):
    shifted = np.asarray(warp(images[:2], np.zeros(2), np.ones(2), np.array([[2.0, -3.0], [0.0, 0.0]])))
    np.testing.assert_allclose(shifted[0, 2:, :-3], images[0, :-2, 3:], atol=1e-6)  # content moved down 2, left 3
    np.testing.assert_allclose(shifted[1], images[1], atol=1e-6)
    np.testing.assert_allclose(warp(images[:2], np.full(2, 90.0), np.ones(2), np.zeros((2, 2))),
                               rotate(images[:2], np.full(2, 90.0)), atol=1e-6)
    square = np.zeros((1, 12, 12), np.float32)
    square[0, 4:8, 4:8] = 1.0
    zoomed = np.asarray(warp(square, np.zeros(1), np.full(1, 2.0), np.zeros((1, 2))))
    assert zoomed[0].sum() > 3 * square[0].sum() and zoomed[0, 5:7, 5:7].min() == 1.0


def test_photometric_jitter_stays_in_range_and_keeps_structure(images):
    out = np.asarray(random_photometric(KEY, images, brightness=0.2, contrast=0.2))
    assert out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, images)
    # an affine map of each image's pixels (before clipping): strongly correlated with the input
    corr = [np.corrcoef(o.ravel(), i.ravel())[0, 1] for o, i in zip(out, images)]
    assert min(corr) > 0.9


def test_random_erasing_replaces_one_rectangle_in_the_chosen_share_of_images(images):
    big = np.zeros((400, 24, 24), np.float32)
    out = np.asarray(random_erasing(KEY, big, probability=0.5))
    changed = out != 0.0
    erased = changed.any(axis=(1, 2))
    assert 0.4 < erased.mean() < 0.6
    for mask in changed[erased][:50]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.95  # a rectangle (noise may hit exactly 0 nowhere)
        assert box.size <= 0.25 * 24 * 24 + 2 * 24 + 1


def test_strong_augmentation_is_a_function_of_the_key(images):
    config = AugmentConfig(rotation_degrees=10.0, shift=0.1, scale=0.1, brightness=0.2, contrast=0.2, erasing=0.5)
    assert config.photometric
    a, b = augment(KEY, images, config), augment(KEY, images, config)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, augment(jax.random.PRNGKey(1), images, config))
    # Options left at zero draw nothing: flip and rotation alone give the reference's numbers.
    reference = AugmentConfig(flip=True, rotation_degrees=5.0)
    np.testing.assert_array_equal(augment(KEY, images, reference), augment(KEY, images, replace(config, shift=0.0,
                                  scale=0.0, brightness=0.0, contrast=0.0, erasing=0.0, rotation_degrees=5.0)))


def test_contrast_scales_each_image_about_its_own_mean():
    # mid-grey images (0.4-0.6) are never clipped: the contrast factor in [0.8, 1.2] keeps each image's mean and
    # scales its deviations from that mean by one factor
    grey = 0.4 + 0.2 * np.random.default_rng(1).random((16, 12, 12)).astype(np.float32)
    out = np.asarray(random_photometric(KEY, grey, brightness=0.0, contrast=0.2), np.float64)
    means = grey.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    np.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), means, atol=1e-5)
    factor = np.sum((out - means) * (grey - means), axis=(1, 2)) / np.sum((grey - means) ** 2, axis=(1, 2))
    assert factor.min() >= 0.8 - 1e-4 and factor.max() <= 1.2 + 1e-4 and np.ptp(factor) > 0.05
    np.testing.assert_allclose(out - means, factor[:, None, None] * (grey - means), atol=1e-5)
