r"""The statistics the long-lag report states, each from :mod:`scipy.stats` (none written by hand here).

* :func:`solved_interval` — solved k of N with the exact (Clopper–Pearson) 95 % interval
  (``scipy.stats.binomtest(k, N).proportion_ci(method="exact")``);
* :func:`fisher_solved` — two arms' solved counts, Fisher's exact test, two-sided;
* :func:`rank_test` — two samples of counts or sequences, the Mann–Whitney U test with its **exact**
  permutation distribution (``method=scipy.stats.PermutationMethod(n_resamples=inf)``: every split is
  enumerated, so ties among counts are handled exactly), two-sided;
* :func:`mean_interval`, :func:`ratio_interval` — bootstrap 95 % percentile intervals of a mean and of a ratio
  of two means (independent resampling of each arm; ``scipy.stats.bootstrap``, a fixed seed so the report
  is reproducible);
* :func:`equivalence_ratio` — two one-sided Welch t-tests (TOST, ``scipy.stats.ttest_ind``) on log values:
  is the ratio of geometric means inside ``[1/margin, margin]``?  An equivalence sentence is written only when
  this test rejects at 5 %; otherwise the report says what the interval allows.

References: C. J. Clopper, E. S. Pearson, Biometrika 26, 1934.  D. J. Schuirmann, J. Pharmacokinet.
Biopharm. 15, 1987 (TOST).  B. Efron, R. Tibshirani, *An Introduction to the Bootstrap*, 1993.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 1997


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def _scipy_stats():
    from scipy import stats

    return stats


def solved_interval(k: int, n: int, level: float = LEVEL) -> Interval:
    """``k/n`` with the exact Clopper–Pearson interval (``n >= 1``)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"solved_interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    ci = _scipy_stats().binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high))


def fisher_solved(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test on the 2×2 table (solved, not solved) × (arm 1, arm 2)."""
    return float(_scipy_stats().fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def rank_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of the Mann–Whitney U test, exact permutation distribution (ties handled exactly) up to 10⁶
    splits of the pooled sample (10 vs 10 is 184,756); larger samples are refused rather than approximated."""
    stats = _scipy_stats()
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:  # scipy's permutation test takes two or more observations per sample
        raise ValueError(f"rank_test needs two samples of at least 2 values each, got sizes {a.size} and {b.size}")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0  # every value equal: no ordering to test
    if math.comb(a.size + b.size, a.size) > 10**6:  # the report calls it exact: never fall back silently
        raise ValueError(f"rank_test enumerates every split; {a.size} + {b.size} values have more than 10**6")
    method = stats.PermutationMethod(n_resamples=math.inf)
    return float(stats.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


def _bootstrap(data, statistic, level):
    stats = _scipy_stats()
    res = stats.bootstrap(data, statistic, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", paired=False, vectorized=True,
                          rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_interval(x: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of ``x`` with its bootstrap percentile interval (a single value: the interval is that value)."""
    x = np.asarray(x, float)
    if x.size < 1:
        raise ValueError("mean_interval needs at least one value")
    if x.size == 1 or np.ptp(x) == 0:
        return Interval(float(x.mean()), float(x.mean()), float(x.mean()))
    lo, hi = _bootstrap((x,), lambda s, axis: np.mean(s, axis=axis), level)
    return Interval(float(x.mean()), lo, hi)


def ratio_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """``mean(a) / mean(b)`` with the bootstrap percentile interval (each arm resampled on its own)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"ratio_interval needs at least two values per arm, got {a.size} and {b.size}")
    lo, hi = _bootstrap((a, b), lambda s, t, axis: np.mean(s, axis=axis) / np.mean(t, axis=axis), level)
    return Interval(float(a.mean() / b.mean()), lo, hi)


def equivalence_ratio(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """TOST p for "the ratio of geometric means of ``a`` and ``b`` lies in ``[1/margin, margin]``": the larger
    of two one-sided Welch t-tests on ``log a - log b`` against ``-log margin`` and ``+log margin``.  Small p
    (below 0.05) supports equivalence at that margin; a large p says the data cannot show it."""
    stats = _scipy_stats()
    la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
    if la.size < 2 or lb.size < 2 or not margin > 1:
        raise ValueError(f"equivalence_ratio needs two values per arm and margin > 1, got {la.size}, {lb.size}, {margin}")
    d = math.log(margin)
    p_low = stats.ttest_ind(la + d, lb, equal_var=False, alternative="greater").pvalue
    p_high = stats.ttest_ind(la - d, lb, equal_var=False, alternative="less").pvalue
    return float(max(p_low, p_high))
