"""Per-group statistics of a runs table, each with the interval or test of its independent unit.

Which unit each treats as independent:

- seeds of one setting: bootstrap intervals of a setting's mean
  (:func:`seed_summary`), Wilson intervals of its divergence rate
  (:func:`divergence_rates`), the paired tests against a baseline
  (:func:`paired_tests`, Holm over the family a sentence reports);
- problems (task x model pairs): rates over a whole grid (:func:`cluster_rate`,
  a cluster bootstrap over problems).

The methods themselves are :mod:`analysis.inference`; failed runs count by the
one rule of :mod:`analysis.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.inference import (
    CONFIDENCE,
    N_RESAMPLES,
    bootstrap_rows,
    cluster_share,
    compare,
    holm,
    iqm,
    wilson_interval,
)
from analysis.memo import memoised
from analysis.vocabulary import PROBLEM_COLUMNS, groups, panel_columns, setting_columns, sign


@memoised
def seed_summary(runs: pd.DataFrame, value: str = "test_score", by: Sequence[str] | None = None,
                 confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group: ``seeds``, ``failed``, ``mean`` with a bootstrap CI (``low``, ``high``), ``iqm``, ``median``.

    ``runs`` is a scored runs table (``vocabulary.score_runs`` or
    ``tuning.best_tuned_runs``); ``value`` one of its columns, by default
    ``test_score`` (failed runs at chance). ``by`` defaults to panel, strategy
    and setting, so on ``tuning.best_tuned_runs`` it gives one row per strategy
    and panel. The CI is ``inference.bootstrap_ci`` of the mean (NaN for a single seed), computed for all the
    groups of one size at once (``inference.bootstrap_rows``).
    """
    keys = list(by) if by is not None else [*panel_columns(runs), "strategy", *setting_columns(runs)]
    if runs.empty:
        return pd.DataFrame()
    codes = groups(runs, keys).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")  # each group's rows together, in the table's order
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values = runs[value].to_numpy(dtype=float)[order]
    first = order[starts]
    stats = {name: np.full(len(sizes), np.nan) for name in ("mean", "low", "high", "iqm", "median")}
    for size in np.unique(sizes):
        chosen = np.flatnonzero(sizes == size)
        matrix = values[starts[chosen][:, None] + np.arange(size)]
        stats["low"][chosen], stats["high"][chosen] = bootstrap_rows(matrix, confidence)
        stats["iqm"][chosen] = iqm(matrix, axis=1)
        stats["median"][chosen] = np.median(matrix, axis=1)
        stats["mean"][chosen] = [row.mean() for row in matrix]
    failed = np.bincount(codes, weights=runs["failed"].to_numpy(dtype=float), minlength=len(sizes))
    metric, higher = runs["metric"].to_numpy()[first], runs["higher_is_better"].to_numpy()[first]
    rows = []
    for g, key in enumerate(runs[keys].iloc[first].itertuples(index=False, name=None)):
        rows.append({
            **dict(zip(keys, key, strict=True)), "metric": metric[g], "higher_is_better": bool(higher[g]),
            "seeds": int(sizes[g]), "failed": int(failed[g]), "mean": stats["mean"][g], "low": float(stats["low"][g]),
            "high": float(stats["high"][g]), "iqm": float(stats["iqm"][g]), "median": float(stats["median"][g]),
        })
    return pd.DataFrame(rows)


def divergence_rates(runs: pd.DataFrame, by: Sequence[str] | None = None,
                     confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Divergence rate per group with a Wilson score interval (``inference.wilson_interval``).

    The Wilson interval holds where a group's runs are independent draws: the
    seeds of one setting, the default ``by`` (panel, strategy and setting).
    For a rate over many settings or problems use :func:`cluster_rate`, which
    resamples the independent units. Counts ``diverged`` runs only. Columns:
    ``by``..., ``runs``, ``diverged``, ``rate``, ``low``, ``high``.
    """
    keys = list(by) if by is not None else [*panel_columns(runs), "strategy", *setting_columns(runs)]
    counts = groups(runs, keys)["diverged"].agg(runs="size", diverged="sum").reset_index()
    intervals = [wilson_interval(k, n, confidence) for k, n in zip(counts["diverged"], counts["runs"], strict=True)]
    counts["rate"] = counts["diverged"] / counts["runs"]
    counts["low"] = [low for low, _ in intervals]
    counts["high"] = [high for _, high in intervals]
    return counts


@memoised
def cluster_rate(frame: pd.DataFrame, value: str, by: Sequence[str] = ("strategy",),
                 cluster: Sequence[str] = PROBLEM_COLUMNS, confidence: float = CONFIDENCE,
                 n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Share of the rows of ``frame`` where the boolean column ``value`` holds, per group, with a cluster bootstrap.

    For rates over a strategy's whole grid (e.g. ``value="diverged"`` on a
    runs table, or ``"stable"`` on ``stability.stability_points``): the rows of
    one ``cluster`` (by default a problem, task x model) share its data and
    architecture, so they are not independent draws, and a binomial interval
    over the pooled rows is far too narrow. The share is the pooled one
    (``count / rows``); its interval resamples whole clusters with replacement
    and recomputes the pooled share (``inference.cluster_share``). Fewer than
    two clusters: NaN interval; every cluster at the same share: that share.
    Columns: ``by``..., ``clusters``, ``rows``, ``count``, ``rate``, ``low``, ``high``.
    """
    keys, units = list(by), list(cluster)
    counts = groups(frame.assign(_value=frame[value].astype(float)), [*keys, *units])["_value"].agg(
        ["sum", "size"]).reset_index()
    rows = []
    for key, group in groups(counts, keys):
        k, n = group["sum"].to_numpy(dtype=float), group["size"].to_numpy(dtype=float)
        low, high = cluster_share(k, n, confidence, n_resamples, seed)
        rows.append({**dict(zip(keys, key, strict=True)), "clusters": len(group), "rows": int(n.sum()),
                     "count": int(k.sum()), "rate": k.sum() / n.sum(), "low": low, "high": high})
    return pd.DataFrame(rows)


def paired_tests(best_runs: pd.DataFrame, baseline: str = "none", value: str = "test_score",
                 family: Sequence[str] = ()) -> pd.DataFrame:
    """Each strategy against ``baseline`` on each panel, over seeds, with Holm correction and an effect size.

    ``best_runs`` is ``tuning.best_tuned_runs``; ``value`` defaults to
    ``test_score`` (failed runs at chance, so a strategy whose seeds all
    diverged is compared at chance). Values are oriented (negated for MSE), so
    ``difference`` > 0 and ``effect`` > 0 mean the strategy is better. When
    both have the same seeds, once each: Wilcoxon signed-rank on the
    seed-paired differences, zero differences split between the signs
    (``difference``: their median; ``effect``: matched-pairs rank-biserial
    correlation; all differences zero gives p = 1); otherwise Mann-Whitney U
    (``difference`` of medians; ``effect``: Cliff's delta = 2U / (n m) - 1);
    ``inference.compare``.

    ``pvalue_holm``: Holm's adjustment over the family a sentence reports. By
    default one family, every (panel, strategy) test of the table, as
    numbers.tex reports "k of N significant after Holm"; ``family`` names
    columns whose groups are separate families instead (e.g. per panel).
    """
    panel = panel_columns(best_runs)
    frame = best_runs.assign(_value=best_runs[value].to_numpy(dtype=float) * sign(best_runs["higher_is_better"]))
    rows = []
    for key, group in groups(frame, panel):
        base = group[group["strategy"] == baseline].set_index("seed")["_value"]
        if base.empty:
            continue
        for strategy, other in groups(group[group["strategy"] != baseline], ["strategy"]):
            values = other.set_index("seed")["_value"]
            rows.append({**dict(zip(panel, key, strict=True)), "strategy": strategy[0], "baseline": baseline,
                         "seeds": len(values), "baseline_seeds": len(base), **compare(values, base)})
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    if family:
        tests["pvalue_holm"] = tests.groupby(list(family), dropna=False)["pvalue"].transform(
            lambda p: holm(p.to_numpy()))
    else:
        tests["pvalue_holm"] = holm(tests["pvalue"].to_numpy())
    return tests
