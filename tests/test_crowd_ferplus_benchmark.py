"""End to end: ``benchmarks.crowd_ferplus`` on a slice of the real FER2013 + FER+ (skipped without them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import crowd_ferplus
from emofx.data.loaders import FERPLUS_VOTE_COLUMNS
from emofx.data.loaders.fer2013 import NO_MAJORITY, ferplus_majority
from emofx.nets.checkpoint import device_description
from emofx.nets.recipes import recipe_config

EMOTIONS = 8  # FER+ columns 0-7: the emotions; 8-9 are unknown / not a face
PER_SPLIT = {"Training": 10, "PublicTest": 3, "PrivateTest": 3}


def _slice_of_ferplus(shared_dataset, root):
    """A data root of symlinks: per split and FER+ majority emotion the first few images, with their votes."""
    fer, ferplus = shared_dataset("fer2013"), shared_dataset("ferplus")
    votes = pd.read_csv(ferplus / "fer2013new.csv", dtype=str, keep_default_na=False)
    mapping = pd.read_csv(ferplus / "ferplus_to_fer2013.csv", dtype=str, keep_default_na=False)
    counts = votes[list(FERPLUS_VOTE_COLUMNS)].replace("", "0").astype(int).to_numpy()
    mapping["winner"] = ferplus_majority(counts)[mapping["row"].astype(int)]
    mapping = mapping[(mapping.winner != NO_MAJORITY) & (mapping.winner < EMOTIONS)]
    mapping = mapping.drop_duplicates("fer2013_file")
    chosen = pd.concat([group.head(PER_SPLIT[usage]) for (usage, _), group in mapping.groupby(["usage", "winner"])])
    for name in chosen.fer2013_file:
        (root / "fer2013" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "fer2013" / name).symlink_to(fer / name)
    (root / "ferplus").mkdir()
    votes.to_csv(root / "ferplus" / "fer2013new.csv", index=False)
    chosen.drop(columns="winner").to_csv(root / "ferplus" / "ferplus_to_fer2013.csv", index=False)
    return chosen


def test_label_schemes_are_trained_and_tested_on_the_same_images(tmp_path, shared_dataset):
    chosen = _slice_of_ferplus(shared_dataset, tmp_path / "data")
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
