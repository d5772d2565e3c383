"""Inference on arrays: one bootstrap family, Wilson intervals, Holm, paired and equivalence tests.

Every interval is a bootstrap of ``scipy.stats.bootstrap`` (percentile by
default: BCa is unstable with a handful of units), deterministic (resamples
drawn from ``seed``), in one of three forms:

- over independent units given as values (:func:`bootstrap_ci`; per column of
  a matrix, :func:`bootstrap_columns`);
- over units given as multiplicity weights (:func:`weighted_bootstrap`): the
  statistic receives, per stratum, how often each unit is drawn in each
  resample, so that it can redo any computation on the resample (a best-tuned
  choice, a Kaplan-Meier curve). One stratum resamples clusters (a *cluster
  bootstrap*, :func:`cluster_share`); several are resampled independently (a
  *stratified* bootstrap, e.g. the seeds of each task x model pair).

Tests: the p-value implied by the bootstrap interval over units
(:func:`bootstrap_pvalue`), the Wilcoxon signed-rank test on paired differences
(:func:`signed_rank`), Mann-Whitney U where samples are not paired
(:func:`compare`), Holm's step-down adjustment (:func:`holm`), an equivalence
test within a margin stated before the results (:func:`equivalence_test`,
:func:`within_margin`), and the smallest p-value a test can reach at its sample
size (:func:`smallest_pvalue`), below which a test cannot reject: it is
underpowered there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
"""Bootstrap resamples of an interval over independent units (:func:`bootstrap_ci`)."""


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half, ``scipy.stats.trim_mean(values, 0.25)``."""
    return stats.trim_mean(values, 0.25, axis=axis)


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., Any], confidence: float, n_resamples: int,
               method: str, seed: int, null: float | None = None, also: float | None = None,
               **options: Any) -> tuple[Any, ...]:
    """``scipy.stats.bootstrap`` of ``statistic`` over ``data``: the interval's (low, high), with ``null`` the
    p-value its resamples imply (:func:`implied_pvalue`), and with ``also`` the (low, high) of the interval at
    that second confidence level from the same resamples (the statistic is not computed again)."""
    rng = np.random.default_rng(seed)
    result = stats.bootstrap(data, statistic, confidence_level=confidence, n_resamples=n_resamples, method=method,
                             rng=rng, **options)
    found = (result.confidence_interval.low, result.confidence_interval.high)
    if null is not None:
        found = (*found, implied_pvalue(result.bootstrap_distribution, null))
    if also is not None:
        second = stats.bootstrap(data, statistic, confidence_level=also, n_resamples=0, method=method, rng=rng,
                                 bootstrap_result=result, **options)
        found = (*found, second.confidence_interval.low, second.confidence_interval.high)
    return found


def implied_pvalue(resampled: np.ndarray, null: float = 0.0) -> Any:
    """The two-sided p-value a percentile bootstrap implies for ``null`` from its resampled statistics (last axis):
    twice the smaller share on either side of ``null``, each counted as ``(k + 1) / (resamples + 1)``, capped at
    1; below 1 - confidence exactly where the percentile interval excludes ``null`` (up to the counting)."""
    resampled = np.asarray(resampled, dtype=float)
    total = resampled.shape[-1] + 1
    below = (np.count_nonzero(resampled <= null, axis=-1) + 1) / total
    above = (np.count_nonzero(resampled >= null, axis=-1) + 1) / total
    p = np.minimum(1.0, 2 * np.minimum(below, above))
    return float(p) if np.ndim(p) == 0 else p


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[..., Any] = np.mean,
                 confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, method: str = "percentile",
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of ``statistic`` over independent units' values.

    ``statistic`` must take an ``axis`` argument (``np.mean``, :func:`iqm`,
    ``np.median``). Fewer than two values: (NaN, NaN), no interval exists.
    Constant values: (value, value). The values are taken as given (use
    ``test_score``, where failed runs are at chance).
    """
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    low, high = _bootstrap((values,), statistic, confidence, n_resamples, method, seed)
    return float(low), float(high)


ROW_BLOCK = 500_000
"""About this many resampled values at once in :func:`bootstrap_rows` (rows x resamples x units: 4 MB)."""


def bootstrap_rows(values: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bootstrap_ci` of the mean of each row of ``values`` (rows x units), all rows at once: each row's
    (low, high) is exactly what :func:`bootstrap_ci` gives for that row alone, its resamples drawn from ``seed``
    as there (every block of rows is one ``scipy.stats.bootstrap`` call on a fresh generator, whose resample
    indices do not depend on the number of rows). Fewer than two units: NaN; a constant row: its value."""
    values = np.asarray(values, dtype=float)
    low, high = np.full(len(values), np.nan), np.full(len(values), np.nan)
    if values.ndim != 2 or values.shape[1] < 2:
        return low, high
    constant = np.all(values == values[:, :1], axis=1)
    low[constant] = high[constant] = values[constant, 0]
    varying = np.flatnonzero(~constant)
    block = max(1, ROW_BLOCK // (n_resamples * values.shape[1]))
    for start in range(0, len(varying), block):
        rows = varying[start:start + block]
        low[rows], high[rows] = _bootstrap((values[rows],), _mean_of_rows, confidence, n_resamples, "percentile",
                                           seed, axis=-1)
    return low, high


def _mean_of_rows(resampled: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.mean`` over the last axis, taken on a matrix of the rows (as on one sample's resamples), so that each
    mean sums its units in the same order as for one sample alone."""
    return np.mean(resampled.reshape(-1, resampled.shape[-1]), axis=-1).reshape(resampled.shape[:-1])


def bootstrap_pvalue(values: Sequence[float] | np.ndarray, null: float = 0.0, n_resamples: int = N_RESAMPLES,
                     seed: int = 0) -> float:
    """The two-sided p-value implied by the percentile bootstrap of the mean over independent units, the test
    that matches :func:`bootstrap_ci`'s interval (the same resamples; :func:`implied_pvalue`). Fewer than two
    values: NaN; constant values: 1 at ``null``, else the smallest p-value the resamples allow."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    if np.all(values == values[0]):
        return 1.0 if values[0] == null else 2 / (n_resamples + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # nearly constant values: a sharp p-value
        return float(_bootstrap((values,), np.mean, CONFIDENCE, n_resamples, "percentile", seed, null)[2])


def bootstrap_columns(samples: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0 (units) for every column at once.

    The vectorised form of :func:`bootstrap_ci` (e.g. a curve band: seeds x
    steps); fewer than two units, or a column without an interval, collapse to
    the mean.
    """
    mean = samples.mean(axis=0)
    if samples.shape[0] < 2:
        return mean, mean
    low, high = _bootstrap((samples,), np.mean, confidence, n_resamples, "percentile", seed, axis=0, vectorized=True)
    return np.where(np.isfinite(low), low, mean), np.where(np.isfinite(high), high, mean)


def weighted_bootstrap(counts: Sequence[int], statistic: Callable[[list[np.ndarray]], np.ndarray],
                       confidence: float = CONFIDENCE, n_resamples: int = 1999, seed: int = 0,
                       method: str = "percentile", null: float | None = None,
                       also: float | None = None) -> tuple[Any, ...]:
    """Bootstrap interval resampling units with replacement, one stratum per entry of ``counts`` (its units).

    ``statistic`` maps a list of weight matrices, one per stratum (resamples x
    that stratum's units, how often each unit is drawn), to the statistic of
    every resample: shape (resamples,) or (resamples, k) for k statistics at
    once. Strata are resampled independently (stratified); one stratum is a
    cluster bootstrap. Returns (low, high): floats, or arrays of k; with ``null``
    also the p-value the resamples imply for it (:func:`implied_pvalue`); with
    ``also`` then the (low, high) of the interval at that confidence level from
    the same resamples (e.g. the 90% interval of an equivalence test). Fewer
    than two units in a stratum: NaN, no interval exists.
    """
    if not counts or min(counts) < 2:
        return (float("nan"),) * (2 + (null is not None) + 2 * (also is not None))
    samples = tuple(np.arange(count) for count in counts)

    def vectorised(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        weights = [(np.atleast_2d(sample)[..., None] == np.arange(count)).sum(axis=-2).astype(float)
                   for sample, count in zip(resampled, counts, strict=True)]
        values = np.asarray(statistic(weights), dtype=float)
        return np.moveaxis(values, 0, -1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution gives its own (tight) interval
        found = _bootstrap(samples, vectorised, confidence, n_resamples, method, seed, null, also, vectorized=True,
                           paired=False)
    return tuple(float(v) for v in found) if np.ndim(found[0]) == 0 else found


def cluster_share(counts: np.ndarray, sizes: np.ndarray, confidence: float = CONFIDENCE,
                  n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Cluster-bootstrap interval of the pooled share ``sum(counts) / sum(sizes)`` over clusters (array entries).

    Fewer than two clusters: (NaN, NaN); every cluster at the same share: that share.
    """
    if counts.size < 2:
        return float("nan"), float("nan")
    shares = counts / sizes
    if np.all(shares == shares[0]):
        return float(shares[0]), float(shares[0])
    return weighted_bootstrap([counts.size], lambda w: (w[0] @ counts) / (w[0] @ sizes), confidence, n_resamples,
                              seed)


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``scipy.stats.binomtest``), for independent trials."""
    interval = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence,
                                                                          method="wilson")
    return interval.low, interval.high


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def rank_biserial(differences: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation, zero differences' ranks split between the signs (as ``zsplit``)."""
    ranks = stats.rankdata(np.abs(differences))
    return float((ranks[differences > 0].sum() - ranks[differences < 0].sum()) / ranks.sum())


def signed_rank(differences: Sequence[float] | np.ndarray, alternative: str = "two-sided") -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired ``differences`` (``scipy.stats.wilcoxon``, zeros split between the
    signs): (statistic, p-value); every difference zero gives (0, 1)."""
    differences = np.asarray(differences, dtype=float)
    if np.all(differences == 0):
        return 0.0, 1.0
    if _by_permutation(differences):
        return _signed_rank_permutation(differences, alternative)
    result = stats.wilcoxon(differences, zero_method="zsplit", alternative=alternative)
    return float(result.statistic), float(result.pvalue)


PERMUTATION_UNITS = 13
"""Up to this many differences with ties or zeros, ``scipy.stats.wilcoxon`` computes its p-value by an exact
permutation test over the 2^n sign flips (from 14 on, the normal approximation)."""


def _by_permutation(differences: np.ndarray) -> bool:
    """Whether ``scipy.stats.wilcoxon`` (``method="auto"``) tests ``differences`` by its exact permutation test:
    at most :data:`PERMUTATION_UNITS` of them, with a zero or tied absolute values (none NaN)."""
    if differences.ndim != 1 or differences.size > PERMUTATION_UNITS or np.isnan(differences).any():
        return False
    return bool((differences == 0).any() or np.unique(np.abs(differences)).size < differences.size)


def _positive_rank_sum(differences: np.ndarray, axis: int = -1) -> np.ndarray:
    """The signed-rank statistic ``r_plus`` of each sample along ``axis``, zeros' ranks split between the signs (as
    ``scipy.stats.wilcoxon`` with ``zero_method="zsplit"``): exact in floating point, ranks being halves."""
    differences = np.moveaxis(differences, axis, -1)
    ranks = stats.rankdata(np.abs(differences), axis=-1)
    return np.sum((differences > 0) * ranks, axis=-1) + np.sum((differences == 0) * ranks, axis=-1) / 2


def _signed_rank_permutation(differences: np.ndarray, alternative: str) -> tuple[float, float]:
    """``scipy.stats.wilcoxon``'s exact permutation test (what it runs for :func:`_by_permutation` samples) with the
    statistic computed for all sign flips at once: ``scipy.stats.permutation_test`` enumerates the same flips and
    counts the same (exact) statistics, so the statistic and p-value are the same; scipy's own evaluates the
    statistic once per flip (2^n Python calls)."""
    observed = float(_positive_rank_sum(differences))
    total = float(differences.size * (differences.size + 1) / 2)
    result = stats.permutation_test((differences,), _positive_rank_sum, permutation_type="samples",
                                    n_resamples=9999, alternative=alternative, axis=-1, vectorized=True)
    statistic = min(observed, total - observed) if alternative == "two-sided" else observed
    return float(statistic), float(result.pvalue)


def compare(x: Any, y: Any) -> dict[str, Any]:
    """Two samples indexed by seed (pandas Series): Wilcoxon signed-rank on the seed-paired differences if the
    seeds match, else Mann-Whitney U.

    ``difference``: the median difference (paired) or the difference of
    medians; ``effect``: the matched-pairs rank-biserial correlation (paired)
    or Cliff's delta = 2U / (n m) - 1.
    """
    if x.index.is_unique and y.index.is_unique and set(x.index) == set(y.index):
        differences = (x - y.loc[x.index]).to_numpy(dtype=float)
        statistic, pvalue = signed_rank(differences)
        return {"test": "wilcoxon", "statistic": statistic, "pvalue": pvalue,
                "difference": float(np.median(differences)), "effect": rank_biserial(differences)}
    result = stats.mannwhitneyu(x.to_numpy(dtype=float), y.to_numpy(dtype=float))
    return {"test": "mannwhitneyu", "statistic": float(result.statistic), "pvalue": float(result.pvalue),
            "difference": float(x.median() - y.median()), "effect": 2 * result.statistic / (len(x) * len(y)) - 1}


def smallest_pvalue(test: str, n: int, m: int = 0, alternative: str = "two-sided") -> float:
    """The smallest p-value ``test`` can give at its sample size: where it is above the level, the test cannot
    reject whatever the data (underpowered).

    ``wilcoxon`` (exact signed-rank over ``n`` pairs, every sign alike):
    2 / 2^n two-sided, 1 / 2^n one-sided; ``mannwhitneyu`` (exact, ``n`` and
    ``m`` units, the samples fully separated): 2 / C(n + m, n) two-sided,
    1 / C(n + m, n) one-sided. Fewer than one unit: 1.
    """
    sides = 2 if alternative == "two-sided" else 1
    if test == "wilcoxon":
        outcomes = 2.0 ** n if n >= 1 else 1.0
    elif test == "mannwhitneyu":
        outcomes = float(math.comb(n + m, n)) if n >= 1 and m >= 1 else 1.0
    else:
        raise ValueError(f"test {test!r}: allowed: wilcoxon, mannwhitneyu")
    return min(1.0, sides / outcomes)


def equivalence_test(differences: Sequence[float] | np.ndarray, margin: float) -> float:
    """Two one-sided tests (TOST) that the paired ``differences`` lie within ``(-margin, margin)``: the p-value.

    Each side a one-sided Wilcoxon signed-rank test, of ``differences + margin
    > 0`` and of ``differences - margin < 0``; the p-value is the larger of the
    two, small when the differences are shown to be within the margin. The
    margin is stated before the results are read.
    """
    differences = np.asarray(differences, dtype=float)
    if margin <= 0:
        raise ValueError(f"margin: {margin} is not allowed; allowed: above 0")
    _, above = signed_rank(differences + margin, alternative="greater")
    _, below = signed_rank(differences - margin, alternative="less")
    return max(above, below)


def within_margin(low: float, high: float, margin: float) -> bool:
    """Whether an interval lies inside ``(-margin, margin)``: equivalence at level alpha where the interval is the
    1 - 2 alpha one (the 90% interval for a 5% test)."""
    return bool(-margin < low and high < margin)
