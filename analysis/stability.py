"""The learning-rate axis: where a strategy stays stable, the stable range and its width, and the sensitivity.

The stability rule: a learning rate is *stable* for a strategy when its best
setting at that lr (chosen on validation by the best-tuned rule,
``tuning.best_tuned`` with ``within=["lr"]``) has no failed seed: none
diverged, and none ended no better than chance (``vocabulary.failed``: a run
whose loss never blows up but that ends at chance trains no more stably than
one that diverges) (:func:`stability_points`). Every strategy is so judged on one setting's seeds
per point, the same number of runs whatever the size of its threshold grid.
A stable range is the widest contiguous span of stable grid learning rates
(:func:`stable_lr_range`); its width in decades is ``log10(hi / lo)``, and a
panel where no learning rate is stable counts one grid step below a single
stable one (:func:`widest_span`, :func:`grid_step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.memo import memoised
from analysis.summaries import seed_summary
from analysis.tuning import best_tuned, best_tuned_runs
from analysis.vocabulary import at_chance, groups, panel_columns, setting_columns, sign


@memoised
def stability_points(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """Per panel, strategy and learning rate: the strategy's best setting at that lr, and whether it is stable.

    The stability rule: a learning rate is *stable* for a strategy when its
    best setting at that lr (chosen on validation by the best-tuned rule of
    ``tuning.best_tuned``, fewest failed seeds first) has no failed seed (``vocabulary.failed``: diverged, or
    ended no better than chance). Every
    strategy is so judged on one setting's seeds per point, the same number of
    runs whatever the size of its threshold grid; pooling every run at an lr
    would judge ``none`` on its seeds and a strategy with three thresholds on
    three times as many. ``within``: hyperparameter columns held fixed (a point
    per value) instead of chosen. Columns: those of ``tuning.best_tuned``, ``rate``
    (failed seeds / seeds of the chosen setting) and ``stable``.
    """
    points = best_tuned(runs, within=["lr", *within])
    points["rate"] = points["failed"] / points["seeds"]
    points["stable"] = points["failed"] == 0
    return points


@memoised
def stable_lr_range(runs: pd.DataFrame, max_rate: float = 0.0, within: Sequence[str] = ()) -> pd.DataFrame:
    """The widest contiguous span of grid learning rates whose :func:`stability_points` rate is at most ``max_rate``.

    Per panel and strategy (and value of ``within``): a learning rate counts
    when the strategy's best setting at it has a failure rate over its seeds
    (``vocabulary.failed``: diverged, or ended no better than chance) of at
    most ``max_rate`` (0: no failed seed, the stability rule). Widest
    means the largest ``hi / lo``; ties go to the lower span. Columns: panel,
    ``strategy``, ``within``..., ``lo``, ``hi``, ``ratio`` (``hi / lo``, 1 for
    one learning rate), ``stable_lrs`` (grid points in the span), ``grid_lrs``;
    NaN bounds and 0 points where no lr is stable.
    """
    keys = [*panel_columns(runs), "strategy", *within]
    rows = []
    for key, group in groups(stability_points(runs, within).sort_values("lr"), keys):
        lrs, stable = group["lr"].to_numpy(dtype=float), (group["rate"] <= max_rate).to_numpy()
        best = (np.nan, np.nan, 0)
        start = None
        for i, ok in enumerate([*stable, False]):
            if ok and start is None:
                start = i
            elif not ok and start is not None:
                lo, hi = lrs[start], lrs[i - 1]
                if best[2] == 0 or hi / lo > best[1] / best[0]:
                    best = (lo, hi, i - start)
                start = None
        rows.append({**dict(zip(keys, key, strict=True)), "lo": best[0], "hi": best[1], "ratio": best[1] / best[0],
                     "stable_lrs": best[2], "grid_lrs": len(lrs)})
    return pd.DataFrame(rows)


@memoised
def lr_profile(runs: pd.DataFrame, value: str = "test_metric_at_best_val", confidence: float = 0.95) -> pd.DataFrame:
    """Per panel, strategy and learning rate: the mean ``value`` of the best setting at that lr, CI over its seeds.

    The setting at each lr is chosen on validation by the best-tuned rule
    (``tuning.best_tuned`` with ``within=["lr"]``), so every point of every
    strategy is one setting's seeds, never its thresholds pooled. ``value``
    (test metric by default) counts failed runs at chance. Columns: those of
    ``summaries.seed_summary`` over panel, strategy and setting, and ``chance_metric``.
    """
    chosen = best_tuned_runs(runs, within=["lr"])
    chosen["_value"] = at_chance(chosen, value)
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    summary = seed_summary(chosen, value="_value", by=keys, confidence=confidence)
    chance = chosen.drop_duplicates(keys)[[*keys, "chance_metric"]]
    order = [*panel_columns(runs), "strategy", "lr"]
    return summary.merge(chance, on=keys, how="left").sort_values(order, kind="stable", ignore_index=True)


def lr_sensitivity(runs: pd.DataFrame, value: str = "test_metric_at_best_val") -> pd.DataFrame:
    """Learning-rate sensitivity per panel and strategy: the mean gap of the :func:`lr_profile` to its best point.

    Per panel and strategy, over the grid's learning rates (each at its best
    setting, failed runs at chance): ``sensitivity`` is the mean of ``best -
    mean`` for higher-is-better metrics and ``mean - best`` for MSE, >= 0 in
    the metric's units; ``normalised`` divides it by the gain of the best
    point over chance (``|best - chance|``), so it is unit-free and comparable
    across metrics: 0 for a strategy indifferent to the lr, 1 when the grid is
    on average as far from the best as chance is, more where it is worse than
    chance (NaN when the best point is at chance). Averages
    across problems must use ``normalised``, never the metric-unit gap.
    Columns: panel, ``strategy``, ``metric``, ``grid_lrs``, ``best_lr``,
    ``best_mean``, ``sensitivity``, ``normalised``.
    """
    profile = lr_profile(runs, value)
    keys = [*panel_columns(runs), "strategy"]
    rows = []
    for key, group in groups(profile, keys):
        oriented = group["mean"].to_numpy(dtype=float) * sign(group["higher_is_better"])
        best = int(np.argmax(oriented))
        gap = float((oriented[best] - oriented).mean())
        gain = abs(group["mean"].iloc[best] - group["chance_metric"].iloc[best])
        rows.append({**dict(zip(keys, key, strict=True)), "metric": group["metric"].iloc[0], "grid_lrs": len(group),
                     "best_lr": group["lr"].iloc[best], "best_mean": group["mean"].iloc[best], "sensitivity": gap,
                     "normalised": gap / gain if gain > 0 else float("nan")})
    return pd.DataFrame(rows)


DECIMALS = 9
"""Decimal places a width or step in decades is rounded to: two ranges of equal width on a grid of powers of ten read
from different learning rates (``log10(1 / 0.1778)`` and ``log10(0.5623 / 0.1)``) then differ by 0, not by
the 1e-16 of floating-point rounding, which a sentence would print as ``-8.3e-17 decades``."""


def grid_step(lrs: np.ndarray) -> float:
    """The grid step in decades: the median spacing of the distinct log10 learning rates (0.5 on half-decades)."""
    logs = np.log10(np.unique(np.asarray(lrs, dtype=float)))
    return round(float(np.median(np.diff(logs))), DECIMALS) if logs.size > 1 else 0.5


def decades(hi: float, lo: float) -> float:
    """The width ``log10(hi / lo)`` of a stable range in decades, rounded to :data:`DECIMALS` places."""
    return round(float(np.log10(hi / lo)), DECIMALS)


def widest_span(stable: np.ndarray, lrs: np.ndarray, step: float) -> np.ndarray:
    """Width in decades of the widest contiguous stable span, per row of ``stable`` (resamples x sorted lrs).

    ``log10(hi / lo)`` (:func:`decades`), 0 for a single stable learning rate, ``-step`` where none is stable.
    """
    stable = np.atleast_2d(stable)
    logs = np.log10(np.asarray(lrs, dtype=float))
    best = np.full(stable.shape[0], -float(step))
    cumulative = np.concatenate([np.zeros((stable.shape[0], 1)), np.cumsum(stable, axis=1)], axis=1)
    for i in range(len(logs)):
        for j in range(i, len(logs)):
            whole = (cumulative[:, j + 1] - cumulative[:, i]) == j - i + 1
            width = round(logs[j] - logs[i], DECIMALS)
            best = np.where(whole & (width > best), width, best)
    return best
