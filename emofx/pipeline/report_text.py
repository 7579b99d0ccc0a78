"""The report's plain-language paragraphs: what each hypothesis's numbers do and do not support.

Each function takes the comparison summaries (``summary.json`` of 05_compare_cultures, by
protocol) and returns Markdown; numbers are quoted, never rounded into words alone.
"""

from __future__ import annotations

from typing import Any, Mapping

ALPHA = 0.05
MAX_LISTED = 6  # region differences named in the text; the table lists every test
CONFOUND = (
    "Culture is not the only thing that differs between these datasets: each culture is one dataset, photographed "
    "in its own studio, with its own camera, lighting, image size and framing, and posed by its own people under "
    "their own instructions (KDEF: amateur actors in one session per expression; the Taiwanese set: performers in "
    "theatric, FACS-guided and personal-event performances). Any difference reported here is a difference between "
    "these two datasets; the matched protocol removes differences of size, class balance and number of people, not these. "
    "Telling culture apart from them needs several datasets per culture or one study that photographs both "
    "cultures alike."
)


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


def h1_paragraph(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """H1 (accuracy depends on culture), as collected and matched."""
    parts = []
    for protocol, summary in summaries.items():
        acc = summary["accuracy"]
        a, b = summary["cultures"]["a"], summary["cultures"]["b"]
        verdict = ("the difference is larger than the trial-to-trial variation would give by chance"
                   if significant(acc.get("p_value")) else
                   "this does not show a difference: trials of one culture vary about as much as the cultures differ")
        parts.append(
            f"**{protocol.capitalize()}.** {a} models reached {_pct(acc['culture_a'])} test accuracy and {b} models "
            f"{_pct(acc['culture_b'])} (difference {100 * acc['diff']:+.1f} points, 95% bootstrap interval "
            f"{100 * acc['ci_low']:+.1f} to {100 * acc['ci_high']:+.1f} over test images; permutation p = "
            f"{format_p(acc['p_value'])} over {acc['p_unit']}; Hedges' g = {_num(acc['effect_size'])}): {verdict}.")
        flagged = summary.get("chance", {}).get("flagged", [])
        if flagged:
            parts.append(f"{len(flagged)} trial(s) of this protocol are not clearly above chance (listed above); the "
                         "accuracy difference then partly measures failed training, not the cultures.")
    if len(summaries) == 2:
        diffs = [s["accuracy"]["diff"] for s in summaries.values()]
        parts.append("Comparing the two protocols: when size, class balance and number of people are equalised the "
                     f"difference goes from {100 * diffs[0]:+.1f} to {100 * diffs[1]:+.1f} points, so "
                     + ("most of it is not explained by how many images and people each set has."
                        if abs(diffs[1]) >= 0.5 * abs(diffs[0]) else
                        "much of the as-collected difference comes from how many images and people each set has."))
    parts.append("What the numbers do not support: that being Swedish or Taiwanese makes expressions easier or harder "
                 "to recognise. " + CONFOUND)
    return "\n\n".join(parts)


def h2_paragraph(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """H2 (the learnt features depend on culture): region tests, filters, CKA."""
    parts = []
    for protocol, summary in summaries.items():
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
        regions = (f"{len(differing)} of {len(tests)} emotion x region tests differ after correction: {listed}"
                   if differing else f"none of the {len(tests)} emotion x region tests differs after correction "
                   f"(smallest corrected p = {format_p(min((t['p_adjusted'] for t in tests if t['p_adjusted'] is not None), default=None))})")
        filters, cka = summary["filters"], summary["cka"]
        parts.append(
            f"**{protocol.capitalize()}.** Where the models look ({summary['config']['saliency_method']} saliency, share "
            f"of the map in each landmark region, {a} minus {b}): {regions}. The filters' preferred regions differ by "
            f"a total variation of {_num(filters['total_variation'], '.3f')} (permutation p = {format_p(filters['p_value'])} over "
            f"models). Representations: linear CKA between the cultures' models {_num(cka['between'], '.3f')}, within "
            f"{a} {_num(cka['within_a'], '.3f')} and within {b} {_num(cka['within_b'], '.3f')}"
            + (" (between is below within: the two cultures' models represent faces differently than two trials of "
               "one culture do)." if cka["between"] is not None and cka["within_a"] is not None and
               cka["within_b"] is not None and cka["between"] < min(cka["within_a"], cka["within_b"]) else
               " (between is not below both within values)."))
    parts.append("What the numbers do not support: that the cultures express emotions with different facial regions. "
                 "Saliency shows what the trained models use, which follows the images as well as the faces: "
                 "alignment, lighting, hair and background framing differ between the sets. " + CONFOUND)
    return "\n\n".join(parts)


def transfer_paragraph(transfer: Mapping[str, Any]) -> str:
    """Cross-culture transfer: own-culture vs other-culture accuracy per training culture."""
    lines = []
    for protocol, rows in transfer.items():
        for row in rows:
            lines.append(f"{protocol}: models trained on {row['train_culture']} reach {_pct(row['own'])} on their own "
                         f"culture's test images and {_pct(row['other'])} on the other culture's images.")
    return (" ".join(lines) + " A drop from own to other culture is the in-group advantage the paper asks about, "
            "but a drop is also expected from any change of studio and posing (the confound below).")


def human_paragraph(human: list[Mapping[str, Any]]) -> str:
    """The observers' agreement against the models."""
    if not human:
        return "No dataset of this experiment carries observer ratings, so there is no human baseline."
    return " ".join(
        f"On {h['culture']} images the models' probability of the posed class and the share of observers who chose "
        f"the posed emotion correlate with Spearman rho = {_num(h['rho'])} (p = {format_p(h['p_value'])}, {h['n_images']} rated "
        "test images; neutral has no rating): " + ("images people find clear are also the ones the models are sure of."
                                                   if (h.get("rho") or 0) > 0 and significant(h.get("p_value"))
                                                   else "the data do not show that people and models find the same "
                                                        "images clear.") + _observer_sentence(h) for h in human)


def _observer_sentence(h: Mapping[str, Any]) -> str:
    """The models' accuracy on the rated images beside one observer's and the observers' plurality's."""
    if _pct(h.get("observer_accuracy")) == "n/a":  # summaries written before these were measured
        return ""
    plurality = (f", the observers' plurality choice {_pct(h['plurality_accuracy'])}"
                 if _pct(h.get("plurality_accuracy")) != "n/a" else "")
    return (f" On those images the models name the posed emotion for {_pct(h['model_accuracy'])}; a single "
            f"observer does for {_pct(h['observer_accuracy'])} on average{plurality}.")
