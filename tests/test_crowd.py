"""Crowd labels: reading answers, attaching, aggregating, simulated crowds, agreement, training weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofx.crowd.aggregate import (AggregationError, accuracy_against, aggregate, aggregate_votes, apply_aggregation,
                                   plurality)
from emofx.crowd.answers import (AnswersError, answers_from_frame, answers_of, attach_answers,
                                 attach_observer_votes, read_answers)
from emofx.crowd.simulate import BIASED_SPAMMER, GOOD, UNIFORM_SPAMMER, CrowdConfig, simulate_crowd
from emofx.data.dataset import FaceDataset
from emofx.data.emotions import EMOTIONS

pytest.importorskip("crowdkit", reason='crowd-kit is the optional extra: pip install "emofx[crowd]"')

SEVEN = EMOTIONS[:7]


def blank_dataset(labels: np.ndarray, classes=SEVEN) -> FaceDataset:
    """Tiny blank images named img0.png, img1.png, ... with the given label indices."""
    n = len(labels)
    return FaceDataset.from_label_names(np.zeros((n, 4, 4), np.uint8), np.asarray(classes)[labels],
                                        path=[f"/data/faces/img{i}.png" for i in range(n)])


def simulated(n_images: int, seed: int, config: CrowdConfig = CrowdConfig()):
    truth = np.random.default_rng(seed + 1000).integers(len(SEVEN), size=n_images)
    crowd = simulate_crowd(truth, SEVEN, config, seed=seed)
    answers = crowd.answers.assign(image=[f"img{i}.png" for i in crowd.answers["image"]])
    dataset, _ = attach_answers(blank_dataset(truth), answers_from_frame(answers))
    return dataset, np.asarray(SEVEN)[truth], crowd


# ---------------------------------------------------------------------------- reading answers
def test_mturk_batch_results_are_read_and_rejected_assignments_left_out(tmp_path):
    path = tmp_path / "Batch_1_batch_results.csv"
    pd.DataFrame({
        "HITId": ["h1", "h1", "h2", "h2"],
        "WorkerId": ["A1", "A2", "A1", "A3"],
        "AssignmentStatus": ["Approved", "Approved", "Rejected", "Submitted"],
        "WorkTimeInSeconds": ["12", "8", "3", "20"],
        "Input.image_url": ["https://x.org/im/img0.png", "https://x.org/im/img0.png",
                            "https://x.org/im/img1.png", "https://x.org/im/img1.png"],
        "Answer.emotion": ["Happiness", "happy", "fear", "Afraid"],
    }).to_csv(path, index=False)
    answers = read_answers(path)
    assert answers.layout == "mturk"
    assert answers.dropped["rejected"] == 1
    assert answers.frame["label"].tolist() == ["happy", "happy", "afraid"]
    assert answers.frame["time"].tolist() == [12.0, 8.0, 20.0]
    dataset, report = attach_answers(blank_dataset(np.array([3, 2])), answers)  # matched by file name
    names = dataset.meta["vote_names"]
    assert dataset.extras["votes"][0, names.index("happy")] == 2
    assert dataset.extras["votes"][1, names.index("afraid")] == 1
    assert report.images_answered == 2 and report.not_in_dataset == 0
    from emofx.cli import main

    blank_dataset(np.array([3, 2])).save(tmp_path / "data.npz")  # a rejected assignment never stops --strict
    assert main(["labels", "import", str(tmp_path / "data.npz"), "--answers", str(path), "--strict",
                 "--out", str(tmp_path / "answered.npz")]) == 0


def test_plain_answers_count_bad_rows_instead_of_failing(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("image,annotator,emotion\nimg0.png,ann,happy\nimg0.png,ann,sad\nimg1.png,ann,bored\n"
                    "img1.png,,sad\nimg9.png,ann,sad\nimg1.png,bob,not a face\n")
    answers = read_answers(path)
    assert answers.dropped == {"empty": 1, "unknown_label": 1, "repeated": 1, "rejected": 0}
    assert answers.unknown_labels == {"bored": 1}
    dataset, report = attach_answers(blank_dataset(np.array([3, 4])), answers)
    assert report.not_in_dataset == 1 and report.not_in_dataset_examples == ("img9.png",)
    assert dataset.meta["vote_names"][-1] == "not_face"
    assert "answer_worker" in dataset.extras and dataset.meta["workers"] == ["ann", "bob"]


def test_a_workers_first_answer_is_kept_and_column_names_are_read_in_any_letter_case(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("Image,Worker,Label\nimg0.png,ann,happy\nimg0.png,ann,sad\nimg1.png,ann,sad\n")
    answers = read_answers(path)
    assert answers.frame[["image", "label"]].values.tolist() == [["img0.png", "happy"], ["img1.png", "sad"]]
    assert answers.columns == {"image": "Image", "worker": "Worker", "label": "Label"}


def test_an_image_url_matches_the_file_its_escaped_name_names():
    from emofx.crowd.answers import match_images

    dataset = FaceDataset.from_label_names(np.zeros((2, 4, 4), np.uint8), ["happy", "sad"],
                                           path=["/data/faces/my face.png", "/data/faces/b.png"])
    found = match_images(dataset, ["https://example.org/hits/my%20face.png", "b.png", "/data/faces/b.png", "c.png"])
    assert found.tolist() == [0, 1, 1, -1]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a,b\n1,2\n", "no column for"),
    ("image,worker,label\nimg0.png,w,bored\n", "no usable answers"),
    ("image,worker,label\n", r"has a header \(image, worker, label\) but no answer rows"),
    ("image,emotion,worker,answer\nimg0.png,angry,w1,happy\n",
     r"the columns \['emotion', 'answer'\] could each be the answers' label; rename or drop all but one"),
])
def test_unusable_answer_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "answers.csv"
    path.write_text(text)
    with pytest.raises(AnswersError, match=message):
        read_answers(path)


def test_answer_files_in_other_separators_are_read_and_other_encodings_named_by_line(tmp_path):
    for separator in ("\t", ";"):
        path = tmp_path / "answers.txt"
        path.write_text(separator.join(["image", "worker", "label"]) + "\n"
                        + separator.join(["img0.png", "w1", "angry"]) + "\n")
        answers = read_answers(path)
        assert answers.frame[["image", "worker", "label"]].values.tolist() == [["img0.png", "w1", "angry"]]
        assert "image from 'image', worker from 'worker', label from 'label'" in answers.summary()
    path.write_bytes("image,worker,label\nimg0.png,w1,angry\nimg1.png,J\u00fcrgen,sad\n".encode("latin-1"))
    with pytest.raises(AnswersError, match=r"line 3 is not UTF-8 text \(byte 0xfc\); save the file as UTF-8"):
        read_answers(path)


def test_one_workers_answers_to_an_image_under_two_names_count_once(tmp_path, capsys):
    """A path, a URL and a bare file name of one image are one image: the worker's first answer counts, the
    others are reported as repeated (and --strict refuses them); R's NA worker is a missing value."""
    dataset = blank_dataset(np.array([0, 1]))
    frame = pd.DataFrame({"image": ["img0.png", "/data/faces/img0.png", "https://x.org/a/img0.png?sig=1",
                                    "img0.png", "img0.png", "img1.png", "img1.png"],
                          "worker": ["w1", "w1", "w1", "w2", "w3", "NA", "NA"],
                          "label": ["angry", "angry", "angry", "happy", "happy", "sad", "sad"]})
    answers = answers_from_frame(frame)
    assert answers.dropped["empty"] == 2
    attached, report = attach_answers(dataset, answers)
    names = attached.meta["vote_names"]
    assert attached.extras["votes"][0, names.index("angry")] == 1 and attached.extras["votes"][0].sum() == 3
    assert report.repeated == 2 and attached.meta["answers"]["dropped"]["repeated"] == 2
    assert "2 answers left out as a worker's second answer to an image named another way" in report.summary()
    from emofx.cli import main

    dataset.save(tmp_path / "data.npz")
    frame.iloc[:5].to_csv(tmp_path / "answers.csv", index=False)
    assert main(["labels", "import", str(tmp_path / "data.npz"), "--answers", str(tmp_path / "answers.csv"),
                 "--strict", "--out", str(tmp_path / "answered.npz")]) != 0
    assert "2 answers were left out (strict mode); nothing written" in capsys.readouterr().err
    assert not (tmp_path / "answered.npz").exists()


def test_a_file_name_two_images_share_is_reported_as_such():
    dataset = FaceDataset.from_label_names(np.zeros((2, 4, 4), np.uint8), ["happy", "sad"],
                                           path=["/a/happy/same.jpg", "/a/sad/same.jpg"])
    answers = answers_from_frame(pd.DataFrame({"image": ["same.jpg", "/a/sad/same.jpg"], "worker": ["w", "w"],
                                               "label": ["sad", "sad"]}))
    _, report = attach_answers(dataset, answers)
    assert report.not_in_dataset == 1 and report.ambiguous == 1
    assert "1 of them by a file name several dataset images share (give the image's path" in report.summary()


def test_importing_answers_again_replaces_the_earlier_answers_and_their_aggregation():
    dataset = blank_dataset(np.array([0, 1]))
    first = answers_from_frame(pd.DataFrame({"image": ["img0.png"] * 2, "worker": ["w1", "w2"],
                                             "label": ["angry", "angry"]}))
    attached, _ = attach_answers(dataset, first)
    aggregated, _ = apply_aggregation(attached, aggregate(attached, "mv"), keep_unanswered=True)
    assert "agreement" in aggregated.extras and "aggregation" in aggregated.meta
    second = answers_from_frame(pd.DataFrame({"image": ["img0.png"] * 2, "worker": ["w8", "w9"],
                                              "label": ["happy", "happy"]}))
    again, report = attach_answers(aggregated, second)
    assert report.summary().endswith("replaces the 2 answers attached before and their aggregation (mv; the labels "
                                     "stay as it set them until you aggregate again)")
    assert not {"agreement", "label_proba", "n_answers", "label_entropy"} & set(again.extras)
    assert "aggregation" not in again.meta and again.meta["workers"] == ["w8", "w9"]
    assert again.extras["votes"][0, again.meta["vote_names"].index("happy")] == 2


def test_answers_about_other_images_are_an_error():
    answers = answers_from_frame(pd.DataFrame({"image": ["other.png"], "worker": ["w"], "label": ["sad"]}))
    with pytest.raises(AnswersError, match="none of the 1 answers"):
        attach_answers(blank_dataset(np.array([0])), answers)


# ---------------------------------------------------------------------------- aggregation
def test_plurality_breaks_ties_from_the_seed_and_marks_unanswered():
    votes = np.array([[2, 2, 0], [0, 0, 0], [0, 1, 3]])
    first = [plurality(votes, seed)[0] for seed in range(20)]
    assert set(first) == {0, 1}
    assert plurality(votes, 0)[1] == -1 and plurality(votes, 0)[2] == 2


def voted(votes: np.ndarray) -> FaceDataset:
    """Blank faces labelled angry, disgusted, afraid, ... with FER+-style vote counts (seven emotions, unknown)."""
    dataset = blank_dataset(np.arange(len(votes)))
    return FaceDataset(**{**dataset.__dict__, "extras": {"votes": votes}, "meta": {"vote_names": [*SEVEN, "unknown"]}})


def test_vote_counts_without_workers_allow_mv_but_not_worker_models():
    votes = np.array([[8, 1, 1, 0, 0, 0, 0, 0], [3, 3, 2, 1, 1, 0, 0, 0], [0, 0, 9, 0, 0, 0, 0, 1]], np.int16)
    dataset = voted(votes)
    result = aggregate(dataset, "ferplus")
    assert result.labels.tolist() == [0, -1, 2]  # the FER+ rule: row 1 has no majority
    assert result.agreement[0] == pytest.approx(0.8)
    assert result.entropy[2] == pytest.approx(-(0.9 * np.log2(0.9) + 0.1 * np.log2(0.1)), abs=1e-5)
    relabelled, dropped = apply_aggregation(dataset, result)
    assert len(relabelled) == 2 and dropped["no_label"] == 1
    with pytest.raises(AggregationError, match="without worker identities"):
        aggregate(dataset, "ds")
    names = (*SEVEN, "unknown")
    for wrong, problem in ((votes[:, :7], r"votes of shape \(3, 7\): need \(images, 8\)"),
                           (votes[0], r"votes of shape \(8,\)"),
                           (np.where(votes == 1, np.nan, votes), "finite, non-negative counts"),
                           (-votes, "finite, non-negative counts")):  # NaN once gave n_answers of -2**63
        with pytest.raises(AggregationError, match=problem):
            aggregate_votes(wrong, names, None, "mv")


def test_an_image_without_a_majority_has_no_agreement_and_an_unanswered_one_is_kept_not_counted_as_unlabelled():
    dataset = voted(np.array([[8, 1, 1, 0, 0, 0, 0, 0], [3, 3, 2, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], np.int16))
    result = aggregate(dataset, "ferplus")
    assert result.labels.tolist() == [0, -1, -1]
    assert result.agreement[0] == pytest.approx(0.8) and np.isnan(result.agreement[1:]).all()
    shares = np.array([0.3, 0.3, 0.2, 0.1, 0.1])  # row 1's answers: no label, but an entropy
    assert result.entropy[1] == pytest.approx(-(shares * np.log2(shares)).sum(), abs=1e-5)
    assert np.isnan(result.entropy[2])
    relabelled, dropped = apply_aggregation(dataset, result)
    assert relabelled.path.tolist() == ["/data/faces/img0.png", "/data/faces/img2.png"]  # unanswered: keeps its label
    assert list(relabelled.label_names) == [SEVEN[0], SEVEN[2]]
    assert dropped["no_label"] == 1 and dropped["unanswered"] == 0


def test_dawid_skene_beats_majority_vote_by_five_points_on_a_mixed_crowd():
    """7 classes, 5 answers per image, 30% low-quality workers (the issue's acceptance test)."""
    dataset, truth, crowd = simulated(1000, seed=0)
    assert np.mean(crowd.kinds != GOOD) == pytest.approx(0.3)
    mv = accuracy_against(aggregate(dataset, "mv"), truth)
    ds = accuracy_against(aggregate(dataset, "ds"), truth)
    assert ds >= mv + 0.05, (mv, ds)
    assert ds > 0.85


def test_dawid_skene_finds_the_spammers():
    dataset, _, crowd = simulated(1000, seed=1)
    quality = aggregate(dataset, "ds").workers["quality"].reindex(list(crowd.workers))
    good = quality[crowd.kinds == GOOD]
    spam = quality[np.isin(crowd.kinds, [UNIFORM_SPAMMER, BIASED_SPAMMER])]
    assert good.median() > spam.max() - 0.05
    assert good.median() - spam.median() > 0.4


@pytest.mark.parametrize("method", ["glad", pytest.param("mace", marks=pytest.mark.slow), "wawa"])  # MACE: 10 restarts
def test_worker_models_beat_majority_vote(method):
    dataset, truth, _ = simulated(120, seed=2, config=CrowdConfig(n_workers=10))
    mv = accuracy_against(aggregate(dataset, "mv"), truth)
    assert accuracy_against(aggregate(dataset, method, seed=0), truth) > mv


def test_aggregation_relabels_and_records_agreement():
    dataset, truth, _ = simulated(200, seed=3, config=CrowdConfig(n_workers=15))
    result = aggregate(dataset, "ds")
    relabelled, _ = apply_aggregation(dataset, result)
    assert len(relabelled) == 200
    assert np.all((relabelled.extras["agreement"] >= 0) & (relabelled.extras["agreement"] <= 1))
    assert relabelled.extras["label_proba"].sum(axis=1) == pytest.approx(np.ones(200), abs=1e-5)
    assert relabelled.meta["aggregation"]["method"] == "ds"
    table = result.per_image()
    assert list(table.columns[:4]) == ["label", "agreement", "entropy", "n_answers"]
    assert (table["n_answers"] == 5).all()


def test_simulation_is_reproducible_and_validated():
    truth = np.arange(50) % 7
    a = simulate_crowd(truth, SEVEN, seed=4).answers
    b = simulate_crowd(truth, SEVEN, seed=4).answers
    pd.testing.assert_frame_equal(a, b)
    assert not a.duplicated(["image", "worker"]).any()
    with pytest.raises(ValueError, match="answers_per_image"):
        CrowdConfig(n_workers=3, answers_per_image=5)


# ---------------------------------------------------------------------------- agreement
def test_agreement_coefficients():
    from emofx.crowd.agreement import agreement_table

    perfect = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]])
    table = agreement_table(perfect, ("happy", "sad", "angry"))
    assert table.loc["all", "krippendorff_alpha"] == pytest.approx(1.0)
    assert table.loc["all", "fleiss_kappa"] == pytest.approx(1.0)
    assert table.loc["sad", "krippendorff_alpha"] == pytest.approx(1.0)
    # Fleiss' worked example (Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories): kappa 0.210
    fleiss_example = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                               [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                               [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert agreement_table(fleiss_example, tuple("abcde")).loc["all", "fleiss_kappa"] == pytest.approx(0.210, abs=1e-3)
    # by hand: 4 images, 2 answers each (a a, a b, b b, b b); coincidences o_aa 2, o_ab = o_ba 1, o_bb 4, so
    # alpha = 1 - (2/8) / (2 * 3 * 5 / (8 * 7)) = 8/15; kappa = (3/4 - 34/64) / (1 - 34/64) = 7/15
    mixed = agreement_table(np.array([[2, 0], [1, 1], [0, 2], [0, 2]]), ("a", "b")).loc["all"]
    assert mixed["krippendorff_alpha"] == pytest.approx(8 / 15) and mixed["fleiss_kappa"] == pytest.approx(7 / 15)


def test_agreement_uses_images_of_two_answers_or_more_and_fleiss_the_most_common_count():
    """By hand: images (a a), (a b), (b b), (b b), (a), (a a a). Alpha pairs every image of two or more answers:
    coincidences o_aa = 2 + 3 (the three-answer image's 3 x 2 / 2), o_ab = o_ba = 1, o_bb = 4; n = 11 values, 6 a and
    5 b, so alpha = 1 - (2 / 11) / (2 * 6 * 5 / (11 * 10)) = 2/3. Fleiss' kappa needs equal counts: the four images of
    two answers (the most common count), 7/15 as in the worked case above. A class nobody chose has no row."""
    from emofx.crowd.agreement import agreement_table

    votes = np.array([[2, 0, 0], [1, 1, 0], [0, 2, 0], [0, 2, 0], [1, 0, 0], [3, 0, 0]])
    table = agreement_table(votes, ("a", "b", "c"))
    assert list(table.index) == ["all", "a", "b"]
    overall = table.loc["all"]
    assert overall["krippendorff_alpha"] == pytest.approx(2 / 3) and overall["alpha_images"] == 5
    assert overall["fleiss_kappa"] == pytest.approx(7 / 15) and overall["fleiss_images"] == 4
    assert overall["answers"] == 12


def test_answers_keep_the_text_none_apart_from_missing_cells_and_crowds_are_validated():
    frame = pd.DataFrame({"image": ["a", "b", "c", None], "worker": ["w", "nan", "w", "w"],
                          "label": ["happy", "sad", "None", "happy"]})
    answers = answers_from_frame(frame)
    # a worker may be called nan, and the label "None" reads as "none" does; only the missing image is empty
    assert answers.frame["worker"].tolist() == ["w", "nan", "w"]
    assert answers.frame["label"].tolist() == ["happy", "sad", "unknown"]
    assert answers.dropped == {"empty": 1, "unknown_label": 0, "repeated": 0}
    for bad in ({"favourite_share": 1.5}, {"error_concentration": 0.0}):
        with pytest.raises(ValueError, match="favourite_share must lie in"):
            CrowdConfig(**bad)


def test_importing_votes_drops_an_earlier_imports_worker_answers():
    dataset, _, _ = simulated(6, seed=0)
    ratings = np.tile([[0.5, 0.5, 0, 0, 0, 0]], (len(dataset), 1))
    dataset = FaceDataset(**{**dataset.__dict__,
                             "extras": {**dataset.extras, "ratings": ratings, "observers": np.full(len(dataset), 4.0)},
                             "meta": {**dataset.meta, "rating_names": ["happy", "sad", "angry", "disgusted",
                                                                       "afraid", "surprised"]}})
    attached, _ = attach_observer_votes(dataset)
    assert "answer_worker" not in attached.extras and "workers" not in attached.meta
    with pytest.raises(AnswersError, match="no worker identities"):
        answers_of(attached)


# ---------------------------------------------------------------------------- observers, training weights
def test_observer_proportions_become_votes():
    dataset = blank_dataset(np.array([3, 4]))
    ratings = np.array([[0.79, 0.21, 0, 0, 0, 0], [np.nan] * 6], np.float32)  # shares of 10: rounded, not cut
    dataset = FaceDataset(**{**dataset.__dict__, "extras": {"ratings": ratings,
                                                            "observers": np.array([10, np.nan], np.float32)},
                             "meta": {"rating_names": ["happy", "sad", "angry", "disgusted", "afraid", "surprised"]}})
    attached, report = attach_observer_votes(dataset)
    assert attached.extras["votes"][0].tolist() == [8, 2, 0, 0, 0, 0]
    assert report.images_answered == 1


def test_ferplus_votes_join_fer2013_paths(shared_dataset):
    from emofx.crowd.answers import attach_ferplus_votes

    folder = shared_dataset("ferplus")
    mapping = pd.read_csv(folder / "ferplus_to_fer2013.csv", nrows=2)
    paths = [f"/data/fer2013/{name}" for name in mapping["fer2013_file"]] + ["/data/elsewhere/x.jpg"]
    dataset = FaceDataset.from_label_names(np.zeros((3, 4, 4), np.uint8), ["angry"] * 3, path=paths)
    attached, report = attach_ferplus_votes(dataset, folder)
    votes = pd.read_csv(folder / "fer2013new.csv", nrows=2).iloc[:, 2:].fillna(0).to_numpy(int)
    assert attached.extras["votes"].tolist() == [*votes.tolist(), [0] * 10]
    assert attached.meta["vote_names"][:2] == ["neutral", "happy"]
    assert report.summary() == (f"{votes.sum()} answers attached to 2 of 3 images; the other 1: no FER+ row names "
                                "them (FER+ left out images that are not faces): aggregating drops them")
    relabelled, dropped = apply_aggregation(attached, aggregate(attached, "ferplus"))  # FER+ rated every image:
    assert "/data/elsewhere/x.jpg" not in relabelled.path and dropped["unanswered"] == 1  # no row = left out
    kept, _ = apply_aggregation(attached, aggregate(attached, "ferplus"), keep_unanswered=True)  # when asked
    assert "/data/elsewhere/x.jpg" in kept.path


def test_ferplus_votes_reach_every_copy_of_an_image_fer2013_holds_several_times(shared_dataset):
    """ferplus_to_fer2013.csv joins four FER+ rows to Training_39394836.jpg; its byte-identical copies (among them
    Training_57904554.jpg, which no row names) each get one of the four rows, and a folder name in another
    letter case still matches."""
    from emofx.crowd.answers import attach_ferplus_votes

    folder, root = shared_dataset("ferplus"), shared_dataset("fer2013")
    original = (root / "train/angry/Training_39394836.jpg").read_bytes()
    copies = sorted(str(p) for p in root.glob("*/*/*.jpg") if p.stat().st_size == len(original)
                    and p.read_bytes() == original)
    assert len(copies) == 4 and str(root / "train/angry/Training_57904554.jpg") in copies
    shouting = str(root / "train/angry/Training_57904554.jpg").replace("/angry/", "/ANGRY/")  # as prepared elsewhere
    dataset = FaceDataset.from_label_names(np.zeros((5, 4, 4), np.uint8), ["angry"] * 5, path=[*copies, shouting])
    attached, report = attach_ferplus_votes(dataset, folder)
    rows = attached.extras["ferplus_row"]
    assert sorted(rows[:4]) == [850, 22213, 23445, 25783] and rows[4] == rows[copies.index(shouting.replace(
        "/ANGRY/", "/angry/"))]
    every = pd.read_csv(folder / "fer2013new.csv").iloc[:, 2:].fillna(0).to_numpy(int)
    assert attached.extras["votes"].tolist() == every[rows].tolist()
    assert report.images_answered == 5


def test_observer_votes_keep_the_observers_own_agreement():
    """The Taiwanese loader's agreement (the share of observers naming the posed emotion) is no earlier aggregation's:
    attaching the observers' votes keeps it (the human baseline and --weight-by-agreement read it)."""
    dataset = blank_dataset(np.array([SEVEN.index("happy")]))
    agreement = np.array([0.8], np.float32)
    dataset = FaceDataset(**{**dataset.__dict__, "extras": {"ratings": np.array([[0.8, 0.2, 0, 0, 0, 0]]),
                                                            "observers": np.array([10.0]), "agreement": agreement},
                             "meta": {"rating_names": ["happy", "sad", "angry", "disgusted", "afraid", "surprised"]}})
    attached, report = attach_observer_votes(dataset)
    assert attached.extras["agreement"].tolist() == agreement.tolist() and report.replaced == ""


def test_observers_cannot_relabel_a_neutral_face():
    neutral = SEVEN.index("neutral")
    dataset = blank_dataset(np.array([SEVEN.index("happy"), neutral]))
    dataset = FaceDataset(**{**dataset.__dict__, "extras": {"ratings": np.array([[0.9, 0.1, 0, 0, 0, 0]] * 2),
                                                            "observers": np.array([10.0, 10.0])},
                             "meta": {"rating_names": ["happy", "sad", "angry", "disgusted", "afraid", "surprised"]}})
    attached, report = attach_observer_votes(dataset)
    assert attached.extras["votes"].sum(axis=1).tolist() == [10, 0] and report.images_answered == 1
    relabelled, _ = apply_aggregation(attached, aggregate(attached, "mv"))
    assert relabelled.label_names.tolist() == ["happy", "neutral"]


def test_merged_answers_keep_their_workers(tmp_path):
    from emofx.cli import main
    from emofx.data.dataset import merge

    first, _, _ = simulated(30, seed=0)
    second, _, _ = simulated(20, seed=1)
    second = FaceDataset(**{**second.__dict__, "meta": {**second.meta, "workers": [
        f"other-{w}" if i % 2 else w for i, w in enumerate(second.meta["workers"])]}})
    merged = merge([first, second])
    expected = pd.concat([answers_of(first), answers_of(second).assign(image=lambda f: f["image"] + 30)])
    got = answers_of(merged)
    key = ["image", "worker", "label"]
    assert got.sort_values(key).reset_index(drop=True).equals(expected.sort_values(key).reset_index(drop=True))
    assert len(merged.meta["workers"]) == len(set(first.meta["workers"]) | set(second.meta["workers"]))
    merged.save(tmp_path / "merged.npz")
    for method in ("ds", "ferplus"):
        assert main(["labels", "aggregate", str(tmp_path / "merged.npz"), "--method", method, "--out",
                     str(tmp_path / f"{method}.npz"), "--workers", str(tmp_path / f"{method}.csv")]) == 0
        assert len(pd.read_csv(tmp_path / f"{method}.csv")) == len(merged.meta["workers"])


def test_agreement_weights_scale_the_loss():
    from emofx.nets.targets import agreement_weights
    from emofx.nets.training import TrainingError, cross_entropy

    dataset = blank_dataset(np.array([0, 1, 2]))
    with pytest.raises(TrainingError, match="labels aggregate"):
        agreement_weights(dataset)
    dataset = FaceDataset(**{**dataset.__dict__, "extras": {"agreement": np.array([0.4, 0.8, np.nan], np.float32)}})
    weights = agreement_weights(dataset)
    assert weights.tolist() == pytest.approx([2 / 3, 4 / 3, 1.0])
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]], np.float32)
    targets = np.eye(3, dtype=np.float32)
    per_image = -np.log(np.exp(np.diag(logits)) / np.exp(logits).sum(axis=1))
    weighted = float(cross_entropy(logits, targets * weights[:, None]))
    assert weighted == pytest.approx(float(np.mean(per_image * weights)), rel=1e-5)


def test_aggregating_a_ferplus_prepared_dataset_says_what_prepare_dropped(tmp_path, capsys):
    from emofx.cli import main

    dataset = blank_dataset(np.array([0, 1]))
    votes = np.array([[8, 2, 0, 0, 0, 0, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0, 0, 0, 0, 0]], np.int16)
    dataset = FaceDataset(**{**dataset.__dict__, "extras": {"votes": votes},
                             "meta": {"format": "ferplus", "vote_names": [*SEVEN, "contempt", "unknown", "not_face"],
                                      "dropped": {"no_majority": 39, "unknown": 2, "not_face": 1, "total": 42}}})
    dataset.save(tmp_path / "fp.npz")
    assert main(["labels", "aggregate", str(tmp_path / "fp.npz"), "--method", "mv",
                 "--out", str(tmp_path / "mv.npz")]) == 0
    assert ("note: `emofx prepare --format ferplus` kept only the images with a FER+ majority (it dropped 42: no "
            "majority 39, unknown 2, not a face 1)") in capsys.readouterr().out


def test_worker_models_need_answers_of_several_workers():
    dataset = blank_dataset(np.array([0, 1]))
    one = answers_from_frame(pd.DataFrame({"image": ["img0.png", "img1.png"], "worker": ["w1", "w1"],
                                           "label": ["angry", "happy"]}))
    attached, _ = attach_answers(dataset, one)
    for method in ("ds", "glad", "mace", "wawa"):
        with pytest.raises(AggregationError, match=f"method '{method}' models each worker .* from 1 worker: use mv"):
            aggregate(attached, method)
    assert aggregate(attached, "mv").label_names().tolist() == ["angry", "happy"]
