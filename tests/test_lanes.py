"""Trainings batched as lanes of one vmapped program give the numbers of one-at-a-time training."""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np
import pytest

from emofx.data.synthetic import make_synthetic
from emofx.nets.lanes import Lane, fit_lanes
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig, TrainingError, fit

TINY = ModelConfig(num_classes=3, widths=(8, 16, 16), dense_units=32)
CONFIG = TrainConfig(epochs=3, batch_size=16, learning_rate=0.02, patience=0, precision="highest")
# Lanes and one-at-a-time training compute the same things in another order (batched
# convolutions and evaluation batches): float32 rounding, amplified over a few SGD steps.
# The learning rate depends on the step alone, so it must agree to rounding.
LR_TOLERANCE = dict(rtol=1e-6)
# Losses move with the weights (below): measured at most 1.1e-2 relative with batch norm after the
# convolutions (step 3, on the 2026-12-02 CI-class EPYC, with and without
# XLA_FLAGS=--xla_cpu_max_isa=AVX2), and 2.1e-2 once it also follows the dense layer: the last
# validation loss of the batch-norm test (1.878 vs 1.840), while every weight there agrees to
# 1.4e-4 relative and every running statistic to 1e-7; that tiny model overfits (validation loss
# 1.18 -> 1.88 in two epochs), so its growing logits amplify rounding. A wrong batch or step moves
# the loss by 20-60% (consecutive steps here: 1.38, 1.08, 0.86).
LOSS_TOLERANCE = dict(rtol=4e-2, atol=2e-4)
# A rounding difference can flip a discrete choice (a max-pooling window, a ReLU at 0, the
# pixel a rotation samples) and route one gradient elsewhere: a few weights then differ by
# more, so each layer's weights are compared as a whole. Measured (AVX-512 CPU): at most 4e-3
# (a bias vector, which starts at 0); a wrong batch, step or learning rate differs by ~1.
WEIGHTS_RELATIVE_NORM = 1e-2
# Vectors that start at 0 (biases, batch-norm offsets) stay small over a few steps, and one image
# routed differently moves a bias by about lr / batch = 1.25e-3 in a step (measured: 1.4e-3 on
# the dense bias, norm 0.028; 7.3e-4 on a batch-norm offset, norm 0.021). Below this norm the
# bound is absolute, 5e-3 (four such images); the kernels, far larger, keep the relative bound.
SMALL_NORM = 0.5


@pytest.fixture(scope="module")
def data():
    return make_synthetic("universal", n_per_class=24, seed=0, classes=("happy", "sad", "surprised"))


def _lanes(data, sizes=(32, 41, 27)):
    """Lanes of different training-set sizes (2, 3 and 2 steps per epoch at batch 16)."""
    lanes = []
    for trial, size in enumerate(sizes):
        order = np.random.default_rng(trial).permutation(len(data))
        lanes.append(Lane(data.subset(order[:size]), data.subset(order[size:size + 20 + trial]), trial=trial))
    return lanes


def _assert_same_training(lane_result, alone):
    assert lane_result.stop_reason == alone.stop_reason
    assert lane_result.steps == alone.steps and lane_result.best_step == alone.best_step
    assert list(lane_result.history["step"]) == list(alone.history["step"])
    np.testing.assert_allclose(lane_result.history["lr"], alone.history["lr"], **LR_TOLERANCE)
    np.testing.assert_allclose(lane_result.history[["train_loss", "val_loss"]].to_numpy(),
                               alone.history[["train_loss", "val_loss"]].to_numpy(), **LOSS_TOLERANCE)
    np.testing.assert_allclose(lane_result.history["val_error"], alone.history["val_error"], atol=1e-6)
    _assert_close_weights(lane_result.model.params, alone.model.params)
    _assert_close_weights(lane_result.model.batch_stats, alone.model.batch_stats)
    assert lane_result.model.config == alone.model.config


def _assert_close_weights(tree, reference):
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(reference), strict=True):
        assert np.linalg.norm(a - b) <= WEIGHTS_RELATIVE_NORM * max(np.linalg.norm(b), SMALL_NORM)


def test_each_lane_trains_as_it_would_alone_with_its_own_epoch_length(data):
    lanes = _lanes(data)
    results = fit_lanes(lanes, CONFIG, TINY, progress=False)
    assert [r.steps for r in results] == [6, 9, 6]
    assert [list(r.history["step"]) for r in results] == [[0, 2, 4, 6], [0, 3, 6, 9], [0, 2, 4, 6]]
    for lane, result in zip(lanes, results):
        alone = fit(lane.train_set, lane.val_set, CONFIG, TINY, trial=lane.trial, progress=False)
        _assert_same_training(result, alone)
    # Different trials are different trainings, not copies of one.
    assert not np.allclose(results[0].history["val_loss"], results[2].history["val_loss"])


def test_a_lane_stops_early_or_on_nan_alone_and_the_others_go_on(data):
    lanes = _lanes(data, sizes=(32, 32))
    patient = replace(CONFIG, epochs=6, patience=1)
    results = fit_lanes(lanes, patient, TINY, progress=False)
    for lane, result in zip(lanes, results):
        _assert_same_training(result, fit(lane.train_set, lane.val_set, patient, TINY, trial=lane.trial,
                                          progress=False))
    # A lane whose seed and learning rate diverge cannot be built with one config, so a huge
    # learning rate diverges every lane: each records its own NaN step and keeps finite weights.
    diverging = fit_lanes(lanes, replace(CONFIG, learning_rate=1e7), TINY, progress=False)
    for lane, result in zip(lanes, diverging):
        alone = fit(lane.train_set, lane.val_set, replace(CONFIG, learning_rate=1e7), TINY, trial=lane.trial,
                    progress=False)
        assert result.stop_reason == alone.stop_reason == "nan_loss"
        assert result.steps == alone.steps and result.best_step == alone.best_step
        assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(result.model.params))


def test_lane_seeds_and_batch_norm_follow_fit(data):
    lanes = [replace(lane, seed=7) for lane in _lanes(data, sizes=(32, 32))]
    normed = replace(TINY, norm="batch")
    results = fit_lanes(lanes, CONFIG, normed, progress=False)
    for lane, result in zip(lanes, results):
        alone = fit(lane.train_set, lane.val_set, replace(CONFIG, seed=7), normed, trial=lane.trial, progress=False)
        _assert_same_training(result, alone)
        assert result.model.info["train_config"]["seed"] == 7
        assert jax.tree_util.tree_leaves(result.model.batch_stats)  # the running statistics were compared


def test_lanes_of_other_classes_or_image_sizes_are_refused_in_one_line(data):
    lanes = _lanes(data, sizes=(32, 32))
    other = make_synthetic("universal", n_per_class=12, seed=1, classes=("happy", "sad"))
    with pytest.raises(TrainingError, match="lane 1 has classes .* only trainings with the same classes"):
        fit_lanes([lanes[0], Lane(other.subset(np.arange(16)), other.subset(np.arange(16, 24)))], CONFIG, TINY,
                  progress=False)
    with pytest.raises(TrainingError, match="no trainings to run"):
        fit_lanes([], CONFIG, TINY)
