"""Calibrated statistics for comparing two groups (cultures): permutation tests and the intervals
that invert them, cluster bootstrap intervals, multiple-comparison corrections, effect sizes,
linear CKA, and McNemar's test of two classifiers scored on the same images.

Everything here is pure numpy, vectorised over trailing "feature" axes (regions, pixels,
categories) so that many tests share one set of permutations, and every random choice comes
from an explicit ``seed``. Group arrays have the unit of analysis (trials, images, models) on
axis 0; which unit is appropriate is the caller's decision and should be reported with the result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb, sqrt
from statistics import NormalDist
from typing import Literal

import numpy as np

Alternative = Literal["two-sided", "greater", "less"]
Statistic = Literal["mean_diff", "welch_t"]

_CHUNK = 256  # permutations per matrix product: bounds memory for pixel-wise tests
_TOLERANCE = 1e-9  # relative: permuted statistics this close to the observed one count as "as extreme"


ALPHA = 0.05  # the significance level the comparisons' tests are read at (counts, stars, the report's wording)
MIN_PEOPLE = 5  # fewer people than this: a bootstrap over them says little (no interval is given)


class StatsInputError(ValueError):
    """Inputs to a statistical function are unusable (too few units, mismatched shapes)."""


@dataclass(frozen=True)
class PermutationTest:
    """Result of a two-group permutation test, per feature.

    Attributes:
        statistic: observed statistic (group a minus group b), feature-shaped.
        p_value: permutation p-value per feature (uncorrected).
        p_fwer: step-down max-statistic p-value (Westfall & Young), which controls the
            family-wise error over all features; meaningful when features share a scale
            (use ``statistic="welch_t"`` for pixels or regions of different variance).
        n_permutations: group assignments evaluated, the observed one included.
        exact: True when every assignment was enumerated (the p-value is then exact).
    """

    statistic: np.ndarray
    p_value: np.ndarray
    p_fwer: np.ndarray
    n_permutations: int
    exact: bool


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of an estimate (an accuracy, a difference of two, a correlation)."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_boot: int


@dataclass(frozen=True)
class ShiftInterval:
    """An interval for a difference of means (group a minus group b) by inverting a permutation test
    (:func:`permutation_interval`): the shifts of group a the test does not reject."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_permutations: int
    exact: bool


@dataclass(frozen=True)
class PairedAccuracy:
    """Two classifiers' accuracies on the same images, compared image by image (:func:`mcnemar_test`).

    Attributes:
        n: images scored by both.
        accuracy_a, accuracy_b: each classifier's accuracy.
        difference: ``accuracy_a - accuracy_b``, with its ``low`` - ``high`` interval at ``confidence``
            (normal approximation to the mean of the per-image differences, each -1, 0 or +1; with clusters,
            their variance from the clusters' sums).
        only_a, only_b: images only ``a`` / only ``b`` classifies right (the discordant pairs).
        p_value: McNemar's exact two-sided p: under "equally accurate" each discordant image is a fair coin;
            with clusters, Durkalski's clustered McNemar test (chi-square, 1 degree of freedom).
        clusters: how many clusters (people) the images came from; ``n`` when each image is its own.
        test: which test gave ``p_value``.
    """

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    low: float
    high: float
    confidence: float
    only_a: int
    only_b: int
    p_value: float
    clusters: int
    test: str


# ---------------------------------------------------------------- permutation machinery
def group_assignments(n_a: int, n_b: int, n_permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """Boolean matrix (M, n_a + n_b): row m marks the units put in group a by assignment m.

    Row 0 is always the observed assignment (the first ``n_a`` units). When the number of
    distinct splits C(n_a + n_b, n_a) is at most ``n_permutations + 1`` every split is
    enumerated (exact test; 5 vs 5 trials gives 252); otherwise ``n_permutations`` random
    assignments follow the observed one, which gives the usual +1 correction
    p = (1 + #{T_perm >= T_obs}) / (1 + M).
    """
    if n_a < 1 or n_b < 1:
        raise StatsInputError(f"each group needs at least one unit; got {n_a} and {n_b}")
    if n_permutations < 1:
        raise StatsInputError(f"n_permutations must be at least 1; got {n_permutations}")
    n = n_a + n_b
    observed = np.zeros(n, dtype=bool)
    observed[:n_a] = True
    if comb(n, n_a) <= n_permutations + 1:
        rows = np.zeros((comb(n, n_a), n), dtype=bool)
        for m, members in enumerate(itertools.combinations(range(n), n_a)):
            rows[m, list(members)] = True
        return rows, True
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(observed, (n_permutations, n)).copy(), axis=1)
    return np.vstack([observed, shuffled]), False


def _as_groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 0 or b.ndim == 0 or a.shape[1:] != b.shape[1:]:
        raise StatsInputError(
            f"groups must be arrays (units, ...) with the same feature shape; got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise StatsInputError("groups contain NaN or infinite values; drop or impute them before testing")
    return a, b


def _group_statistics(
    assign: np.ndarray, pooled: np.ndarray, pooled_sq: np.ndarray, n_a: int, statistic: Statistic
) -> np.ndarray:
    """The statistic for every assignment row: (m, F)."""
    n_b = pooled.shape[0] - n_a
    weights = assign.astype(np.float64)
    sum_a = weights @ pooled
    sum_b = pooled.sum(axis=0) - sum_a
    diff = sum_a / n_a - sum_b / n_b
    if statistic == "mean_diff":
        return diff
    if n_a < 2 or n_b < 2:
        raise StatsInputError("the Welch t statistic needs at least 2 units per group")
    sq_a = weights @ pooled_sq
    sq_b = pooled_sq.sum(axis=0) - sq_a
    var_a = np.maximum(sq_a - sum_a**2 / n_a, 0.0) / (n_a - 1)
    var_b = np.maximum(sq_b - sum_b**2 / n_b, 0.0) / (n_b - 1)
    se = np.sqrt(var_a / n_a + var_b / n_b)
    # constant groups: a difference with no spread is infinitely extreme, no difference is 0
    return np.divide(diff, se, out=np.sign(diff) * np.where(diff != 0, np.inf, 0.0), where=se > 0)


def _extremeness(values: np.ndarray, alternative: Alternative) -> np.ndarray:
    if alternative == "two-sided":
        return np.abs(values)
    if alternative == "greater":
        return values
    if alternative == "less":
        return -values
    raise StatsInputError(f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}")


def smallest_p(n_a: int, n_b: int, n_permutations: int = 9999) -> float:
    """The smallest two-sided p-value :func:`permutation_test` can give for ``n_a`` vs ``n_b`` units,
    however far apart the groups: the observed split, and with equal groups its mirror image, are
    always as extreme as itself (2 vs 2 trials: 2/6 = 0.33, so nothing can reach p < 0.05; 4 vs 4:
    0.029; 5 vs 5: 0.0079); a Monte-Carlo test's is 1 / (1 + ``n_permutations``)."""
    splits = comb(n_a + n_b, n_a)
    if splits > n_permutations + 1:
        return 1.0 / (n_permutations + 1)
    return (2.0 if n_a == n_b else 1.0) / splits


def permutation_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    statistic: Statistic = "mean_diff",
    alternative: Alternative = "two-sided",
    n_permutations: int = 9999,
    seed: int = 0,
) -> PermutationTest:
    """Permutation test of equal means between groups ``a`` (n_a, ...) and ``b`` (n_b, ...).

    Units (axis 0) are reassigned between groups; every trailing feature is tested with the
    same assignments, which also yields the max-statistic FWER-adjusted p-values.
    """
    if statistic not in ("mean_diff", "welch_t"):
        raise StatsInputError(f"statistic must be 'mean_diff' or 'welch_t'; got {statistic!r}")
    a, b = _as_groups(a, b)
    feature_shape = a.shape[1:]
    pooled = np.concatenate([a, b]).reshape(len(a) + len(b), -1)
    pooled_sq = pooled**2
    assign, exact = group_assignments(len(a), len(b), n_permutations, seed)
    observed = _group_statistics(assign[:1], pooled, pooled_sq, len(a), statistic)[0]
    threshold = _extremeness(observed, alternative)
    threshold = threshold - _TOLERANCE * np.maximum(1.0, np.abs(np.nan_to_num(threshold, posinf=0.0, neginf=0.0)))
    # Step-down max-T (Westfall & Young 1993, alg. 4.1): feature j is compared with the maximum
    # over the features no more extreme than itself, in observed order.
    order = np.argsort(-np.nan_to_num(threshold, posinf=np.finfo(float).max))
    as_extreme = np.zeros(pooled.shape[1], dtype=np.int64)
    max_as_extreme = np.zeros(pooled.shape[1], dtype=np.int64)
    for start in range(0, len(assign), _CHUNK):
        stats = _extremeness(
            _group_statistics(assign[start:start + _CHUNK], pooled, pooled_sq, len(a), statistic), alternative
        )
        as_extreme += (stats >= threshold).sum(axis=0)
        successive_max = np.maximum.accumulate(stats[:, order[::-1]], axis=1)[:, ::-1]
        max_as_extreme += (successive_max >= threshold[order]).sum(axis=0)
    total = len(assign)
    p_fwer = np.empty(pooled.shape[1])
    p_fwer[order] = np.maximum.accumulate(max_as_extreme / total)  # monotone in the observed order
    return PermutationTest(
        statistic=observed.reshape(feature_shape),
        p_value=(as_extreme / total).reshape(feature_shape),
        p_fwer=p_fwer.reshape(feature_shape),
        n_permutations=total,
        exact=exact,
    )


def distribution_test(
    a: np.ndarray, b: np.ndarray, *, n_permutations: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """Do two groups' categorical distributions differ? Returns (total variation distance, p).

    ``a`` (n_a, K) and ``b`` (n_b, K) hold one distribution over K categories per unit (a
    one-hot row for a single observation, or the category shares of one model's filters).
    The statistic is the total variation distance between the groups' mean distributions;
    units are permuted between groups, so the test is calibrated for whatever the unit is.
    """
    a, b = _as_groups(a, b)
    if a.ndim != 2:
        raise StatsInputError(f"distributions must be (units, categories); got {a.shape}")
    pooled = np.concatenate([a, b])
    assign, _ = group_assignments(len(a), len(b), n_permutations, seed)
    distances = np.concatenate([
        0.5 * np.abs(_group_statistics(assign[s:s + _CHUNK], pooled, pooled, len(a), "mean_diff")).sum(axis=1)
        for s in range(0, len(assign), _CHUNK)
    ])
    return float(distances[0]), float(np.mean(distances >= distances[0] * (1 - _TOLERANCE) - _TOLERANCE))


# ---------------------------------------------------------------- intervals
def permutation_interval(
    a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, n_permutations: int = 9999, seed: int = 0
) -> ShiftInterval:
    """Interval for mean(a) - mean(b) from the permutation test itself: the shifts ``delta`` for which
    :func:`permutation_test` of ``a - delta`` against ``b`` (two-sided, difference of means, the same
    assignments) does not reject at ``1 - confidence`` (test inversion; Ernst 2004).

    It has the test's unit and exactness (5 vs 5 trials: exact over 252 splits) and agrees with its
    p-value: 0 lies outside only when p <= 1 - confidence, and whenever it is unless the p-value rises again
    further out (the interval is the hull of the shifts not rejected). Where the group sizes cannot give a
    p that small (2 vs 2 trials, :func:`smallest_p`) the interval is unbounded (-inf, inf).
    """
    if not 0 < confidence < 1:
        raise StatsInputError(f"confidence must lie in (0, 1); got {confidence}")
    a, b = _as_groups(a, b)
    if a.ndim != 1:
        raise StatsInputError(f"an interval needs one value per unit; got groups of shape {a.shape} and {b.shape}")
    assign, exact = group_assignments(len(a), len(b), n_permutations, seed)
    pooled = np.concatenate([a, b])[:, None]
    shifted_statistics = _group_statistics(assign, pooled, pooled ** 2, len(a), "mean_diff")[:, 0]
    from_a = assign[:, :len(a)].sum(axis=1)
    # Shifting a's units by delta moves assignment m's statistic by -delta * slope_m (the observed one's by -delta)
    slope = from_a / len(a) - (len(a) - from_a) / len(b)
    observed = shifted_statistics[0]

    def p_values(deltas: np.ndarray) -> np.ndarray:
        threshold = np.abs(observed - deltas)
        threshold = threshold - _TOLERANCE * np.maximum(1.0, threshold)
        chunks = []
        for start in range(0, len(deltas), _CHUNK):
            moved = np.abs(shifted_statistics[None, :] - deltas[start:start + _CHUNK, None] * slope[None, :])
            chunks.append((moved >= threshold[start:start + _CHUNK, None]).mean(axis=1))
        return np.concatenate(chunks)

    # p changes only where a permuted statistic's size crosses the observed one's: |S_m - d c_m| = |D - d|
    with np.errstate(divide="ignore", invalid="ignore"):
        crossings = np.concatenate([(observed - shifted_statistics) / (1 - slope),
                                    (observed + shifted_statistics) / (1 + slope)])
    crossings = np.unique(crossings[np.isfinite(crossings)])
    span = max(1.0, float(np.abs(crossings).max(initial=0.0)))
    probes = np.concatenate([[crossings.min(initial=observed) - span], (crossings[1:] + crossings[:-1]) / 2,
                             [crossings.max(initial=observed) + span]])
    kept = probes[p_values(probes) > 1 - confidence]
    if kept.size == 0:  # cannot happen for a proper test: the estimate itself is never rejected
        kept = np.array([observed])
    low = -np.inf if kept[0] == probes[0] else float(crossings[np.searchsorted(crossings, kept[0]) - 1])
    high = np.inf if kept[-1] == probes[-1] else float(crossings[np.searchsorted(crossings, kept[-1])])
    return ShiftInterval(float(observed), low, high, confidence, len(assign), exact)


def resampled_cluster_totals(totals: np.ndarray, blocks: np.ndarray, n_boot: int, rng: np.random.Generator
                             ) -> np.ndarray:
    """Bootstrap of clustered data: ``totals`` (clusters, cells) summed over clusters redrawn with
    replacement, as many as there are, within each block; returns (n_boot, cells).

    A cluster is the unit that was sampled (a person, with all of their images); blocks fix how many
    clusters each part of the design holds (a trial's test people; the images of one class).
    """
    totals, blocks = np.asarray(totals, dtype=np.float64), np.asarray(blocks)
    if totals.ndim != 2 or blocks.shape != totals.shape[:1] or not len(totals):
        raise StatsInputError(f"need totals (clusters, cells) and one block per cluster; got {totals.shape} and "
                              f"{blocks.shape}")
    resampled = np.zeros((n_boot, totals.shape[1]))
    for block in np.unique(blocks):
        members = totals[blocks == block]
        counts = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_boot)
        resampled += counts @ members
    return resampled


def cluster_resamples(clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_boot`` bootstrap resamples of clustered units, as indices: each redraws as many clusters as there are,
    with replacement, and takes every unit of each cluster drawn (a person with all of their images)."""
    _, members = np.unique(np.asarray(clusters), return_inverse=True)
    if not len(members):
        raise StatsInputError("need at least one unit to resample")
    units = [np.flatnonzero(members == c) for c in range(members.max() + 1)]
    drawn = rng.integers(0, len(units), size=(n_boot, len(units)))
    return [np.concatenate([units[c] for c in row]) for row in drawn]


def percentile_interval(estimate: float, resampled: np.ndarray, confidence: float = 0.95) -> BootstrapInterval:
    """The percentile bootstrap interval of ``estimate`` from its resampled values (NaNs left out)."""
    if not 0 < confidence < 1:
        raise StatsInputError(f"confidence must lie in (0, 1); got {confidence}")
    resampled = np.asarray(resampled, dtype=np.float64)
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(resampled, [tail, 1 - tail])
    return BootstrapInterval(float(estimate), float(low), float(high), confidence, len(resampled))


# ---------------------------------------------------------------- multiple comparisons
def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (FWER); NaNs are ignored and stay NaN."""
    return _adjust(p_values, _holm_sorted)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (FDR); NaNs are ignored and stay NaN."""
    return _adjust(p_values, _bh_sorted)


def adjust(p_values: np.ndarray, method: Literal["holm", "bh"]) -> np.ndarray:
    """Adjusted p-values by name: ``"holm"`` (FWER) or ``"bh"`` (FDR)."""
    methods = {"holm": holm, "bh": benjamini_hochberg}
    if method not in methods:
        raise StatsInputError(f"correction must be one of {sorted(methods)}; got {method!r}")
    return methods[method](p_values)


def _adjust(p_values: np.ndarray, sorted_adjust) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise StatsInputError("p-values must lie in [0, 1]")
    flat = p[valid]
    order = np.argsort(flat, kind="stable")
    adjusted = np.empty_like(flat)
    adjusted[order] = np.minimum(sorted_adjust(flat[order]), 1.0)
    out[valid] = adjusted
    return out


def _holm_sorted(p: np.ndarray) -> np.ndarray:
    m = len(p)
    return np.maximum.accumulate((m - np.arange(m)) * p)


def _bh_sorted(p: np.ndarray) -> np.ndarray:
    m = len(p)
    return np.minimum.accumulate((m / np.arange(1, m + 1) * p)[::-1])[::-1]


# ---------------------------------------------------------------- effect sizes
def cohens_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(mean(a) - mean(b)) / pooled SD along axis 0; NaN where both groups are constant and equal."""
    a, b = _as_groups(a, b)
    n_a, n_b = len(a), len(b)
    if n_a + n_b < 3:
        raise StatsInputError("an effect size needs at least 3 units in total")
    pooled_var = ((n_a - 1) * a.var(axis=0, ddof=1 if n_a > 1 else 0)
                  + (n_b - 1) * b.var(axis=0, ddof=1 if n_b > 1 else 0)) / (n_a + n_b - 2)
    diff = a.mean(axis=0) - b.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return diff / np.sqrt(pooled_var)


def hedges_g(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's d with the small-sample bias correction J = 1 - 3 / (4 (n_a + n_b) - 9)."""
    n = len(a) + len(b)
    return cohens_d(a, b) * (1 - 3 / (4 * n - 9))


# ---------------------------------------------------------------- representations
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019) of two representations.

    ``x`` (n, p) and ``y`` (n, q) are activations of the same n inputs. CKA is 1 for
    identical representations and invariant to orthogonal transforms and isotropic scaling.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise StatsInputError(f"CKA needs (n, p) and (n, q) activations of the same inputs; got {x.shape}, {y.shape}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norm_x = np.linalg.norm(x.T @ x)
    norm_y = np.linalg.norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        raise StatsInputError("CKA is undefined for a constant representation (every input maps to the same vector)")
    return float(np.linalg.norm(y.T @ x) ** 2 / (norm_x * norm_y))


EXACT_SIGN_FLIP_CLUSTERS = 12  # up to this many clusters the clustered McNemar p is exact (2**12 sign patterns)


def _sign_flip_p(sums: np.ndarray) -> float:
    """Two-sided p of a sum of per-cluster differences over every flip of their signs (each cluster's
    difference is symmetric about 0 when neither classifier is better): exact, where Durkalski's chi-square
    gives a fixed p whatever the data with 1 or 2 clusters (0.317, 0.157) and is loose below about 10."""
    signs = 1 - 2 * ((np.arange(2 ** len(sums))[:, None] >> np.arange(len(sums))) & 1)
    totals = np.abs(signs @ sums)
    return float(np.mean(totals >= abs(sums.sum()) - 1e-9))


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = 0.95,
                 clusters: np.ndarray | None = None) -> PairedAccuracy:
    """Compare two classifiers scored on the same images from whether each got each image right.

    Images both get right or both get wrong say nothing about which is better; McNemar's exact test
    asks whether the discordant ones split unevenly (a two-sided binomial test at 1/2). On paired
    predictions it is far more sensitive than comparing the two accuracies as independent proportions.
    ``clusters`` (one label per image, e.g. its person) says which images are not independent: a
    person's images tend to be right or wrong together, so the test becomes Durkalski et al.'s (2003)
    clustered McNemar test, sum over people of (only a - only b), squared, over the sum of its squares (with at most
    :data:`EXACT_SIGN_FLIP_CLUSTERS` people its exact sign-flip form: a test set of 3 performers cannot give p below
    0.25), and the interval takes its variance from the people's sums (both reduce to the per-image forms when
    every image is its own cluster).
    """
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise StatsInputError(f"need two equally long, non-empty vectors of right/wrong per image; got shapes "
                              f"{a.shape} and {b.shape}")
    if not all(v.dtype == bool or np.isin(v, (0, 1)).all() for v in (a, b)):
        raise StatsInputError("need right/wrong per image (booleans, or 0 and 1), e.g. predictions == labels; got "
                              "other values")
    from scipy.stats import binomtest, chi2  # here, not at the top: every `emofx train` would import scipy.stats

    a, b, n = a.astype(bool), b.astype(bool), a.size
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    difference = (only_a - only_b) / n
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if clusters is None:
        p_value = float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0  # exact, two-sided
        spread = sqrt(max(discordant / n - difference ** 2, 0.0) / n)  # std error of the mean per-image difference
        n_clusters, test = n, "McNemar exact"
    else:
        clusters = np.asarray(clusters)
        if clusters.shape != a.shape:
            raise StatsInputError(f"need one cluster label per image ({n}); got shape {clusters.shape}")
        _, members = np.unique(clusters, return_inverse=True)
        n_clusters = int(members.max()) + 1
        sums = np.bincount(members, weights=a.astype(float) - b.astype(float), minlength=n_clusters)
        sizes = np.bincount(members, minlength=n_clusters)
        squares = float(np.sum(sums ** 2))
        if n_clusters <= EXACT_SIGN_FLIP_CLUSTERS:
            p_value, test = _sign_flip_p(sums), f"clustered McNemar, exact over the signs of {n_clusters} clusters"
        else:
            p_value = float(chi2.sf(sums.sum() ** 2 / squares, 1)) if squares else 1.0
            test = f"clustered McNemar (Durkalski), {n_clusters} clusters"
        spread = (sqrt(n_clusters / (n_clusters - 1) * np.sum((sums - sizes * difference) ** 2)) / n
                  if n_clusters > 1 else float("inf"))
    return PairedAccuracy(n, float(a.mean()), float(b.mean()), difference, difference - z * spread,
                          difference + z * spread, confidence, only_a, only_b, p_value, n_clusters, test)
