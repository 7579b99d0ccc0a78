"""The report's plain-language paragraphs: what each hypothesis's numbers do and do not support.

Each function takes the comparison summaries (``summary.json`` of 05_compare_cultures, by the
comparison's label: its protocol, or protocol and cultures where a protocol compares several pairs) and
returns Markdown; numbers are quoted, never rounded into words alone.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import pandas as pd

from emofx.pipeline.figures import COLLECTED, MATCHED
from emofx.study import stats
from emofx.study.comparison import floor_note
from emofx.study.stats import ALPHA, holm

TOO_FEW = "; with these trials no test over trials could reach p < 0.05"
MAX_LISTED = 6  # region differences named in the text; the table lists every test
SYNTHETIC = "synthetic"  # the source of emofx's generated faces, also as "synthetic:<dialect>"
SOURCE_NOTES = {  # how the people of a known source were photographed, for the confound sentence
    "kdef": "KDEF: amateur actors in one session per expression",
    "taiwanese": "the Taiwanese set: performers in theatric, FACS-guided and personal-event performances",
}


def confound(sources: Mapping[str, str]) -> str:
    """What else differs between the cultures than culture, from each culture's data source (``culture -> source``,
    as ``emofx prepare`` records it): synthetic dialects, one collection, or one dataset per culture."""
    kinds = set(sources.values())
    if _synthetic(sources):
        return ("These cultures are dialects of emofx's synthetic face generator (`emofx.data.synthetic`): one "
                "generator draws every face, and the dialects differ by construction in which facial regions carry "
                "each emotion. A difference here shows that the analysis finds a difference put there on purpose; it "
                "says nothing about people.")
    if len(kinds) == 1:
        return (f"All cultures come from one file ({kinds.pop()}), one collection or several merged; either way "
                "culture is not the only thing that may differ between its parts: who photographed them, how, and "
                "under which instructions. Any difference reported here is a difference between these parts.")
    notes = [SOURCE_NOTES[k] for k in sorted(kinds) if k in SOURCE_NOTES]
    return ("Culture is not the only thing that differs between these datasets: each culture is one dataset, "
            "photographed in its own studio, with its own camera, lighting, image size and framing, and posed by its "
            "own people under their own instructions" + (f" ({'; '.join(notes)})" if notes else "") + ". Any "
            "difference reported here is a difference between these datasets; the matched protocol removes differences "
            "of size, class balance and number of people, not these. Telling culture apart from them needs several "
            "datasets per culture or one study that photographs every culture alike.")


def _synthetic(sources: Mapping[str, str]) -> bool:
    return bool(sources) and all(s.split(":")[0] == SYNTHETIC for s in sources.values())


def unsupported(claim: str, sources: Mapping[str, str]) -> str:
    """What the numbers do not support (``claim``), then :func:`confound`; for synthetic dialects only the latter,
    since their differences were put there by construction."""
    if _synthetic(sources):
        return confound(sources)
    return f"What the numbers do not support: {claim} " + confound(sources)


def heading(label: str) -> str:
    """A comparison's label as a heading: its first letter capitalised, culture names left as they are."""
    return label[:1].upper() + label[1:]


def _pct(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{100 * float(value):.1f}%"


def _num(value: Any, fmt: str = ".2f") -> str:
    return "n/a" if value is None or value != value else format(float(value), fmt)


def format_p(value: Any) -> str:
    """A p-value to three significant digits ("n/a" when missing)."""
    return "n/a" if value is None else f"{float(value):.3g}"


def significant(p_value: Any) -> bool:
    """Below :data:`ALPHA` (a p-value of 0, e.g. one that underflowed, is significant; a missing one is not)."""
    return p_value is not None and p_value == p_value and float(p_value) < ALPHA


def smallest_p(test: Mapping[str, Any]) -> float | None:
    """The smallest p-value a permutation test over trials could give (:func:`emofx.study.stats.smallest_p`): as
    recorded, or for a summary written before emofx recorded it, from its ``p_unit`` ("trials (2 vs 2; exact over 6
    splits)"); None when neither says."""
    if test.get("smallest_p") is not None:
        return float(test["smallest_p"])
    found = re.search(r"\((\d+) vs (\d+); (exact over|Monte-Carlo,) (\d+) splits\)", str(test.get("p_unit", "")))
    if found is None:
        return None
    n_a, n_b, kind, splits = found.groups()
    return stats.smallest_p(int(n_a), int(n_b), int(splits)) if kind == "exact over" else 1.0 / int(splits)


def holm_over_pairs(summaries: Mapping[str, Mapping[str, Any]], protocols: Mapping[str, str]) -> dict[str, float]:
    """H1's p-value of each comparison Holm-adjusted over the comparisons of its protocol (by label), for the
    protocols that compare more than one pair of cultures: k cultures give k (k - 1) / 2 tests of one question."""
    adjusted = {}
    for protocol in set(protocols.values()):
        labels = [label for label in summaries if protocols[label] == protocol]
        if len(labels) > 1:
            p_values = [summaries[label]["accuracy"].get("p_value") for label in labels]
            corrected = holm(np.array([np.nan if p is None else p for p in p_values], dtype=float))
            adjusted.update({label: float(p) for label, p in zip(labels, corrected) if p == p})
    return adjusted


def _cultures(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(c for s in summaries.values() for c in (s["cultures"]["a"], s["cultures"]["b"])))


def h1_paragraph(summaries: Mapping[str, Mapping[str, Any]], protocols: Mapping[str, str] | None = None,
                 sources: Mapping[str, str] | None = None) -> str:
    """H1 (accuracy depends on culture) for each comparison (by label; ``protocols``: each label's protocol, default
    the label), then each pair of cultures as collected against matched, then what the numbers do not support
    (``sources``: each culture's data source, :func:`confound`). Where a protocol compares several pairs, the verdict
    follows the p-value Holm-adjusted over them (:func:`holm_over_pairs`)."""
    protocols = protocols or {label: label for label in summaries}
    adjusted = holm_over_pairs(summaries, protocols)
    parts, by_pair = [], {}
    for label, summary in summaries.items():
        acc = summary["accuracy"]
        a, b = summary["cultures"]["a"], summary["cultures"]["b"]
        by_pair.setdefault((a, b), {})[protocols[label]] = acc["diff"]
        pairs = sum(protocols[other] == protocols[label] for other in summaries)
        holm_text = (f"; Holm-adjusted over the {pairs} pairs of cultures of this protocol, p = "
                     f"{format_p(adjusted[label])}" if label in adjusted else "")
        smallest = smallest_p(acc)
        verdict = ("the difference is larger than the trial-to-trial variation would give by chance"
                   if significant(adjusted.get(label, acc.get("p_value"))) else
                   f"too few trials to tell: with these, a permutation test cannot give p below {smallest:.2g}, "
                   "however the cultures differ (train at least 4 trials per culture)"
                   if smallest is not None and not significant(smallest) else
                   "this does not show a difference: trials of one culture vary about as much as the cultures differ")
        parts.append(
            f"**{heading(label)}.** {a} models reached {_pct(acc['culture_a'])} test accuracy and {b} models "
            f"{_pct(acc['culture_b'])} (difference {100 * acc['diff']:+.1f} points, {_interval(acc)}; permutation p = "
            f"{format_p(acc['p_value'])} over {acc['p_unit']}{holm_text}; Hedges' g = {_num(acc['effect_size'])}): "
            f"{verdict}.")
        if summary.get("confusion_tests"):
            parts.append(_confusion_sentence(summary["confusion_tests"], a, b, _too_few(summary)))
        flagged = summary.get("chance", {}).get("flagged", [])
        if flagged:
            parts.append(f"{len(flagged)} trial(s) of this comparison are not clearly above chance (listed above); the "
                         "accuracy difference then partly measures failed training, not the cultures.")
    for (a, b), diffs in by_pair.items():
        if COLLECTED in diffs and MATCHED in diffs:
            before, after = diffs[COLLECTED], diffs[MATCHED]
            parts.append(f"Comparing the two protocols{f' ({a} vs {b})' if len(by_pair) > 1 else ''}: when size, "
                         "class balance and number of people are equalised the difference goes from "
                         f"{100 * before:+.1f} to {100 * after:+.1f} points, so "
                         + ("most of it is not explained by how many images and people each set has."
                            if abs(after) >= 0.5 * abs(before) else
                            "much of the as-collected difference comes from how many images and people each set has."))
    parts.append(unsupported(f"that a face's culture ({', '.join(_cultures(summaries))}) makes expressions easier or "
                             "harder to recognise.", sources or {}))
    return "\n\n".join(parts)


def _interval(acc: Mapping[str, Any]) -> str:
    """The accuracy difference's interval in words: over trials (the permutation test inverted; unbounded, JSON
    null, when too few trials), with the one over test people beside it; a summary written before emofx had the
    trials' interval holds only the bootstrap over test images."""
    def points(low: Any, high: Any) -> str:
        return f"{100 * low:+.1f} to {100 * high:+.1f}"

    if "measured_ci_low" not in acc:
        return f"95% bootstrap interval {points(acc['ci_low'], acc['ci_high'])} over test images"
    trials = ("no 95% interval over trials, too few trials for the permutation test to reject any shift"
              if acc["ci_low"] is None or acc["ci_high"] is None else
              f"95% interval {points(acc['ci_low'], acc['ci_high'])} over trials, the shifts the permutation test "
              "does not reject")
    if acc["measured_ci_low"] is None or not np.isfinite(acc["measured_ci_low"]):
        return f"{trials}; no interval over test people with these models fixed ({acc.get('measured_ci_unit')})"
    redrawn = "test people" if "people" in acc.get("measured_ci_unit", "") else "test images"
    measured = points(acc["measured_ci_low"], acc["measured_ci_high"])
    return f"{trials}; {measured} over {redrawn} with these models fixed"


def people_sentence(people: pd.DataFrame) -> str:
    """Per culture, how accuracy spreads over its test people (``person_accuracy`` rows)."""
    parts = []
    for culture, group in people.groupby("culture", sort=False):
        accuracy = group["accuracy"]
        parts.append(f"{culture} {_pct(accuracy.median())} (from {_pct(accuracy.min())} to {_pct(accuracy.max())}, "
                     f"{len(group)} people, {int(group['images'].sum())} images)")
    return ("Accuracy per test person, on their images pooled over the trials that tested them, median and range: "
            + "; ".join(parts) + ". A gap carried by a few people shows as a few low dots; a gap spread over the "
            "people as the whole cloud shifted.")


def _too_few(summary: Mapping[str, Any]) -> bool:
    """Whether the comparison's trials are too few for any test over trials to reach :data:`ALPHA`."""
    smallest = smallest_p(summary.get("accuracy", {}))
    return smallest is not None and not significant(smallest)


def _confusion_sentence(tests: list[Mapping[str, Any]], a: str, b: str, too_few: bool = False) -> str:
    """Which confusions (one emotion taken for another) differ between the cultures after correction."""
    def pair(t: Mapping[str, Any]) -> str:
        return (f"{t['true']} taken for {t['predicted']} ({100 * t['rate_a']:.0f}% of {a}'s {t['true']} images vs "
                f"{100 * t['rate_b']:.0f}%, corrected p = {format_p(t['p_adjusted'])})")

    differing = sorted((t for t in tests if significant(t.get("p_adjusted"))), key=lambda t: t["p_adjusted"])
    if differing:
        found = (f"{len(differing)} of the {len(tests)} pairs of emotions ever confused differ after correction: "
                 + "; ".join(pair(t) for t in differing[:MAX_LISTED]))
    else:
        largest = max(tests, key=lambda t: abs(t["diff"]))
        found = (f"none of the {len(tests)} pairs of emotions ever confused differs after correction (the largest "
                 f"difference: {pair(largest)}{TOO_FEW if too_few else ''})")
    return (f"Which emotions the models confuse (the paper's comparison of confusion matrices, tested): {found}. A "
            "culture recognised less accurately has more confusions everywhere; read a pair beside its emotion's "
            "error difference.")


def h2_paragraph(summaries: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str] | None = None) -> str:
    """H2 (the learnt features depend on culture) for each comparison (by label): region tests, filters, CKA."""
    parts = []
    for label, summary in summaries.items():
        a, b = summary["cultures"]["a"], summary["cultures"]["b"]
        tests = summary["region_tests"]
        differing = sorted((t for t in tests if significant(t.get("p_adjusted"))),
                           key=lambda t: (t["p_adjusted"], -abs(t["effect_size"] or 0)))
        listed = "; ".join(f"{t['emotion']}/{t['region']} ({100 * t['diff']:+.1f} points of saliency mass, g = "
                           f"{_num(t['effect_size'])}, corrected p = {format_p(t['p_adjusted'])})"
                           for t in differing[:MAX_LISTED])
        if len(differing) > MAX_LISTED:
            listed = (f"the {MAX_LISTED} with the smallest corrected p are {listed} (all of them in the region tests' "
                      "table)")
        corrected = [t["p_adjusted"] for t in tests if t["p_adjusted"] is not None]
        over_trials = bool(tests) and tests[0].get("unit") == "trials"
        regions = (f"{len(differing)} of {len(tests)} emotion x region tests differ after correction: {listed}"
                   if differing else f"none of the {len(tests)} emotion x region tests differs after correction "
                   f"(smallest corrected p = {format_p(min(corrected, default=None))}"
                   + (TOO_FEW if over_trials and _too_few(summary) else "") + ")")
        smallest = smallest_p(summary.get("accuracy", {}))
        if over_trials and smallest is not None:
            regions += "".join(f" ({note})" for note in floor_note(
                [t["p_value"] for t in tests], [t["p_adjusted"] for t in tests], smallest, "emotion x region tests"))
        filters, cka = summary["filters"], summary["cka"]
        parts.append(
            f"**{heading(label)}.** Where the models look ({summary['config']['saliency_method']} saliency, share "
            f"of the map in each landmark region, {a} minus {b}): {regions}.{_proximity_sentence(summary)} "
            "The filters' preferred regions differ by "
            f"a total variation of {_num(filters['total_variation'], '.3f')} "
            f"(permutation p = {format_p(filters['p_value'])} over "
            f"models). Representations: linear CKA between the cultures' models {_num(cka['between'], '.3f')}, within "
            f"{a} {_num(cka['within_a'], '.3f')} and within {b} {_num(cka['within_b'], '.3f')}"
            + (" (between is below within: the two cultures' models represent faces less alike than two trials of "
               "one culture do; no test stands behind this, and it is expected of any two datasets, as each "
               "culture's trials all learn from its one dataset, so it says nothing of culture by itself)."
               if cka["between"] is not None and cka["within_a"] is not None and
               cka["within_b"] is not None and cka["between"] < min(cka["within_a"], cka["within_b"]) else
               " (between is not below both within values)."))
    parts.append(unsupported("that the cultures express emotions with different facial regions. Saliency shows what "
                             "the trained models use, which follows the images as well as the faces: alignment, "
                             "lighting, hair and background framing differ between the sets.", sources or {}))
    return "\n\n".join(parts)


def _proximity_sentence(summary: Mapping[str, Any]) -> str:
    """Which emotions' most salient pixels lie nearer the landmarks in one culture (the paper's proximity measure)."""
    tests = summary.get("proximity_tests") or []
    if not tests:
        return ""
    a, b = summary["cultures"]["a"], summary["cultures"]["b"]
    differing = sorted((t for t in tests if significant(t.get("p_adjusted"))), key=lambda t: t["p_adjusted"])
    if not differing:
        corrected = [t["p_adjusted"] for t in tests if t.get("p_adjusted") is not None]
        return (f" The most salient pixels' distance to the nearest landmark differs for none of the {len(tests)} "
                f"emotions after correction (smallest corrected p = {format_p(min(corrected, default=None))}).")
    listed = "; ".join(f"{'all emotions' if t['emotion'] == 'all' else t['emotion']} ({_num(t['mean_a'], '.1f')} vs "
                       f"{_num(t['mean_b'], '.1f')} input pixels, corrected p = {format_p(t['p_adjusted'])})"
                       for t in differing[:MAX_LISTED])
    return (f" The most salient pixels' mean distance to the nearest landmark ({a} vs {b}) differs for "
            f"{len(differing)} of {len(tests)} emotions after correction: {listed}.")


def transfer_paragraph(transfer: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> str:
    """Cross-culture transfer: own-culture vs other-culture accuracy per training culture (by comparison label)."""
    lines = []
    for label, rows in transfer.items():
        for row in rows:
            lines.append(f"{label}: models trained on {row['train_culture']} reach {_pct(row['own'])} on their own "
                         f"culture's test images and {_pct(row['other'])} on the other culture's images.")
    caveat = ("between synthetic dialects it is built in." if _synthetic(sources or {}) else
              "but a drop is also expected from any change of studio and posing (the confound below).")
    return (" ".join(lines) + " A drop from own to other culture is the in-group advantage the paper asks about; "
            + caveat)


def human_paragraph(human: list[Mapping[str, Any]]) -> str:
    """The observers' agreement against the models."""
    if not human:
        return "No dataset of this experiment carries observer ratings, so there is no human baseline."
    verdicts = {True: "images people find clear are also the ones the models are sure of.",
                False: "the data do not show that people and models find the same images clear.",
                None: "whether people and models find the same images clear is not tested."}
    return " ".join(
        f"On {h['culture']} images the models' probability of the posed class and the share of observers who chose "
        f"the posed emotion correlate with Spearman rho = {_num(h['rho'])} ({_rho_evidence(h)[0]}, {h['n_images']} "
        "rated test images; neutral has no rating): " + verdicts[_rho_evidence(h)[1]] + _observer_sentence(h)
        for h in human)


def _rho_evidence(h: Mapping[str, Any], prefix: str = "") -> tuple[str, bool | None]:
    """How sure a positive rho is, in words, and whether it is: its interval over people where the images name
    theirs (a person's images are not independent). Without one (too few people, images that name none, or a
    summary written before the interval) rho is not tested (None): its p counts every image as independent
    evidence, and with a handful of people it rejects a true null a third to a half of the time."""
    low, high = h.get(f"{prefix}rho_low"), h.get(f"{prefix}rho_high")
    if low is not None and high is not None and np.isfinite([low, high]).all():
        return (f"95% interval {_num(low)} to {_num(high)} over {h[f'{prefix}people']} people, each redrawn with "
                "their images", low > 0)
    return (f"no interval over people (too few of them, or images that name none); p = "
            f"{format_p(h.get(f'{prefix}p_value'))} if every image were independent, which a person's images are not",
            None)


def _observer_sentence(h: Mapping[str, Any]) -> str:
    """The models' accuracy on the rated images beside one observer's and the observers' plurality's."""
    if _pct(h.get("observer_accuracy")) == "n/a":  # summaries written before these were measured
        return ""
    plurality = (f", the observers' plurality choice {_pct(h['plurality_accuracy'])}"
                 if _pct(h.get("plurality_accuracy")) != "n/a" else "")
    other = ""
    if _pct(h.get("other_model_accuracy")) != "n/a":
        evidence, positive = _rho_evidence(h, "other_")
        clear = {True: "they too find clearer the faces the observers agree on",
                 False: "the data do not show that they find clearer the faces the observers agree on",
                 None: "whether they find clearer the faces the observers agree on is not tested"}[positive]
        other = (f" The {h['other_culture']} models, trained on the other culture, name it for "
                 f"{_pct(h['other_model_accuracy'])}; {clear} (rho = {_num(h.get('other_rho'))}, {evidence}).")
    return (f" On those images the models name the posed emotion for {_pct(h['model_accuracy'])}; a single "
            f"observer does for {_pct(h['observer_accuracy'])} on average{plurality}.{other}")
