"""The long-lag report's statistics (lstm_jax.experiments._stats) against values known in closed form."""

import math

import numpy as np
import pytest

from lstm_jax.experiments import _stats


def test_clopper_pearson_bounds_0_of_5_below_0_522_and_5_of_5_above_0_478():
    lo, hi = _stats.solved_interval(0, 5)[1:]
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 5), abs=1e-12)  # 0.5218…
    assert round(hi, 3) == 0.522
    lo, hi = _stats.solved_interval(5, 5)[1:]
    assert hi == 1 and lo == pytest.approx(0.025 ** (1 / 5), abs=1e-12)


def test_fisher_exact_5_of_5_vs_0_of_5_is_2_over_252():
    assert _stats.fisher_solved(5, 5, 0, 5) == pytest.approx(2 / math.comb(10, 5), rel=1e-12)  # 0.0079
    assert _stats.fisher_solved(3, 5, 3, 5) == pytest.approx(1.0)


def test_exact_mann_whitney_enumerates_every_split_with_ties():
    # no overlap between 3 and 3 values: the two extreme splits of C(6, 3) = 20 -> p = 2/20
    assert _stats.rank_test([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1, rel=1e-12)
    # ties: [0, 1] vs [1, 2]: U = 0.5 + 0 + 0 + 0.5 = 1 (ties count 1/2); of the C(4, 2) = 6 splits of {0, 1, 1, 2},
    # the ones at least as far from U = 2 are {0,1}|{1,2} twice and {1,2}|{0,1} twice: p = 4/6
    assert _stats.rank_test([0, 1], [1, 2]) == pytest.approx(4 / 6, rel=1e-12)
    assert _stats.rank_test([0, 0, 0], [0, 0, 0]) == 1.0


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_the_sample():
    x = np.arange(1.0, 11.0)
    m = _stats.mean_interval(x)
    assert m.estimate == 5.5 and m.low < 5.5 < m.high and m.high - m.low < 5
    narrow = _stats.mean_interval(np.tile(x, 4))  # the same values, four times as many draws
    assert narrow.high - narrow.low < 0.7 * (m.high - m.low)
    r = _stats.ratio_interval(2 * x, x)
    assert r.estimate == pytest.approx(2.0) and r.low < 2 < r.high
    assert _stats.mean_interval([4.0]) == (4.0, 4.0, 4.0)


def test_equivalence_is_shown_only_when_the_ratio_is_tight_around_1():
    rng = np.random.default_rng(0)
    a, b = np.exp(rng.normal(10, 0.05, 40)), np.exp(rng.normal(10, 0.05, 40))
    assert _stats.equivalence_ratio(a, b, 1.25) < 1e-6  # ratio ≈ 1, spread 5 %: equivalent within 25 %
    assert _stats.equivalence_ratio(1.5 * a, b, 1.25) > 0.5  # ratio 1.5: outside the margin
    few_a, few_b = np.exp(rng.normal(10, 0.3, 3)), np.exp(rng.normal(10, 0.3, 3))
    assert _stats.equivalence_ratio(few_a, few_b, 1.25) > 0.05  # 3 noisy values per arm cannot show it


def test_statistics_refuse_samples_they_cannot_judge():
    with pytest.raises(ValueError, match="k <= n"):
        _stats.solved_interval(6, 5)
    with pytest.raises(ValueError, match="two values per arm"):
        _stats.ratio_interval([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="more than 10"):
        _stats.rank_test(range(20), range(20))  # C(40, 20) splits: never silently asymptotic
    with pytest.raises(ValueError, match="margin > 1"):
        _stats.equivalence_ratio([1.0, 2.0], [1.0, 2.0], 1.0)


def test_the_rank_test_refuses_a_sample_of_one_by_name():
    with pytest.raises(ValueError, match="at least 2 values each, got sizes 1 and 3"):
        _stats.rank_test([1], [2, 3, 4])
