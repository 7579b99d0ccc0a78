"""The paper's CNN: architecture sizes, the checkpoint round trip and the provenance it records."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emofx.nets.checkpoint import CheckpointError, TrainedModel, source_revision
from emofx.nets.model import EmotionCNN, ModelConfig, init_params

TINY = ModelConfig(num_classes=3, widths=(8, 16, 16), dense_units=32, pixel_mean=0.4, pixel_std=0.2)


def _shapes(config: ModelConfig):
    return jax.eval_shape(lambda: init_params(config, 0))


def _count(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def test_parameter_count_matches_reference_architecture():
    # conv 5x5: 1->64, 64->128, 128->256 (with biases); dense 6*6*256 -> 300; output 300 -> 7.
    assert _count(_shapes(ModelConfig(num_classes=7))) == 3_793_255
    assert _count(_shapes(ModelConfig(num_classes=7, conv_bias=False))) == 3_793_255 - (64 + 128 + 256)
    assert _count(_shapes(ModelConfig(num_classes=7, input_size=96))) == 3_793_255 + (12 * 12 - 6 * 6) * 256 * 300


def test_a_model_without_units_or_with_an_impossible_kernel_or_dropout_is_refused():
    for fields in ({"widths": (0, 8, 8)}, {"widths": ()}, {"dense_units": 0}):
        with pytest.raises(ValueError, match="every layer needs at least one unit"):
            ModelConfig(**{"num_classes": 3, **fields})
    with pytest.raises(ValueError, match="kernel_size must be at least 1; got 0"):
        ModelConfig(num_classes=3, kernel_size=0)
    for dropout in (1.0, 1.5, -0.1, float("nan")):  # 1 would drop every dense unit: training stays at chance
        with pytest.raises(ValueError, match=r"dropout .* must lie in \[0, 1\)"):
            ModelConfig(num_classes=3, dropout=dropout)


def test_layer_shapes_and_output_shape():
    config = ModelConfig(num_classes=7)
    shapes = _shapes(config)
    assert shapes["conv1"]["kernel"].shape == (5, 5, 1, 64)
    assert shapes["conv3"]["kernel"].shape == (5, 5, 128, 256)
    assert shapes["dense"]["kernel"].shape == (6 * 6 * 256, 300)
    logits = jax.eval_shape(lambda p, x: EmotionCNN(config).apply({"params": p}, x), shapes,
                            jax.ShapeDtypeStruct((5, 48, 48), jnp.float32))
    assert logits.shape == (5, 7)


@pytest.fixture(scope="module")
def tiny_model() -> TrainedModel:
    return TrainedModel(config=TINY, params=init_params(TINY, 3), classes=("angry", "happy", "sad"))


def test_checkpoint_round_trip_predicts_identically(tiny_model, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    tiny_model.save(tmp_path / "ckpt", extra={"split": {"train": [0, 1]}})
    loaded = TrainedModel.load(tmp_path / "ckpt")
    assert loaded.config == TINY and loaded.classes == tiny_model.classes
    assert loaded.info["split"] == {"train": [0, 1]}
    assert loaded.info["versions"]["emofx-commit"] == source_revision()  # the code that made it
    np.testing.assert_array_equal(loaded.predict_proba(images), tiny_model.predict_proba(images))


def test_saving_over_a_checkpoint_needs_overwrite(tiny_model, tmp_path):
    """A saved model is never replaced by accident; replacing it drops a batch-statistics file it no longer has."""
    from emofx.nets.checkpoint import BATCH_STATS_FILE, PARAMS_FILE

    folder = tiny_model.save(tmp_path / "ckpt")
    before = (folder / PARAMS_FILE).read_bytes()
    other = TrainedModel(config=TINY, params=init_params(TINY, 4), classes=tiny_model.classes)
    with pytest.raises(FileExistsError, match="already holds an emofx checkpoint"):
        other.save(folder)
    assert (folder / PARAMS_FILE).read_bytes() == before
    (folder / BATCH_STATS_FILE).write_bytes(b"stale")
    other.save(folder, overwrite=True)
    assert (folder / PARAMS_FILE).read_bytes() != before and not (folder / BATCH_STATS_FILE).exists()
    images = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(TrainedModel.load(folder).predict_proba(images), other.predict_proba(images))
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)  # a run folder: its model lives in checkpoint/
    with pytest.raises(FileExistsError, match="is a run folder"):
        other.save(tmp_path / "run", overwrite=True)


def test_checkpoint_refuses_other_architecture_or_classes(tiny_model, tmp_path):
    tiny_model.save(tmp_path)
    with pytest.raises(CheckpointError, match="architecture"):
        TrainedModel.load(tmp_path, expect_config=ModelConfig(num_classes=3))
    with pytest.raises(CheckpointError, match="classes"):
        TrainedModel.load(tmp_path, expect_classes=("angry", "sad"))
    with pytest.raises(CheckpointError, match="no emofx checkpoint"):
        TrainedModel.load(tmp_path / "missing")


def test_a_checkpoint_whose_arrays_do_not_fit_its_model_json_is_refused(tiny_model, tmp_path):
    """Reading uses the architecture's shapes (traced, not run): a params file of another layer width,
    or one missing, is named with the array that differs rather than failing later inside a layer."""
    from emofx.nets.checkpoint import MODEL_FILE, PARAMS_FILE
    from emofx.nets.model import variable_shapes

    shapes = variable_shapes(TINY)
    assert jax.tree.map(lambda s: s.shape, shapes["params"]) == jax.tree.map(jnp.shape, tiny_model.params)
    tiny_model.save(tmp_path / "good")
    wide = replace(TINY, dense_units=40)
    TrainedModel(config=wide, params=init_params(wide, 0), classes=tiny_model.classes).save(tmp_path / "wider")
    (tmp_path / "good" / PARAMS_FILE).write_bytes((tmp_path / "wider" / PARAMS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match=r"model.json: \['dense'\]\['bias'\] is \(40,\), not \(32,\)"):
        TrainedModel.load(tmp_path / "good")
    (tmp_path / "good" / PARAMS_FILE).unlink()
    with pytest.raises(CheckpointError, match="expected model.json and params.msgpack"):
        TrainedModel.load(tmp_path / "good")
    assert (tmp_path / "good" / MODEL_FILE).is_file()  # nothing else touched


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_source_revision_names_the_commit_and_whether_the_package_changed(tmp_path):
    repo, package = tmp_path / "repo", tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (repo / "elsewhere.py").write_text("y = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=emofx", "-c", "user.email=emofx@example.org",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    assert source_revision(package) == ""  # in a repository that does not track it
    git("add", "."), git("commit", "-qm", "first")
    commit = git("rev-parse", "HEAD")
    assert len(commit) == 40 and source_revision(package) == commit
    (package / "notes.txt").write_text("not source")  # untracked files are not changes of the source
    (repo / "elsewhere.py").write_text("y = 2\n")  # nor are changes outside the package
    assert source_revision(package) == commit
    (package / "__init__.py").write_text("x = 2\n")
    assert source_revision(package) == commit + "+dirty"
    assert source_revision(tmp_path) == ""  # not a git checkout at all


def test_a_numpy_integer_seed_initialises_as_the_same_python_integer():
    config = ModelConfig(num_classes=2, widths=(4, 8, 8), dense_units=8)
    for mine, theirs in zip(jax.tree.leaves(init_params(config, np.int64(3))), jax.tree.leaves(init_params(config, 3))):
        np.testing.assert_array_equal(mine, theirs)


def test_the_device_names_the_cores_this_process_may_use():
    """CPU training's last digits depend on the cores XLA may use: a run restricted by taskset says so."""
    import os
    import re

    from emofx.nets.checkpoint import device_description

    cores = os.sched_getaffinity(0)
    assert re.fullmatch(rf".+ \({len(cores)}( of {os.cpu_count()})? cores(, .+)?\)", device_description())
    if len(cores) > 1:
        os.sched_setaffinity(0, {min(cores)})
        try:
            assert f"(1 of {os.cpu_count()} cores" in device_description()
        finally:
            os.sched_setaffinity(0, cores)


def test_the_device_names_the_vector_width_a_cpus_sums_depend_on():
    """An AVX2 CPU sums in other orders than an AVX-512 one: the same seed trains to other numbers on each."""
    from emofx.nets.checkpoint import cpu_vector_width, device_description

    zen5 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw\n\nprocessor\t: 1\n"
    zen3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2\n"
    assert cpu_vector_width(zen5, "") == "AVX-512" and cpu_vector_width(zen3, "") == "AVX2"
    assert cpu_vector_width("flags\t: fpu sse4_2\n", "") == "SSE4.2" and cpu_vector_width("", "") == ""  # off Linux
    assert (cpu_vector_width(zen5, "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=AVX2")
            == "AVX2 as XLA_FLAGS caps it (AVX-512 CPU)")  # how make test reproduces an AVX2 CPU
    if jax.devices()[0].platform == "cpu":
        assert device_description().endswith(f", {cpu_vector_width()})") or not cpu_vector_width()


def test_a_large_set_is_predicted_in_pieces_with_a_bar_and_the_numbers_of_one_call(make_tiny_model, monkeypatch,
                                                                                   capsys):
    from emofx.nets import checkpoint

    model = make_tiny_model(("angry", "happy", "sad"), 3)
    images = np.random.default_rng(1).integers(0, 256, (300, 16, 16), dtype=np.uint8)
    whole = model.predict_proba(images)  # 300 rows: a bucket of 320, one call in batches of 64
    shapes = []
    program = checkpoint._probabilities
    monkeypatch.setattr(checkpoint, "_probabilities", lambda *a: (
        lambda variables, part, stats: shapes.append(part.shape[0]) or program(*a)(variables, part, stats)))
    monkeypatch.setattr(checkpoint, "PIECE_ROWS", 64)
    monkeypatch.setenv("EMOFX_PROGRESS", "text")
    pieces = model.predict_proba(images, progress=True)
    assert shapes == [64] * 5  # the bucket's last 20 rows of padding alone are not run
    np.testing.assert_array_equal(pieces, whole)  # the same batches of 64: the same numbers
    assert "predict" in capsys.readouterr().err
    assert model.predict(images[:10], progress=True).tolist() == whole[:10].argmax(axis=1).tolist()
    assert shapes[-1] == 10 and "predict" not in capsys.readouterr().err  # a small set: one call, no bar
