"""End to end: ``benchmarks.crowd_ferplus`` on a slice of the real FER2013 + FER+ (skipped without them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import crowd_ferplus
from emofx.nets.checkpoint import TrainedModel, device_description
from emofx.nets.model import ModelConfig, init_params
from emofx.nets.recipes import recipe_config


def test_label_schemes_are_trained_and_tested_on_the_same_images(tmp_path, ferplus_slice):
    chosen = ferplus_slice(tmp_path / "data")
    out = tmp_path / "table" / "ferplus"
    assert crowd_ferplus.main(["--data", str(tmp_path / "data"), "--limit", "0", "--epochs", "1",
                               "--recipe", "strong", "--widths", "4,4,4", "--dense-units", "8",
                               "--arms", "majority", "plurality", "soft", "--out", str(out)]) == 0

    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.arm) == ["majority", "plurality", "soft"]
    training = int(np.sum(chosen.usage == "Training"))
    # Every chosen image has a majority emotion, hence a plurality one: all three arms see all of them.
    assert list(table.train_images) == [training] * 3
    batch = recipe_config("strong", epochs=1).batch_size
    assert np.allclose(table.epochs_run, round(-(-training // batch) * batch / training, 2))  # whole batches
    # A FER+ majority (> half of the votes) is also the plurality: those two arms are one training.
    majority, plurality = table.iloc[0], table.iloc[1]
    assert majority.test_accuracy == plurality.test_accuracy
    assert majority.test_vote_cross_entropy == plurality.test_vote_cross_entropy
    assert table.test_accuracy.between(0, 1).all() and table.test_balanced_accuracy.between(0, 1).all()
    # Cross-entropy against the test votes of 8 classes: above 0, and near ln 8 for a barely trained net.
    assert table.test_vote_cross_entropy.between(0.5, 4.0).all()
    report = out.with_suffix(".md").read_text()
    assert "all training images, 1 epochs, seed 0, strong recipe, a reduced CNN" in report
    assert f"Device: {device_description()}." in report
    assert "| soft " in report


def test_arms_fine_tune_from_init_from(tmp_path, ferplus_slice, monkeypatch):
    chosen = ferplus_slice(tmp_path / "data")
    fer2013_classes = ("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")
    source_config = ModelConfig(num_classes=len(fer2013_classes), widths=(4, 4, 4), dense_units=8)
    source = TrainedModel(config=source_config, params=init_params(source_config, 7), classes=fer2013_classes)
    source.save(tmp_path / "pretrained" / "checkpoint")
    trained = []

    def spy(*args, **kwargs):
        trained.append((args[2], kwargs["init_from"], real_fit(*args, **kwargs)))
        return trained[-1][2]

    real_fit = crowd_ferplus.fit
    monkeypatch.setattr(crowd_ferplus, "fit", spy)
    out = tmp_path / "table" / "ferplus"
    assert crowd_ferplus.main(["--data", str(tmp_path / "data"), "--limit", "0", "--epochs", "1", "--recipe", "strong",
                               "--widths", "4,4,4", "--dense-units", "8", "--init-from", str(tmp_path / "pretrained"),
                               "--lr", "0.01", "--conv-lr-scale", "0", "--arms", "soft",
                               "--save-models", str(tmp_path / "models"), "--out", str(out)]) == 0

    (config, init_from, result), = trained
    assert (config.learning_rate, config.conv_lr_scale, config.soft_targets) == (0.01, 0.0, True)
    assert init_from.classes == fer2013_classes
    params = result.model.params
    assert result.steps == -(-int(np.sum(chosen.usage == "Training")) // config.batch_size)  # one epoch
    for layer in ("conv1", "conv2", "conv3"):  # loaded, and frozen (scale 0): exactly the pre-trained kernels
        np.testing.assert_array_equal(params[layer]["kernel"], source.params[layer]["kernel"])
    assert params["output"]["kernel"].shape == (8, 8)  # FER+'s eight classes: seven pre-trained units, contempt fresh
    assert f"fine-tuned from {tmp_path / 'pretrained'}, a reduced CNN" in out.with_suffix(".md").read_text()

    # The table begins with the starting model as it is, its classes matched to FER+'s by name.
    # Both rows are scored as the strong recipe says: each image's and its mirror image's mean.
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.arm) == ["not fine-tuned", "soft"]
    start, soft = table.iloc[0], table.iloc[1]
    majority, _ = crowd_ferplus.label_schemes(tmp_path / "data", 0)
    test = majority.subset(majority.split == "PrivateTest")
    truth = np.asarray(test.classes)[test.labels]
    predicted = np.asarray(fer2013_classes)[source.predict_proba(test.images, flip_average=True).argmax(axis=1)]
    assert start.test_accuracy == round(float(np.mean(predicted == truth)), 4)
    assert start.train_images == 0 and np.isnan(start.test_vote_cross_entropy)

    # --save-models kept the soft arm's model: a checkpoint that scores as its row says.
    saved = TrainedModel.load(tmp_path / "models" / "soft")
    assert saved.classes == test.classes
    np.testing.assert_array_equal(saved.params["output"]["kernel"], params["output"]["kernel"])
    predicted = np.asarray(saved.classes)[saved.predict_proba(test.images, flip_average=True).argmax(axis=1)]
    assert soft.test_accuracy == round(float(np.mean(predicted == truth)), 4)


def test_a_missing_init_from_is_one_line_and_exit_status_2(tmp_path, capsys):
    out = tmp_path / "table" / "ferplus"
    assert crowd_ferplus.main(["--data", str(tmp_path), "--init-from", str(tmp_path / "nothing"),
                               "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("crowd_ferplus: ") and error.count("\n") == 1 and "nothing" in error
    assert not out.with_suffix(".csv").exists() and not out.with_suffix(".md").exists()


def test_an_existing_model_folder_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "models" / "plurality_agreement").mkdir(parents=True)
    (tmp_path / "models" / "plurality_agreement" / "model.json").write_text("{}")
    out = tmp_path / "table" / "ferplus"
    assert crowd_ferplus.main(["--data", str(tmp_path), "--arms", "plurality+agreement",
                               "--save-models", str(tmp_path / "models"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("crowd_ferplus: ") and error.count("\n") == 1 and "plurality_agreement" in error
    assert (tmp_path / "models" / "plurality_agreement" / "model.json").read_text() == "{}"
    assert not out.with_suffix(".csv").exists()
