"""Strategies ranked across independent problems: error matrix, ranks, Friedman, critical difference, profiles, cost.

The ranking unit is the problem (task x model pair): per problem, the mean over
its panels of each strategy's best-tuned test error (:func:`error_matrix`), the
same number in the ranks, the Friedman test, the critical-difference diagram
and the performance profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.layout import MIN_RANKED_PROBLEMS, ranked_block
from analysis.summaries import seed_summary
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import dial_columns, groups, metric_error, panel_columns, panel_label_suffix


def _panel_labels(frame: pd.DataFrame) -> pd.Series:
    """A readable label per row: ``task/model/optimizer`` plus ``dial=value`` for the dials that apply."""
    labels = frame["task"].astype(str) + "/" + frame["model"].astype(str) + "/" + frame["optimizer"].astype(str)
    for dial in dial_columns(frame):
        labels = labels + np.where(frame[dial].isna(), "", "/" + dial + "=" + frame[dial].map("{:g}".format))
    return labels + panel_label_suffix(frame)


def ranking_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """``summaries.seed_summary`` of the best-tuned runs, one row per panel and strategy (failed runs at chance)."""
    return seed_summary(best_tuned_runs(runs), by=[*panel_columns(runs), "strategy"])


def ranking_errors(runs: pd.DataFrame) -> pd.DataFrame:
    """The error matrix the ranks, Friedman test, CD diagram and profiles use: task x model pairs x strategies.

    :func:`error_matrix` of :func:`ranking_summary`: per problem, the mean over
    its panels of the best-tuned mean test error (1 - accuracy, or MSE); failed
    runs count at chance.
    """
    return error_matrix(ranking_summary(runs))


def error_matrix(summary: pd.DataFrame, value: str = "mean", min_problems: int = MIN_RANKED_PROBLEMS) -> pd.DataFrame:
    """Problems (rows, ``task/model``) x strategies: the mean over the problem's panels of each panel's error.

    ``summary`` is :func:`ranking_summary`: ``summaries.seed_summary`` of the
    best-tuned runs by panel and strategy (failed runs at chance); ``value`` its column (the mean over
    seeds), turned into an error by ``vocabulary.metric_error`` (1 - accuracy, MSE).

    The ranking unit is the problem (task x model pair), not the panel: the
    panels of one problem (its optimizers and stress-dial values) share its
    data and architecture, so they are dependent; counting each as a problem
    inflates N for Friedman and Nemenyi and shrinks the critical difference.
    Within a problem every panel has the same metric, so the mean of their
    errors is in one unit: the strategy's expected error on the problem over
    its panels, each weighted equally, each tuned on its own. A problem counts
    once however many panels it has, and the same number enters the ranks, the
    Friedman test, the CD diagram and the performance profiles.

    Which problems and strategies: a study may run some strategies on a subset
    of its problems only (a config's per-problem ``strategies:``). Every
    strategy is ranked, on the problems where the full strategy set ran (every
    strategy on every panel of the problem), provided there are at least
    ``min_problems`` of them; a problem lacking any strategy on any panel is
    left out rather than a strategy dropped. With fewer such problems, the
    largest block of the design is ranked: the strategy set and the problems
    that ran it all whose product of counts is largest (``layout.ranked_block``,
    the rule ``layout.config_cd`` reads from a config).
    """
    frame = summary.assign(error=metric_error(summary[value], summary["metric"]), panel=_panel_labels(summary),
                           problem=summary["task"].astype(str) + "/" + summary["model"].astype(str))
    panels = frame.pivot(index=["problem", "panel"], columns="strategy", values="error")
    complete = panels.notna().groupby(level="problem").all()
    means = panels.groupby(level="problem").mean()
    problems, strategies = ranked_block({p: complete.columns[row].tolist() for p, row in
                                         zip(complete.index, complete.to_numpy(), strict=True)}, min_problems)
    order = [s for s in dict.fromkeys(frame["strategy"]) if s in strategies]
    return means.loc[problems, order].rename_axis(index=None, columns=None)


def rank_matrix(errors: pd.DataFrame) -> pd.DataFrame:
    """Rank of each strategy on each problem of an :func:`error_matrix`: 1 = lowest error, ties share the mean rank."""
    return errors.apply(lambda row: pd.Series(scipy_stats.rankdata(row.to_numpy()), index=row.index), axis=1)


def friedman_test(errors: pd.DataFrame) -> pd.Series:
    """Friedman test over the problems (rows) of an :func:`error_matrix` (``scipy.stats.friedmanchisquare``).

    N is the number of rows: independent problems. Returns ``statistic``,
    ``pvalue``, ``problems``, ``strategies``; NaN statistic and p-value with
    fewer than 3 strategies or 2 problems, or when every problem ties all strategies.
    """
    problems, strategies = errors.shape
    statistic = pvalue = float("nan")
    if strategies >= 3 and problems >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = scipy_stats.friedmanchisquare(*(errors[c].to_numpy() for c in errors.columns))
        statistic, pvalue = float(result.statistic), float(result.pvalue)
    return pd.Series({"statistic": statistic, "pvalue": pvalue, "problems": problems, "strategies": strategies})


class CriticalDifference(NamedTuple):
    """What ``scikit_posthocs.critical_difference_diagram(ranks, pvalues, cd=cd)`` needs."""

    ranks: pd.Series
    """Mean rank of each strategy over the problems (1 = best)."""
    pvalues: pd.DataFrame
    """Nemenyi post-hoc p-values, strategies x strategies (``posthoc_nemenyi_friedman``)."""
    cd: float
    """Nemenyi critical difference of mean ranks at ``alpha`` (Demšar 2006)."""


def critical_difference_width(strategies: int, problems: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical difference of mean ranks at ``alpha`` (Demšar 2006) for ``strategies`` ranked on
    ``problems``: CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile / sqrt(2)."""
    q = scipy_stats.studentized_range.ppf(1 - alpha, strategies, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(strategies * (strategies + 1) / (6 * problems)))


def critical_difference(errors: pd.DataFrame, alpha: float = 0.05) -> CriticalDifference:
    """Mean ranks, Nemenyi p-values and the critical difference over the problems of an :func:`error_matrix`.

    k strategies (columns), N problems (rows, independent); CD by :func:`critical_difference_width`.
    """
    import scikit_posthocs as sp  # it loads matplotlib: only where the p-values (the diagram) are asked for

    problems, strategies = errors.shape
    return CriticalDifference(ranks=rank_matrix(errors).mean(axis=0), pvalues=sp.posthoc_nemenyi_friedman(errors),
                              cd=critical_difference_width(strategies, problems, alpha))


def performance_profile(errors: pd.DataFrame, taus: Sequence[float] | None = None) -> pd.DataFrame:
    """Dolan-Moré performance profiles on costs: per strategy, the share of problems within a factor tau of the best.

    ``errors`` is an :func:`error_matrix` (problems x strategies, a cost:
    1 - accuracy or MSE, never a ratio of accuracies). The ratio on a problem
    is ``error / best error`` of the problem, unit-free, >= 1 and 1 for the
    best (0/0 counts as 1, x/0 as inf). ``taus`` defaults to every distinct
    finite ratio, where the profile steps. Columns: ``strategy``, ``tau``, ``fraction``.
    """
    values = errors.to_numpy(dtype=float)
    best = values.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(values == best, 1.0, values / best)
    grid = np.unique(ratios[np.isfinite(ratios)]) if taus is None else np.asarray(taus, dtype=float)
    fractions = (ratios[None, :, :] <= grid[:, None, None]).mean(axis=1)
    return pd.DataFrame({"strategy": np.tile(errors.columns, len(grid)), "tau": np.repeat(grid, errors.shape[1]),
                         "fraction": fractions.ravel()})


def strategy_cost(runs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Wall time per run-step of each strategy, and relative to ``baseline`` on the same task, model and optimizer.

    A cell's ``wall_time_s`` is shared by its runs, so per cell the cost is
    ``wall_time_s / (steps * runs in the cell)``; diverged runs count (they
    stay in the lockstep batch). Cells of one strategy and problem are
    averaged. Columns: ``task``, ``model``, ``optimizer``, ``strategy``,
    ``cells``, ``runs``, ``time_per_run_step``, ``relative`` (NaN without a baseline).
    """
    cells = groups(runs, ["cell", "task", "model", "optimizer", "strategy"]).agg(
        runs=("run_id", "size"), steps=("steps", "first"), wall=("wall_time_s", "first")).reset_index()
    cells["time_per_run_step"] = cells["wall"] / (cells["steps"] * cells["runs"])
    keys = ["task", "model", "optimizer"]
    cost = groups(cells, [*keys, "strategy"]).agg(
        cells=("cell", "size"), runs=("runs", "sum"), time_per_run_step=("time_per_run_step", "mean")).reset_index()
    reference = cost.loc[cost["strategy"] == baseline, [*keys, "time_per_run_step"]]
    cost = cost.merge(reference.rename(columns={"time_per_run_step": "_base"}), on=keys, how="left")
    cost["relative"] = cost["time_per_run_step"] / cost.pop("_base")
    return cost
