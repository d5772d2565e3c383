"""Survival of runs along their training steps: time to divergence, steps to a target, Kaplan-Meier curves.

A run that never diverges (or never reaches its target) is right-censored at
its step budget. Over a panel's grid the runs of one seed share its initial
weights and data order, so a band over them resamples seeds (a cluster
bootstrap, ``inference.weighted_bootstrap``), not runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.curves import CurveSource, curves_of
from analysis.inference import weighted_bootstrap
from analysis.memo import memoised
from analysis.vocabulary import groups, score_runs


def target_levels(runs: pd.DataFrame, fraction: float = 0.5) -> dict[str, float]:
    """Per task, the validation metric counted as 'reached': ``fraction`` of the way from chance to the best run.

    The best run is the best ``best_val_metric`` of the task's runs that did not fail.
    """
    scored = score_runs(runs)
    targets = {}
    for task, group in scored.groupby("task", sort=False):
        alive = group[~group["failed"]]
        chance = float(group["chance_metric"].iloc[0])
        if alive.empty:
            targets[str(task)] = chance
            continue
        higher = bool(group["higher_is_better"].iloc[0])
        best = alive["best_val_metric"].max() if higher else alive["best_val_metric"].min()
        targets[str(task)] = chance + fraction * (float(best) - chance)
    return targets


def time_to_divergence(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``time`` (the divergence step, or ``steps`` if none) and ``observed`` (diverged) added.

    A run that never diverged is right-censored at its budget ``steps``.
    """
    events = runs.copy()
    events["observed"] = runs["diverged"].astype(bool)
    events["time"] = np.where(events["observed"], runs["diverged_step"], runs["steps"]).astype(float)
    return events


@memoised
def steps_to_target(runs: pd.DataFrame, curves: CurveSource, target: float | Mapping[str, float],
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
    evals = curves_of(curves, runs["run_id"])[["run_id", "step", column]].merge(goal, on="run_id")
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
    return weighted_bootstrap([len(units)], lambda w: _weighted_survival(times, observed, w[0][:, codes], grid),
                              confidence, n_resamples, seed)


@memoised
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
    for key, group in groups(events, by):
        observed = group["observed"].to_numpy(dtype=bool)
        times = group["time"].to_numpy(dtype=float)
        sf = scipy_stats.ecdf(scipy_stats.CensoredData(uncensored=times[observed], right=times[~observed])).sf
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
