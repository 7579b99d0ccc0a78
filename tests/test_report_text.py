"""The report's labels and plain-language paragraphs for any number of cultures and any data source."""

import pandas as pd
import pytest

from emofx.pipeline.figures import comparison_labels
from emofx.pipeline.report_text import (confound, h1_paragraph, h2_paragraph, holm_over_pairs, people_sentence,
                                        smallest_p)


def summary(a: str, b: str, diff: float, p_value: float) -> dict:
    """A comparison's summary.json as far as the H1 paragraph reads it."""
    accuracy = {"culture_a": 0.6 + diff, "culture_b": 0.6, "diff": diff, "ci_low": diff - 0.05, "ci_high": diff + 0.05,
                "p_value": p_value, "p_unit": "trials (5 vs 5)", "effect_size": 1.0}
    return {"cultures": {"a": a, "b": b}, "accuracy": accuracy, "chance": {"flagged": []}}


def test_comparison_labels_name_the_cultures_where_a_protocol_compares_several_pairs():
    runs = pd.DataFrame({"run": ["c=ab", "c=ac", "c=ab2", "protocol=matched"],
                         "protocol": ["collected", "collected", "collected", "matched"],
                         "cultures": [["Swedish", "Taiwanese"], ["Swedish", "Japanese"], ["Swedish", "Taiwanese"],
                                      ["Swedish", "Taiwanese"]]})
    assert comparison_labels(runs) == [
        ("collected c=ab", "_collected-c-ab"),  # the same two cultures twice in a protocol: the runs' names
        ("collected: Swedish vs Japanese", "_collected-Swedish-vs-Japanese"),
        ("collected c=ab2", "_collected-c-ab2"),
        ("matched", "_matched"),
    ]
    assert comparison_labels(runs.iloc[[3]]) == [("matched", "")]  # a lone comparison: its protocol, no suffix


def test_h1_holm_adjusts_over_the_pairs_of_cultures_a_protocol_compares():
    summaries = {"collected: A vs B": summary("A", "B", 0.10, 0.01), "collected: A vs C": summary("A", "C", 0.08, 0.04),
                 "collected: B vs C": summary("B", "C", -0.02, 0.03), "matched: A vs B": summary("A", "B", 0.04, 0.04)}
    protocols = {label: label.split(":")[0] for label in summaries}
    adjusted = holm_over_pairs(summaries, protocols)
    # Holm over the three collected tests (0.01 x 3, then 0.03 x 2, then max(0.04 x 1, 0.06)); matched has one test
    assert adjusted == pytest.approx({"collected: A vs B": 0.03, "collected: B vs C": 0.06, "collected: A vs C": 0.06})
    text = h1_paragraph(summaries, protocols, {"A": "kdef", "B": "taiwanese", "C": "web"})
    paragraphs = {p.split(".**")[0].lstrip("*"): p for p in text.split("\n\n") if p.startswith("**")}
    assert "Holm-adjusted over the 3 pairs of cultures of this protocol, p = 0.03" in paragraphs["Collected: A vs B"]
    assert "larger than the trial-to-trial variation" in paragraphs["Collected: A vs B"]
    # raw p = 0.04 < 0.05, but not after the correction: the verdict follows the adjusted p
    assert "does not show a difference" in paragraphs["Collected: A vs C"]
    assert "Holm" not in paragraphs["Matched: A vs B"] and "larger than" in paragraphs["Matched: A vs B"]
    # collected against matched for the one pair run both ways, named since there are several pairs
    assert "Comparing the two protocols (A vs B): " in text and "from +10.0 to +4.0 points" in text
    assert "that a face's culture (A, B, C) makes" in text and "KDEF: amateur actors" in text


def test_two_protocols_of_one_pair_read_as_before():
    summaries = {"collected": summary("Swedish", "Taiwanese", 0.17, 0.008),
                 "matched": summary("Swedish", "Taiwanese", 0.19, 0.02)}
    text = h1_paragraph(summaries)
    assert text.startswith("**Collected.** Swedish models reached 77.0%") and "Holm" not in text
    assert "Comparing the two protocols: when size" in text and "from +17.0 to +19.0 points" in text


def test_h1_with_too_few_trials_says_the_test_cannot_decide_not_that_trials_vary():
    few = summary("Swedish", "Taiwanese", 0.11, 1 / 3)
    few["accuracy"]["smallest_p"] = 1 / 3  # 2 vs 2 trials
    enough = summary("Swedish", "Taiwanese", 0.01, 0.6)
    enough["accuracy"]["smallest_p"] = 2 / 252
    text = h1_paragraph({"collected": few, "matched": enough})
    collected, matched = (p for p in text.split("\n\n") if p.startswith("**"))
    assert "too few trials to tell" in collected and "cannot give p below 0.33" in collected
    assert "vary about as much" not in collected
    assert "does not show a difference: trials of one culture vary about as much" in matched
    assert "too few" not in matched
    older = summary("Swedish", "Taiwanese", 0.11, 1 / 3)  # written before smallest_p was recorded: read from p_unit
    older["accuracy"]["p_unit"] = "trials (2 vs 2; exact over 6 splits)"
    assert "cannot give p below 0.33" in h1_paragraph({"collected": older})
    assert smallest_p({"p_unit": "trials (3 vs 5; exact over 56 splits)"}) == pytest.approx(1 / 56)
    assert smallest_p({"p_unit": "trials (20 vs 20; Monte-Carlo, 10000 splits)"}) == pytest.approx(1e-4)
    assert smallest_p({"p_unit": "trials (5 vs 5)"}) is None


def test_h2_and_the_confusions_say_when_the_trials_were_too_few_for_any_test():
    def with_tests(p_unit: str) -> dict:
        record = summary("A", "B", 0.1, 1 / 3)
        record["accuracy"]["p_unit"] = p_unit
        record["region_tests"] = [{"emotion": "happy", "region": "mouth", "diff": 0.2, "effect_size": 2.0,
                                   "p_value": 1 / 3, "p_adjusted": 1 / 3, "unit": "trials"}]
        record["confusion_tests"] = [{"true": "sad", "predicted": "happy", "rate_a": 0.3, "rate_b": 0.1, "diff": 0.2,
                                      "p_value": 1 / 3, "p_adjusted": 1 / 3}]
        record.update(config={"saliency_method": "guided"}, filters={"total_variation": 0.1, "p_value": 1 / 3},
                      cka={"between": 0.5, "within_a": 0.6, "within_b": 0.7})
        return record

    few = with_tests("trials (2 vs 2; exact over 6 splits)")
    enough = with_tests("trials (5 vs 5; exact over 252 splits)")
    assert "no test over trials could reach p < 0.05" in h2_paragraph({"x": few})
    assert "no test over trials could reach" not in h2_paragraph({"x": enough})
    assert "no test over trials could reach p < 0.05" in h1_paragraph({"x": few})  # in the confusion sentence
    assert "no test over trials could reach" not in h1_paragraph({"x": enough})


def test_h2_says_when_several_region_tests_sit_at_the_least_p_the_trials_allow():
    record = summary("Swedish", "Taiwanese", 0.17, 2 / 252)
    record["accuracy"]["p_unit"] = "trials (5 vs 5; exact over 252 splits)"
    record.update(config={"saliency_method": "guided"}, filters={"total_variation": 0.1, "p_value": 0.5},
                  cka={"between": 0.5, "within_a": 0.6, "within_b": 0.7})

    def cell(region, p_value, p_adjusted, unit="trials"):
        return {"emotion": "happy", "region": region, "diff": 0.1, "effect_size": 3.0, "p_value": p_value,
                "p_adjusted": p_adjusted, "unit": unit}

    record["region_tests"] = [cell("eyes", 2 / 252, 0.0159), cell("mouth", 2 / 252, 0.29), cell("nose", 0.4, 1.0)]
    assert ("(2 of the 3 emotion x region tests sit at the smallest p the trials allow (0.0079: the cultures' trials "
            "perfectly apart), and 1 of them passes the correction") in h2_paragraph({"collected": record})
    record["region_tests"] = [cell(r, 2 / 252, 0.0159, unit="images") for r in ("eyes", "mouth")]  # no such floor
    assert "sit at the smallest p" not in h2_paragraph({"collected": record})


def test_h2_says_where_the_salient_pixels_lie_nearer_the_landmarks():
    record = summary("Swedish", "Taiwanese", 0.01, 0.6)
    record.update(region_tests=[], config={"saliency_method": "guided"},
                  filters={"total_variation": 0.1, "p_value": 0.5},
                  cka={"between": 0.5, "within_a": 0.6, "within_b": 0.7})

    def distance(emotion, mean_a, mean_b, p_adjusted):
        return {"emotion": emotion, "mean_a": mean_a, "mean_b": mean_b, "p_adjusted": p_adjusted}

    record["proximity_tests"] = [distance("happy", 3.85, 5.86, 0.0159), distance("sad", 5.6, 5.8, 0.88),
                                 distance("all", 4.51, 5.50, 0.0476)]
    assert ("mean distance to the nearest landmark (Swedish vs Taiwanese) differs for 2 of 3 emotions after "
            "correction: happy (3.9 vs 5.9 input pixels, corrected p = 0.0159); all emotions (4.5 vs 5.5 input "
            "pixels, corrected p = 0.0476).") in h2_paragraph({"matched": record})
    record["proximity_tests"] = [distance("sad", 5.6, 5.8, 0.88), distance("happy", 3.9, 4.0, 0.36)]
    assert ("distance to the nearest landmark differs for none of the 2 emotions after correction (smallest "
            "corrected p = 0.36)") in h2_paragraph({"matched": record})
    del record["proximity_tests"]  # a summary written before the proximity tests: no sentence
    assert "nearest landmark" not in h2_paragraph({"matched": record})


def test_h1_names_the_confusions_that_differ_or_the_largest_when_none_does():
    def confusion(true, predicted, rate_a, rate_b, p_adjusted):
        return {"true": true, "predicted": predicted, "rate_a": rate_a, "rate_b": rate_b, "diff": rate_a - rate_b,
                "p_value": p_adjusted / 2, "p_adjusted": p_adjusted}

    differing = summary("Swedish", "Taiwanese", 0.1, 0.01)
    differing["confusion_tests"] = [confusion("afraid", "surprised", 0.46, 0.07, 0.008),
                                    confusion("sad", "neutral", 0.39, 0.0, 0.3)]
    similar = summary("Swedish", "Taiwanese", 0.1, 0.01)
    similar["confusion_tests"] = [confusion("afraid", "surprised", 0.2, 0.1, 0.4),
                                  confusion("sad", "neutral", 0.05, 0.3, 0.6)]
    text = h1_paragraph({"collected": differing, "matched": similar, "older": summary("Swedish", "Taiwanese", 0, 1)})
    found = [p for p in text.split("\n\n") if p.startswith("Which emotions the models confuse")]
    assert len(found) == 2  # the summary written before confusions were tested has none
    assert ("1 of the 2 pairs of emotions ever confused differ after correction: afraid taken for surprised (46% of "
            "Swedish's afraid images vs 7%, corrected p = 0.008)") in found[0] and "sad taken" not in found[0]
    assert ("none of the 2 pairs of emotions ever confused differs after correction (the largest difference: sad "
            "taken for neutral (5% of Swedish's sad images vs 30%, corrected p = 0.6))") in found[1]


def test_the_confound_follows_where_the_cultures_faces_come_from():
    real = confound({"Swedish": "kdef", "Taiwanese": "taiwanese"})
    assert "each culture is one dataset" in real and "KDEF: amateur actors" in real and "Taiwanese set" in real
    assert "each culture is one dataset" in confound({"A": "a.npz", "B": "b.npz"}) and "KDEF" not in confound({})
    synthetic = confound({"eyes": "synthetic", "mouth": "synthetic:mouth"})
    assert "synthetic face generator" in synthetic and "studio" not in synthetic
    one = confound({"Japanese": "collection", "Korean": "collection"})
    assert "All cultures come from one file (collection)" in one
    # for synthetic dialects the text does not deny the difference they were built with
    synthetic_text = h1_paragraph({"collected": summary("eyes", "mouth", 0.1, 0.01)}, sources={"eyes": "synthetic",
                                                                                            "mouth": "synthetic"})
    assert "do not support" not in synthetic_text and "synthetic face generator" in synthetic_text


def test_people_sentence_gives_each_cultures_median_and_range():
    people = pd.DataFrame({"culture": ["S", "S", "S", "T", "T"], "subject": list("abcde"), "images": [14] * 5,
                           "trials": [1] * 5, "accuracy": [0.5, 0.75, 1.0, 0.4, 0.6]})
    assert people_sentence(people).startswith(
        "Accuracy per test person, on their images pooled over the trials that tested them, median and range: S 75.0% "
        "(from 50.0% to 100.0%, 3 people, 42 images); T 50.0% (from 40.0% to 60.0%, 2 people, 28 images).")


def test_h1_states_the_interval_over_trials_and_the_one_over_test_people():
    new = summary("A", "B", 0.17, 0.008)
    new["accuracy"].update(ci_low=0.080, ci_high=0.255, measured_ci_low=0.099, measured_ci_high=0.238,
                           measured_ci_unit="test people, redrawn within each trial with all of their images")
    text = h1_paragraph({"collected": new})
    assert ("95% interval +8.0 to +25.5 over trials, the shifts the permutation test does not reject; +9.9 to "
            "+23.8 over test people with these models fixed") in text
    new["accuracy"].update(ci_low=None, ci_high=None)  # summary.json's null: too few trials to bound it
    assert "no 95% interval over trials, too few trials for the permutation" in h1_paragraph({"collected": new})
    # a summary written before the trials' interval existed held only the bootstrap over test images
    old = h1_paragraph({"collected": summary("A", "B", 0.17, 0.008)})
    assert "95% bootstrap interval +12.0 to +22.0 over test images" in old


def test_h1_says_when_it_scores_only_the_emotions_both_cultures_have():
    """A culture without disgusted faces: the comparison's accuracies are on six emotions, not its tables' seven."""
    from types import SimpleNamespace

    from emofx.pipeline.report import _scored_on

    seven = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
    exp = SimpleNamespace(datasets={("collected", "Swedish"): {"classes": seven},
                                    ("collected", "Taiwanese"): {"classes": [c for c in seven if c != "disgusted"]}})
    summary = {"cultures": {"a": "Swedish", "b": "Taiwanese"}, "shared_classes": [c for c in seven if c != "disgusted"]}
    assert _scored_on(exp, summary) == (", on the 6 emotions both have (afraid, angry, happy, neutral, sad, surprised; "
                                        "left out: Swedish's disgusted)")
    assert _scored_on(exp, {**summary, "shared_classes": seven}) == ""
    six = [c for c in seven if c != "disgusted"]  # matched datasets hold the shared emotions: the protocol decides
    both = SimpleNamespace(datasets={**exp.datasets, ("matched", "Swedish"): {"classes": six},
                                     ("matched", "Taiwanese"): {"classes": six}})
    assert _scored_on(both, summary, "collected") == _scored_on(exp, summary)
    assert not _scored_on(both, summary, "matched")


def test_significant_means_strictly_below_alpha():
    from emofx.pipeline.report_text import significant

    assert significant(0.0499) and significant(0.0)
    assert not significant(0.05) and not significant(None) and not significant(float("nan"))


def test_the_protocols_sentence_turns_on_whether_half_of_the_difference_remains():
    def text(before: float, after: float) -> str:
        return h1_paragraph({"collected": summary("A", "B", before, 0.01), "matched": summary("A", "B", after, 0.01)})

    assert "so most of it is not explained by how many images" in text(0.10, 0.06)  # 6 >= 5 points remain
    assert "so much of the as-collected difference comes from" in text(0.10, 0.04)
    assert "so most of it is not explained" in text(-0.10, 0.05)  # sizes, not signs


def test_cka_between_is_called_below_within_only_when_it_is_below_both():
    record = summary("A", "B", 0.01, 0.6)
    record.update(region_tests=[], config={"saliency_method": "guided"},
                  filters={"total_variation": 0.1, "p_value": 0.5})
    record["cka"] = {"between": 0.65, "within_a": 0.6, "within_b": 0.7}
    assert "(between is not below both within values)" in h2_paragraph({"x": record})
    record["cka"] = {"between": 0.55, "within_a": 0.6, "within_b": 0.7}
    assert "(between is below within:" in h2_paragraph({"x": record})


def test_image_level_region_tests_are_not_said_to_be_limited_by_the_trials():
    record = summary("A", "B", 0.1, 1 / 3)
    record["accuracy"]["smallest_p"] = 1 / 3  # 2 vs 2 trials
    record.update(region_tests=[{"emotion": "happy", "region": "mouth", "diff": 0.2, "effect_size": 2.0,
                                 "p_value": 0.2, "p_adjusted": 0.4, "unit": "images"}],
                  config={"saliency_method": "guided"}, filters={"total_variation": 0.1, "p_value": 1 / 3},
                  cka={"between": 0.5, "within_a": 0.6, "within_b": 0.7})
    text = h2_paragraph({"x": record})
    assert "none of the 1 emotion x region tests differs after correction (smallest corrected p = 0.4)" in text
    assert "no test over trials could reach" not in text


def test_a_rho_interval_that_reaches_zero_is_not_evidence():
    from emofx.pipeline.report_text import human_paragraph

    row = {"culture": "T", "rho": 0.3, "rho_low": 0.0, "rho_high": 0.5, "people": 10, "n_images": 40}
    assert "the data do not show that people and models find the same images clear" in human_paragraph([row])
    assert "images people find clear are also the ones" in human_paragraph([{**row, "rho_low": 0.01}])


def test_people_per_part_counts_each_trials_distinct_people_and_reads_a_missing_protocol_as_collected(tmp_path):
    """Two trials of one culture, recorded as 02_train_culture leaves them (status.json, the kept dataset and the
    run's split.json), the second of a run written before protocols existed: 3 people of 2 images each, split
    2 / 1 / 0 and 1 / 1 / 1 people, so 1.5, 1 and 0.5 people per part on average."""
    import json

    import numpy as np

    from emofx.data.splits import Split
    from emofx.data.synthetic import make_synthetic
    from emofx.pipeline.report_records import Experiment

    data = make_synthetic("eyes", n_per_class=3, seed=0, size=16, classes=("happy", "sad"), images_per_subject_class=1)
    assert sorted(set(data.subject)) == ["eyes-s000", "eyes-s001", "eyes-s002"] and len(data) == 6
    by_person = {p: np.flatnonzero(data.subject == p) for p in sorted(set(data.subject))}
    people = list(by_person)
    parts = {"trial=0": ([people[0], people[1]], [people[2]], []), "trial=1": ([people[0]], [people[1]], [people[2]])}
    for run, (train, val, test) in parts.items():
        results = tmp_path / "exp" / "02_train_culture" / run / "results"
        (results / "run").mkdir(parents=True)
        data.save(results / "dataset.npz")
        indices = [np.concatenate([by_person[p] for p in part] or [np.zeros(0, int)]) for part in (train, val, test)]
        split = Split(*indices, kind="subject", seed=0, trial=int(run[-1]), fractions=(0.6, 0.2, 0.2), n_images=6)
        (results / "run" / "split.json").write_text(json.dumps(split.to_dict()))
        parameters = {"culture": "eyes", **({"protocol": "collected"} if run == "trial=0" else {})}
        (results.parent / "status.json").write_text(json.dumps({"status": "ok", "parameters": parameters}))
    table = Experiment(tmp_path / "exp").people_per_part()
    assert table.to_dict("records") == [{"protocol": "collected", "culture": "eyes", "people_train": 1.5,
                                         "people_val": 1.0, "people_test": 0.5}]
