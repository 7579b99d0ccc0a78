"""The KDEF vs Taiwanese study: both experiment files run end to end with tiny parameters on synthetic
stand-ins (the real cultures replaced by synthetic dialects under their names), then `emofx report`;
and the pieces it adds: the matched protocol, chance flags, the human baseline, the stated model."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofx.cli import main
from emofx.nets.checkpoint import device_description, source_revision
from emofx.data.dataset import merge
from emofx.data.sources import SourceNameError, is_real, load_source
from emofx.data.synthetic import make_synthetic
from emofx.nets.model import ModelConfig, chosen_model
from emofx.nets.precision import precision_in_force, use_precision
from emofx.nets.training import TrainConfig
from emofx.pipeline import batch, experiments, report
from emofx.study.accuracy import predictions_frame, trial_pairs
from emofx.pipeline.report_text import human_paragraph
from emofx.study.baselines import (against_observers, balanced_accuracy_p_value, chance_flags, confusion_p_value,
                                  human_baseline)
from emofx.study.cultures import ComparisonError, CultureRuns, matched_splits, prepare_culture
from emofx.study.stats import StatsInputError
from emofx.study import runs
from emofx.study.evaluation import evaluate
from emofx.study.runs import train_run

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
STAND_INS = {"Swedish": "synthetic:eyes", "Taiwanese": "synthetic:mouth"}
TINY = {"n_per_class": 15, "epochs": 1, "widths": [8, 16, 16], "dense_units": 32}


def tiny_experiment(path: Path, runs_dir: Path, protocols: list[str], cultures_03: list[str],
                    pretrained: Path) -> experiments.Experiment:
    """The experiment file's sweeps with the data replaced by stand-ins, a tiny pre-trained model for
    ``init_from``, and everything shrunk."""
    experiment = experiments.load_experiment(path, runs_dir=runs_dir)
    s02, s03, s04, s05 = experiment.sweeps
    missing = set(s02.fixed) - set(experiments.notebook_parameters(s02.notebook))
    assert not missing, f"{path.name} uses parameters notebook 02 lacks: {missing}"
    fixed02 = {k: (str(pretrained) if k == "init_from" else v) for k, v in s02.fixed.items()}
    sweeps = (
        experiments.Sweep(s02.notebook, {**s02.grid, "protocol": protocols, "trial": [0, 1]},
                          {**fixed02, **TINY, "dataset": STAND_INS}),
        experiments.Sweep(s03.notebook, {"culture": cultures_03}, {**s03.fixed, "per_class": 2}),
        experiments.Sweep(s04.notebook, {"culture": cultures_03}, {**s04.fixed, "steps": 3}),
        experiments.Sweep(s05.notebook, {"protocol": protocols},
                          {**s05.fixed, "n_permutations": 99, "n_boot": 50, "cka_images": 20}),
    )
    return experiments.Experiment(experiment.name, sweeps, runs_dir)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Both experiments run once: the paper protocol (both protocols) and the pre-trained one (collected)."""
    root = tmp_path_factory.mktemp("study")
    pretrained = root / "pretrained"  # stands in for the FER2013 pre-trained run
    train_run(make_synthetic("universal", n_per_class=15, seed=5), pretrained, train_config=TrainConfig(epochs=1),
              model_config=ModelConfig(num_classes=7, widths=tuple(TINY["widths"]), dense_units=TINY["dense_units"]),
              progress=False)
    done = {}
    # The kernels compile into the suite's compilation cache (conftest), shared with the other tests' runs.
    for name, protocols, cultures in (("kdef_vs_taiwanese", ["collected", "matched"], ["Swedish"]),
                                      ("kdef_vs_taiwanese_pretrained", ["collected"], ["Taiwanese"])):
        experiment = tiny_experiment(EXPERIMENTS / f"{name}.yaml", root / "runs", protocols, cultures, pretrained)
        summaries = batch.run_experiment(experiment, progress=False)
        for summary in summaries:
            assert summary.count("ok") == len(summary.outcomes), summary.describe()
        done[name] = experiment.directory
    return done


@pytest.fixture(scope="module")
def reports(studies, tmp_path_factory):
    """Each study's report written once by `emofx report`, the pre-trained one with the paper one beside it."""
    root = tmp_path_factory.mktemp("reports")
    written = {}
    for name, beside in (("kdef_vs_taiwanese", []), ("kdef_vs_taiwanese_pretrained",
                                                     ["--beside", str(studies["kdef_vs_taiwanese"])])):
        assert main(["report", str(studies[name]), "--out", str(root / name), *beside]) == 0
        written[name] = root / name
    return written


@pytest.fixture(scope="module")
def faceless(studies, tmp_path_factory):
    """The paper study's report without faces, written once, and the arguments each accuracy figure was drawn
    with: the tests of replacing, refusing and regenerating a report start from it rather than each writing
    its own first (a report draws some twenty figures)."""
    from emofx.plotting import comparison as plots

    out, drawn, draw = tmp_path_factory.mktemp("faceless") / "report", [], plots.accuracy_by_culture
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "accuracy_by_culture", lambda *args, **kwargs: drawn.append(kwargs) or draw(*args,
                                                                                                         **kwargs))
        report.write_report(studies["kdef_vs_taiwanese"], out, faces=False)
    return out, drawn


@pytest.mark.parametrize("name, saliency_culture", [("kdef_vs_taiwanese", "Swedish"),
                                                     ("kdef_vs_taiwanese_pretrained", "Taiwanese")])
def test_report_has_every_section(reports, name, saliency_culture):
    out = reports[name]
    text = (out / report.REPORT_MD).read_text()
    html = (out / report.REPORT_HTML).read_text()
    for heading in report.SECTIONS:
        assert f"## {heading}\n" in text and f">{heading}</h2>" in html
    assert "_(nothing recorded)_" not in text
    assert "Hedges' g" in text and "permutation p" in text
    # the stand-ins are synthetic dialects: the text says so, and names no real dataset's studio or people
    assert "dialects of emofx's synthetic face generator" in text and "studio" not in text and "KDEF" not in text
    assert (out / "figures" / f"fig5_saliency_{saliency_culture}.png").is_file()  # the culture its 03 run drew
    assert "data:image/png;base64," in html and 'src="figures/' not in html  # self-contained
    assert "vanilla gradient" in text and "guided" in text
    named = re.findall(r"`(figures/[^`]+)`", text)  # every file the text points to is in the report's folder
    assert named and all((out / path).is_file() for path in named), named
    revision = source_revision()  # the code of the training runs and of the report, side by side
    report_code, runs_code = (revision, revision) if revision else ("not a git checkout", "not recorded")
    assert re.search(rf"\| emofx-commit +\| {re.escape(report_code)} +\| {re.escape(runs_code)} +\|", text)
    # the device the runs trained on, vector width included: another width trains the same seeds otherwise
    assert f"Training runs' devices: {device_description()} (a CPU of another vector width" in text


def test_report_answers_both_protocols_and_flags_chance(studies, reports):
    text = (reports["kdef_vs_taiwanese"] / report.REPORT_MD).read_text()
    assert "### Collected" in text and "### Matched" in text
    assert "**Collected.**" in text and "**Matched.**" in text  # the H1 paragraph for each protocol
    # the text warns about trials near chance exactly when some protocol's comparison flagged one
    tables = sorted(studies["kdef_vs_taiwanese"].glob("05_compare_cultures/*/results/comparison/chance.csv"))
    chance = pd.concat([pd.read_csv(t) for t in tables])
    assert len(tables) == 2 and set(chance.columns) >= {"culture", "trial", "balanced_accuracy", "p_value", "flagged"}
    assert ("trial(s) of this comparison are not clearly above chance" in text) == bool(chance["flagged"].any())
    assert "Every training run is tested in a comparison, below." in text  # no second, people-blind table
    for protocol in ("collected", "matched"):  # each comparison's figures, under its own heading
        at = text.index(f"(figures/fig_h1_accuracy_{protocol}.png)")
        assert text.rindex("### ", 0, at) == text.rindex(f"### {protocol.capitalize()}", 0, at)
        assert (reports["kdef_vs_taiwanese"] / "figures" / f"table_h1_accuracy_{protocol}.csv").is_file()
        at = text.index(f"(figures/fig_h1_confusions_{protocol}.png)")  # which emotions the models confuse
        assert text.rindex("### ", 0, at) == text.rindex(f"### {protocol.capitalize()}", 0, at)
        assert (reports["kdef_vs_taiwanese"] / "figures" / f"table_h1_confusion_tests_{protocol}.csv").is_file()
        at = text.index(f"(figures/fig_h1_people_{protocol}.png)")  # accuracy per test person (synthetic people)
        assert text.rindex("### ", 0, at) == text.rindex(f"### {protocol.capitalize()}", 0, at)
        people = pd.read_csv(reports["kdef_vs_taiwanese"] / "figures" / f"table_h1_people_{protocol}.csv")
        assert set(people["culture"]) == {"Swedish", "Taiwanese"} and people["accuracy"].between(0, 1).all()
    assert text.count("Accuracy per test person, on their images pooled over the trials") == 2
    assert text.count("Which emotions the models confuse (the paper's comparison of confusion matrices") == 2
    assert "Confusions (the share of the true emotion's test images given the predicted label" in text
    wall = text.split("## Wall time per stage")[1]
    assert "02_train_culture" in wall and "05_compare_cultures" in wall
    # how many people each part of a trial holds, beside its images (a protocol may use fewer than its dataset has)
    sizes = text.split("Training, validation and test images and people per trial")[1].split("\n\n")[1]
    assert re.search(r"\| +n_test \| +people_train \| +people_val \| +people_test \|", sizes)
    assert len(re.findall(r"\| (collected|matched) +\| (Swedish|Taiwanese) +\|( +\d+\.\d \|){6}", sizes)) == 4
    # the saliency table says which model it describes (notebook 03 explains one trial's model)
    assert "mean over the test images of the one model each saliency run explains (Swedish: protocol=" in text


def test_report_sets_pretrained_and_scratch_accuracy_side_by_side(reports):
    text = (reports["kdef_vs_taiwanese_pretrained"] / report.REPORT_MD).read_text()
    section = text.split("## Beside kdef_vs_taiwanese\n")[1]
    table = section.split("Test accuracy of both experiments, mean ± std over trials:")[1].split("H1 and CKA")[0]
    rows = [line for line in table.splitlines() if line.startswith("| kdef_vs_taiwanese")]
    # the pre-trained experiment ran the collected protocol, the paper one both: 2 + 4 rows of 2 trials each
    assert len(rows) == 6 and all(row.rstrip(" |").endswith("2") for row in rows)
    assert sum("strong recipe, fine-tuned from pretrained" in row for row in rows) == 2
    assert sum("paper recipe, from scratch" in row for row in rows) == 4
    assert all(" ± " in row for row in rows)
    # H1 of both: each interval says what it is over (records older than the trials' interval: test images)
    h1 = section.split("H1 and CKA of both experiments side by side:")[1].split("Does the gap")[0]
    assert sum("| trials" in line for line in h1.splitlines()) == 3  # pre-trained collected; paper both
    # whether the gap between the cultures changed with the training: the protocol both experiments ran
    gap, pairs = section.split("Does the gap between the cultures change")[1].split("Each trial's model here")
    change = [line for line in gap.splitlines() if line.startswith("| collected")]
    assert len(change) == 1 and "Swedish" in change[0] and "2 vs 2" in change[0]
    gaps = [float(cell) for cell in change[0].split("|")[4:7]]  # gap here, gap there, change
    assert gaps[2] == pytest.approx(gaps[0] - gaps[1], abs=2e-3)
    # each trial's two models image by image: 2 cultures x 2 trials of the protocol both ran, counts that add up
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in pairs.splitlines() if line.startswith("| collected")]
    assert sorted((row[1], row[2]) for row in rows) == [("Swedish", "0"), ("Swedish", "1"), ("Taiwanese", "0"),
                                                        ("Taiwanese", "1")]
    for row in rows:
        n, here, there, only_here, only_there, p_value, p_holm = map(float, row[3:10])
        assert here - there == pytest.approx((only_here - only_there) / n, abs=2e-3) and p_holm >= p_value
    # the fine-tuning settings the experiment file sets are named in the recipe table
    recipe = text.split("## Models and recipe\n")[1].split("How training ended")[0]
    assert "conv_lr_scale" in recipe and "patience" in recipe and "init_from" in recipe


def test_report_without_faces_draws_no_face_figure(studies, reports, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(reports["kdef_vs_taiwanese"], out)  # an earlier report with faces, then replaced
    assert any(p.name.startswith("fig5_saliency") for p in (out / "figures").iterdir())
    report.write_report(studies["kdef_vs_taiwanese"], out, faces=False)
    assert not (out / ".figures.previous").exists()
    figures = {p.name for p in (out / "figures").iterdir()}
    assert not any(n.startswith(("fig5_saliency", "fig7_modification")) for n in figures)
    assert "table_saliency_regions.csv" in figures and "table2_confusion_Swedish.csv" in figures
    assert "not included here" in (out / report.REPORT_MD).read_text()


def test_a_report_never_deletes_files_it_did_not_draw(studies, faceless, tmp_path, capsys):
    """A report replaces its figures/ folder whole: a folder holding the user's own files is refused, with or without
    --overwrite, and nothing in it is touched; the report's own figures are replaced as before."""
    out = tmp_path / "results"
    mine = out / "figures" / "my_figure.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    for overwrite in ([], ["--overwrite"]):
        assert main(["report", str(studies["kdef_vs_taiwanese"]), "--out", str(out), "--no-faces", *overwrite]) == 2
        assert "holds files no emofx report drew (my_figure.png)" in capsys.readouterr().err
        assert mine.read_bytes() == b"mine" and not (out / report.REPORT_MD).exists()
    shutil.rmtree(out)
    shutil.copytree(faceless[0], out)  # a report written there before
    (out / "figures" / ".DS_Store").write_bytes(b"finder")  # the desktop's own files do not stop a new report
    report.write_report(studies["kdef_vs_taiwanese"], out, faces=False)
    (out / "figures" / "notes" / "to_self.txt").parent.mkdir()
    (out / "figures" / "notes" / "to_self.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=r"notes/to_self.txt"):
        report.write_report(studies["kdef_vs_taiwanese"], out, faces=False)
    assert (out / "figures" / "notes" / "to_self.txt").read_text() == "keep"


def test_the_reports_accuracy_figures_draw_chance_for_the_classes_the_cultures_share(studies, faceless):
    drawn = faceless[1]
    summaries = sorted(studies["kdef_vs_taiwanese"].rglob("summary.json"))
    assert len(drawn) == len(summaries) == 2  # both protocols
    assert [d["n_classes"] for d in drawn] == [len(json.loads(p.read_text())["shared_classes"]) for p in summaries]
    assert drawn[0]["n_classes"] >= 2


def test_report_regenerates_byte_for_byte(studies, faceless, tmp_path):
    """Two reports from the same runs are the same files (figures included) but for the date in the title."""
    first, second = faceless[0], tmp_path / "second"
    report.write_report(studies["kdef_vs_taiwanese"], second, faces=False)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert any(p.suffix == ".pdf" for p in files) and (Path("figures") / "fig_h1_accuracy_collected.png") in files
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    undated = re.compile(r"\(\d{4}-\d\d-\d\d \d\d:\d\d UTC; nothing retrained\)")
    for name in files:
        a, b = (first / name).read_bytes(), (second / name).read_bytes()
        if name.suffix in (".md", ".html") and name.parent == Path("."):
            a, b = (undated.sub("", x.decode()) for x in (a, b))
        assert a == b, f"{name} differs between two reports of the same runs"


def test_report_refuses_bad_input(studies, reports, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    out = reports["kdef_vs_taiwanese_pretrained"]
    before = (out / report.REPORT_MD).read_text()
    assert main(["report", str(studies["kdef_vs_taiwanese_pretrained"]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / report.REPORT_MD).read_text() == before
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["report", str(studies["kdef_vs_taiwanese"]), "--out", str(taken), "--overwrite"]) == 2
    assert f"--out {taken} is a file" in capsys.readouterr().err and taken.read_text() == "mine"


def test_modification_runs_record_both_methods(studies):
    results = json.loads(next(studies["kdef_vs_taiwanese"].glob(
        "04_emotion_modification/*/results/results.json")).read_text())
    assert results["method"] == "gradient" and "guided_final_target_probability" in results


def test_a_run_is_evaluated_and_recorded_at_its_own_precision(tmp_path, monkeypatch):
    # Asked of TrainConfig, or else the one in force: training, validation and the test evaluation, and the record.
    seen = []

    def evaluate_and_note(*args, **kwargs):
        seen.append(precision_in_force())
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(runs, "evaluate", evaluate_and_note)
    faces = make_synthetic("universal", n_per_class=15, seed=5)  # as the studies' stand-in pre-trained run
    model = ModelConfig(num_classes=7, widths=(4, 8), dense_units=8)
    with use_precision("default"):
        for name, config in (("asked", TrainConfig(epochs=1, precision="high")), ("in_force", TrainConfig(epochs=1))):
            run, _ = train_run(faces, tmp_path / name, train_config=config, model_config=model, progress=False)
            seen.append(run.metrics["precision"])
    assert seen == ["high", "high", "default", "default"]
    with pytest.raises(runs.RunError, match="does not record its dataset's path .* FaceDataset.load"):
        run.dataset()  # trained without data_path=: say so, not a TypeError from pathlib


def test_matched_splits_equalise_people_and_per_class_training_counts():
    a = make_synthetic("eyes", n_per_class=20, seed=0, images_per_subject_class=2)  # 10 people
    b = make_synthetic("mouth", n_per_class=12, seed=0, images_per_subject_class=2)  # 6 people
    first = matched_splits([a, b], "subject", seed=0, trial=0)
    again = matched_splits([a, b], "subject", seed=0, trial=0)
    other = matched_splits([a, b], "subject", seed=0, trial=1)
    people = [len(np.unique(d.subject[np.concatenate([s.train, s.val, s.test])])) for d, s in zip((a, b), first)]
    assert people == [6, 6]
    counts = [np.bincount(d.labels[s.train], minlength=7) for d, s in zip((a, b), first)]
    assert len({tuple(c) for c in counts}) == 1 and len(set(counts[0])) == 1
    assert all(np.array_equal(x.train, y.train) for x, y in zip(first, again))
    assert not np.array_equal(first[0].test, other[0].test)


def test_prepare_culture_matched_uses_the_same_splits_from_either_culture():
    sources = {"A": "synthetic:eyes", "B": "synthetic:mouth"}
    prepare = {"n_per_class": 15, "seed": 0}
    data_a, split_a = prepare_culture(sources, "A", "matched", "subject", 0, 1, prepare)
    data_b, split_b = prepare_culture(sources, "B", "matched", "subject", 0, 1, prepare)
    assert set(data_a.culture) == {"A"} and set(data_b.culture) == {"B"}
    assert len(split_a.train) == len(split_b.train) > 0
    data, split = prepare_culture(sources, "A", "collected", prepare=prepare)
    assert split is None and len(data) == 105
    with pytest.raises(ValueError, match="protocol"):
        prepare_culture(sources, "A", "paired", prepare=prepare)


def test_report_tests_runs_no_comparison_covers_from_their_confusion_matrices(studies):
    """Training runs outside every comparison keep a chance test of their own, read from their confusion matrix
    and labelled as shuffling across people; runs a comparison tested are not listed twice."""
    from emofx.pipeline.report_records import Experiment

    exp = Experiment(studies["kdef_vs_taiwanese"])
    matched = next(label for label, record in exp.comparisons.items() if record["protocol"] == "matched")
    del exp.comparisons[matched]
    text = report._chance(exp)
    assert "The training runs no comparison tested" in text and "not which person each image shows" in text
    listed = re.findall(r"^\| (\w+) +\| (\w+) +\| +(\d) \|", text, flags=re.MULTILINE)
    assert sorted(listed) == [("matched", culture, str(trial)) for culture in ("Swedish", "Taiwanese")
                              for trial in (0, 1)]
    for culture, trial in (("Swedish", 0), ("Taiwanese", 1)):  # the p-value of the run's own confusion matrix
        row = exp.training.query("protocol == 'matched' and culture == @culture and trial == @trial").iloc[0]
        metrics = json.loads((Path(row["run_dir"]) / "results" / "run" / "metrics.json").read_text())
        value, p_value = confusion_p_value(np.asarray(metrics["confusion"]), seed=trial)
        assert re.search(rf"\| matched +\| {culture} +\| +{trial} \| +{value:.3f} \|.*\| {p_value:.3g} +\|", text)


def test_report_says_which_runs_it_leaves_out(studies, reports, tmp_path, capsys):
    """A run whose status.json is damaged is left out of the tables with a warning and a line under the title; a
    damaged comparison record stops the report with its path."""
    copy = tmp_path / "kdef_vs_taiwanese"
    shutil.copytree(studies["kdef_vs_taiwanese"], copy)
    damaged = sorted((copy / "02_train_culture").iterdir())[0]
    (damaged / "status.json").write_text('{"status": "ok"')
    with pytest.warns(UserWarning, match=f"{damaged.name} is left out"):
        report.write_report(copy, tmp_path / "report", faces=False)
    text = (tmp_path / "report" / report.REPORT_MD).read_text()
    total = len(list(copy.glob("*/*/status.json")))
    assert f"**1 of {total} recorded runs are left out of every table and figure:** 02_train_culture/{damaged.name} " \
           "(unreadable)." in text
    assert "left out of every table" not in (reports["kdef_vs_taiwanese"] / report.REPORT_MD).read_text()
    summary = sorted(copy.glob("05_compare_cultures/*/results/comparison/summary.json"))[0]
    summary.write_text("{")  # a damaged record is an error that names it
    assert main(["report", str(copy), "--out", str(tmp_path / "again")]) == 2
    assert f"{summary} is not readable JSON" in capsys.readouterr().err


def test_chance_test_flags_a_constant_predictor_and_passes_a_good_one():
    labels = np.repeat(np.arange(7), 10).astype(str)
    constant = np.full(70, "3")
    value, p = balanced_accuracy_p_value(labels, constant, n_permutations=199)
    assert value == pytest.approx(1 / 7) and p == 1.0
    good = labels.copy()
    good[::5] = "0"  # 80% right
    value, p = balanced_accuracy_p_value(labels, good, n_permutations=199)
    assert value > 0.7 and p == pytest.approx(1 / 200)
    frame = pd.DataFrame({"train_culture": "x", "test_culture": "x", "trial": np.repeat([0, 1], 70),
                          "emotion": np.tile(labels, 2), "predicted": np.concatenate([constant, good])})
    flags = chance_flags(frame, n_permutations=199)
    assert flags["flagged"].tolist() == [True, False]
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (labels.astype(int), good.astype(int)), 1)
    assert confusion_p_value(confusion, n_permutations=199) == pytest.approx((value, p))


def test_chance_test_shuffles_labels_within_people_where_they_are_named():
    """Four performers who pose mostly one emotion each: a model that recognises the performer and names their
    usual emotion is far above chance across people, and at chance within them."""
    people = np.repeat(["p0", "p1", "p2", "p3"], 20)
    usual = np.repeat(["happy", "sad", "angry", "afraid"], 20)
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(80) < 0.7, usual, rng.choice(["happy", "sad", "angry", "afraid"], 80))
    by_identity = usual  # names each performer's usual emotion whatever the face shows
    _, across = balanced_accuracy_p_value(labels, by_identity, n_permutations=199)
    _, within = balanced_accuracy_p_value(labels, by_identity, n_permutations=199, people=people)
    assert across == pytest.approx(1 / 200) and within > 0.5
    # people that cannot be used are refused (missing ones left shuffled labels uninitialised: p = 0.001 for a copy)
    for bad, problem in ((np.full(80, np.nan), "people holds missing values"), (people[:2], r"people holds \(2,\)")):
        with pytest.raises(StatsInputError, match=problem):
            balanced_accuracy_p_value(labels, labels, n_permutations=99, people=bad)
    with pytest.raises(StatsInputError, match="labels holds missing values"):
        balanced_accuracy_p_value(np.r_[np.nan, np.ones(3)], np.ones(4), n_permutations=99)
    frame = pd.DataFrame({"train_culture": "x", "test_culture": "x", "trial": 0, "emotion": labels,
                          "predicted": by_identity, "subject": people})
    assert chance_flags(frame, n_permutations=199)["flagged"].tolist() == [True]
    assert chance_flags(frame.assign(subject=""), n_permutations=199)["flagged"].tolist() == [False]


def test_chance_flags_a_trial_whose_p_equals_alpha_and_counts_only_its_own_cultures_images():
    labels = np.repeat(np.arange(4), 5).astype(str)
    predicted = labels.copy()
    predicted[::2] = "0"  # partly right
    _, p = balanced_accuracy_p_value(labels, predicted, n_permutations=99, seed=0)
    own = pd.DataFrame({"train_culture": "x", "test_culture": "x", "trial": 0, "emotion": labels,
                        "predicted": predicted})
    assert chance_flags(own, alpha=p, n_permutations=99)["flagged"].tolist() == [True]  # p >= alpha: flagged
    assert chance_flags(own, alpha=p + 1e-9, n_permutations=99)["flagged"].tolist() == [False]
    # the same models scored on the other culture's images (all right there) leave the trial's test as it was
    other = own.assign(test_culture="y", predicted=labels)
    flags = chance_flags(pd.concat([own, other]), alpha=p, n_permutations=99)
    assert flags[["culture", "trial", "n_images", "flagged"]].values.tolist() == [["x", 0, 20, True]]
    assert flags["p_value"].iloc[0] == p


def test_the_human_baseline_spreads_accuracy_over_trials_as_a_sample_standard_deviation(make_tiny_model):
    data = make_synthetic("universal", n_per_class=6, seed=0, size=16)
    data = replace(data, extras={**data.extras, "agreement": np.linspace(0.2, 0.9, len(data)).astype(np.float32)})
    models = (make_tiny_model(data.classes, 0), make_tiny_model(data.classes, 1))
    tests = (np.arange(0, 42, 2), np.arange(1, 42, 2))
    table, _ = human_baseline(CultureRuns("T", data, models, tests))
    table = table.set_index("emotion")
    for emotion in data.classes:
        per_trial = [np.mean((m.predict(data.images[t]) == data.labels[t])[data.label_names[t] == emotion])
                     for m, t in zip(models, tests)]
        assert table.loc[emotion, "model_accuracy"] == pytest.approx(np.mean(per_trial))
        assert table.loc[emotion, "model_accuracy_std"] == pytest.approx(abs(per_trial[0] - per_trial[1]) / np.sqrt(2))


def test_human_baseline_sets_observers_beside_the_models(make_tiny_model):
    data = make_synthetic("universal", n_per_class=6, seed=0, size=16)
    agreement = np.linspace(0.2, 0.9, len(data)).astype(np.float32)
    agreement[data.labels == data.classes.index("neutral")] = np.nan
    data = replace(data, extras={**data.extras, "agreement": agreement})
    model = make_tiny_model(data.classes, 0)
    runs = CultureRuns("T", data, (model, model), (np.arange(0, 42, 2), np.arange(1, 42, 2)))
    table, correlation = human_baseline(runs)
    assert list(table["emotion"]) == list(data.classes)  # the vocabulary's order (notebook 05), not alphabetical
    assert np.isnan(table.set_index("emotion").loc["neutral", "observer_agreement"])
    assert table["model_accuracy"].between(0, 1).all() and correlation["n_images"] == 36
    assert -1 <= correlation["rho"] <= 1
    # Pooled over the two trials' test images (every image once): the rated ones, as against_observers scores them.
    assert correlation["rated_images"] == 36
    assert correlation["observer_accuracy"] == pytest.approx(np.nanmean(agreement))
    assert np.isnan(correlation["plurality_accuracy"])  # agreement only, no per-emotion ratings
    # Test sets that overlap (a person tested by two trials): every image counts once, scored by the share of the
    # trials that tested it that got it right, so the models and the observers are measured on the same images.
    other_model = make_tiny_model(data.classes, 1)
    overlapping = CultureRuns("T", data, (model, other_model), (np.arange(0, 30), np.arange(20, 42)))
    _, overlap = human_baseline(overlapping)
    right = [m.predict(data.images) == data.labels for m in (model, other_model)]
    share = np.where(np.arange(42) < 20, right[0], np.where(np.arange(42) < 30, (right[0] + 0.0 + right[1]) / 2,
                                                           right[1]))
    rated = np.isfinite(agreement)
    assert overlap["rated_images"] == overlap["n_images"] == 36
    assert overlap["model_accuracy"] == pytest.approx(share[rated].mean())
    assert overlap["observer_accuracy"] == pytest.approx(np.nanmean(agreement))
    assert human_baseline(CultureRuns("S", make_synthetic("eyes", n_per_class=2, size=16), (model,),
                                      (np.arange(4),))) is None
    # The other culture's models on the same images: here the same model, so the same numbers; a model that does
    # not know an emotion leaves its images out.
    same = CultureRuns("O", data, (model,), (np.arange(4),))
    table, with_other = human_baseline(runs, same)
    assert with_other["other_culture"] == "O"
    assert with_other["other_model_accuracy"] == pytest.approx(with_other["model_accuracy"])
    assert with_other["other_rho"] == pytest.approx(with_other["rho"])
    np.testing.assert_allclose(table["other_models_accuracy"], table["model_accuracy"])  # each trial's images once
    fewer = tuple(c for c in data.classes if c != "happy")
    partial = CultureRuns("P", data.subset(np.flatnonzero(data.label_names != "happy")),
                          (make_tiny_model(fewer, 1),), (np.arange(4),))
    table, _ = human_baseline(runs, partial)
    assert np.isnan(table.set_index("emotion").loc["happy", "other_models_accuracy"])
    assert table.set_index("emotion").drop("happy")["other_models_accuracy"].between(0, 1).all()


def test_the_human_baseline_counts_people_not_images(make_tiny_model):
    """rho's interval redraws people with all of their images; with 5 copies of each image the p-value (images
    as independent) shrinks, the interval over people does not."""
    data = make_synthetic("universal", n_per_class=10, seed=0, size=16, images_per_subject_class=1)
    rng = np.random.default_rng(0)
    agreement = rng.uniform(0.2, 0.9, len(data)).astype(np.float32)
    agreement[data.labels == data.classes.index("neutral")] = np.nan
    data = replace(data, extras={**data.extras, "agreement": agreement})
    model = make_tiny_model(data.classes, 0)
    _, once = human_baseline(CultureRuns("T", data, (model,), (np.arange(len(data)),)))
    assert once["people"] == 10 and once["rho_low"] <= once["rho"] <= once["rho_high"]
    copies = np.repeat(np.arange(len(data)), 5)
    repeated = replace(data.subset(copies), subject=np.repeat(data.subject, 5))
    _, five = human_baseline(CultureRuns("T", repeated, (model,), (np.arange(len(repeated)),)))
    assert five["rho"] == pytest.approx(once["rho"], abs=0.02) and five["people"] == 10
    assert five["p_value"] < once["p_value"]  # as if five times the evidence
    assert five["rho_high"] - five["rho_low"] == pytest.approx(once["rho_high"] - once["rho_low"], abs=0.1)
    sentence = human_paragraph([five])
    assert f"over 10 people, each redrawn with their images, {five['n_images']} rated test images" in sentence
    assert "p = " not in sentence.split("On those images")[0]
    verdict = {True: "images people find clear are also the ones the models are sure of",
               False: "the data do not show that people and models find the same images clear"}
    for low, clear in ((0.05, True), (-0.05, False)):  # the interval decides, not the images' p
        assert verdict[clear] in human_paragraph([{**five, "rho": 0.3, "rho_low": low, "rho_high": 0.5}])
    # too few people for an interval: the images' p (false positives a third to a half of the time with 4 people)
    # is shown for what it is, and decides nothing
    few = {k: v for k, v in five.items() if k not in ("rho_low", "rho_high", "people")}
    sentence = human_paragraph([{**few, "rho": 0.6, "p_value": 1e-9}])
    assert ("(no interval over people (too few of them, or images that name none); p = 1e-09 if every image were "
            "independent, which a person's images are not") in sentence
    assert "whether people and models find the same images clear is not tested" in sentence


def test_models_are_set_beside_one_observer_and_the_observers_plurality():
    data = make_synthetic("universal", n_per_class=1, seed=0, size=16, classes=("happy", "sad", "angry", "neutral"))
    names = ["happy", "sad", "angry"]  # what the observers could choose (no neutral)
    ratings = np.array([[0.6, 0.3, 0.1],   # happy: plurality right
                        [0.5, 0.4, 0.1],   # sad: plurality says happy
                        [0.1, 0.45, 0.45],  # angry: tied with sad, counted as the plurality's choice
                        [0.4, 0.4, 0.2]], np.float32)  # neutral: not rated
    order = [np.flatnonzero(data.label_names == e)[0] for e in ("happy", "sad", "angry", "neutral")]
    agreement = np.array([0.6, 0.4, 0.45, np.nan], np.float32)
    rated = replace(data.subset(order), meta={"rating_names": names},
                    extras={"ratings": ratings, "agreement": agreement})
    assert list(rated.label_names) == ["happy", "sad", "angry", "neutral"]
    scores = against_observers(rated, np.array([True, True, False, False]))
    assert scores == {"rated_images": 3, "model_accuracy": pytest.approx(2 / 3),
                      "observer_accuracy": pytest.approx((0.6 + 0.4 + 0.45) / 3),
                      "plurality_accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="one per image"):
        against_observers(rated, np.ones(3, bool))
    assert against_observers(data, np.ones(len(data), bool)) is None
    sentence = human_paragraph([{"culture": "T", "rho": 0.5, "p_value": 1e-3, "n_images": 3, **scores}])
    assert "the models name the posed emotion for 66.7%; a single observer does for 48.3% on average, " \
           "the observers' plurality choice 66.7%." in sentence
    assert "single observer" not in human_paragraph([{"culture": "T", "rho": 0.5, "p_value": 1e-3, "n_images": 3}])
    transfer = human_paragraph([{"culture": "T", "rho": 0.5, "p_value": 1e-3, "n_images": 3, **scores,
                                 "other_culture": "O", "other_model_accuracy": 0.2, "other_rho": 0.09,
                                 "other_p_value": 0.2}])
    assert transfer.endswith(" The O models, trained on the other culture, name it for 20.0%; whether they find "
                             "clearer the faces the observers agree on is not tested (rho = 0.09, no interval over "
                             "people (too few of them, or images that name none); p = 0.2 if every image were "
                             "independent, which a person's images are not).")


def test_the_comparison_scores_each_model_as_its_recipe_says(make_tiny_model):
    data = make_synthetic("universal", n_per_class=6, seed=0, size=16)
    # Noise faces, so that an image and its mirror image differ.
    data = replace(data, images=np.random.default_rng(0).integers(0, 256, data.images.shape, dtype=np.uint8))
    plain = make_tiny_model(data.classes, 0)
    flipped = replace(plain, info={"train_config": {"flip_average": True}})  # as a strong run's checkpoint records
    assert (plain.flip_average, flipped.flip_average) == (False, True)
    predicted = {}
    for model in (plain, flipped):
        frame = predictions_frame(CultureRuns("T", data, (model,), (np.arange(len(data)),)))
        expected = model.predict_proba(data.images, flip_average=model.flip_average).argmax(axis=1)
        assert frame["predicted"].tolist() == np.asarray(data.classes)[expected].tolist()
        predicted[model.flip_average] = frame["predicted"].tolist()
    assert predicted[True] != predicted[False]


def test_the_model_is_the_papers_on_real_faces_and_a_shrunken_one_is_stated():
    config, text = chosen_model(7, real_faces=True)
    assert (config.widths, config.dense_units) == ((64, 128, 256), 300) and text.startswith("the paper's model")
    config, text = chosen_model(7, real_faces=True, widths=[16, 32, 64])
    assert config.widths == (16, 32, 64) and "SHRUNKEN" in text and "explicitly" in text
    assert "SHRUNKEN" in chosen_model(7, real_faces=False)[1]


def test_sources_name_real_and_synthetic_data(tmp_path, monkeypatch):
    assert is_real("kdef") and is_real("x.npz") and not is_real("synthetic:eyes")
    assert is_real("synthetic_faces.npz") and not is_real("synthetic")  # a prepared file, whatever its name
    stand_in = load_source("synthetic:mouth", "Taiwanese", n_per_class=5)
    assert set(stand_in.culture) == {"Taiwanese"} and len(stand_in) == 35
    with pytest.raises(SourceNameError, match="unknown dataset"):
        load_source("klingon", "K")
    # a file of several cultures (emofx merge, a culture-labelled collection) gives each culture its own images:
    # before, every culture's model of notebook 02 trained on all of them
    parts = [make_synthetic(dialect, n_per_class=8, seed=0) for dialect in ("eyes", "mouth", "universal")]
    merge(parts).save(tmp_path / "three.npz")
    mouth = load_source(str(tmp_path / "three.npz"), "mouth")
    assert set(mouth.culture) == {"mouth"} and len(mouth) == 56
    assert np.array_equal(mouth.images, parts[1].images)
    with pytest.raises(SourceNameError, match="holds the cultures eyes, mouth, universal, not 'Swedish'"):
        load_source(str(tmp_path / "three.npz"), "Swedish")
    parts[0].save(tmp_path / "eyes.npz")  # a file of one culture stands in for any culture, whole
    assert len(load_source(str(tmp_path / "eyes.npz"), "Swedish")) == 56
    data, split = prepare_culture({"eyes": str(tmp_path / "three.npz"), "mouth": str(tmp_path / "three.npz")},
                                  "mouth", "matched", "random", 0, 0)
    assert set(data.culture) == {"mouth"} and len(data) == 56 and split is not None
    with pytest.raises(ComparisonError, match=r"every culture, e\.g\. dataset: \{mouth: .*three\.npz, OTHER"):
        prepare_culture({"mouth": str(tmp_path / "three.npz")}, "mouth", "matched", "random", 0, 0)
    monkeypatch.setenv("EMOFX_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="EMOFX_DATA"):
        load_source("kdef", "Swedish")


def test_trial_pairs_compare_the_same_trials_runs_image_by_image(studies):
    def runs(name: str) -> pd.DataFrame:
        rows = []
        for directory in sorted((studies[name] / "02_train_culture").iterdir()):
            key = dict(part.split("=") for part in directory.name.split("__"))
            if key["protocol"] == "collected":
                rows.append({"culture": key["culture"], "trial": int(key["trial"]),
                             "run": str(directory / "results" / "run")})
        return pd.DataFrame(rows)

    pretrained, scratch = runs("kdef_vs_taiwanese_pretrained"), runs("kdef_vs_taiwanese")
    table = trial_pairs(pretrained, scratch)
    assert len(table) == 4 and table["note"].isna().all()
    for _, row in table.iterrows():  # each side's accuracy is the one its run recorded on the same test images
        for side, frame in (("first", pretrained), ("second", scratch)):
            run = frame[(frame["culture"] == row["culture"]) & (frame["trial"] == row["trial"])]["run"].item()
            metrics = json.loads((Path(run) / "metrics.json").read_text())
            assert row[f"accuracy_{side}"] == pytest.approx(metrics["test_accuracy"]) and row["n"] == metrics["n_test"]
    assert (table["p_holm"] >= table["p_value"]).all() and (table["p_value"] <= 1).all()
    # These tiny trials test one person each: no clusters to count, so image by image (`people` empty); with
    # several, the test counts people (test_evaluation.py)
    assert table["people"].isna().all()
    # Trials 0 and 1 split other subjects: such a pair is not compared, and says why.
    crossed = trial_pairs(pretrained.assign(trial=1 - pretrained["trial"]), scratch)
    assert crossed["p_value"].isna().all() and crossed["note"].str.contains("tested on other images").all()


def test_three_cultures_are_compared_a_pair_at_a_time_and_h1_is_corrected_over_the_pairs(tmp_path):
    experiment = experiments.load_experiment(EXPERIMENTS / "synthetic_three_dialects.yaml", runs_dir=tmp_path / "runs")
    s02, s03, s05 = experiment.sweeps
    sweeps = (experiments.Sweep(s02.notebook, s02.grid, {**s02.fixed, **TINY}),
              experiments.Sweep(s03.notebook, {"culture": ["eyes"]}, {"per_class": 2}),  # saliency is not compared
              experiments.Sweep(s05.notebook, s05.grid, {"n_permutations": 99, "n_boot": 50, "cka_images": 20}))
    tiny = experiments.Experiment(experiment.name, sweeps, experiment.runs_dir)
    for summary in batch.run_experiment(tiny, workers=2, progress=False):
        assert summary.count("ok") == len(summary.outcomes), summary.describe()
    assert main(["report", str(tiny.directory), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / report.REPORT_MD).read_text()
    pairs = ["eyes vs mouth", "eyes vs universal", "mouth vs universal"]
    for pair in pairs:  # each comparison under its own heading, its figures under their own names
        assert f"### Collected: {pair}\n" in text and f"**Collected: {pair}.**" in text
        assert (tmp_path / "report" / "figures" / f"fig_h1_accuracy_collected-{pair.replace(' ', '-')}.png").is_file()
    h1 = text.split("### H1: does accuracy depend on culture?")[1].split("### H2")[0]
    assert h1.count("Holm-adjusted over the 3 pairs of cultures of this protocol") == 3
    assert "synthetic face generator" in h1 and "KDEF" not in text and "Swedish" not in text
    sizes = text.split("## Datasets and preparation")[1].split("## Models and recipe")[0]
    assert sizes.count("| collected  |") == 6  # three cultures in the datasets table and in the sizes table
