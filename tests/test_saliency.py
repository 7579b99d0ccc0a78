"""Attribution methods on a tiny randomly initialised model: guided ReLU, shapes, completeness, batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emofx.explain import saliency
from emofx.explain.metrics import deletion_insertion_curves
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.precision import use_precision

CLASSES = ("angry", "afraid", "happy", "sad")
FAST_OPTIONS = {
    "smoothgrad": {"n_samples": 3},
    "integrated-gradients": {"steps": 8},
    "occlusion": {"patch": 12, "stride": 12},
}


@pytest.fixture(scope="module")
def model(make_tiny_model) -> TrainedModel:
    return make_tiny_model(CLASSES, 3)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)


def test_guided_relu_matches_hand_computed_case():
    x = jnp.array([-1.0, 2.0, 3.0, 0.5, 0.0])
    upstream = jnp.array([1.0, -1.0, 2.0, 0.0, 4.0])
    out, pullback = jax.vjp(saliency.guided_relu, x)
    np.testing.assert_array_equal(out, [0.0, 2.0, 3.0, 0.5, 0.0])
    # Only where x > 0 and the incoming gradient > 0: positions 2 (x=3, g=2).
    np.testing.assert_array_equal(pullback(upstream)[0], [0.0, 0.0, 2.0, 0.0, 0.0])
    # A plain ReLU lets the negative gradient at x=2 through.
    np.testing.assert_array_equal(jax.vjp(jax.nn.relu, x)[1](upstream)[0], [0.0, -1.0, 2.0, 0.0, 0.0])


@pytest.mark.parametrize("method", list(saliency.METHODS))
def test_every_method_gives_finite_maps_of_image_shape(model, images, method):
    targets = np.array([0, 1, 2, 3, 0])
    maps = saliency.attribute(model, images, targets, method, batch_size=2, **FAST_OPTIONS.get(method, {}))
    assert maps.shape == images.shape and maps.dtype == np.float32
    assert np.all(np.isfinite(maps))
    assert np.abs(maps).max() > 0


def test_gradient_is_the_directional_derivative_of_the_probability(model, images):
    # Central differences of step 1e-4 need the scores exact to far below 1e-4: full float32 whatever the
    # precision of the session (at TF32 each score moves by ~1e-3 of its size).
    targets = np.array([2] * len(images))
    direction = np.random.default_rng(1).normal(size=images.shape).astype(np.float32)
    h = 1e-4
    with use_precision("highest"):
        grads = saliency.attribute(model, images, targets, "gradient")
        plus, minus = (saliency.class_scores(model.config, model.variables, jnp.asarray(images + sign * h * direction),
                                             jnp.asarray(targets)) for sign in (1, -1))
    numeric = (np.asarray(plus) - np.asarray(minus)) / (2 * h)
    analytic = (grads * direction).sum(axis=(1, 2))
    np.testing.assert_allclose(analytic, numeric, rtol=0.05, atol=1e-6)


def test_guided_maps_differ_from_vanilla_gradient(model, images):
    targets = np.zeros(len(images), np.int32)
    vanilla = saliency.attribute(model, images, targets, "gradient", score="logit")
    guided = saliency.attribute(model, images, targets, "guided", score="logit")
    assert not np.allclose(vanilla, guided)


def test_integrated_gradients_completeness(model, images):
    targets = np.array([0, 1, 2, 3, 0])
    errors = {}
    for steps in (16, 1024):
        maps = saliency.attribute(model, images, targets, "integrated-gradients", steps=steps, baseline=0.0)
        report = saliency.completeness(model, images, targets, maps, baseline=0.0)
        errors[steps] = report["relative_error"]
    assert list(report.columns) == ["score", "baseline_score", "attribution_sum", "score_difference",
                                    "absolute_error", "relative_error"]
    assert errors[1024].max() < 0.05
    assert errors[1024].mean() < errors[16].mean()  # the Riemann sum converges to the integral
    # no attribution at all: the error is the whole difference, relative to the larger of it and the two scores
    empty = saliency.completeness(model, images, targets, np.zeros_like(maps), baseline=0.0)
    np.testing.assert_allclose(empty["absolute_error"], empty["score_difference"].abs(), rtol=1e-12)
    scale = empty[["score", "baseline_score", "score_difference"]].abs().max(axis=1)
    np.testing.assert_allclose(empty["relative_error"], empty["absolute_error"] / scale, rtol=1e-12)
    assert (empty["relative_error"] <= 1).all()


def test_gradcam_is_non_negative(model, images):
    maps = saliency.attribute(model, images, np.zeros(len(images), np.int32), "gradcam")
    assert maps.min() >= 0


def test_batching_does_not_change_maps(model, images, assert_close_to_scale, float32_tolerance):
    # Another batch size is another compiled program (other summation orders, and other vector
    # code on AVX2 than on AVX-512): the maps agree to float32 rounding relative to their scale.
    targets = np.array([0, 1, 2, 3, 0])
    baselines = np.random.default_rng(2).random(images.shape).astype(np.float32)  # one per image
    for method, options in (("gradient", {}), ("smoothgrad", {"n_samples": 2, "seed": 4}),
                            ("integrated-gradients", {"steps": 4, "baseline": baselines})):
        whole = saliency.attribute(model, images, targets, method, batch_size=8, **options)
        pieces = saliency.attribute(model, images, targets, method, batch_size=2, **options)
        scale = float(np.abs(whole).max())
        assert scale > 0
        assert_close_to_scale(pieces / scale, whole / scale, float32_tolerance, method)


def test_smoothgrad_noise_follows_the_seed(model, images):
    targets = np.zeros(len(images), np.int32)
    a = saliency.attribute(model, images, targets, "smoothgrad", n_samples=2, seed=1)
    b = saliency.attribute(model, images, targets, "smoothgrad", n_samples=2, seed=1)
    c = saliency.attribute(model, images, targets, "smoothgrad", n_samples=2, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_smoothgrad_noise_follows_the_image_not_its_place_among_those_explained(model, images, float32_tolerance,
                                                                               assert_close_to_scale):
    """With ``image_ids`` (e.g. indices into a dataset) an image gets the same noise whichever others come with it."""
    targets = np.zeros(len(images), np.int32)
    ids = np.arange(10, 10 + len(images))
    every = saliency.attribute(model, images, targets, "smoothgrad", n_samples=2, seed=1, image_ids=ids)
    some = saliency.attribute(model, images[3:], targets[3:], "smoothgrad", n_samples=2, seed=1, image_ids=ids[3:],
                              batch_size=1)
    scale = float(np.abs(every).max())
    assert_close_to_scale(some / scale, every[3:] / scale, float32_tolerance, "smoothgrad")
    by_place = saliency.attribute(model, images[3:], targets[3:], "smoothgrad", n_samples=2, seed=1)
    assert not np.allclose(by_place, every[3:])  # without ids the noise follows the position
    with pytest.raises(ValueError, match="one image id per image"):
        saliency.smoothgrad(model, images, targets, n_samples=2, image_ids=ids[:2])
    with pytest.raises(ValueError, match=rf"image_ids must hold one id per image \({len(images)}\); got shape \(2,\)"):
        saliency.attribute(model, images, targets, "guided", image_ids=ids[:2])
    # a method without noise takes the ids (callers pass them whatever the method) and its maps do not change
    np.testing.assert_array_equal(saliency.attribute(model, images, targets, "guided", image_ids=ids),
                                  saliency.attribute(model, images, targets, "guided"))


def test_occlusion_patches_cover_every_pixel():
    patches = saliency.occlusion_patches(16, patch=6, stride=4)
    assert patches.shape[1:] == (16, 16)
    assert patches.any(axis=0).all()
    assert set(patches.sum(axis=(1, 2))) == {36}


def test_resolve_targets(model, images):
    labels = np.array([3, 2, 1, 0, 3])
    np.testing.assert_array_equal(saliency.resolve_targets(model, images, "label", labels), labels)
    np.testing.assert_array_equal(saliency.resolve_targets(model, images, "predicted"), model.predict(images))
    np.testing.assert_array_equal(saliency.resolve_targets(model, images, "Happiness"), [2] * 5)
    np.testing.assert_array_equal(saliency.resolve_targets(model, images, 1), [1] * 5)
    with pytest.raises(ValueError, match="needs the images' labels"):
        saliency.resolve_targets(model, images, "label")
    with pytest.raises(ValueError, match="not a class of this model"):
        saliency.resolve_targets(model, images, "disgusted")
    with pytest.raises(ValueError, match="neither label nor predicted nor an emotion"):
        saliency.resolve_targets(model, images, "bored")
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        saliency.resolve_targets(model, images, 7)


def test_bad_requests_are_clear_errors(model, images):
    with pytest.raises(ValueError, match="unknown saliency method 'lime'"):
        saliency.attribute(model, images, np.zeros(5, np.int32), "lime")
    with pytest.raises(ValueError, match="unknown score"):
        saliency.attribute(model, images, np.zeros(5, np.int32), "gradient", score="odds")
    with pytest.raises(ValueError, match="one target per image"):
        saliency.attribute(model, images, np.zeros(3, np.int32), "gradient")
    targets = np.zeros(5, np.int32)
    for noise_level in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="noise_level .* must be >= 0 and finite"):
            saliency.attribute(model, images, targets, "smoothgrad", noise_level=noise_level)
    for batch_size in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"batch_size must be a whole number of at least 1; got {batch_size}"):
            saliency.attribute(model, images, targets, "gradient", batch_size=batch_size)
    for baseline in (np.zeros((48, 48)), np.zeros((3, 16, 16))):  # another size; neither one nor one per image
        with pytest.raises(ValueError, match=f"a baseline of shape \\({baseline.shape[0]}, .*one image \\(16, 16\\)"):
            saliency.attribute(model, images, targets, "integrated-gradients", baseline=baseline)
    maps = saliency.attribute(model, images, targets, "gradient")
    for wrong in (maps[:, :8, :8], maps[:4]):  # maps of another size or of other images
        with pytest.raises(ValueError, match="need one map per image, of the images' size \\(5, 16, 16\\)"):
            saliency.completeness(model, images, targets, wrong)
        with pytest.raises(ValueError, match="need one map per image"):
            deletion_insertion_curves(model, images, targets, wrong)


def test_inputs_a_model_would_misread_are_refused_with_what_to_do(model, images):
    from emofx.explain.modification import ModificationConfig, modify

    pixels = np.round(images * 255)  # 0-255 pixels as floats: would pass unscaled and give wrong maps
    targets = np.arange(5) % len(CLASSES)
    for call in (lambda x: saliency.attribute(model, x, targets, "gradient"),
                 lambda x: saliency.vanilla_gradient(model, x, targets),
                 lambda x: modify(model, x, targets, ModificationConfig(steps=1)),
                 lambda x: model.predict_proba(x)):
        with pytest.raises(ValueError, match="float images must lie in \\[0, 1\\]; these range from 0 to 255"):
            call(pixels)
        with pytest.raises(ValueError, match="images of type int64: give uint8 pixels"):
            call(pixels.astype(np.int64))
        with pytest.raises(ValueError, match="the model takes \\(N, 16, 16\\)"):
            call(np.zeros((5, 12, 12), np.float32))
    for wrong in (np.zeros((5, 12, 12), np.float32), images[0]):  # the fast path checks shape and type
        with pytest.raises(ValueError, match="the model takes \\(N, 16, 16\\)"):
            model.logits(wrong)
    with pytest.raises(ValueError, match="float images must lie in \\[0, 1\\]"):  # and the values of host arrays
        model.logits(pixels)
    model.logits(jnp.asarray(pixels))  # not those of a device array: a round trip per call
    with pytest.raises(ValueError, match="images of type int64"):
        model.logits(pixels.astype(np.int64))
    np.testing.assert_allclose(model.predict_proba(pixels.astype(np.uint8)), model.predict_proba(pixels / 255),
                               atol=1e-6)  # uint8 and [0, 1] floats are the same images
    for bad, message in ((np.full(5, len(CLASSES)), "target indices must lie in \\[0, 4\\)"),
                         (np.full(5, -1), "target indices must lie in \\[0, 4\\)"),
                         (np.array(["happy", "sad", "surprised", "sad", "bored"]),
                          r"targets \['bored', 'surprised'\] are not classes of this model \(angry, afraid, happy"),
                         (np.full(5, 1.5), "targets must be class indices")):
        with pytest.raises(ValueError, match=message):
            saliency.attribute(model, images, bad, "gradcam")
        with pytest.raises(ValueError, match=message):
            modify(model, images, bad, ModificationConfig(steps=1))
    for call in (saliency.guided_backprop, lambda *args: modify(*args, ModificationConfig(steps=1))):
        with pytest.raises(TypeError, match="expected a TrainedModel \\(a run's .model"):
            call("runs/some-run", images, targets)
    with pytest.raises(TypeError, match="config must be a ModificationConfig \\(e.g. .*\\); got dict"):
        modify(model, images, targets, {"steps": 2})
    from emofx.data.synthetic import make_synthetic

    faces = make_synthetic("eyes", n_per_class=2, size=16, classes=CLASSES)
    for call in (lambda: saliency.attribute(model, faces, faces.label_names), lambda: model.predict_proba(faces),
                 lambda: modify(model, faces, faces.label_names, ModificationConfig(steps=1))):
        with pytest.raises(TypeError, match="give a dataset's images \\(dataset.images\\) and, as targets, its "
                                            "dataset.label_names; got the FaceDataset itself"):
            call()
    with pytest.raises(ValueError, match="no images to modify"):  # not an all-NaN summary
        modify(model, images[:0], targets[:0], ModificationConfig(steps=1))
    with pytest.raises(ValueError, match="baseline must be uint8 pixels or floats in \\[0, 1\\]"):
        saliency.integrated_gradients(model, images, targets, baseline=128.0)
    with pytest.raises(ValueError, match="occlusion fill must lie in \\[0, 1\\]"):
        saliency.occlusion(model, images, targets, fill=128)


def test_targets_may_be_emotion_names_a_dataset_of_other_classes_cannot_mislead(model, images):
    """A dataset's labels index its own classes: happy, sad faces of a 2-class file are labels 0, 1, which name
    angry and afraid in this model. Its label names are taken as the model's classes they name."""
    from emofx.explain.modification import ModificationConfig, modify

    names = np.array(["happy", "sad", "happy", "Sadness", "happy"])  # aliases too
    indices = np.array([CLASSES.index("happy"), CLASSES.index("sad")] * 2 + [CLASSES.index("happy")])
    np.testing.assert_array_equal(saliency.attribute(model, images, names, "gradient"),
                                  saliency.attribute(model, images, indices, "gradient"))
    walked = modify(model, images, names, ModificationConfig(steps=1))
    np.testing.assert_array_equal(walked.targets, indices)


@pytest.mark.parametrize("method", list(saliency.METHODS))
def test_images_with_one_channel_give_the_maps_of_the_same_images(model, images, method):
    """(N, H, W, 1) images, which predictions accept, give (N, H, W) maps equal to those of (N, H, W) images (Grad-CAM
    and occlusion failed inside JAX; the others returned (N, H, W, 1) maps)."""
    targets = np.array([0, 1, 2, 3, 0])
    options = {"steps": 8} if method == "integrated-gradients" else {"n_samples": 4} if method == "smoothgrad" else {}
    flat = saliency.METHODS[method](model, images, targets, **options)
    for maps in (saliency.METHODS[method](model, images[..., None], targets, **options),
                 saliency.attribute(model, images[..., None], targets, method, **options)):
        assert maps.shape == images.shape
        np.testing.assert_allclose(maps, flat, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_sample_the_path_at_midpoints(model, images, assert_close_to_scale, float32_tolerance):
    # one step of the midpoint rule: (x - baseline) times the gradient halfway along the path
    targets = np.array([0, 1, 2, 3, 0])
    for baseline in (0.0, 0.2):
        ig = np.asarray(saliency.integrated_gradients(model, images, targets, steps=1, baseline=baseline))
        halfway = np.asarray(saliency.vanilla_gradient(model, baseline + 0.5 * (images - baseline), targets))
        expected = (images - baseline) * halfway
        scale = float(np.abs(expected).max())
        assert scale > 0
        assert_close_to_scale(ig / scale, expected / scale, float32_tolerance, f"baseline {baseline}")


def test_gradcam_weighs_each_images_channels_by_its_own_gradients(model, images, assert_close_to_scale,
                                                                  float32_tolerance):
    targets = np.array([0, 1, 2, 3, 0])
    together = np.asarray(saliency.gradcam(model, images, targets))
    alone = np.concatenate([np.asarray(saliency.gradcam(model, images[i:i + 1], targets[i:i + 1]))
                            for i in range(len(images))])
    scale = float(np.abs(alone).max())
    assert scale > 0
    assert_close_to_scale(together / scale, alone / scale, float32_tolerance)


def test_smoothgrad_noise_scales_with_the_images_value_range(model, assert_close_to_scale, float32_tolerance):
    # a flat image has no value range: no noise, so SmoothGrad is the plain gradient
    flat = np.full((2, 16, 16), 0.8, np.float32)
    targets = np.array([1, 2])
    smooth = np.asarray(saliency.smoothgrad(model, flat, targets, n_samples=3, noise_level=0.15))
    plain = np.asarray(saliency.vanilla_gradient(model, flat, targets))
    scale = float(np.abs(plain).max())
    assert scale > 0
    assert_close_to_scale(smooth / scale, plain / scale, float32_tolerance)


def test_occlusion_averages_the_drops_of_the_patches_covering_each_pixel(model, images, assert_close_to_scale,
                                                                        float32_tolerance):
    # 8x8 patches every 4 pixels: 9 patches, a corner pixel under 1 of them, the centre under 4; the drops by hand
    targets = np.array([0, 1, 2, 3, 0])
    maps = np.asarray(saliency.occlusion(model, images, targets, patch=8, stride=4, fill=0.5), np.float64)
    rows = np.arange(len(images))
    reference = model.predict_proba(images).astype(np.float64)[rows, targets]
    total, coverage = np.zeros(images.shape), np.zeros(images.shape[1:])
    for r in (0, 4, 8):
        for c in (0, 4, 8):
            occluded = images.copy()
            occluded[:, r:r + 8, c:c + 8] = 0.5
            drop = reference - model.predict_proba(occluded).astype(np.float64)[rows, targets]
            total[:, r:r + 8, c:c + 8] += drop[:, None, None]
            coverage[r:r + 8, c:c + 8] += 1
    expected = total / coverage
    assert np.abs(expected).max() > 0 and coverage.min() == 1 and coverage.max() == 4
    # drops are differences of probabilities: their rounding is that of the probabilities (scale 1), not the drops'
    assert_close_to_scale(maps, expected, float32_tolerance, "occlusion")
