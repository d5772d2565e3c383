"""Statistics of a sweep: best-tuned comparison, stability, convergence, tests and ranks.

Every function takes and returns pandas DataFrames shaped like the results
tables (docs/results.md); nothing here plots. Vocabulary:

- a *problem* is a (task, model) pair (:data:`PROBLEM_COLUMNS`);
- a *panel* is what a strategy is compared on within a problem: task, model,
  optimizer and the stress dials (bench.sweep.stress_dials), see
  :func:`panel_columns`;
- a *setting* is one point of a strategy's tuning grid: learning rate and the
  strategy's hyperparameters (:func:`setting_columns`); its runs differ only
  in the seed.

How failures count (one rule, used everywhere): a run *fails* when it
diverged or its best validation metric is not finite (:func:`score_runs`).

- To choose a setting, a failed seed is the worst possible value (-inf for a
  higher-is-better metric, +inf for MSE): a setting with fewer failed seeds
  always wins, and among equals the higher mean validation metric of the
  remaining seeds.
- Where a number is needed (test metrics, means, tests, ranks, learning-rate
  sensitivity), a failed run counts at the task's chance level
  (``chance_metric``: 1 / classes for accuracy, the target variance for MSE).

Which unit each statistic treats as independent:

- seeds of one setting: bootstrap intervals of a setting's mean
  (:func:`seed_summary`), Wilson intervals of its divergence rate
  (:func:`divergence_rates`), the paired tests (:func:`paired_tests`, Holm over
  all of them by default);
- problems: rates over a whole grid (:func:`cluster_rate`, a cluster
  bootstrap over problems), ranks, Friedman, Nemenyi and performance profiles
  (:func:`error_matrix`: per problem, the mean over its panels);
- seeds of a panel: the Kaplan-Meier bands over a panel's grid
  (:func:`kaplan_meier` with ``cluster="seed"``).

Stability is judged per setting (:func:`stability_points`): a learning rate is
stable for a strategy when its best setting at that lr has no diverged seed,
so every strategy is judged on the same number of runs per point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

from bench.columns import RUNS_COLUMNS
from bench.sweep import DEFAULT_DTYPE, stress_dials

RUN_COLUMNS = tuple(RUNS_COLUMNS)
"""The fixed columns of runs.parquet (bench.columns)."""

STRESS_DIALS = tuple(stress_dials())
"""Run-level stress dials (bench.sweep.stress_dials): part of the panel, never tuned. Other dials
(an optimizer's ``warmup_steps``) are setting columns, tuned like the learning rate."""

PROBLEM_COLUMNS = ("task", "model")
"""The columns naming a problem: the independent unit of every comparison across problems."""

ADDED_COLUMNS = ("failed", "val_score", "test_score", "time", "observed")
"""Columns the functions here add to a runs table; neither hyperparameters nor dials."""


def panel_columns(frame: pd.DataFrame) -> list[str]:
    """The columns naming a panel: task, model, optimizer, the stress dials present, and the precision
    (``dtype``) where the table has it."""
    # precision: a float64 cell (Q3's pairs, trained where the identity is exact) forms panels of its own, so
    # no statistic pairs or pools its runs with float32 ones; tables without the column are all float32
    return ["task", "model", "optimizer", *dial_columns(frame), *(["dtype"] if "dtype" in frame.columns else [])]


def dial_columns(frame: pd.DataFrame) -> list[str]:
    """The stress-dial columns present in ``frame``, in :data:`STRESS_DIALS` order."""
    return [d for d in STRESS_DIALS if d in frame.columns]


def hyperparameter_columns(frame: pd.DataFrame) -> list[str]:
    """Strategy-hyperparameter columns of a runs table: every column beyond the fixed ones and the dials."""
    fixed = {*RUN_COLUMNS, *STRESS_DIALS, *ADDED_COLUMNS}
    return [c for c in frame.columns if c not in fixed]


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The columns naming a setting within a problem and strategy: lr and the hyperparameters."""
    return ["lr", *hyperparameter_columns(frame)]


def _groups(frame: pd.DataFrame, keys: Sequence[str]):
    return frame.groupby(list(keys), dropna=False, sort=False)


def _sign(higher_is_better: pd.Series | np.ndarray) -> np.ndarray:
    return np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)


def _failed(runs: pd.DataFrame) -> np.ndarray:
    return runs["diverged"].to_numpy(dtype=bool) | ~np.isfinite(runs["best_val_metric"].to_numpy(dtype=float))


def _at_chance(runs: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` with failed runs and non-finite values replaced by the chance level."""
    values = runs[column].to_numpy(dtype=float)
    bad = _failed(runs) | ~np.isfinite(values)
    return np.where(bad, runs["chance_metric"].to_numpy(dtype=float), values)


def score_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with ``failed``, ``val_score`` and ``test_score`` added.

    ``failed``: diverged, or best validation metric not finite. ``val_score``:
    best validation metric oriented so that higher is better (negated for MSE),
    -inf where failed. ``test_score``: ``test_metric_at_best_val`` in the
    metric's own units, the chance level where failed.
    """
    scored = runs.copy()
    failed = _failed(runs)
    oriented = runs["best_val_metric"].to_numpy(dtype=float) * _sign(runs["higher_is_better"])
    scored["failed"] = failed
    scored["val_score"] = np.where(failed, -np.inf, oriented)
    scored["test_score"] = _at_chance(runs, "test_metric_at_best_val")
    return scored


def ranked_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Every setting of every strategy on every panel, one row each, in the order the best-tuned rule ranks them.

    The rule of :func:`best_tuned`: fewest failed seeds first (a failed seed is
    the worst possible value), then the highest mean oriented validation
    metric of the other seeds, then the smallest lr and hyperparameters.
    Columns: panel, strategy, setting, ``metric``, ``higher_is_better``,
    ``seeds``, ``failed``, ``diverged``, ``val_mean`` (as in :func:`best_tuned`),
    ``val_oriented`` (``val_mean`` negated for MSE) and ``test_mean`` (mean
    ``test_score`` over the seeds, failed runs at chance). Sorted over the
    whole table: the rows of one panel and strategy are in rank order.
    """
    scored = score_runs(runs)
    scored["_alive"] = np.where(scored["failed"], np.nan, scored["best_val_metric"])
    scored["_oriented"] = scored["_alive"] * _sign(scored["higher_is_better"])
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    summary = _groups(scored, keys).agg(
        metric=("metric", "first"), higher_is_better=("higher_is_better", "first"), seeds=("seed", "size"),
        failed=("failed", "sum"), diverged=("diverged", "sum"), val_mean=("_alive", "mean"),
        val_oriented=("_oriented", "mean"), test_mean=("test_score", "mean"),
    ).reset_index()
    settings = setting_columns(runs)
    return summary.sort_values(["failed", "val_oriented", *settings],
                               ascending=[True, False, *[True] * len(settings)], na_position="last",
                               kind="stable", ignore_index=True)


def best_tuned(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """The best-tuned setting of every strategy on every panel (and value of ``within``), one row each.

    Chosen on validation: fewest failed seeds first (a failed seed is the worst
    possible value), then the highest mean oriented validation metric of the
    other seeds, then the smallest lr and hyperparameters (:func:`ranked_settings`).
    ``within`` names setting columns held fixed instead of tuned: ``["lr"]`` gives the best
    setting at each learning rate. Columns: panel, strategy, setting,
    ``metric``, ``higher_is_better``, ``seeds``, ``failed`` (failed seeds),
    ``diverged`` (diverged seeds), ``val_mean`` (mean validation metric of the
    seeds that did not fail, in metric units; NaN if all failed) and
    ``candidates`` (settings the choice was made among).
    """
    summary = ranked_settings(runs).drop(columns=["val_oriented", "test_mean"])
    groups = [*panel_columns(runs), "strategy", *within]
    summary["candidates"] = _groups(summary, groups)["seeds"].transform("size")
    best = _groups(summary, groups).head(1)
    return best.reset_index(drop=True)


def best_tuned_runs(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """Every seed's run of each best-tuned setting (:func:`best_tuned`, ``within``), scored by :func:`score_runs`."""
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    return score_runs(runs).merge(best_tuned(runs, within)[keys], on=keys, how="inner")


def tuning_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuning budget of every strategy on every panel: how many settings its best-tuned choice was made among.

    Columns: panel, ``strategy``, ``lrs`` (learning rates), ``hyperparameters``
    (distinct hyperparameter settings, 1 for a strategy without any),
    ``settings`` (distinct (lr, hyperparameters) settings tried) and ``seeds``
    (runs per setting, at most).
    """
    keys = [*panel_columns(runs), "strategy"]
    hyper = hyperparameter_columns(runs)
    count = {name: _groups(runs.drop_duplicates([*keys, *columns]), keys).size()
             for name, columns in (("lrs", ["lr"]), ("hyperparameters", hyper), ("settings", ["lr", *hyper]))}
    budget = pd.DataFrame(count)
    budget["seeds"] = _groups(runs, [*keys, *setting_columns(runs)]).size().groupby(level=keys, dropna=False).max()
    return budget.reset_index()


def registered_defaults(strategy: str) -> dict[str, float]:
    """The registered default of each numeric hyperparameter of ``strategy`` (``bench.strategies.lookup``).

    A chain is a config entry, not a registered strategy: its hyperparameters
    take their members' defaults, found by name (hyperparameter names are
    unique across the registry).
    """
    from bench import strategies

    defaults = strategies.lookup(strategy).options if strategy in strategies.REGISTRY else strategies.REGISTRY.options()
    return {key: float(value) for key, value in defaults.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def strategy_hyperparameter_columns(runs: pd.DataFrame) -> list[str]:
    """The hyperparameter columns that are strategy hyperparameters (named in ``bench.strategies``' registry).

    The other setting columns (an optimizer's tuned dials such as
    ``warmup_steps``) are tuned like the learning rate for every strategy.
    """
    from bench import strategies

    names = strategies.REGISTRY.options()
    return [c for c in hyperparameter_columns(runs) if c in names]


def default_settings(runs: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """Per strategy: its default hyperparameters and whether the sweep's grid contains them.

    The hyperparameters of a strategy are the strategy-hyperparameter columns
    (:func:`strategy_hyperparameter_columns`) its runs set (not NaN); their
    defaults come from ``defaults`` (strategy -> column -> value) or, by
    default, :func:`registered_defaults`. Columns: ``strategy``, ``default``
    (column -> default value; empty for a strategy without hyperparameters),
    ``in_grid`` (some run has every hyperparameter at its default, within
    floating-point tolerance; a hyperparameter without a registered default is
    never in the grid) and ``tuned`` (the strategy has hyperparameters, so its
    default differs from its tuned choice).
    """
    rows = []
    for strategy, own in _groups(runs, ["strategy"]):
        columns = [c for c in strategy_hyperparameter_columns(runs) if own[c].notna().any()]
        known = registered_defaults(strategy[0]) if defaults is None else dict(defaults.get(strategy[0], {}))
        default = {c: known[c] for c in columns if c in known}
        rows.append({"strategy": strategy[0], "default": default, "tuned": bool(columns),
                     "in_grid": len(default) == len(columns) and bool(_at_default(own, default).any())})
    return pd.DataFrame(rows, columns=["strategy", "default", "in_grid", "tuned"])


def _at_default(runs: pd.DataFrame, default: Mapping[str, float]) -> np.ndarray:
    """Rows of ``runs`` whose every column of ``default`` equals its value (``np.isclose``)."""
    mask = np.ones(len(runs), dtype=bool)
    for column, value in default.items():
        mask &= np.isclose(runs[column].to_numpy(dtype=float), value)
    return mask


def default_runs(runs: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """The runs of each strategy at its default hyperparameters (:func:`default_settings`), every lr and seed.

    The fixed-default comparison: tuned over the learning rate (and any tuned
    optimizer dial) only, e.g. :func:`best_tuned` of these runs. A strategy without hyperparameters keeps
    all its runs; one whose default is not in the grid has none.
    """
    settings = default_settings(runs, defaults).set_index("strategy")
    keep = np.zeros(len(runs), dtype=bool)
    for strategy, row in settings[settings["in_grid"]].iterrows():
        own = (runs["strategy"] == strategy).to_numpy()
        keep[own] = _at_default(runs[own], row["default"])
    return runs[keep]


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half, ``scipy.stats.trim_mean(values, 0.25)``."""
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[..., Any] = np.mean,
                 confidence: float = 0.95, n_resamples: int = 9999, method: str = "percentile",
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of ``statistic`` over the seeds' values (``scipy.stats.bootstrap``).

    Deterministic (resamples drawn from ``seed``). ``statistic`` must take an
    ``axis`` argument (``np.mean``, :func:`iqm`, ``np.median``). Percentile by
    default: BCa is unstable with a handful of seeds. Fewer than two values:
    (NaN, NaN), no interval exists. Constant values: (value, value). The
    values are taken as given (use ``test_score``, where failed runs are at chance).
    """
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                             method=method, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def seed_summary(runs: pd.DataFrame, value: str = "test_score", by: Sequence[str] | None = None,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Per group: ``seeds``, ``failed``, ``mean`` with a bootstrap CI (``low``, ``high``), ``iqm``, ``median``.

    ``runs`` is a scored runs table (:func:`score_runs` or :func:`best_tuned_runs`);
    ``value`` one of its columns, by default ``test_score`` (failed runs at
    chance). ``by`` defaults to problem, strategy and setting, so on
    :func:`best_tuned_runs` it gives one row per strategy and problem. The CI
    is :func:`bootstrap_ci` of the mean (NaN for a single seed).
    """
    keys = list(by) if by is not None else [*panel_columns(runs), "strategy", *setting_columns(runs)]
    rows = []
    for key, group in _groups(runs, keys):
        values = group[value].to_numpy(dtype=float)
        low, high = bootstrap_ci(values, confidence=confidence)
        rows.append({
            **dict(zip(keys, key, strict=True)), "metric": group["metric"].iloc[0],
            "higher_is_better": bool(group["higher_is_better"].iloc[0]), "seeds": len(values),
            "failed": int(group["failed"].sum()), "mean": values.mean(), "low": low, "high": high,
            "iqm": float(iqm(values)), "median": float(np.median(values)),
        })
    return pd.DataFrame(rows)


def divergence_rates(runs: pd.DataFrame, by: Sequence[str] | None = None, confidence: float = 0.95) -> pd.DataFrame:
    """Divergence rate per group with a Wilson score interval (``scipy.stats.binomtest``).

    The Wilson interval holds where a group's runs are independent draws: the
    seeds of one setting, the default ``by`` (panel, strategy and setting).
    For a rate over many settings or problems use :func:`cluster_rate`, which
    resamples the independent units. Counts ``diverged`` runs only. Columns:
    ``by``..., ``runs``, ``diverged``, ``rate``, ``low``, ``high``.
    """
    keys = list(by) if by is not None else [*panel_columns(runs), "strategy", *setting_columns(runs)]
    counts = _groups(runs, keys)["diverged"].agg(runs="size", diverged="sum").reset_index()
    intervals = [stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
                 for k, n in zip(counts["diverged"], counts["runs"], strict=True)]
    counts["rate"] = counts["diverged"] / counts["runs"]
    counts["low"] = [i.low for i in intervals]
    counts["high"] = [i.high for i in intervals]
    return counts


def _ratio_ci(counts: np.ndarray, sizes: np.ndarray, confidence: float, n_resamples: int,
              seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(counts) / sum(sizes)`` resampling the clusters (array entries)."""
    if counts.size < 2:
        return float("nan"), float("nan")
    shares = counts / sizes
    if np.all(shares == shares[0]):
        return float(shares[0]), float(shares[0])
    result = stats.bootstrap((counts, sizes), lambda k, n, axis=-1: k.sum(axis=axis) / n.sum(axis=axis),
                             paired=True, vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def cluster_rate(frame: pd.DataFrame, value: str, by: Sequence[str] = ("strategy",),
                 cluster: Sequence[str] = PROBLEM_COLUMNS, confidence: float = 0.95, n_resamples: int = 9999,
                 seed: int = 0) -> pd.DataFrame:
    """Share of the rows of ``frame`` where the boolean column ``value`` holds, per group, with a cluster bootstrap.

    For rates over a strategy's whole grid (e.g. ``value="diverged"`` on a
    runs table, or ``"stable"`` on :func:`stability_points`): the rows of one
    ``cluster`` (by default a problem, task x model) share its data and
    architecture, so they are not independent draws, and a binomial interval
    over the pooled rows is far too narrow. The share is the pooled one
    (``count / rows``); its interval resamples whole clusters with replacement
    (``scipy.stats.bootstrap``, paired over the clusters' counts and sizes,
    percentile) and recomputes the pooled share. Fewer than two clusters: NaN
    interval; every cluster at the same share: that share. Columns: ``by``...,
    ``clusters``, ``rows``, ``count``, ``rate``, ``low``, ``high``.
    """
    keys, units = list(by), list(cluster)
    counts = _groups(frame.assign(_value=frame[value].astype(float)), [*keys, *units])["_value"].agg(
        ["sum", "size"]).reset_index()
    rows = []
    for key, group in _groups(counts, keys):
        k, n = group["sum"].to_numpy(dtype=float), group["size"].to_numpy(dtype=float)
        low, high = _ratio_ci(k, n, confidence, n_resamples, seed)
        rows.append({**dict(zip(keys, key, strict=True)), "clusters": len(group), "rows": int(n.sum()),
                     "count": int(k.sum()), "rate": k.sum() / n.sum(), "low": low, "high": high})
    return pd.DataFrame(rows)


def stability_points(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """Per panel, strategy and learning rate: the strategy's best setting at that lr, and whether it is stable.

    The stability rule: a learning rate is *stable* for a strategy when its
    best setting at that lr (chosen on validation by the best-tuned rule of
    :func:`best_tuned`, fewest failed seeds first) has no diverged seed. Every
    strategy is so judged on one setting's seeds per point, the same number of
    runs whatever the size of its threshold grid; pooling every run at an lr
    would judge ``none`` on its seeds and a strategy with three thresholds on
    three times as many. ``within``: hyperparameter columns held fixed (a point
    per value) instead of chosen. Columns: those of :func:`best_tuned`, ``rate``
    (diverged seeds / seeds of the chosen setting) and ``stable``.
    """
    points = best_tuned(runs, within=["lr", *within])
    points["rate"] = points["diverged"] / points["seeds"]
    points["stable"] = points["diverged"] == 0
    return points


def stable_lr_range(runs: pd.DataFrame, max_rate: float = 0.0, within: Sequence[str] = ()) -> pd.DataFrame:
    """The widest contiguous span of grid learning rates whose :func:`stability_points` rate is at most ``max_rate``.

    Per panel and strategy (and value of ``within``): a learning rate counts
    when the strategy's best setting at it has a divergence rate over its seeds
    of at most ``max_rate`` (0: no diverged seed, the stability rule). Widest
    means the largest ``hi / lo``; ties go to the lower span. Columns: panel,
    ``strategy``, ``within``..., ``lo``, ``hi``, ``ratio`` (``hi / lo``, 1 for
    one learning rate), ``stable_lrs`` (grid points in the span), ``grid_lrs``;
    NaN bounds and 0 points where no lr is stable.
    """
    keys = [*panel_columns(runs), "strategy", *within]
    rows = []
    for key, group in _groups(stability_points(runs, within).sort_values("lr"), keys):
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


def lr_profile(runs: pd.DataFrame, value: str = "test_metric_at_best_val", confidence: float = 0.95) -> pd.DataFrame:
    """Per panel, strategy and learning rate: the mean ``value`` of the best setting at that lr, CI over its seeds.

    The setting at each lr is chosen on validation by the best-tuned rule
    (:func:`best_tuned` with ``within=["lr"]``), so every point of every
    strategy is one setting's seeds, never its thresholds pooled. ``value``
    (test metric by default) counts failed runs at chance. Columns: those of
    :func:`seed_summary` over panel, strategy and setting, and ``chance_metric``.
    """
    chosen = best_tuned_runs(runs, within=["lr"])
    chosen["_value"] = _at_chance(chosen, value)
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
    for key, group in _groups(profile, keys):
        oriented = group["mean"].to_numpy(dtype=float) * _sign(group["higher_is_better"])
        best = int(np.argmax(oriented))
        gap = float((oriented[best] - oriented).mean())
        gain = abs(group["mean"].iloc[best] - group["chance_metric"].iloc[best])
        rows.append({**dict(zip(keys, key, strict=True)), "metric": group["metric"].iloc[0], "grid_lrs": len(group),
                     "best_lr": group["lr"].iloc[best], "best_mean": group["mean"].iloc[best], "sensitivity": gap,
                     "normalised": gap / gain if gain > 0 else float("nan")})
    return pd.DataFrame(rows)


def time_to_divergence(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``time`` (the divergence step, or ``steps`` if none) and ``observed`` (diverged) added.

    A run that never diverged is right-censored at its budget ``steps``.
    """
    events = runs.copy()
    events["observed"] = runs["diverged"].astype(bool)
    events["time"] = np.where(events["observed"], runs["diverged_step"], runs["steps"]).astype(float)
    return events


def steps_to_target(runs: pd.DataFrame, curves: pd.DataFrame, target: float | Mapping[str, float],
                    column: str = "val_metric") -> pd.DataFrame:
    """``runs`` with ``time`` (first eval step reaching ``target``) and ``observed`` (reached) added.

    ``target`` is one number or one per task name; reached means ``column`` >=
    target for higher-is-better metrics, <= for MSE. A diverged run is a failed
    run and never counts as reached, even where an eval before its divergence
    was at target (its training ended in a blown-up model, and it counts at
    chance everywhere else). A run that does not reach the target, diverged or
    not, is right-censored at its budget ``steps``: it stays in the risk set to
    the end, so it lowers the share that gets there.
    """
    targets = runs["task"].map(target) if isinstance(target, Mapping) else pd.Series(target, index=runs.index)
    if targets.isna().any():
        raise ValueError(f"no target for task(s) {sorted(set(runs['task'][targets.isna()]))}")
    goal = pd.DataFrame({"run_id": runs["run_id"], "_target": targets.astype(float),
                         "_higher": runs["higher_is_better"].astype(bool)})
    evals = curves[["run_id", "step", column]].merge(goal, on="run_id")
    reached = np.where(evals["_higher"], evals[column] >= evals["_target"], evals[column] <= evals["_target"])
    first = evals[reached].groupby("run_id")["step"].min()
    events = runs.copy()
    hit = events["run_id"].map(first).where(~events["diverged"].astype(bool))
    events["observed"] = hit.notna().to_numpy()
    events["time"] = hit.fillna(events["steps"]).astype(float)
    return events


def _weighted_survival(times: np.ndarray, observed: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival at ``grid`` of runs counted ``weights`` times each: (resamples, runs) -> (resamples, grid).

    The product over event times t <= grid of 1 - d(t) / n(t), with d and n the
    weighted events and runs at risk; ``scipy.stats.ecdf`` has no weights, and
    with unit weights this is its survival function (tests check it).
    """
    event_times = np.unique(times[observed])
    at_risk = weights @ (times[:, None] >= event_times[None, :])
    events = weights @ ((times[:, None] == event_times[None, :]) & observed[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
    survival = np.concatenate([np.ones((len(weights), 1)), np.cumprod(factor, axis=1)], axis=1)
    return survival[:, np.searchsorted(event_times, grid, side="right")]


def _cluster_band(group: pd.DataFrame, cluster: str, grid: np.ndarray, confidence: float, n_resamples: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile cluster-bootstrap band of the Kaplan-Meier curve of ``group`` at ``grid``, resampling ``cluster``."""
    codes, units = pd.factorize(group[cluster])
    if len(units) < 2:
        return np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
    times = group["time"].to_numpy(dtype=float)
    observed = group["observed"].to_numpy(dtype=bool)

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        sample = np.atleast_2d(sample)
        multiplicity = (sample[..., None] == np.arange(len(units))).sum(axis=-2)
        return _weighted_survival(times, observed, multiplicity[:, codes].astype(float), grid).T

    result = stats.bootstrap((np.arange(len(units)),), statistic, vectorized=True, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return result.confidence_interval.low, result.confidence_interval.high


def kaplan_meier(events: pd.DataFrame, by: Sequence[str] = ("strategy",), confidence: float = 0.95,
                 cluster: str | None = None, n_resamples: int = 999, seed: int = 0) -> pd.DataFrame:
    """Kaplan-Meier survival curves of ``time`` / ``observed`` per group (``scipy.stats.ecdf`` on CensoredData).

    ``events`` comes from :func:`time_to_divergence` or :func:`steps_to_target`
    (survival = not yet diverged / not yet at target). One row per group and
    distinct time (event or censoring), right-continuous; survival is 1 before
    the first time. ``lower``/``upper``: a pointwise interval. Without
    ``cluster``, Greenwood's (linear), which holds for independent runs only,
    NaN where undefined (survival 0). With ``cluster`` (a column, e.g.
    ``"seed"``): a percentile cluster bootstrap that resamples whole clusters
    with replacement and recomputes the curve, for runs that are dependent
    within a cluster (over a panel's grid, the runs of one seed share its
    initial weights and data order); NaN with fewer than two clusters.
    Columns: ``by``..., ``time``, ``survival``, ``lower``, ``upper``.
    """
    parts = []
    for key, group in _groups(events, by):
        observed = group["observed"].to_numpy(dtype=bool)
        times = group["time"].to_numpy(dtype=float)
        sf = stats.ecdf(stats.CensoredData(uncensored=times[observed], right=times[~observed])).sf
        grid = sf.quantiles
        if cluster is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                interval = sf.confidence_interval(confidence)
            lower, upper = interval.low.evaluate(grid), interval.high.evaluate(grid)
        else:
            lower, upper = _cluster_band(group, cluster, grid, confidence, n_resamples, seed)
        part = pd.DataFrame({"time": grid, "survival": sf.probabilities, "lower": lower, "upper": upper})
        for position, (name, value) in enumerate(zip(by, key, strict=True)):
            part.insert(position, name, value)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _spike_frame(curves: pd.DataFrame, window: int, warmup: int) -> pd.DataFrame:
    """Training-step rows sorted by run and step, with ``running_median`` and ``spike_ratio`` added.

    The eval-only row at step ``steps`` (no ``train_loss``, no ``update_ratio``) is left out.
    """
    training = curves[["train_loss", "update_ratio"]].notna().any(axis=1)
    frame = curves[training].sort_values(["run_id", "step"], ignore_index=True)
    norms = frame["grad_norm_pre"].astype(float)
    previous = norms.where(np.isfinite(norms)).groupby(frame["run_id"], sort=False).shift(1)
    median = previous.groupby(frame["run_id"], sort=False).rolling(window, min_periods=warmup).median()
    frame["running_median"] = median.reset_index(level=0, drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["spike_ratio"] = np.where(np.isfinite(norms), norms / frame["running_median"], np.inf)
    return frame


def _peaks(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run of a :func:`_spike_frame`: the largest ``spike_ratio`` and its (first) step."""
    ordered = frame.sort_values(["run_id", "spike_ratio", "step"], ascending=[True, False, True], na_position="last")
    peaks = ordered.groupby("run_id", sort=False).head(1).set_index("run_id")
    return pd.DataFrame({"max_ratio": peaks["spike_ratio"],
                         "peak_step": peaks["step"].where(peaks["spike_ratio"].notna(), -1)})


def spikes_and_clips(curves: pd.DataFrame, factor: float = 6.0, window: int = 100, warmup: int = 10) -> pd.DataFrame:
    """Per run: gradient-norm spikes and the clip rate, from the curves table.

    Over training steps only (not the eval-only row at step ``steps``). A
    spike is a step whose ``grad_norm_pre`` exceeds ``factor`` times the
    median of the run's previous ``window`` finite norms (once at least
    ``warmup`` exist), or is not finite (a step a run diverges at, if its norm
    blew up). The spikes stay in the history (the median is robust to them),
    unlike the ``spike_skip`` strategy, which shares the defaults. Columns:
    ``run_id``, ``steps`` (training steps recorded: up to divergence),
    ``spikes``, ``max_ratio`` (largest norm / running median, inf for a
    non-finite norm, NaN before warmup), ``peak_step`` (its step, -1 if none),
    ``clip_rate`` (mean of ``clipped``).
    """
    frame = _spike_frame(curves, window, warmup)
    frame["spike"] = frame["spike_ratio"] > factor
    counts = frame.groupby("run_id", sort=False).agg(
        steps=("step", "size"), spikes=("spike", "sum"), clip_rate=("clipped", "mean"))
    result = counts.join(_peaks(frame)).reset_index()
    return result[["run_id", "steps", "spikes", "max_ratio", "peak_step", "clip_rate"]]


def _select(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """Rows of ``frame`` matching every key of ``where`` (NaN matches NaN)."""
    mask = np.ones(len(frame), dtype=bool)
    for key, value in where.items():
        column = frame[key]
        mask &= column.isna().to_numpy() if pd.isna(value) else (column == value).to_numpy()
    return frame[mask]


def explosion_traces(runs: pd.DataFrame, curves: pd.DataFrame, where: Mapping[str, Any] | None = None, n: int = 3,
                     before: int = 50, after: int = 10, window: int = 100, warmup: int = 10) -> pd.DataFrame:
    """Curve rows around the largest gradient-norm spike of the ``n`` most spiking runs, for plotting.

    ``where`` picks the runs (e.g. ``{"task": "adding", "model": "lstm",
    "strategy": "none"}``); runs are ranked by their largest norm / running
    median (as in :func:`spikes_and_clips`, a non-finite norm ranking first).
    Diverged runs take part like the others; their curves end at divergence.
    Returns their curve rows from ``before`` steps before the peak to ``after``
    after, with ``running_median``, ``spike_ratio``, ``peak_step``, ``offset``
    (step - peak step) and the run's ``strategy``, setting, ``seed`` and ``diverged``.
    """
    chosen = _select(runs, where or {})
    frame = _spike_frame(curves[curves["run_id"].isin(chosen["run_id"])], window, warmup)
    peaks = _peaks(frame).dropna(subset=["max_ratio"]).reset_index()
    top = peaks.sort_values(["max_ratio", "run_id"], ascending=[False, True]).head(n)
    rows = frame.merge(top[["run_id", "peak_step"]], on="run_id")
    rows["offset"] = rows["step"] - rows["peak_step"]
    rows = rows[rows["offset"].between(-before, after)]
    identity = chosen[["run_id", "strategy", *setting_columns(runs), "seed", "diverged"]]
    return rows.merge(identity, on="run_id").reset_index(drop=True)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = (len(order) - np.arange(len(order))) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def _paired_effect(differences: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation, zero differences' ranks split between the signs (as ``zsplit``)."""
    ranks = stats.rankdata(np.abs(differences))
    return float((ranks[differences > 0].sum() - ranks[differences < 0].sum()) / ranks.sum())


def _compare(x: pd.Series, y: pd.Series) -> dict[str, Any]:
    """Wilcoxon signed-rank on seed-paired values if the seeds match, else Mann-Whitney U; x, y indexed by seed."""
    if x.index.is_unique and y.index.is_unique and set(x.index) == set(y.index):
        differences = (x - y.loc[x.index]).to_numpy(dtype=float)
        if np.all(differences == 0):
            statistic, pvalue = 0.0, 1.0
        else:
            result = stats.wilcoxon(differences, zero_method="zsplit")
            statistic, pvalue = float(result.statistic), float(result.pvalue)
        return {"test": "wilcoxon", "statistic": statistic, "pvalue": pvalue,
                "difference": float(np.median(differences)), "effect": _paired_effect(differences)}
    result = stats.mannwhitneyu(x.to_numpy(dtype=float), y.to_numpy(dtype=float))
    return {"test": "mannwhitneyu", "statistic": float(result.statistic), "pvalue": float(result.pvalue),
            "difference": float(x.median() - y.median()), "effect": 2 * result.statistic / (len(x) * len(y)) - 1}


def paired_tests(best_runs: pd.DataFrame, baseline: str = "none", value: str = "test_score",
                 family: Sequence[str] = ()) -> pd.DataFrame:
    """Each strategy against ``baseline`` on each panel, over seeds, with Holm correction and an effect size.

    ``best_runs`` is :func:`best_tuned_runs`; ``value`` defaults to
    ``test_score`` (failed runs at chance, so a strategy whose seeds all
    diverged is compared at chance). Values are oriented (negated for MSE), so
    ``difference`` > 0 and ``effect`` > 0 mean the strategy is better. When
    both have the same seeds, once each: Wilcoxon signed-rank on the
    seed-paired differences, zero differences split between the signs
    (``difference``: their median; ``effect``: matched-pairs rank-biserial
    correlation; all differences zero gives p = 1); otherwise Mann-Whitney U
    (``difference`` of medians; ``effect``: Cliff's delta = 2U / (n m) - 1).

    ``pvalue_holm``: Holm's adjustment over the family a sentence reports. By
    default one family, every (panel, strategy) test of the table, as
    numbers.tex reports "k of N significant after Holm"; ``family`` names
    columns whose groups are separate families instead (e.g. per panel).
    """
    panel = panel_columns(best_runs)
    frame = best_runs.assign(_value=best_runs[value].to_numpy(dtype=float) * _sign(best_runs["higher_is_better"]))
    rows = []
    for key, group in _groups(frame, panel):
        base = group[group["strategy"] == baseline].set_index("seed")["_value"]
        if base.empty:
            continue
        for strategy, other in _groups(group[group["strategy"] != baseline], ["strategy"]):
            values = other.set_index("seed")["_value"]
            rows.append({**dict(zip(panel, key, strict=True)), "strategy": strategy[0], "baseline": baseline,
                         "seeds": len(values), "baseline_seeds": len(base), **_compare(values, base)})
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    if family:
        tests["pvalue_holm"] = tests.groupby(list(family), dropna=False)["pvalue"].transform(
            lambda p: holm(p.to_numpy()))
    else:
        tests["pvalue_holm"] = holm(tests["pvalue"].to_numpy())
    return tests


def _panel_labels(frame: pd.DataFrame) -> pd.Series:
    """A readable label per row: ``task/model/optimizer`` plus ``dial=value`` for the dials that apply."""
    labels = frame["task"].astype(str) + "/" + frame["model"].astype(str) + "/" + frame["optimizer"].astype(str)
    for dial in dial_columns(frame):
        labels = labels + np.where(frame[dial].isna(), "", "/" + dial + "=" + frame[dial].map("{:g}".format))
    if "dtype" in frame.columns:  # precision: the float32 panels keep their labels
        labels = labels + np.where(frame["dtype"] == DEFAULT_DTYPE, "", "/" + frame["dtype"].astype(str))
    return labels


METRIC_ERRORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": lambda values: 1.0 - values,
    "mse": lambda values: values,
}
"""How a metric becomes an error, a cost (lower is better, 0 is perfect): 1 - accuracy; MSE is one already."""


def metric_error(values: Sequence[float] | np.ndarray, metrics: Sequence[str] | np.ndarray) -> np.ndarray:
    """The error (:data:`METRIC_ERRORS`) of each value given its metric's name; an unknown metric is a ValueError."""
    values, metrics = np.asarray(values, dtype=float), np.asarray(metrics, dtype=object)
    unknown = sorted(set(metrics) - set(METRIC_ERRORS))
    if unknown:
        raise ValueError(f"no error defined for metric(s) {', '.join(map(str, unknown))}; known: "
                         f"{', '.join(METRIC_ERRORS)}")
    errors = np.empty_like(values)
    for metric, to_error in METRIC_ERRORS.items():
        errors[metrics == metric] = to_error(values[metrics == metric])
    return errors


MIN_RANKED_PROBLEMS = 2
"""Fewest problems a ranking is made over (Friedman needs two); :func:`error_matrix` falls back below it."""


def error_matrix(summary: pd.DataFrame, value: str = "mean", min_problems: int = MIN_RANKED_PROBLEMS) -> pd.DataFrame:
    """Problems (rows, ``task/model``) x strategies: the mean over the problem's panels of each panel's error.

    ``summary`` is :func:`seed_summary` of :func:`best_tuned_runs` by panel and
    strategy (failed runs at chance); ``value`` its column (the mean over
    seeds), turned into an error by :func:`metric_error` (1 - accuracy, MSE).

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
    left out rather than a strategy dropped. With fewer such problems, every
    problem is kept and the strategies missing on any panel of some problem
    are dropped instead.
    """
    frame = summary.assign(error=metric_error(summary[value], summary["metric"]), panel=_panel_labels(summary),
                           problem=summary["task"].astype(str) + "/" + summary["model"].astype(str))
    panels = frame.pivot(index=["problem", "panel"], columns="strategy", values="error")
    complete = panels.notna().groupby(level="problem").all()
    means = panels.groupby(level="problem").mean()
    full = complete.all(axis=1)
    if int(full.sum()) >= min_problems:
        matrix = means[full]
    else:
        matrix = means.where(complete).dropna(axis=1)
    order = [s for s in dict.fromkeys(frame["strategy"]) if s in matrix.columns]
    return matrix[order].rename_axis(index=None, columns=None)


def rank_matrix(errors: pd.DataFrame) -> pd.DataFrame:
    """Rank of each strategy on each problem of an :func:`error_matrix`: 1 = lowest error, ties share the mean rank."""
    return errors.apply(lambda row: pd.Series(stats.rankdata(row.to_numpy()), index=row.index), axis=1)


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
            result = stats.friedmanchisquare(*(errors[c].to_numpy() for c in errors.columns))
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


def critical_difference(errors: pd.DataFrame, alpha: float = 0.05) -> CriticalDifference:
    """Mean ranks, Nemenyi p-values and the critical difference over the problems of an :func:`error_matrix`.

    CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range
    quantile / sqrt(2), k strategies, N problems (rows, independent).
    """
    problems, strategies = errors.shape
    q = stats.studentized_range.ppf(1 - alpha, strategies, np.inf) / np.sqrt(2)
    return CriticalDifference(
        ranks=rank_matrix(errors).mean(axis=0), pvalues=sp.posthoc_nemenyi_friedman(errors),
        cd=float(q * np.sqrt(strategies * (strategies + 1) / (6 * problems))),
    )


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
    cells = _groups(runs, ["cell", "task", "model", "optimizer", "strategy"]).agg(
        runs=("run_id", "size"), steps=("steps", "first"), wall=("wall_time_s", "first")).reset_index()
    cells["time_per_run_step"] = cells["wall"] / (cells["steps"] * cells["runs"])
    keys = ["task", "model", "optimizer"]
    cost = _groups(cells, [*keys, "strategy"]).agg(
        cells=("cell", "size"), runs=("runs", "sum"), time_per_run_step=("time_per_run_step", "mean")).reset_index()
    reference = cost.loc[cost["strategy"] == baseline, [*keys, "time_per_run_step"]]
    cost = cost.merge(reference.rename(columns={"time_per_run_step": "_base"}), on=keys, how="left")
    cost["relative"] = cost["time_per_run_step"] / cost.pop("_base")
    return cost
