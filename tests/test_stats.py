"""Known-answer tests for emofx.study.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from emofx.study import stats


def test_exact_enumeration_for_five_versus_five():
    assign, exact = stats.group_assignments(5, 5, n_permutations=9999, seed=0)
    assert exact and assign.shape == (252, 10)
    assert assign[0, :5].all() and not assign[0, 5:].any()
    assert (assign.sum(axis=1) == 5).all()
    assert len({row.tobytes() for row in assign}) == 252


def test_identical_groups_have_p_near_one():
    values = np.arange(5.0)
    result = stats.permutation_test(values, values.copy())
    assert result.exact and result.statistic == 0
    assert result.p_value == pytest.approx(1.0)


def test_clearly_different_groups_reach_the_smallest_exact_p():
    result = stats.permutation_test(np.arange(5.0) + 100, np.arange(5.0))
    # only the observed split and its mirror image are as extreme: 2 / 252
    assert result.p_value == pytest.approx(2 / 252)
    assert result.statistic == pytest.approx(100.0)
    one_sided = stats.permutation_test(np.arange(5.0) + 100, np.arange(5.0), alternative="greater")
    assert one_sided.p_value == pytest.approx(1 / 252)


def test_monte_carlo_p_uses_the_plus_one_correction_and_is_seeded():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3, 1, 40), rng.normal(0, 1, 40)
    first = stats.permutation_test(a, b, n_permutations=999, seed=3)
    again = stats.permutation_test(a, b, n_permutations=999, seed=3)
    assert not first.exact and first.n_permutations == 1000
    assert first.p_value == pytest.approx(1 / 1000)  # nothing beats the observed split
    assert first.p_value == again.p_value


def test_permutation_p_agrees_with_t_test_under_normality():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.4, 1, 60), rng.normal(0, 1, 60)
    ours = stats.permutation_test(a, b, n_permutations=19999, seed=0).p_value
    reference = scipy_stats.ttest_ind(a, b).pvalue
    assert ours == pytest.approx(reference, abs=0.02)


def test_null_p_values_are_uniform():
    rng = np.random.default_rng(3)
    p = stats.permutation_test(rng.normal(size=(8, 400)), rng.normal(size=(8, 400)), n_permutations=999).p_value
    assert p.shape == (400,)
    assert np.mean(p < 0.05) == pytest.approx(0.05, abs=0.03)
    assert np.mean(p < 0.5) == pytest.approx(0.5, abs=0.08)


def test_max_statistic_controls_family_wise_error_and_finds_a_planted_pixel():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(20, 8, 8)), rng.normal(size=(20, 8, 8))
    a[:, 2, 3] += 3.0
    result = stats.permutation_test(a, b, statistic="welch_t", n_permutations=999, seed=0)
    assert result.p_fwer.shape == (8, 8)
    assert result.p_fwer[2, 3] < 0.01
    others = np.delete(result.p_fwer.reshape(-1), 2 * 8 + 3)
    assert others.min() > 0.05
    assert (result.p_fwer >= result.p_value - 1e-12).all()


def test_welch_statistic_matches_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 1, 7), rng.normal(0, 3, 9)
    result = stats.permutation_test(a, b, statistic="welch_t", n_permutations=10)
    assert result.statistic == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).statistic)


def test_bad_inputs_are_named():
    with pytest.raises(stats.StatsInputError, match="same feature shape"):
        stats.permutation_test(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(stats.StatsInputError, match="NaN"):
        stats.permutation_test(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(stats.StatsInputError, match="at least one unit"):
        stats.permutation_test(np.zeros(0), np.zeros(3))


def test_holm_and_bh_against_hand_computed_values():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted p * 4 / rank -> 0.02, 0.02, 0.04, 0.04 (then running minimum from the top)
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(stats.adjust([0.5, np.nan, 0.9], "holm"), [1.0, np.nan, 1.0])  # monotone
    with pytest.raises(stats.StatsInputError, match="correction"):
        stats.adjust(p, "bonferroni")


def test_effect_sizes():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 3.0, 5.0])
    assert stats.cohens_d(a, b) == pytest.approx(0.5)  # pooled SD 2
    assert stats.hedges_g(a, b) == pytest.approx(0.5 * (1 - 3 / 15))
    np.testing.assert_allclose(stats.cohens_d(np.ones((4, 2)), np.zeros((4, 2))), [np.inf, np.inf])


def test_distribution_test():
    eyes, mouth = np.eye(3)[[0] * 10], np.eye(3)[[2] * 10]
    distance, p = stats.distribution_test(eyes, mouth, n_permutations=999)
    assert distance == pytest.approx(1.0) and p < 0.01
    rng = np.random.default_rng(6)
    same = np.eye(3)[rng.integers(0, 3, 60)]
    distance, p = stats.distribution_test(same[:30], same[30:], n_permutations=999)
    assert p > 0.05


def test_permutation_interval_is_the_set_of_shifts_the_test_does_not_reject():
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.normal(0.7, 0.05, 5), rng.normal(0.6, 0.05, 5)
        ci = stats.permutation_interval(a, b)
        assert ci.exact and ci.n_permutations == 252 and ci.low < ci.estimate < ci.high
        assert ci.estimate == pytest.approx(a.mean() - b.mean())
        for end, inward in ((ci.low, 1e-6), (ci.high, -1e-6)):  # the ends are where p crosses 5%
            assert stats.permutation_test(a - end - inward, b).p_value > 0.05
            assert stats.permutation_test(a - end + inward, b).p_value <= 0.05
        assert (ci.low > 0 or ci.high < 0) == (stats.permutation_test(a, b).p_value <= 0.05)
        shifted = stats.permutation_interval(a + 0.25, b)  # shifting a group shifts the interval
        assert (shifted.low, shifted.high) == pytest.approx((ci.low + 0.25, ci.high + 0.25))


def test_permutation_interval_covers_a_known_difference():
    rng = np.random.default_rng(8)
    covered = [ci.low <= 1.0 <= ci.high for ci in (
        stats.permutation_interval(rng.normal(1.0, 1, 5), rng.normal(0.0, 1, 5)) for _ in range(300))]
    assert 0.91 <= np.mean(covered) <= 0.99  # nominal 0.95; 300 draws: standard error 0.013


def test_permutation_interval_is_unbounded_where_the_test_cannot_reject():
    ci = stats.permutation_interval(np.array([0.9, 0.95]), np.array([0.1, 0.15]))  # 2 vs 2: p >= 1/3
    assert ci.low == -np.inf and ci.high == np.inf
    monte_carlo = stats.permutation_interval(np.arange(9.0) + 3, np.arange(9.0), n_permutations=999, seed=1)
    assert not monte_carlo.exact and monte_carlo.low < 3 < monte_carlo.high
    with pytest.raises(stats.StatsInputError, match="one value per unit"):
        stats.permutation_interval(np.ones((5, 2)), np.ones((5, 2)))


def test_cluster_bootstrap_redraws_whole_clusters_within_blocks():
    rng = np.random.default_rng(9)
    totals = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    resampled = stats.resampled_cluster_totals(totals, np.array([0, 0, 1]), 500, rng)
    # block 1 holds one cluster, redrawn once every time; block 0's two clusters are redrawn twice in all
    first = resampled - totals[2]
    assert set(map(tuple, first)) <= {(2.0, 4.0), (4.0, 6.0), (6.0, 8.0)}
    assert len(set(map(tuple, first))) == 3
    with pytest.raises(stats.StatsInputError, match="one block per cluster"):
        stats.resampled_cluster_totals(totals, np.array([0, 1]), 10, rng)
    interval = stats.percentile_interval(0.5, np.linspace(0, 1, 1001))
    assert (interval.low, interval.high, interval.n_boot) == pytest.approx((0.025, 0.975, 1001))


def test_linear_cka_known_cases():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(50, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert stats.linear_cka(x, x) == pytest.approx(1.0)
    assert stats.linear_cka(x, 3.5 * x @ q) == pytest.approx(1.0)
    assert stats.linear_cka(x, x + 7.0) == pytest.approx(1.0)
    independent = stats.linear_cka(x, rng.normal(size=(50, 10)))
    assert 0 < independent < 0.5
    with pytest.raises(stats.StatsInputError, match="constant"):
        stats.linear_cka(x, np.ones((50, 3)))


def test_welch_t_of_constant_groups_is_infinitely_extreme():
    result = stats.permutation_test(np.zeros(5), np.ones(5), statistic="welch_t")
    assert result.statistic == -np.inf
    assert result.p_value == pytest.approx(2 / 252)
    same = stats.permutation_test(np.ones(5), np.ones(5), statistic="welch_t")
    assert same.statistic == 0 and same.p_value == pytest.approx(1.0)


def test_step_down_max_t():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    a[:, :6] += 4.0  # six strong effects
    result = stats.permutation_test(a, b, statistic="welch_t")
    assert (result.p_fwer >= result.p_value - 1e-12).all()
    assert result.p_fwer.min() == pytest.approx(2 / 252) and result.p_fwer[6:].min() > 0.05
    order = np.argsort(-np.abs(result.statistic))
    assert (np.diff(result.p_fwer[order]) >= 0).all()  # monotone in the observed order
    # the least extreme of two features is compared with itself only: max(first's p_fwer, its raw p)
    two = stats.permutation_test(a[:, [0, 7]], b[:, [0, 7]], statistic="welch_t")
    assert two.p_fwer[1] == pytest.approx(max(two.p_fwer[0], two.p_value[1]))


def test_mcnemar_counts_discordant_images_and_matches_the_exact_binomial_test():
    rng = np.random.default_rng(3)
    a = rng.random(500) < 0.7
    b = np.where(rng.random(500) < 0.8, a, ~a)  # agrees with a on about 80% of the images
    result = stats.mcnemar_test(a, b)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (result.only_a, result.only_b, result.n) == (only_a, only_b, 500)
    assert result.difference == pytest.approx(a.mean() - b.mean()) == pytest.approx((only_a - only_b) / 500)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(only_a, only_a + only_b).pvalue, rel=1e-12)
    # The interval: the mean per-image difference (-1, 0, +1) plus or minus 1.96 standard errors.
    d = a.astype(int) - b.astype(int)
    half = 1.959964 * d.std() / np.sqrt(500)
    assert (result.low, result.high) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-6)
    swapped = stats.mcnemar_test(b, a)  # the same test from the other side
    assert swapped.p_value == result.p_value and swapped.difference == -result.difference


def test_mcnemar_known_answers():
    # 64 images only the first classifier gets right, 48 only the second (p = 0.156, as scipy's binomtest),
    # 120 that decide nothing.
    a = np.r_[np.ones(64), np.zeros(48), np.ones(100), np.zeros(20)]
    b = np.r_[np.zeros(64), np.ones(48), np.ones(100), np.zeros(20)]
    assert stats.mcnemar_test(a, b).p_value == pytest.approx(0.1560663, abs=1e-7)
    same = stats.mcnemar_test(a, a)  # no discordant image: no evidence either way
    assert same.p_value == 1.0 and same.difference == same.low == same.high == 0.0
    assert stats.mcnemar_test([1] * 10, [0] * 10).p_value == pytest.approx(2 / 2 ** 10)
    with pytest.raises(stats.StatsInputError, match="equally long"):
        stats.mcnemar_test(a, b[:-1])
    with pytest.raises(stats.StatsInputError, match="non-empty"):
        stats.mcnemar_test([], [])
    with pytest.raises(stats.StatsInputError, match="right/wrong per image"):  # scores, not right/wrong
        stats.mcnemar_test(np.linspace(0, 1, 10), np.linspace(1, 0, 10))
    with pytest.raises(stats.StatsInputError, match="n_permutations must be at least 1"):
        stats.permutation_test(a[:5], b[:5], n_permutations=0)


def test_clustered_mcnemar_counts_a_person_once():
    """Durkalski's test: with one image per person it is McNemar's chi-square; with each person's images
    copied five times the evidence must not grow five-fold."""
    rng = np.random.default_rng(4)
    a = rng.random(60) < 0.75
    b = np.where(rng.random(60) < 0.7, a, ~a)
    people = np.arange(60)
    single = stats.mcnemar_test(a, b, clusters=people)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    chi_square = (only_a - only_b) ** 2 / (only_a + only_b)
    assert single.p_value == pytest.approx(scipy_stats.chi2.sf(chi_square, 1))
    assert single.clusters == 60 and "Durkalski" in single.test
    unclustered = stats.mcnemar_test(np.repeat(a, 5), np.repeat(b, 5))
    clustered = stats.mcnemar_test(np.repeat(a, 5), np.repeat(b, 5), clusters=np.repeat(people, 5))
    assert clustered.clusters == 60 and clustered.difference == pytest.approx(single.difference)
    assert clustered.p_value == pytest.approx(single.p_value)  # copies add no evidence
    assert unclustered.p_value < clustered.p_value
    assert clustered.high - clustered.low > 2 * (unclustered.high - unclustered.low)  # sqrt(5) = 2.24x
    with pytest.raises(stats.StatsInputError, match="one cluster label per image"):
        stats.mcnemar_test(a, b, clusters=people[:-1])


def test_cluster_resamples_take_whole_clusters():
    clusters = np.array(["a", "a", "b", "c", "c", "c"])
    for indices in stats.cluster_resamples(clusters, 50, np.random.default_rng(0)):
        drawn = clusters[indices]
        counts = {c: int(np.sum(drawn == c)) for c in set(drawn)}
        sizes = {"a": 2, "b": 1, "c": 3}
        assert all(n % sizes[c] == 0 for c, n in counts.items())  # a cluster comes with all of its units
        assert sum(n // sizes[c] for c, n in counts.items()) == 3  # as many clusters as there are
    with pytest.raises(stats.StatsInputError, match="at least one unit"):
        stats.cluster_resamples(np.array([]), 5, np.random.default_rng(0))


def test_clustered_mcnemar_is_exact_over_few_people():
    """With a handful of people the chi-square of Durkalski's test is loose (1 or 2 people give a fixed p whatever
    the data); up to 12 people the p is exact over the signs of the people's differences."""
    a = np.ones(9, bool)
    b = np.zeros(9, bool)  # every image right only with a
    three = stats.mcnemar_test(a, b, clusters=np.repeat(["p", "q", "r"], 3))
    assert three.p_value == pytest.approx(2 / 8) and "exact over the signs of 3 clusters" in three.test
    assert stats.mcnemar_test(a, b, clusters=np.repeat(["p", "q"], [4, 5])).p_value == pytest.approx(2 / 4)
    assert stats.mcnemar_test(a, b, clusters=np.zeros(9)).p_value == 1.0  # one person is no evidence
    rng = np.random.default_rng(2)
    people = np.repeat(np.arange(12), 4)
    x, y = rng.random(48) < 0.7, rng.random(48) < 0.5
    sums = np.bincount(people, weights=x.astype(float) - y.astype(float))
    flips = np.array([[1 - 2 * ((k >> j) & 1) for j in range(12)] for k in range(2 ** 12)])
    assert stats.mcnemar_test(x, y, clusters=people).p_value == pytest.approx(
        np.mean(np.abs(flips @ sums) >= abs(sums.sum()) - 1e-9))
    assert "Durkalski" in stats.mcnemar_test(x, y, clusters=np.arange(48) % 13).test


def test_bh_takes_the_running_minimum_from_the_largest_p_down():
    # sorted 0.01, 0.02, 0.04, 0.045 times 4 / rank: 0.04, 0.04, 0.0533, 0.045; the running minimum from the top
    # lowers the third to the fourth's 0.045 (a larger p never gets a smaller adjusted p)
    p = np.array([0.045, 0.01, 0.04, 0.02])
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.045, 0.04, 0.045, 0.04])


def test_clustered_mcnemar_interval_centres_each_persons_sum_on_the_mean_difference():
    """The interval's variance is the cluster-robust one: G / (G - 1) * sum over people of (their sum of
    differences - their images x the mean difference) squared, over n squared (by hand, with numpy)."""
    rng = np.random.default_rng(11)
    people = np.repeat(np.arange(15), rng.integers(2, 7, 15))
    a = rng.random(len(people)) < 0.8
    b = rng.random(len(people)) < 0.5  # a clearly better: the mean difference is far from 0
    d = a.astype(float) - b.astype(float)
    n, mean = len(d), d.mean()
    centred = [d[people == g].sum() - np.sum(people == g) * mean for g in range(15)]
    half = 1.959964 * np.sqrt(15 / 14 * np.sum(np.square(centred))) / n
    result = stats.mcnemar_test(a, b, clusters=people)
    assert result.clusters == 15 and result.difference == pytest.approx(mean)
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half), abs=1e-6)


def test_distribution_test_counts_the_observed_split_among_the_splits():
    # 3 vs 3 one-hot rows: 20 splits, enumerated; only the observed split and its mirror image separate the
    # categories completely (distance 1), so p = 2/20; 15 vs 15 by Monte Carlo (1.6e8 splits, 999 drawn): 1 / (1 + 999)
    distance, p = stats.distribution_test(np.eye(2)[[0, 0, 0]], np.eye(2)[[1, 1, 1]])
    assert distance == pytest.approx(1.0) and p == pytest.approx(2 / 20)
    _, p = stats.distribution_test(np.eye(3)[[0] * 15], np.eye(3)[[2] * 15], n_permutations=999)
    assert p == pytest.approx(1 / 1000)


def test_permutation_interval_rejects_a_shift_whose_p_equals_one_minus_the_confidence():
    # 1 vs 3: four splits, only the observed one as extreme, p = 1/4; at 75% confidence p <= 0.25 rejects 0
    a, b = np.array([10.0]), np.array([0.0, 1.0, 2.0])
    assert stats.permutation_test(a, b).p_value == pytest.approx(0.25)
    ci = stats.permutation_interval(a, b, confidence=0.75)
    assert ci.exact and ci.n_permutations == 4 and 0 < ci.low < ci.estimate == pytest.approx(9.0)
