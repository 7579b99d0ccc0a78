"""Training: the compiled step and loop, best-validation checkpoint, stopping rules, reproducibility."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import emofx.nets.training as training
from emofx.nets.checkpoint import CheckpointError, TrainedModel
from emofx.data.dataset import FaceDataset, resize_dataset
from emofx.nets.buckets import bucket_size, pad_rows
from emofx.study.evaluation import evaluate
from emofx.nets.model import ModelConfig, init_params, init_variables, pixel_free, pixel_stats
from emofx.nets.precision import use_precision
from emofx.data.synthetic import make_synthetic
from emofx.nets.training import (StepConfig, TrainConfig, TrainingError, check_trainable, cross_entropy, fit,
                            init_state, learning_rate_schedule, make_optimizer, make_train_step,
                            pixel_statistics, training_targets)
from emofx.nets.transfer import initial_variables

TINY = ModelConfig(num_classes=3, widths=(8, 16, 16), dense_units=32)
CONFIG = TrainConfig(epochs=3, batch_size=16, learning_rate=0.02, patience=0)


@pytest.fixture(scope="module")
def parts() -> tuple[FaceDataset, FaceDataset]:
    data = make_synthetic("universal", n_per_class=16, seed=0, classes=("happy", "sad", "surprised"))
    order = np.random.default_rng(0).permutation(len(data))
    return data.subset(order[:32]), data.subset(order[32:])


@pytest.fixture(scope="module")
def result(parts):
    return fit(*parts, CONFIG, TINY, progress=False)


def test_history_records_every_validation_and_the_best_is_kept(result, parts):
    history = result.history
    assert list(history.columns) == ["step", "epoch", "lr", "train_loss", "train_error", "val_error", "val_loss"]
    assert history["step"].tolist() == [0, 2, 4, 6]  # 32 images / batch 16 = 2 steps per epoch
    assert history["epoch"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert np.isnan(history.loc[0, "train_loss"]) and np.all(np.isfinite(history["train_loss"][1:]))
    assert result.best_val_error == history["val_error"].min()
    assert result.best_step in history.loc[history["val_error"] == history["val_error"].min(), "step"].tolist()
    assert result.stop_reason == "completed" and result.steps == 6
    # The model standardises with the training part's pixel statistics ...
    assert (result.model.config.pixel_mean, result.model.config.pixel_std) == pixel_statistics(parts[0].images)
    # ... and predicts exactly what the compiled validation measured for the kept parameters.
    assert 1.0 - evaluate(result.model, parts[1]).accuracy == pytest.approx(result.best_val_error, abs=1e-6)


def test_same_seed_and_trial_reproduce_exactly_and_another_trial_differs(result, parts):
    again = fit(*parts, CONFIG, TINY, progress=False)
    pd.testing.assert_frame_equal(again.history, result.history)
    for a, b in zip(jax.tree_util.tree_leaves(again.model.params), jax.tree_util.tree_leaves(result.model.params)):
        np.testing.assert_array_equal(a, b)
    other = fit(*parts, CONFIG, TINY, trial=1, progress=False)
    assert not np.allclose(other.history["val_loss"], result.history["val_loss"])


def test_nan_loss_stops_and_keeps_the_last_good_parameters(parts):
    diverging = fit(*parts, replace(CONFIG, learning_rate=1e7), TINY, progress=False)
    assert diverging.stop_reason == "nan_loss"
    assert f"became NaN or infinite at step {diverging.steps}" in diverging.stop_message
    assert diverging.best_step < diverging.steps < 3 * 2
    assert f"kept the best checkpoint from step {diverging.best_step}" in diverging.stop_message
    assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(diverging.model.params))
    assert np.all(np.isfinite(diverging.model.predict_proba(parts[1].images)))


def test_a_batch_larger_than_the_training_set_is_named(parts):
    with pytest.warns(UserWarning, match="the batch \\(64\\) is larger than the 32 training images"):
        fit(*parts, replace(CONFIG, epochs=1, batch_size=64), TINY, progress=False)


def test_interrupt_returns_the_best_model_so_far(parts, monkeypatch):
    real, calls = training.make_train_chunk, []

    def interrupting(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(training, "make_train_chunk", interrupting)
    stopped = fit(*parts, CONFIG, TINY, progress=False)
    assert stopped.stop_reason == "interrupted" and stopped.steps == 2
    assert stopped.best_step in (0, 2) and "interrupted" in stopped.stop_message
    assert stopped.model.predict(parts[1].images).shape == (len(parts[1]),)


def test_validation_runs_at_the_trainings_own_precision(parts, monkeypatch):
    # TrainConfig.precision rules the whole training, whatever the process's: the validation loss picks the best
    # step and is recorded with the run (it ran at the process's precision before).
    seen, make = [], training.make_evaluator
    monkeypatch.setattr(training, "make_evaluator", lambda *args: seen.append(args[3]) or make(*args))
    with use_precision("default"):
        fit(*parts, replace(CONFIG, precision="highest", epochs=1), TINY, progress=False)
        fit(*parts, replace(CONFIG, epochs=1), TINY, progress=False)
    assert seen == ["highest", "default"]


def test_early_stopping_after_patience_validations_without_improvement(parts, monkeypatch):
    flat = jax.jit(lambda params, images, targets, stats, n=None: (jnp.float32(0.5), jnp.float32(1.0)))
    monkeypatch.setattr(training, "make_evaluator", lambda *args: flat)
    stopped = fit(*parts, replace(CONFIG, patience=2), TINY, progress=False)
    assert stopped.stop_reason == "early_stopping"
    assert stopped.steps == 4 and stopped.best_step == 0
    assert "did not improve for 2 validations" in stopped.stop_message


def test_one_batch_step_accepts_labels_or_distributions(parts):
    step = make_train_step(TINY, CONFIG)
    images = parts[0].images[:16]
    state = init_state(init_params(TINY, 0), CONFIG)
    state, metrics = step(state, images, parts[0].labels[:16], jax.random.PRNGKey(0))
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"])) and 0 <= float(metrics["error"]) <= 1
    state, metrics = step(state, images, training_targets(parts[0])[:16], jax.random.PRNGKey(1))
    assert int(state.step) == 2 and np.isfinite(float(metrics["loss"]))


def test_weight_decay_touches_only_dense_kernels_and_lr_decays_per_epoch():
    step_config = StepConfig.of(TrainConfig(learning_rate=0.1, weight_decay=0.5, momentum=0.0), steps_per_epoch=3)
    params = init_params(TINY, 0)
    optimizer = make_optimizer(step_config)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = optimizer.update(zero, optimizer.init(params), params)
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.1 * 0.5 * params["dense"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(updates["output"]["kernel"], -0.05 * params["output"]["kernel"], rtol=1e-6)
    for layer, name in [("conv1", "kernel"), ("conv3", "bias"), ("dense", "bias")]:
        assert not np.any(updates[layer][name])
    schedule = learning_rate_schedule(StepConfig.of(TrainConfig(learning_rate=0.05, lr_decay=0.9), 3))
    np.testing.assert_allclose([schedule(0), schedule(2), schedule(3), schedule(7)], [0.05, 0.05, 0.045, 0.0405],
                               rtol=1e-6)


def test_cross_entropy_with_hard_and_soft_targets():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = jnp.array([0, 2])
    hard = cross_entropy(logits, labels)
    np.testing.assert_allclose(hard, cross_entropy(logits, jax.nn.one_hot(labels, 3)), rtol=1e-6)
    soft = jnp.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    log_p = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(cross_entropy(logits, soft), -(0.5 * log_p[0, 0] + 0.5 * log_p[0, 1] + log_p[1, 2]) / 2,
                               rtol=1e-6)


def test_soft_targets_normalise_the_votes_of_the_dataset_classes():
    data = FaceDataset.from_label_names(
        np.zeros((3, 48, 48), np.uint8), ["happy", "sad", "happy"],
        extras={"votes": np.array([[6, 2, 2], [0, 5, 0], [0, 0, 9]])},
        meta={"vote_names": ["happiness", "sadness", "unknown"]},
    )
    np.testing.assert_allclose(training_targets(data, soft=True), [[0.75, 0.25], [0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TrainingError, match="vote"):
        training_targets(FaceDataset.from_label_names(np.zeros((2, 48, 48), np.uint8), ["happy", "sad"]), soft=True)


def test_weighting_by_agreement_scales_each_training_images_target_row():
    from emofx.nets.targets import weighted_targets

    data = FaceDataset.from_label_names(np.zeros((3, 48, 48), np.uint8), ["happy", "sad", "happy"],
                                        extras={"agreement": np.array([0.5, 1.0, np.nan], np.float32)})
    # agreement over its mean (0.75): 2/3 and 4/3; an image without agreement weighs 1
    weighted = weighted_targets(data, TrainConfig(weight_by_agreement=True))
    np.testing.assert_allclose(weighted, [[2 / 3, 0.0], [0.0, 4 / 3], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(weighted_targets(data, TrainConfig()), [[1, 0], [0, 1], [1, 0]])


def test_a_validation_improves_on_a_lower_error_or_an_equal_error_and_lower_loss():
    from emofx.nets.train_state import improves

    best = {"error": 0.25, "loss": 0.6}
    assert improves(0.2, 0.9, best)  # lower error, whatever the loss
    assert improves(0.25, 0.5, best)  # a tie on error broken by the loss
    assert not improves(0.25, 0.6, best) and not improves(0.25, 0.7, best) and not improves(0.3, 0.1, best)


def test_untrainable_data_is_refused_with_a_clear_message(parts):
    train, val = parts
    lonely = train.subset(np.r_[np.flatnonzero(train.labels != 2), np.flatnonzero(train.labels == 2)[:1]])
    with pytest.raises(TrainingError, match="fewer than 2 images of classes {'surprised': 1}"):
        check_trainable(lonely, val)
    with pytest.raises(TrainingError, match="validation part is empty"):
        check_trainable(train, val.subset(np.zeros(0, int)))
    with pytest.raises(TrainingError, match="learning_rate"):
        TrainConfig(learning_rate=0.0)
    for field, value, problem in (("epochs", 1.5, "a whole number; got 1.5"), ("patience", -1, "at least 0; got -1"),
                                  ("batch_size", True, "a whole number; got True"), ("epochs", "30", "a whole number"),
                                  # JAX keeps 32 bits of a seed: 2**32 trained the model of seed 0
                                  ("seed", 2**32, r"a whole number in \[0, 2\*\*32\)"), ("seed", 1.5, "a whole number"),
                                  ("seed", None, "a whole number"), ("flip", "no", "True or False; got 'no'"),
                                  ("learning_rate", "0.05", "a number; got '0.05'")):
        with pytest.raises(TrainingError, match=f"{field} must be {problem}"):
            TrainConfig(**{field: value})
    assert TrainConfig(epochs=30.0).epochs == 30 and isinstance(TrainConfig(epochs=np.int64(3)).epochs, int)
    assert type(TrainConfig(seed=np.uint32(7)).seed) is int and type(TrainConfig(flip=np.bool_(0)).flip) is bool


def test_init_from_another_class_set_keeps_the_output_units_of_shared_classes():
    source = TrainedModel(config=replace(TINY, num_classes=2), params=init_params(replace(TINY, num_classes=2), 5),
                          classes=("happy", "sad"))
    fresh = init_params(TINY, 0)["output"]
    variables, notes = initial_variables(TINY, jax.random.PRNGKey(0), source, ("surprised", "sad", "happy"))
    params = variables["params"]
    np.testing.assert_array_equal(params["conv2"]["kernel"], source.params["conv2"]["kernel"])
    trained = source.params["output"]
    for name in ("kernel", "bias"):  # matched by name, whatever the order: sad and happy trained, surprised fresh
        np.testing.assert_array_equal(params["output"][name][..., 1], trained[name][..., 1])
        np.testing.assert_array_equal(params["output"][name][..., 2], trained[name][..., 0])
        np.testing.assert_array_equal(params["output"][name][..., 0], fresh[name][..., 0])
    assert params["output"]["kernel"].shape == (32, 3)
    assert notes == ["initial weights' classes ['happy', 'sad'] differ from these ['surprised', 'sad', 'happy']: "
                     "output units kept for ['sad', 'happy'], freshly initialised for ['surprised']"]
    same, notes = initial_variables(replace(TINY, num_classes=2), jax.random.PRNGKey(0), source, ("happy", "sad"))
    np.testing.assert_array_equal(same["params"]["output"]["kernel"], source.params["output"]["kernel"])
    assert not notes
    with pytest.raises(CheckpointError, match=r"differs in widths \[8, 16, 16\] \(this training: \[8, 16, 32\]\)"):
        initial_variables(ModelConfig(num_classes=3, widths=(8, 16, 32), dense_units=32), jax.random.PRNGKey(0),
                          source, ("happy", "sad", "surprised"))


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_padding_a_training_set_to_a_bucket_changes_no_result(parts, assert_close_to_scale, float32_tolerance, norm):
    # With batch normalisation this also shows that padded rows never reach the batch statistics:
    # the running statistics after training on a padded set equal those without padding.
    model_config = replace(TINY, norm=norm)
    images, targets = parts[0].images[:27], training_targets(parts[0])[:27]
    chunk = training.make_train_chunk(model_config, CONFIG, steps_per_epoch=2, n_steps=4)  # 2 epochs of 27 images

    def train(rows: int):
        variables = init_variables(model_config, 0)
        state = init_state(variables["params"], CONFIG, 2, variables.get("batch_stats"))
        padded = [jnp.asarray(pad_rows(a, rows)) for a in (images, targets)]
        state, metrics = chunk(state, *padded, jax.random.PRNGKey(3), pixel_stats(model_config), 27)
        return {"params": state.params, "batch_stats": state.batch_stats}, metrics["loss"]

    (plain, plain_loss), (padded, padded_loss) = train(27), train(48)
    assert_close_to_scale(padded_loss, plain_loss, float32_tolerance, "losses")
    assert (plain["batch_stats"] is None) == (norm == "none")
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(plain), jax.tree_util.tree_leaves(padded)):
        assert_close_to_scale(got, want, float32_tolerance, jax.tree_util.keystr(path))


@pytest.mark.parametrize("flip_average", [False, True])
def test_validation_scores_only_the_real_rows_and_averages_the_probabilities_of_both_views(parts, flip_average,
                                                                                           float32_tolerance):
    """By hand from the network's logits: the error and mean loss over the first n rows only (the padding rows,
    copies labelled with a class the model does not predict, would all be errors), and with flip averaging the loss
    of the mean probability of an image and its mirror image."""
    from emofx.nets.model import EmotionCNN

    val = parts[1].subset(np.arange(12))
    config = training.model_for(parts[0], TINY)
    variables = init_variables(config, 0)
    x = val.images.astype(np.float32) / 255.0
    views = (x, x[:, :, ::-1]) if flip_average else (x,)
    p = np.mean([jax.nn.softmax(np.asarray(EmotionCNN(config).apply(variables, v), np.float64)) for v in views], axis=0)
    predicted = p.argmax(axis=1)
    targets = np.eye(3, dtype=np.float32)[np.r_[predicted[:9], (predicted[9:] + 1) % 3]]  # 3 of 12 wrong
    junk = np.eye(3, dtype=np.float32)[(predicted + 1) % 3]
    evaluate = training.make_evaluator(pixel_free(config), batch_size=8, flip_average=flip_average)
    error, loss = evaluate(variables, np.concatenate([val.images, val.images]), np.concatenate([targets, junk]),
                           pixel_stats(config), n=12)
    assert float(error) == pytest.approx(3 / 12)
    assert float(loss) == pytest.approx(-np.mean(np.log(np.sum(p * targets, axis=1))), rel=float32_tolerance)


def test_training_sets_of_similar_size_share_one_compiled_chunk(parts):
    config = replace(CONFIG, epochs=1, learning_rate=0.0123)  # a chunk no other test compiles
    for n in (29, 31):  # both padded to 32 rows, 2 steps per epoch of 16
        fit(parts[0].subset(np.arange(n)), parts[1], config, TINY, progress=False)
    compiled = training._compiled_chunk(pixel_free(TINY), StepConfig.of(config, 1), 16, 2)
    assert compiled._cache_size() == 1
    assert bucket_size(29) == bucket_size(31) == 32 and bucket_size(958) == bucket_size(980) == 1024


def test_buckets_pad_by_less_than_a_quarter():
    # 4 buckets per octave: 512, 640, 768, 896, 1024, ...; small sets are not padded at all
    assert [bucket_size(n) for n in (1, 3, 5, 7, 513, 600, 641, 1025)] == [1, 3, 5, 7, 640, 640, 768, 1280]
    for n in range(1, 3000):
        padded = bucket_size(n)
        assert padded >= n and (padded == n or 4 * (padded - n) < n), n


def test_ready_seconds_is_read_when_the_first_chunk_is_queued_not_after_its_first_run(parts, monkeypatch):
    """The first run of a program is waited for (to trim the heap): read after it, a new process's start counted the
    first chunk's steps too (1.5 s of 4-6 s for the paper's CNN on 2 cores)."""
    events = []
    monkeypatch.setattr(training, "process_seconds", lambda: events.append("ready") or 42.0)
    monkeypatch.setattr(training, "release_after_first_run", lambda *args: events.append("first run waited for"))
    trained = fit(*parts, CONFIG, TINY, progress=False)
    assert trained.ready_seconds == 42.0 and events[:2] == ["ready", "first run waited for"]
    assert events.count("ready") == 1 and len(events) == 1 + trained.steps // 2  # one wait per chunk of 2 steps


def test_every_training_call_names_its_program_and_data_shapes_for_the_first_run_trim(parts, monkeypatch):
    calls = []
    monkeypatch.setattr(training, "release_after_first_run", lambda *args: calls.append(args))
    images, targets = jnp.asarray(parts[0].images[:32]), jnp.asarray(training_targets(parts[0])[:32])
    chunk = training.make_train_chunk(TINY, CONFIG, steps_per_epoch=2, n_steps=2)
    state = init_state(init_params(TINY, 0), CONFIG, 2)
    for _ in range(2):
        state, metrics = chunk(state, images, targets, jax.random.PRNGKey(0), pixel_stats(TINY))
    assert [signature for _, signature, _ in calls] == [(images.shape, targets.shape)] * 2
    assert calls[0][0] is calls[1][0] and calls[1][2][1] is metrics  # one program; its result is waited for


def test_epoch_order_visits_every_real_row_once_whatever_the_padding():
    key = jax.random.PRNGKey(0)
    short, long = training.epoch_order(key, 3, 10, 16), training.epoch_order(key, 3, 10, 40)
    np.testing.assert_array_equal(short, long[:16])  # the order of the real rows ignores the padding
    assert sorted(np.asarray(short[:10]).tolist()) == list(range(10))
    np.testing.assert_array_equal(short[10:], short[:6])  # topped up from the start
    assert not np.array_equal(short, training.epoch_order(key, 4, 10, 16))  # a fresh order each epoch


def test_the_first_chunk_is_compiled_in_the_background_and_used_not_compiled_again(parts, monkeypatch):
    """fit gets its first training program in a thread while it sets up; the loop's first call
    then finds it in JAX's caches: the chunk is traced once (in that thread), not again for
    another signature."""
    started, traced = [], []
    real_start, real_chunk = training.compile_in_background, training.chunk_function

    def recording_start(jitted, arguments):
        started.append(jitted)
        return real_start(jitted, arguments)

    def counting_chunk(*args):
        body = real_chunk(*args)
        return lambda *a: traced.append(1) or body(*a)

    monkeypatch.setattr(training, "compile_in_background", recording_start)
    monkeypatch.setattr(training, "chunk_function", counting_chunk)
    config = replace(CONFIG, epochs=1, learning_rate=0.0321)  # a program no other test has made
    assert fit(*parts, config, TINY, progress=False).steps == 2
    assert len(started) == 1 and len(traced) == 1


def test_the_training_state_is_saved_at_the_first_validation_then_after_state_every_seconds(result, parts, tmp_path,
                                                                                             monkeypatch):
    saved_steps, save = [], training.save_training_state

    def counting_save(path, tag, state, key, loop):
        saved_steps.append(loop.step)
        save(path, tag, state, key, loop)

    monkeypatch.setattr(training, "save_training_state", counting_save)
    fit(*parts, CONFIG, TINY, progress=False, state_path=tmp_path / "every.msgpack", state_every=0)
    assert saved_steps == [2, 4, 6]  # every validation
    saved_steps.clear()
    path = tmp_path / "once.msgpack"
    fit(*parts, CONFIG, TINY, progress=False, state_path=path, state_every=float("inf"))
    assert saved_steps == [2]  # the first validation only: a killed run resumes from there
    resumed = fit(*parts, CONFIG, TINY, progress=False, state_path=path, resume=True, state_every=float("inf"))
    pd.testing.assert_frame_equal(resumed.history, result.history)


def test_chunks_cover_the_steps_evenly_and_never_leave_a_lone_last_step():
    assert training.chunk_lengths(13, 4) == [4, 3, 3, 3]  # not 4, 4, 4, 1: a one-step program is ~3x slower
    assert training.chunk_lengths(15, 4) == [4, 4, 4, 3]
    assert training.chunk_lengths(16, 4) == [4, 4, 4, 4]
    assert training.chunk_lengths(1, 4) == [1] and training.chunk_lengths(5, 4) == [3, 2]
    for unroll in (2, 3, 4, 8):
        for n in range(1, 40):
            lengths = training.chunk_lengths(n, unroll)
            assert sum(lengths) == n and max(lengths) <= unroll and max(lengths) - min(lengths) <= 1
            assert len(lengths) == -(-n // unroll)  # as few programs run as before
            assert lengths[-1] > 1 or n == 1 or unroll == 2, (n, unroll, lengths)


def test_how_steps_are_grouped_into_chunks_changes_no_training(parts, assert_close_to_scale, float32_tolerance):
    """One chunk of 4 steps or two of 2: the same batches, keys and updates (on a CPU's XLA even the
    same rounding; the precision's tolerance keeps the test true where a backend compiles them differently)."""
    config = replace(CONFIG, epochs=2, unroll_steps=4)
    grouped = [fit(*parts, replace(config, eval_every=every), TINY, progress=False).history for every in (4, 2)]
    assert grouped[0]["step"].iloc[-1] == grouped[1]["step"].iloc[-1] == 4
    assert_close_to_scale(grouped[1]["val_loss"].iloc[-1], grouped[0]["val_loss"].iloc[-1], float32_tolerance,
                          "validation loss after 4 steps")


def test_fit_says_what_it_takes(parts):
    train, val = parts
    with pytest.raises(TypeError, match="fit takes two FaceDatasets and a TrainConfig; got a ndarray for a Face"):
        fit(train.images, val)
    with pytest.raises(TypeError, match="got a dict for a TrainConfig"):
        fit(train, val, {"epochs": 1})
    small = resize_dataset(train, 20)
    with pytest.raises(ValueError, match=r"input_size 20 \(the images' side\) must be divisible by 8 .*--size 48"):
        fit(small, resize_dataset(val, 20), TrainConfig(epochs=1, batch_size=8), progress=False)


def test_ctrl_c_saves_the_last_validation_and_resuming_ends_as_an_uninterrupted_run(result, parts, tmp_path,
                                                                                     monkeypatch):
    """The state written every ``state_every`` seconds may be older than the run's checkpoint: Ctrl-C writes the
    last validation's state, so a resumed run goes on from there (not from further back, to a worse model)."""
    from emofx.nets.train_state import read_progress

    calls, real_chunk = [], training.make_train_chunk

    def interrupted_in_the_third_epoch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_chunk(*args)

    monkeypatch.setattr(training, "make_train_chunk", interrupted_in_the_third_epoch)
    path = tmp_path / "state.msgpack"
    stopped = fit(*parts, CONFIG, TINY, progress=False, state_path=path, state_every=float("inf"))
    assert stopped.stop_reason == "interrupted" and list(stopped.history["step"]) == [0, 2, 4]
    assert read_progress(path)["step"] == 4  # saved on schedule at step 2 only; Ctrl-C wrote step 4
    monkeypatch.setattr(training, "make_train_chunk", real_chunk)
    resumed = fit(*parts, CONFIG, TINY, progress=False, state_path=path, resume=True, state_every=float("inf"))
    pd.testing.assert_frame_equal(resumed.history, result.history)
    assert resumed.best_step == result.best_step and resumed.best_val_error == result.best_val_error


def test_a_damaged_training_state_says_how_to_start_afresh(tmp_path):
    from emofx.nets.train_state import TrainStateError, load_training_state

    path = tmp_path / "training_state.msgpack"
    path.write_bytes(b"\xc1 half a file")
    with pytest.raises(TrainStateError, match=r"is corrupt \(.*\); train the run afresh \(emofx train --overwrite\)"):
        load_training_state(path, {}, None, None)


def test_ctrl_c_during_a_scheduled_save_writes_that_state_again(parts, tmp_path, monkeypatch):
    """The save cut short keeps the older file (atomic write): the interrupt writes the state it was writing."""
    from emofx.nets.train_state import read_progress

    real_save, calls = training.save_training_state, []

    def cut_short_at_step_4(path, tag, state, key, loop):
        calls.append(loop.step)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(path, tag, state, key, loop)

    monkeypatch.setattr(training, "save_training_state", cut_short_at_step_4)
    path = tmp_path / "state.msgpack"
    stopped = fit(*parts, CONFIG, TINY, progress=False, state_path=path, state_every=0)
    assert stopped.stop_reason == "interrupted" and calls == [2, 4, 4] and read_progress(path)["step"] == 4


def test_ctrl_c_after_a_scheduled_save_keeps_that_save(result, parts, tmp_path, monkeypatch):
    """Saved at every validation: Ctrl-C in the next epoch leaves the last write as it is (the state it wrote has
    since been given to the next chunk, whose buffers it reuses)."""
    from emofx.nets.train_state import read_progress

    calls, real_chunk = [], training.make_train_chunk

    def interrupted_once_the_third_epoch_ran(*args):
        calls.append(1)
        chunk = real_chunk(*args)
        if len(calls) < 3:
            return chunk

        def run_then_stop(*inputs, **options):
            chunk(*inputs, **options)  # the state saved at step 4 is given to this chunk (its buffers donated)
            raise KeyboardInterrupt

        return run_then_stop

    monkeypatch.setattr(training, "make_train_chunk", interrupted_once_the_third_epoch_ran)
    path = tmp_path / "state.msgpack"
    stopped = fit(*parts, CONFIG, TINY, progress=False, state_path=path, state_every=0)
    assert stopped.stop_reason == "interrupted" and read_progress(path)["step"] == 4
    monkeypatch.setattr(training, "make_train_chunk", real_chunk)
    resumed = fit(*parts, CONFIG, TINY, progress=False, state_path=path, resume=True, state_every=0)
    pd.testing.assert_frame_equal(resumed.history, result.history)


def test_the_bar_shows_from_the_start_saying_compiling_until_the_first_step(parts, result, tmp_path, monkeypatch,
                                                                             capfd):
    """On FER2013 the first step came 30-60 s after `emofx train` started, with nothing on the screen before it."""
    monkeypatch.setenv("EMOFX_PROGRESS", "text")  # frames written as lines: the first one at the bar's creation
    trained = fit(*parts, CONFIG, TINY, progress=True)
    frames = [f for f in capfd.readouterr().err.replace("\r", "\n").splitlines() if f.startswith("train:")]
    assert "0/6" in frames[0] and "compiling" in frames[0]
    assert "6/6" in frames[-1] and "val_err=" in frames[-1] and "compiling" not in frames[-1]
    pd.testing.assert_frame_equal(trained.history, result.history)  # a bar changes no number
    path = tmp_path / "state.msgpack"
    fit(*parts, CONFIG, TINY, progress=False, state_path=path, state_every=float("inf"))  # saved at step 2
    fit(*parts, CONFIG, TINY, progress=True, state_path=path, resume=True)
    frames = [f for f in capfd.readouterr().err.replace("\r", "\n").splitlines() if f.startswith("train:")]
    assert "0/6" in frames[0] and "6/6" in frames[-1]  # the resumed run's bar counts its 2 earlier steps once
