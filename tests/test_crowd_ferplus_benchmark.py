"""End to end: ``benchmarks.crowd_ferplus`` on a slice of the real FER2013 + FER+ (skipped without them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import crowd_ferplus
from emofx.nets.checkpoint import device_description
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
