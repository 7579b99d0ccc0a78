"""Sanity checks and region scores: randomisation, deletion/insertion, pointing game, mass ratio."""

from __future__ import annotations

import numpy as np
import pytest

from emofx.data.dataset import FaceDataset
from emofx.explain import metrics
from emofx.nets.checkpoint import TrainedModel

CLASSES = ("angry", "happy", "sad")


@pytest.fixture(scope="module")
def model(make_tiny_model) -> TrainedModel:
    return make_tiny_model(CLASSES, 5)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)


def test_randomisation_order_is_top_down(model):
    assert metrics.randomisation_order(model.params) == ["output", "dense", "conv2", "conv1"]


def test_randomise_layers_replaces_only_those_layers(model):
    changed = metrics.randomise_layers(model, ["output", "dense"], seed=11)
    assert not np.allclose(changed.params["output"]["kernel"], model.params["output"]["kernel"])
    assert not np.allclose(changed.params["dense"]["kernel"], model.params["dense"]["kernel"])
    np.testing.assert_array_equal(changed.params["conv1"]["kernel"], model.params["conv1"]["kernel"])
    with pytest.raises(ValueError, match="not in the model"):
        metrics.randomise_layers(model, ["conv9"], seed=1)


def test_randomising_a_layer_resets_its_batch_normalisation(make_tiny_model):
    import jax
    from dataclasses import replace

    from emofx.nets.model import init_variables

    plain = make_tiny_model(("happy", "sad"), seed=0)
    config = replace(plain.config, norm="batch")
    trained = init_variables(config, 5)  # stands in for trained values: anything but a fresh layer's
    shifted = jax.tree.map(lambda v: v + 1.0, trained)
    model = TrainedModel(config, shifted["params"], plain.classes, batch_stats=shifted["batch_stats"])
    changed = metrics.randomise_layers(model, ["dense"], seed=3)
    fresh = init_variables(config, 3)
    for name in ("dense", "dense_norm"):
        for a, b in zip(jax.tree.leaves(changed.params[name]), jax.tree.leaves(fresh["params"][name])):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(changed.batch_stats["dense_norm"]),
                    jax.tree.leaves(fresh["batch_stats"]["dense_norm"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(changed.batch_stats["conv1"]), jax.tree.leaves(shifted["batch_stats"]["conv1"])):
        np.testing.assert_array_equal(a, b)  # layers not randomised keep theirs


def test_rank_correlation_is_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 5, 5)), rng.normal(size=(3, 5, 5))
    b[0] = a[0] ** 3  # monotone: rank correlation 1
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.rank_correlation(a, b), expected)
    assert metrics.rank_correlation(a, b)[0] == pytest.approx(1.0)


def test_cascading_randomisation_frame(model, images):
    targets = np.array([0, 1, 2, 0])
    frame = metrics.cascading_randomisation(model, images, targets, methods=("gradient", "guided"), seed=9)
    assert list(frame.columns) == ["method", "step", "layer", "image", "spearman_abs", "spearman"]
    assert len(frame) == 2 * 5 * len(images)  # 2 methods x (trained + 4 layers) x images
    trained = frame[frame["step"] == 0]
    np.testing.assert_allclose(trained[["spearman_abs", "spearman"]], 1.0)
    per_step = frame.groupby(["method", "step"])["layer"].first()
    assert list(per_step["gradient"]) == ["none", "output", "dense", "conv2", "conv1"]
    # Once every layer is re-initialised the vanilla gradient no longer matches the trained model's.
    fully = frame[(frame["method"] == "gradient") & (frame["step"] == 4)]
    assert fully["spearman"].abs().mean() < 0.5


def test_deletion_and_insertion_curves(model, images):
    targets = np.array([0, 1, 2, 0])
    maps = np.random.default_rng(3).random(images.shape)
    curves = metrics.deletion_insertion_curves(model, images, targets, maps, steps=4)
    assert set(curves["curve"]) == {"deletion", "insertion"}
    assert len(curves) == 2 * 5 * len(images)
    start = curves[(curves["curve"] == "deletion") & (curves["fraction"] == 0)]["score"].to_numpy()
    end = curves[(curves["curve"] == "insertion") & (curves["fraction"] == 1)]["score"].to_numpy()
    np.testing.assert_allclose(start, end, rtol=1e-5)  # both are the untouched image
    auc = metrics.curve_auc(curves)
    assert len(auc) == 2 * len(images)
    assert auc["auc"].between(0, 1).all()


def test_target_scores_are_the_eager_class_scores_in_padded_batches(model, images, float32_tolerance):
    import jax.numpy as jnp

    from emofx.explain import saliency

    targets = np.array([0, 1, 2, 0])
    eager = {score: np.asarray(saliency.class_scores(model.config, model.variables, jnp.asarray(images),
                                                     jnp.asarray(targets), score=score)) for score in saliency.SCORES}
    for score, expected in eager.items():  # batches of 3: the second one padded with the last image
        got = saliency.target_scores(model, images, targets, score, batch_size=3)
        assert got.shape == (4,)
        np.testing.assert_allclose(got, expected, rtol=float32_tolerance, atol=float32_tolerance)
    np.testing.assert_allclose(eager["probability"], np.exp(eager["log-probability"]), rtol=1e-5)


def test_deletion_insertion_curves_score_through_one_compiled_program_not_op_by_op(model, images, monkeypatch):
    # The model used to run eagerly, once per fraction, curve and batch: 2 x 5 x 2 calls here, a minute for 300
    # faces of the paper's CNN. Compiled, the scoring function runs only while its program is traced (once).
    from emofx.explain import saliency

    calls = []
    eager = saliency.class_scores
    monkeypatch.setattr(saliency, "class_scores", lambda *a, **k: calls.append(1) or eager(*a, **k))
    saliency._score_core.clear_cache()
    targets = np.array([0, 1, 2, 0])
    maps = np.random.default_rng(3).random(images.shape)
    curves = metrics.deletion_insertion_curves(model, images, targets, maps, steps=4, batch_size=3)
    assert len(calls) == 1
    untouched = curves[(curves["curve"] == "deletion") & (curves["fraction"] == 0)]["score"].to_numpy()
    np.testing.assert_array_equal(untouched, saliency.target_scores(model, images, targets, batch_size=3))


def test_baseline_images():
    images = np.ones((1, 4, 4), np.float32)
    blank = metrics.baseline_images(images, 0.0)
    assert blank.max() == 0
    blurred = metrics.baseline_images(images, "blur")
    np.testing.assert_allclose(blurred, 1.0)
    with pytest.raises(ValueError, match="'blur'"):
        metrics.baseline_images(images, "noise")


def test_region_scores_hand_computed():
    maps = np.zeros((3, 4, 4))
    masks = np.zeros((3, 4, 4), bool)
    masks[:, :2, :2] = True  # area share 1/4
    maps[0, 0, 0] = 3.0  # all mass inside, max inside
    maps[1, 3, 3] = -2.0  # all mass outside (absolute values count)
    maps[1, 0, 1] = 1.0
    maps[2] = 1.0  # uniform: ratio 1
    scores = metrics.region_scores(maps, masks, correct=[True, True, False])
    np.testing.assert_array_equal(scores["hit"], [True, False, True])
    np.testing.assert_allclose(scores["mass_share"], [1.0, 1 / 3, 0.25])
    np.testing.assert_allclose(scores["mass_ratio"], [4.0, 4 / 3, 1.0])
    summary = metrics.summarise_region_scores(scores)
    assert summary["pointing_game"] == 0.5  # only correctly classified images count
    assert summary["mass_ratio"] == pytest.approx((4 + 4 / 3 + 1) / 3)
    assert summary["n_correct"] == 2 and summary["n_scored_maps"] == 3
    # a map without saliency has no maximum: it is left out, not counted as a hit at pixel (0, 0)
    empty = metrics.region_scores(np.concatenate([maps, np.zeros((1, 4, 4))]), np.concatenate([masks, masks[:1]]),
                                  correct=[True, True, False, True])
    assert np.isnan(empty["hit"].iloc[3]) and np.isnan(empty["mass_share"].iloc[3])
    assert metrics.summarise_region_scores(empty) == {**summary, "n_empty_maps": 1}


def _masked_dataset(meta: dict) -> FaceDataset:
    masks = np.zeros((2, 4, 6, 6), bool)
    masks[:, 0, 0, :] = True  # eyes
    masks[:, 1, 1, :] = True  # brows
    masks[:, 3, 5, :] = True  # mouth
    return FaceDataset.from_label_names(
        np.zeros((2, 6, 6), np.uint8), ["happy", "sad"], extras={"region_masks": masks},
        meta={"region_names": ["eyes", "brows", "nose", "mouth"], **meta},
    )


def test_signal_regions_follow_the_dialect():
    eyes = _masked_dataset({"dialect": "eyes"})
    assert metrics.signal_regions(eyes) == ("eyes", "brows")
    np.testing.assert_array_equal(metrics.signal_region_masks(eyes)[0].any(axis=1), [1, 1, 0, 0, 0, 0])
    mouth = _masked_dataset({"dialect": "mouth"})
    np.testing.assert_array_equal(metrics.signal_region_masks(mouth)[1].any(axis=1), [0, 0, 0, 0, 0, 1])
    explicit = _masked_dataset({"dialect": "eyes", "signal_regions": ["mouth"]})
    assert metrics.signal_regions(explicit) == ("mouth",)
    with pytest.raises(ValueError, match="cannot tell which regions"):
        metrics.signal_regions(_masked_dataset({}))


def test_deletion_removes_the_most_salient_pixels_first(model, images, float32_tolerance):
    # |map| grows down the rows: a quarter of the pixels deleted are the bottom 4 rows, set to the baseline 0;
    # inserted, the top 12 rows are blurred and the bottom 4 kept
    maps = -np.arange(16 * 16, dtype=np.float64).reshape(16, 16)[None].repeat(len(images), 0)
    targets = np.array([0, 1, 2, 0])
    curves = metrics.deletion_insertion_curves(model, images, targets, maps, steps=4)
    quarter = curves[curves["fraction"] == 0.25].set_index(["curve", "image"])["score"]
    deleted = images.copy()
    deleted[:, 12:] = 0.0
    inserted = metrics.baseline_images(images, "blur")
    inserted[:, 12:] = images[:, 12:]
    rows = np.arange(len(images))
    for curve, perturbed in (("deletion", deleted), ("insertion", inserted)):
        expected = model.predict_proba(perturbed)[rows, targets]
        np.testing.assert_allclose(quarter[curve].to_numpy(), expected, rtol=float32_tolerance, atol=float32_tolerance)
