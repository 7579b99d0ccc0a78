"""Flip and rotation augmentation: geometry, randomness from the key, the off switch."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from emofx.nets.augment import NO_AUGMENTATION, AugmentConfig, augment, random_flip, random_rotation, rotate

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
    assert not NO_AUGMENTATION.enabled


def test_rotation_range_is_validated():
    with pytest.raises(ValueError, match="rotation_degrees"):
        AugmentConfig(rotation_degrees=-1.0)
