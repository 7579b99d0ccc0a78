"""End to end: tiny trained runs of two synthetic cultures, compared through the API and `emofx compare`."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.data.dataset import FaceDataset
from emofx.data.regions import face_regions
from emofx.data.synthetic import make_synthetic
from emofx.nets.model import ModelConfig
from emofx.nets.training import TrainConfig
from emofx.study import comparison, cultures
from emofx.study.runs import train_run

QUICK = cultures.CompareConfig(n_permutations=99, n_boot=100, cka_images=16, filter_top_k=5, progress=False)
TRIALS = 2


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two cultures (eyes and mouth dialects), 2 tiny trained runs each, on disk like `emofx train` makes them."""
    root = tmp_path_factory.mktemp("compare")
    model = ModelConfig(num_classes=2, widths=(4, 8, 8), dense_units=8)
    train = TrainConfig(epochs=2, batch_size=16, flip=False, rotation_degrees=0.0)
    paths = {}
    for name, dialect in (("a", "eyes"), ("b", "mouth")):
        dataset = make_synthetic(dialect, n_per_class=12, seed=1, size=16, culture=name, classes=("happy", "surprised"))
        data_path = dataset.save(root / f"{name}.npz")
        for trial in range(TRIALS):
            train_run(dataset, root / name / f"trial{trial}", split_kind="random", trial=trial, train_config=train,
                      model_config=model, data_path=data_path, progress=False)
        paths[name] = (root / name, data_path)
    return paths


def test_compare_api_on_tiny_runs(tiny_runs):
    loaded = []
    for name in ("a", "b"):
        dataset = FaceDataset.load(tiny_runs[name][1])
        loaded.append((cultures.CultureRuns.load(tiny_runs[name][0], dataset), face_regions(dataset)))
    (a, regions_a), (b, regions_b) = loaded
    assert (a.name, b.name, a.n_trials) == ("a", "b", TRIALS)
    result = comparison.compare(a, b, regions_a, regions_b, QUICK)
    summary = result.summary()
    accuracy = summary["accuracy"]
    assert accuracy["diff"] == pytest.approx(accuracy["culture_a"] - accuracy["culture_b"])
    assert accuracy["p_value"] >= 1 / 6 - 1e-9  # 2 vs 2 trials: 6 exact splits
    assert accuracy["ci_low"] is None and accuracy["ci_high"] is None  # so no shift is rejected: JSON null
    # a subject split of these tiny sets tests too few people to redraw them: no interval over people
    assert accuracy["measured_ci_low"] is None and accuracy["measured_ci_high"] is None
    assert re.fullmatch(r"not measured: [1-4] test people, too few to redraw", accuracy["measured_ci_unit"])
    regions = list(regions_a.region_names)
    assert len(summary["region_tests"]) == len(regions) * (len(a.dataset.classes) + 1)  # + pooled "all" rows
    assert [t["emotion"] for t in summary["region_tests"][-len(regions):]] == ["all"] * len(regions)
    assert {t["unit"] for t in summary["region_tests"]} == {"trials"}
    shares = result.tables["saliency_measures"][regions].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-5)  # disjoint masks covering the image
    transfer = result.tables["transfer"]
    assert set(zip(transfer.train_culture, transfer.test_culture)) == {(x, y) for x in "ab" for y in "ab"}
    filters = result.tables["filters"]
    assert set(filters["region"]) <= set(regions) | {"dead"}
    assert len(filters) == 2 * TRIALS * 8
    assert summary["cka"]["within_a"] is not None and 0 <= summary["cka"]["between"] <= 1 + 1e-9
    assert result.pixel["difference"].shape == (16, 16)


def test_tables_name_trials_by_their_ids_and_h2_sees_only_the_shared_classes(tiny_runs):
    from emofx.data.emotions import ordered_classes

    (a, regions_a), (b, regions_b) = [
        (cultures.CultureRuns.load(tiny_runs[n][0], d), face_regions(d))
        for n, d in ((n, FaceDataset.load(tiny_runs[n][1])) for n in ("a", "b"))]
    a = replace(a, trial_ids=(3, 7))
    # b's first test image of each trial re-labelled with a class a lacks: H1 and H2 must both leave it out
    classes = ordered_classes((*b.dataset.classes, "afraid"))
    labels = np.array([classes.index(c) for c in b.dataset.classes])[b.dataset.labels]
    odd = [int(t[0]) for t in b.test_indices]
    labels[odd] = classes.index("afraid")
    b = replace(b, dataset=replace(b.dataset, classes=classes, labels=labels))
    result = comparison.compare(a, b, regions_a, regions_b, QUICK)
    for name in ("trial_metrics", "transfer"):
        table = result.tables[name]
        assert set(table.loc[table["train_culture"] == "a", "trial"]) == {3, 7}
        assert set(table.loc[table["train_culture"] == "b", "trial"]) == {0, 1}
    for name in ("saliency_measures", "filters", "chance", "class_errors"):
        assert set(result.tables[name].query("culture == 'a'")["trial"]) == {3, 7}, name
    cka = result.tables["cka"]
    assert set(cka.loc[cka["culture_1"] == "a", "trial_1"]) == {3, 7}
    measures = result.tables["saliency_measures"]
    assert not set(odd) & set(measures.query("culture == 'b'")["image"]) and "afraid" not in set(measures["emotion"])
    with pytest.raises(cultures.ComparisonError, match="must be distinct"):
        replace(a, trial_ids=(1, 1))
    with pytest.raises(cultures.ComparisonError, match=r"trial 7: test indices must be image indices in \[0, 24\)"):
        replace(a, test_indices=(a.test_indices[0], a.test_indices[1] + 100))


def test_culture_runs_reject_another_dataset(tiny_runs):
    other = make_synthetic("eyes", n_per_class=5, seed=1, size=16, classes=("happy", "surprised"))
    with pytest.raises(cultures.ComparisonError, match="pass the dataset"):
        cultures.CultureRuns.load(tiny_runs["a"][0], other)
    swapped = FaceDataset.load(tiny_runs["b"][1])  # the other culture: as many images, other faces
    with pytest.raises(cultures.ComparisonError, match="trained on other images than this dataset's"):
        cultures.CultureRuns.load(tiny_runs["a"][0], swapped)
    own = FaceDataset.load(tiny_runs["a"][1])
    runs = cultures.CultureRuns.load(tiny_runs["a"][0], own)
    partial = face_regions(own.subset(np.arange(10)))  # regions of another (smaller) set of images
    with pytest.raises(cultures.ComparisonError, match="cover 10 images but its dataset has"):
        comparison.compare(runs, replace(runs, name="b"), partial, partial, QUICK)
    theirs = face_regions(swapped)  # as many images, but the other culture's: the regions swapped
    with pytest.raises(cultures.ComparisonError, match="regions given for a were found on other images"):
        comparison.compare(runs, replace(runs, name="b"), theirs, face_regions(own), QUICK)
    from emofx.study.evaluation import evaluate

    with pytest.raises(TypeError, match="evaluate takes a TrainedModel \\(a run's .model\\) and a FaceDataset"):
        evaluate(str(tiny_runs["a"][0]), own)


def test_culture_runs_must_be_the_trials_of_one_experiment(tiny_runs, tmp_path, capsys):
    """A trial twice (its test images would count twice), a run stopped by Ctrl-C, and runs of other settings in
    one culture's folder are refused, naming the runs."""
    import shutil

    own = FaceDataset.load(tiny_runs["a"][1])

    def folder(name: str, edit=None) -> str:
        target = tmp_path / name
        shutil.copytree(tiny_runs["a"][0], target)
        if edit:
            metrics = json.loads((target / "trial1" / "metrics.json").read_text())
            edit(metrics)
            (target / "trial1" / "metrics.json").write_text(json.dumps(metrics))
        return str(target)

    twice = folder("twice")
    shutil.copytree(tiny_runs["a"][0] / "trial0", tmp_path / "twice" / "again")
    with pytest.raises(cultures.ComparisonError, match=r"again and .*trial0 are the same trial \(seed 0, trial 0\)"):
        cultures.CultureRuns.load(twice, own)
    stopped = folder("stopped", lambda m: m.update(stop_reason="interrupted"))
    with pytest.raises(cultures.ComparisonError, match=r"trial1 stopped before finishing \(interrupted\); finish it"):
        cultures.CultureRuns.load(stopped, own)
    assert main(["evaluate", f"{stopped}/trial1"]) == 0  # scored, with a note
    assert "trial1 stopped before finishing (interrupted): its model is the best one saved so far" in (
        capsys.readouterr().out)
    for command, more in (("saliency", []), ("modify", ["--to", own.classes[0], "--steps", "1"])):  # the same note
        assert main([command, f"{stopped}/trial1", "--data", str(tiny_runs["a"][1]), "--out", str(tmp_path / command),
                     "--n", "2", "--quiet", *more]) == 0
        err = capsys.readouterr().err
        assert "warning: " in err and "trial1 stopped before finishing (interrupted)" in err
    longer = folder("longer", lambda m: m["identity"]["train_config"].update(epochs=12))
    with pytest.raises(cultures.ComparisonError, match=r"trained with other settings \(train_config.epochs 2 vs 12\)"):
        cultures.CultureRuns.load(longer, own)


def test_trials_may_differ_in_their_training_seed_and_in_the_split_they_were_given(tiny_runs, tmp_path):
    """What tells trials apart is their seed, trial and given split (the matched protocol's): runs that differ in
    any of them, or in the training seed alone, are trials of one configuration."""
    import shutil

    own = FaceDataset.load(tiny_runs["a"][1])
    for name, edit in (("reseeded", lambda identity: identity["train_config"].update(seed=99)),
                       ("given_split", lambda identity: identity.update(trial=0, split_indices="0123456789abcdef"))):
        target = tmp_path / name
        shutil.copytree(tiny_runs["a"][0], target)
        metrics = json.loads((target / "trial1" / "metrics.json").read_text())
        assert "seed" in metrics["identity"]["train_config"] and metrics["identity"]["trial"] == 1
        edit(metrics["identity"])
        (target / "trial1" / "metrics.json").write_text(json.dumps(metrics))
        assert cultures.CultureRuns.load(target, own).n_trials == TRIALS, name


def test_compare_asks_about_the_floor_of_its_tests_over_trials_and_says_what_it_hears(tiny_runs, tmp_path,
                                                                                      monkeypatch, capsys):
    from emofx.study import comparison

    heard = []

    def floor_note(p_values, p_adjusted, smallest, what="region tests"):
        heard.append((len(p_values), smallest, what))
        return [f"a note on the {what}"]

    monkeypatch.setattr(comparison, "floor_note", floor_note)
    out = tmp_path / "out"
    assert main(["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
                 "--data-b", str(tiny_runs["b"][1]), "--out", str(out), "--permutations", "99", "--bootstrap", "50",
                 "--no-figures"]) == 0
    regions = pd.read_csv(out / "region_tests.csv")
    assert heard == [(len(regions), pytest.approx(1 / 3), "region tests"),  # 2 vs 2 trials
                     (len(pd.read_csv(out / "proximity_tests.csv")), pytest.approx(1 / 3), "landmark proximity tests")]
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert notes[-2:] == ["a note on the region tests", "a note on the landmark proximity tests"]
    assert "emofx compare: a note on the region tests" in capsys.readouterr().err


def test_cli_compare_writes_summary_tables_and_figures(tiny_runs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
            "--data-b", str(tiny_runs["b"][1]), "--out", str(out), "--permutations", "99", "--bootstrap", "50"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["accuracy"]) >= {"culture_a", "culture_b", "diff", "p_value", "ci_low", "ci_high"}
    assert set(summary["region_tests"][0]) >= {"emotion", "region", "diff", "effect_size", "p_value", "p_adjusted"}
    assert set(summary["cka"]) == {"between", "within_a", "within_b"}
    for name in ("trial_metrics", "confusion_tests", "region_tests", "transfer", "cka", "filters", "saliency_measures"):
        assert (out / f"{name}.csv").stat().st_size > 0
    confusions = pd.read_csv(out / "confusion_tests.csv")
    pd.testing.assert_frame_equal(pd.DataFrame(summary["confusion_tests"]), confusions, check_exact=False)
    significant_confusions = int((confusions["p_adjusted"] < 0.05).sum())
    assert set(confusions["true"]) | set(confusions["predicted"]) <= {"happy", "surprised"}
    assert (confusions["true"] != confusions["predicted"]).all()
    for name in ("accuracy_by_culture", "confusion_differences", "region_differences", "pixel_difference",
                 "transfer_matrix", "cka"):
        assert (out / f"{name}.png").stat().st_size > 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["accuracy"]["p_value"] == summary["accuracy"]["p_value"]
    assert printed["significant_confusion_tests"] == significant_confusions
    # 2 trials per culture: every test over trials is bound to p >= 1/3, and the user is told so
    assert summary["accuracy"]["smallest_p"] == pytest.approx(1 / 3)
    warning = next(n for n in summary["notes"] if n.startswith("too few trials"))
    assert f"emofx compare: {warning}" in captured.err and "train at least 4 trials per culture" in warning

    before = (out / "summary.json").read_text()
    assert main(argv) == 2  # never overwrites silently
    assert "already holds summary.json" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == before
    taken = tmp_path / "taken.txt"  # a file as --out: refused before the comparison's work, the file kept
    taken.write_text("mine")
    at = argv.index("--out") + 1
    assert main([*argv[:at], str(taken), *argv[at + 1:]]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err and taken.read_text() == "mine"
    (out / "my_notes.txt").write_text("mine")  # --overwrite without figures: none of the earlier ones stays
    assert main([*argv, "--overwrite", "--no-figures", "--permutations", "9", "--bootstrap", "9"]) == 0
    assert not list(out.glob("*.png")) and (out / "my_notes.txt").read_text() == "mine"
    assert json.loads((out / "summary.json").read_text())["config"]["n_boot"] == 9  # the new comparison


def test_cli_compare_reports_bad_input(tiny_runs, tmp_path, capsys):
    missing = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tmp_path / "nope.npz"),
               "--data-b", str(tiny_runs["b"][1]), "--out", str(tmp_path / "o")]
    assert main(missing) == 2
    assert "nope.npz" in capsys.readouterr().err
    same = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["a"][0]), "--data-a", str(tiny_runs["a"][1]),
            "--data-b", str(tiny_runs["a"][1]), "--out", str(tmp_path / "o2")]
    assert main([*same, "--name-a", "x", "--name-b", "y"]) == 2  # one culture's runs twice, however named
    assert "are the same folder of runs" in capsys.readouterr().err
    named_alike = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
                   "--data-b", str(tiny_runs["b"][1]), "--out", str(tmp_path / "o2"), "--name-a", "x", "--name-b", "x"]
    assert main(named_alike) == 2
    assert "both cultures are named 'x'; name them with --name-a/--name-b" in capsys.readouterr().err
    images_max_t = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
                    "--data-b", str(tiny_runs["b"][1]), "--out", str(tmp_path / "o3"), "--unit", "images"]
    assert main(images_max_t) == 2
    assert "maxT" in capsys.readouterr().err
    one_trial = tiny_runs["a"][0] / "trial0"  # a single run: no test over trials is possible
    single = ["compare", str(one_trial), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
              "--data-b", str(tiny_runs["b"][1]), "--out", str(tmp_path / "o4")]
    assert main(single) == 2
    assert "a has 1 trial(s) and b 2: the tests over trials need at least 2 per culture" in capsys.readouterr().err
    assert not (tmp_path / "o4").exists()


def test_runs_that_cannot_be_compared_are_refused_before_the_regions_of_every_face_are_searched(tiny_runs, tmp_path,
                                                                                                 capsys, monkeypatch):
    # On FER2013 the eye cascade runs over 35,887 faces a culture (minutes) before a single trial was refused.
    import emofx.cli.compare as command

    monkeypatch.setattr(command, "face_regions", lambda *a, **k: pytest.fail("regions searched first"))
    single = ["compare", str(tiny_runs["a"][0] / "trial0"), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
              "--data-b", str(tiny_runs["b"][1]), "--out", str(tmp_path / "o")]
    assert main(single) == 2
    assert "a has 1 trial(s) and b 2" in capsys.readouterr().err
    a = cultures.CultureRuns.load(tiny_runs["a"][0], FaceDataset.load(tiny_runs["a"][1]), "a")
    assert comparison.check_comparable(a, replace(a, name="b")) == tuple(a.dataset.classes)
    with pytest.raises(comparison.ComparisonError, match="both cultures are named 'a'"):
        comparison.check_comparable(a, a)


def test_cli_compare_flags_trials_not_above_chance(tiny_runs, tmp_path, capsys):
    out = tmp_path / "flags"
    argv = ["compare", str(tiny_runs["a"][0]), str(tiny_runs["b"][0]), "--data-a", str(tiny_runs["a"][1]),
            "--data-b", str(tiny_runs["b"][1]), "--out", str(out), "--permutations", "99", "--bootstrap", "50",
            "--no-figures"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    chance = pd.read_csv(out / "chance.csv")
    # two or three test images per trial: no balanced accuracy on them can be clearly above chance
    assert chance["flagged"].all() and (chance["n_images"] <= 3).all()
    assert len(json.loads(captured.out)["trials_not_above_chance"]) == 2 * TRIALS
    assert "NOT clearly above chance" in captured.err and "H1" in captured.err
    assert main(argv + ["--exclude-chance", "--overwrite"]) == 2
    assert "at least 2 per culture" in capsys.readouterr().err


def test_a_comparison_of_real_datasets_says_culture_is_confounded_with_dataset():
    from types import SimpleNamespace

    def culture(name: str, extras: tuple = (), **meta) -> SimpleNamespace:
        return SimpleNamespace(name=name, dataset=SimpleNamespace(meta=meta, extras=dict.fromkeys(extras)))

    apart = comparison.confound_note(culture("Swedish", source="/d/kdef"), culture("Taiwanese", source="/d/tw"))
    assert apart[0].startswith("culture is confounded with dataset here: Swedish's and Taiwanese's faces")
    one = comparison.confound_note(culture("A", source="/d/web"), culture("B", source="/d/web"))
    assert one[0].startswith("A and B come from one collection (/d/web)")
    synthetic = ("region_masks",)  # also merged into one file, whose meta names no source or format
    assert comparison.confound_note(culture("eyes", synthetic), culture("mouth", synthetic, merged_from=["x"])) == []


def test_a_comparison_says_where_trials_split_images_at_random_or_the_cultures_differently():
    from types import SimpleNamespace

    def culture(name: str, *kinds: str, grouped: bool = True) -> SimpleNamespace:
        return SimpleNamespace(name=name, models=[SimpleNamespace(info={"split": {
            "kind": k, "grouped": grouped and k != "random"}}) for k in kinds])

    assert comparison.split_note(culture("A", "subject", "subject"), culture("B", "subject")) == []
    mixed = comparison.split_note(culture("A", "subject"), culture("B", "random", "random"))
    assert mixed[0].startswith("the trials were split by kind (A subject; B random): a split that does not keep")
    assert comparison.split_note(culture("A", "random"), culture("B", "random"))  # alike, but random: said
    assert comparison.split_note(culture("A", "subject"), culture("B", "kfold"))  # measured otherwise: said
    assert comparison.split_note(culture("A", "kfold", grouped=False), culture("B", "kfold", grouped=False))
    assert comparison.split_note(culture("A", "kfold"), culture("B", "kfold")) == []  # folds of people
