"""Inter-annotator agreement: Krippendorff's alpha and Fleiss' kappa, overall and per class.

Both come from maintained libraries (``krippendorff``; ``statsmodels`` for Fleiss' kappa, in
the ``emofx[crowd]`` extra). Per class, the answers are reduced to "this class or not" and the
same coefficients are computed on the two categories. Krippendorff's alpha uses every image with
at least two answers; Fleiss' kappa needs the same number of answers per image, so it uses the
images with the most common answer count (``fleiss_images`` says how many).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emofx.crowd.aggregate import CROWD_EXTRA


def _libraries():
    try:
        import krippendorff
        from statsmodels.stats.inter_rater import fleiss_kappa
    except ImportError:
        raise ImportError(f"agreement coefficients need krippendorff and statsmodels: {CROWD_EXTRA}") from None
    return krippendorff, fleiss_kappa


def _coefficients(counts: np.ndarray) -> dict[str, float | int]:
    krippendorff, fleiss_kappa = _libraries()
    per_image = counts.sum(axis=1)
    pairable = counts[per_image >= 2]
    if len(pairable) < 2 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        alpha = float("nan")  # no pairs, or a single category: agreement is undefined
    else:
        alpha = float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))
    sizes, frequency = np.unique(per_image[per_image >= 2], return_counts=True)
    kappa, used = float("nan"), 0
    if len(sizes):
        modal = sizes[np.argmax(frequency)]
        equal = counts[per_image == modal]
        used = len(equal)
        if used >= 2 and np.count_nonzero(equal.sum(axis=0)) >= 2:
            kappa = float(fleiss_kappa(equal, method="fleiss"))
    return {"krippendorff_alpha": alpha, "fleiss_kappa": kappa, "alpha_images": int(len(pairable)),
            "fleiss_images": int(used)}


def agreement_table(votes: np.ndarray, vote_names: tuple[str, ...]) -> pd.DataFrame:
    """Agreement overall (row ``all``) and per answer category (one vs the rest), with answer counts."""
    votes = np.asarray(votes, dtype=np.int64)
    rows = {"all": {**_coefficients(votes), "answers": int(votes.sum())}}
    for j, name in enumerate(vote_names):
        if votes[:, j].sum() == 0:
            continue
        binary = np.stack([votes[:, j], votes.sum(axis=1) - votes[:, j]], axis=1)
        rows[name] = {**_coefficients(binary), "answers": int(votes[:, j].sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "class"
    return table
