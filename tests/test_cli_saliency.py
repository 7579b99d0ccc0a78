"""End to end: `emofx saliency` and `emofx modify` on a tiny run trained on synthetic faces."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.data.synthetic import make_synthetic
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig
from emofx.study.runs import train_run

CLASSES = ("happy", "sad", "surprised")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run trained for a few epochs on 24 px mouth-dialect faces, recorded like `emofx train` does."""
    root = tmp_path_factory.mktemp("saliency")
    dataset = make_synthetic("mouth", n_per_class=24, seed=2, size=24, classes=CLASSES)
    data_path = dataset.save(root / "mouth.npz")
    train_run(dataset, root / "run", split_kind="random", train_config=TrainConfig(epochs=12, batch_size=16, flip=False,
              rotation_degrees=0.0, learning_rate=0.02, patience=0),
              model_config=ModelConfig(num_classes=3, widths=(8, 16, 16), dense_units=16),
              data_path=data_path, progress=False)
    return root / "run", data_path


@pytest.mark.parametrize("method", ["guided", "integrated-gradients"])
def test_saliency_command(tiny_run, tmp_path, capsys, method):
    run_dir, data_path = tiny_run
    out = tmp_path / method
    args = [str(run_dir), "--data", str(data_path), "--method", method, "--out", str(out), "--per-class", "2",
            "--quiet"]
    extra = ["--sanity"] if method == "guided" else ["--steps", "16"]
    assert main(["saliency", *args, *extra]) == 0
    assert "test images" in capsys.readouterr().out
    with np.load(out / "maps.npz") as saved:
        maps, indices, labels, targets = saved["maps"], saved["indices"], saved["labels"], saved["targets"]
        assert list(saved["classes"]) == list(CLASSES)
    split = json.loads((run_dir / "split.json").read_text())
    assert sorted(indices.tolist()) == sorted(split["test"])  # held-out images only
    assert maps.shape == (len(indices), 24, 24) and np.all(np.isfinite(maps))
    np.testing.assert_array_equal(targets, labels)  # --target label is the default
    assert (out / "grid.png").stat().st_size > 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["signal_regions"] == ["mouth"]
    # the model learnt the mouth dialect: its maps put far more mass on the mouth than the mouth's share of the
    # image (2.4-3.8x measured for these methods; 1 would be chance)
    assert 0 <= scores["pointing_game"] <= 1 and scores["mass_ratio"] > 1.5
    assert scores["n_images"] == len(indices)
    per_image = pd.read_csv(out / "region_scores.csv")
    assert per_image["data_index"].tolist() == indices.tolist()
    # Share of saliency per facial region (here the synthetic faces' true regions), beside each region's area.
    assert scores["regions"]["method"] == "truth" and (out / "region_shares.png").stat().st_size > 0
    shares = pd.read_csv(out / "region_shares.csv")
    assert shares["data_index"].tolist() == indices.tolist()
    regions = scores["regions"]["regions"]
    # Disjoint regions cover the face, and the shares are computed in float64 from each map normalised in float64
    # (emofx.study.features.normalised_saliency), whatever the float32 maps' rounding on a CPU or GPU: 1e-9 holds.
    np.testing.assert_allclose(shares[regions].sum(axis=1), 1.0, atol=1e-9)
    assert list(scores["region_shares"]) == ["all", *CLASSES]
    for emotion in CLASSES:
        mine = shares[shares["emotion"] == emotion][regions].mean()
        assert scores["region_shares"][emotion] == pytest.approx(mine.to_dict())
    assert sum(scores["region_area_share"].values()) == pytest.approx(1.0)
    assert scores["region_shares"]["all"]["mouth"] > 1.5 * scores["region_area_share"]["mouth"]
    if method == "integrated-gradients":
        assert scores["completeness"]["median_relative_error"] < 0.1
    else:
        randomised = pd.read_csv(out / "randomisation.csv")
        assert list(randomised.drop_duplicates("step")["layer"]) == [
            "none", "output", "dense", "conv3", "conv2", "conv1"]
        assert [row["layer"] for row in scores["randomisation"]] == [
            "none", "output", "dense", "conv3", "conv2", "conv1"]
        assert scores["randomisation"][0]["spearman"] == pytest.approx(1.0)
        assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1
        assert (out / "randomisation.png").stat().st_size > 0
    # Outputs are never overwritten silently.
    assert main(["saliency", *args]) == 2
    assert "already holds maps.npz" in capsys.readouterr().err


def test_saliency_command_rejects_bad_requests(tiny_run, tmp_path, capsys):
    run_dir, data_path = tiny_run
    base = [str(run_dir), "--data", str(data_path), "--out", str(tmp_path / "x"), "--quiet"]
    assert main(["saliency", *base, "--target", "bored"]) == 2
    assert "'bored'" in capsys.readouterr().err
    other = make_synthetic("mouth", n_per_class=2, seed=0, size=16, classes=CLASSES).save(tmp_path / "small.npz")
    assert main(["saliency", str(run_dir), "--data", str(other), "--out", str(tmp_path / "y")]) == 2
    assert "--size 24" in capsys.readouterr().err
    assert main(["saliency", str(tmp_path), "--data", str(data_path), "--out", str(tmp_path / "z")]) == 2
    assert "not a complete emofx run" in capsys.readouterr().err
    assert main(["saliency", *base, "--per-class", "0"]) == 2  # refused before any work: nothing written
    assert "--per-class must be at least 1" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["saliency", *base, "--regions", "landmarks"]) == 2  # synthetic faces carry no 68 points
    assert "has no 68-point landmarks" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["modify", str(run_dir), "--data", str(data_path), "--to", "happy", "--show", "0",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--show must be at least 1" in capsys.readouterr().err and not (tmp_path / "m").exists()
    for command in (["saliency"], ["modify", "--to", "happy"]):  # --n is refused before the data are read
        assert main([command[0], str(run_dir), "--data", str(tmp_path / "none.npz"), *command[1:], "--n", "0",
                     "--out", str(tmp_path / "n")]) == 2
        assert "--n must be at least 1; got 0" in capsys.readouterr().err and not (tmp_path / "n").exists()


def test_overwrite_leaves_no_output_of_the_earlier_run(tiny_run, tmp_path):
    run_dir, data_path = tiny_run
    out = tmp_path / "modify"
    base = ["modify", str(run_dir), "--data", str(data_path), "--to", "happy", "--steps", "2", "--out", str(out),
            "--quiet"]
    assert main([*base, "--n", "6"]) == 0
    (out / "images" / "notes.txt").write_text("mine")  # the user's files beside ours stay
    assert main([*base, "--n", "3", "--from", "sad", "--overwrite"]) == 0
    with np.load(out / "images.npz") as saved:
        indices = saved["indices"]
    assert sorted(p.name for p in (out / "images").glob("*.png")) == sorted(
        f"{i:05d}-{kind}.png" for i in indices for kind in ("original", "result"))
    assert (out / "images" / "notes.txt").read_text() == "mine"
    stale = tmp_path / "saliency"
    stale.mkdir()
    (stale / "grid-Klingon.png").write_bytes(b"old")  # a grid an earlier run listed in its scores.json
    (stale / "grid-my-figure.png").write_bytes(b"mine")  # a figure of the user's, listed nowhere
    (stale / "scores.json").write_text(json.dumps({"grids": ["grid-Klingon.png", "../elsewhere.png"]}))
    (stale / "randomisation.csv").write_text("old")
    assert main(["saliency", str(run_dir), "--data", str(data_path), "--method", "gradcam", "--n", "6",
                 "--per-class", "1", "--target", "happy", "--regions", "none", "--out", str(stale), "--overwrite",
                 "--quiet"]) == 0
    assert sorted(p.name for p in stale.iterdir()) == ["grid-my-figure.png", "grid.png", "maps.npz",
                                                       "region_scores.csv", "scores.json"]
    scores = json.loads((stale / "scores.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert scores["target"] == "happy" and scores["grids"] == []
    assert scores["score"] == "logit" and scores["options"] == {}  # Grad-CAM's default, recorded
    assert scores["n_images"] == 6 and scores["n_scored_maps"] + scores["n_empty_maps"] == 6


def test_images_the_run_learned_from_are_left_out_of_another_file(tiny_run, tmp_path, capsys):
    """A file holding the run's training images among others (a pooled or merged file): maps and modifications are
    made of the others only, as `emofx evaluate` scores them, and the count left out is said."""
    from emofx.data.dataset import FaceDataset, merge

    run_dir, data_path = tiny_run
    own = FaceDataset.load(data_path)
    split = json.loads((run_dir / "split.json").read_text())
    strangers = make_synthetic("mouth", n_per_class=4, seed=9, size=24, classes=CLASSES)
    pooled = merge([own, strangers]).save(tmp_path / "pooled.npz")
    seen = len(split["train"]) + len(split["val"])
    assert main(["saliency", str(run_dir), "--data", str(pooled), "--method", "gradient", "--regions", "none",
                 "--out", str(tmp_path / "maps"), "--quiet"]) == 0
    with np.load(tmp_path / "maps" / "maps.npz") as saved:
        indices = saved["indices"]
    assert len(indices) == len(own) + len(strangers) - seen and set(indices) >= set(range(len(own), len(own) + 12))
    assert set(indices[indices < len(own)]) == set(split["test"])
    scores = json.loads((tmp_path / "maps" / "scores.json").read_text())
    assert scores["images"] == (f"the images it did not train or validate on ({seen} of {len(own) + 12} left out: "
                                "the same pixels as its training or validation images)")
    assert f"{seen} of {len(own) + 12} left out" in capsys.readouterr().out
    training_only = own.subset(np.asarray(split["train"])).save(tmp_path / "train.npz")
    assert main(["modify", str(run_dir), "--data", str(training_only), "--to", "happy",
                 "--out", str(tmp_path / "walk")]) == 2
    assert "is one" in capsys.readouterr().err and not (tmp_path / "walk").exists()


def test_predictions_follow_the_recipe_unless_told(make_tiny_model):
    from emofx.nets.checkpoint import TrainedModel

    plain = make_tiny_model(CLASSES, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    flipping = TrainedModel(plain.config, plain.params, plain.classes,
                            info={"train_config": {"flip_average": True}})
    averaged = plain.predict_proba(images, flip_average=True)
    assert not np.allclose(averaged, plain.predict_proba(images))
    np.testing.assert_array_equal(flipping.predict_proba(images), averaged)
    np.testing.assert_array_equal(flipping.predict_proba(images, flip_average=False), plain.predict_proba(images))


@pytest.mark.parametrize("method", ["gradient", "guided"])
def test_modify_command(tiny_run, tmp_path, capsys, method):
    run_dir, data_path = tiny_run
    out = tmp_path / "modify"
    assert main(["modify", str(run_dir), "--data", str(data_path), "--from", "sad", "--to", "happiness",
                 "--steps", "10", "--step-size", "0.02", "--method", method, "--out", str(out), "--quiet"]) == 0
    assert "-> happy" in capsys.readouterr().out
    with np.load(out / "images.npz") as saved:
        images, labels, indices = saved["images"], saved["labels"], saved["indices"]
    assert images.shape[:2] == (11, len(indices)) and images.min() >= 0 and images.max() <= 1
    assert set(labels) == {CLASSES.index("sad")}
    frame = pd.read_csv(out / "probabilities.csv")
    assert list(frame.columns) == ["image", "step", "class", "probability"]
    assert set(frame["image"]) == set(indices.tolist()) and set(frame["step"]) == set(range(11))
    happy = frame[frame["class"] == "happy"].groupby("step")["probability"].mean()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target_probability_before"] == pytest.approx(happy[0], abs=1e-6)
    assert summary["target_probability_after"] == pytest.approx(happy[10], abs=1e-6)
    assert summary["target_probability_after"] > summary["target_probability_before"] + 0.05
    assert summary["mean_abs_change"] > 0
    assert (out / "panel.png").stat().st_size > 0
    assert len(list((out / "images").glob("*.png"))) == 2 * len(indices)


def test_modify_command_rejects_unknown_classes(tiny_run, tmp_path, capsys):
    run_dir, data_path = tiny_run
    assert main(["modify", str(run_dir), "--data", str(data_path), "--to", "angry", "--out", str(tmp_path)]) == 2
    assert "not a class of this model" in capsys.readouterr().err


def test_data_without_the_models_classes_or_regions_is_handled_before_any_output(tiny_run, tmp_path, capsys):
    from emofx.data.dataset import merge

    run_dir, data_path = tiny_run
    faces = make_synthetic("mouth", n_per_class=3, seed=0, size=24, classes=("happy", "angry"))
    strangers = faces.subset(np.flatnonzero(faces.label_names == "angry")).save(tmp_path / "strangers.npz")
    for command in (["saliency"], ["modify", "--to", "happy"], ["evaluate"]):
        out = [] if command == ["evaluate"] else ["--out", str(tmp_path / command[0])]
        assert main([command[0], str(run_dir), "--data", str(strangers), *command[1:], *out]) == 2
        assert "shows a class the model knows (happy)" in capsys.readouterr().err  # the classes both have
        assert not (tmp_path / command[0]).exists()
    assert main(["modify", str(run_dir), "--data", str(data_path), "--to", "happy", "--step-size", "nan",
                 "--out", str(tmp_path / "nan")]) == 2
    assert "a finite step_size > 0" in capsys.readouterr().err and not (tmp_path / "nan").exists()

    # merged faces of one dialect keep it (region scores as for one file); of two dialects, the scores are skipped
    same = merge([make_synthetic("mouth", n_per_class=3, seed=s, size=24, classes=CLASSES) for s in (5, 6)])
    mixed = merge([make_synthetic(d, n_per_class=3, seed=5, size=24, classes=CLASSES) for d in ("mouth", "eyes")])
    for name, data, regions in (("same", same, True), ("mixed", mixed, False)):
        assert main(["saliency", str(run_dir), "--data", str(data.save(tmp_path / f"{name}.npz")), "--quiet",
                     "--out", str(tmp_path / f"maps-{name}")]) == 0
        printed = capsys.readouterr().out
        scores = json.loads((tmp_path / f"maps-{name}" / "scores.json").read_text())
        assert ("pointing_game" in scores) == regions and ("region scores skipped" in printed) != regions
