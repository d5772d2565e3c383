"""Statistics of a sweep: best-tuned comparison, stability, convergence, tests and ranks.

Every function takes and returns pandas DataFrames shaped like the results
tables (README, "Results schema"); nothing here plots. Vocabulary:

- a *problem* is a (task, model) pair;
- a *panel* is what a strategy is compared on within a problem: task, model,
  optimizer and the stress dials (bench.sweep.run_dials), see
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
from bench.sweep import run_dials

RUN_COLUMNS = tuple(RUNS_COLUMNS)
"""The fixed columns of runs.parquet (bench.columns)."""

STRESS_DIALS = tuple(run_dials())
"""Run-level stress dials (bench.sweep.run_dials): part of the panel, never tuned."""

ADDED_COLUMNS = ("failed", "val_score", "test_score", "time", "observed")
"""Columns the functions here add to a runs table; neither hyperparameters nor dials."""


def panel_columns(frame: pd.DataFrame) -> list[str]:
    """The columns naming a panel: task, model, optimizer and the stress dials present."""
    return ["task", "model", "optimizer", *(d for d in STRESS_DIALS if d in frame.columns)]


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


def best_tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """The best-tuned setting of every strategy on every problem, one row each.

    Chosen on validation: fewest failed seeds first (a failed seed is the worst
    possible value), then the highest mean oriented validation metric of the
    other seeds, then the smallest lr and hyperparameters. Columns: problem,
    strategy, setting, ``metric``, ``higher_is_better``, ``seeds``, ``failed``
    (failed seeds) and ``val_mean`` (mean validation metric of the seeds that
    did not fail, in metric units; NaN if all failed).
    """
    scored = score_runs(runs)
    scored["_alive"] = np.where(scored["failed"], np.nan, scored["best_val_metric"])
    scored["_oriented"] = scored["_alive"] * _sign(scored["higher_is_better"])
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    summary = _groups(scored, keys).agg(
        metric=("metric", "first"), higher_is_better=("higher_is_better", "first"), seeds=("seed", "size"),
        failed=("failed", "sum"), val_mean=("_alive", "mean"), _oriented=("_oriented", "mean"),
    ).reset_index()
    settings = setting_columns(runs)
    summary = summary.sort_values(["failed", "_oriented", *settings], ascending=[True, False, *[True] * len(settings)],
                                  na_position="last", kind="stable")
    best = _groups(summary, [*panel_columns(runs), "strategy"]).head(1)
    return best.drop(columns="_oriented").reset_index(drop=True)


def best_tuned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Every seed's run of each strategy's best-tuned setting (:func:`best_tuned`), scored by :func:`score_runs`."""
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    return score_runs(runs).merge(best_tuned(runs)[keys], on=keys, how="inner")


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

    Counts ``diverged`` runs only. ``by`` defaults to problem, strategy and
    setting (learning rate and hyperparameters). Columns: ``by``..., ``runs``,
    ``diverged``, ``rate``, ``low``, ``high``.
    """
    keys = list(by) if by is not None else [*panel_columns(runs), "strategy", *setting_columns(runs)]
    counts = _groups(runs, keys)["diverged"].agg(runs="size", diverged="sum").reset_index()
    intervals = [stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
                 for k, n in zip(counts["diverged"], counts["runs"], strict=True)]
    counts["rate"] = counts["diverged"] / counts["runs"]
    counts["low"] = [i.low for i in intervals]
    counts["high"] = [i.high for i in intervals]
    return counts


def _lr_groups(runs: pd.DataFrame, by: Sequence[str] | None) -> list[str]:
    return list(by) if by is not None else [*panel_columns(runs), "strategy", *hyperparameter_columns(runs)]


def stable_lr_range(runs: pd.DataFrame, max_rate: float = 0.0, by: Sequence[str] | None = None) -> pd.DataFrame:
    """The widest contiguous span of grid learning rates whose divergence rate is at most ``max_rate``.

    Per group of ``by`` (default: problem, strategy and hyperparameters, so
    each hyperparameter setting has its own range; runs that share ``by`` and
    lr are pooled). Widest means the largest ``hi / lo``; ties go to the lower
    span. Counts ``diverged`` runs. Columns: ``by``..., ``lo``, ``hi``,
    ``ratio`` (``hi / lo``, 1 for one learning rate), ``stable_lrs`` (grid points
    in the span), ``grid_lrs``; NaN bounds and 0 points where no lr is stable.
    """
    keys = _lr_groups(runs, by)
    rates = divergence_rates(runs, by=[*keys, "lr"])
    rows = []
    for key, group in _groups(rates, keys):
        group = group.sort_values("lr")
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


def lr_sensitivity(runs: pd.DataFrame, value: str = "best_val_metric", by: Sequence[str] | None = None) -> pd.DataFrame:
    """Learning-rate sensitivity: mean over the lr grid of the gap to the best lr's mean metric.

    Per group of ``by`` (default: problem, strategy and hyperparameters): the
    mean of ``value`` (validation by default) over the runs at each lr, failed
    runs at chance; the gap is ``best - mean`` for higher-is-better metrics and
    ``mean - best`` for MSE, so it is >= 0 in metric units, 0 for a strategy
    indifferent to the lr. Columns: ``by``..., ``grid_lrs``, ``best_lr``,
    ``best_mean``, ``sensitivity``.
    """
    keys = _lr_groups(runs, by)
    sign = _sign(runs["higher_is_better"])
    frame = runs[[*keys, "lr"]].assign(_oriented=_at_chance(runs, value) * sign, _sign=sign)
    means = _groups(frame, [*keys, "lr"])[["_oriented", "_sign"]].mean().reset_index()
    rows = []
    for key, group in _groups(means.sort_values("lr", kind="stable"), keys):
        best = group.loc[group["_oriented"].idxmax()]
        rows.append({**dict(zip(keys, key, strict=True)), "grid_lrs": len(group), "best_lr": best["lr"],
                     "best_mean": best["_oriented"] * best["_sign"],
                     "sensitivity": float((best["_oriented"] - group["_oriented"]).mean())})
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
    target for higher-is-better metrics, <= for MSE. A run that never reaches
    it, diverged or not, is right-censored at its budget ``steps``: a diverged
    run is frozen and will not reach the target within the budget.
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
    hit = events["run_id"].map(first)
    events["observed"] = hit.notna().to_numpy()
    events["time"] = hit.fillna(events["steps"]).astype(float)
    return events


def kaplan_meier(events: pd.DataFrame, by: Sequence[str] = ("strategy",), confidence: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier survival curves of ``time`` / ``observed`` per group (``scipy.stats.ecdf`` on CensoredData).

    ``events`` comes from :func:`time_to_divergence` or :func:`steps_to_target`
    (survival = not yet diverged / not yet at target). One row per group and
    distinct time (event or censoring), right-continuous; survival is 1 before
    the first time. ``lower``/``upper``: Greenwood (linear) pointwise interval,
    NaN where it is undefined (survival 0). Columns: ``by``..., ``time``,
    ``survival``, ``lower``, ``upper``.
    """
    parts = []
    for key, group in _groups(events, by):
        observed = group["observed"].to_numpy(dtype=bool)
        times = group["time"].to_numpy(dtype=float)
        sf = stats.ecdf(stats.CensoredData(uncensored=times[observed], right=times[~observed])).sf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            interval = sf.confidence_interval(confidence)
        grid = sf.quantiles
        part = pd.DataFrame({"time": grid, "survival": sf.probabilities,
                             "lower": interval.low.evaluate(grid), "upper": interval.high.evaluate(grid)})
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
                 family: Sequence[str] | None = None) -> pd.DataFrame:
    """Each strategy against ``baseline`` on each problem, over seeds, with Holm correction and an effect size.

    ``best_runs`` is :func:`best_tuned_runs`; ``value`` defaults to
    ``test_score`` (failed runs at chance, so a strategy whose seeds all
    diverged is compared at chance). Values are oriented (negated for MSE), so
    ``difference`` > 0 and ``effect`` > 0 mean the strategy is better. When
    both have the same seeds, once each: Wilcoxon signed-rank on the
    seed-paired differences, zero differences split between the signs
    (``difference``: their median; ``effect``: matched-pairs rank-biserial
    correlation; all differences zero gives p = 1); otherwise Mann-Whitney U (``difference`` of medians; ``effect``:
    Cliff's delta = 2U / (n m) - 1). ``pvalue_holm`` adjusts within each
    ``family`` group (default: per problem; ``[]``: all tests at once).
    """
    problem = panel_columns(best_runs)
    frame = best_runs.assign(_value=best_runs[value].to_numpy(dtype=float) * _sign(best_runs["higher_is_better"]))
    rows = []
    for key, group in _groups(frame, problem):
        base = group[group["strategy"] == baseline].set_index("seed")["_value"]
        if base.empty:
            continue
        for strategy, other in _groups(group[group["strategy"] != baseline], ["strategy"]):
            values = other.set_index("seed")["_value"]
            rows.append({**dict(zip(problem, key, strict=True)), "strategy": strategy[0], "baseline": baseline,
                         "seeds": len(values), "baseline_seeds": len(base), **_compare(values, base)})
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    families = problem if family is None else list(family)
    if families:
        tests["pvalue_holm"] = tests.groupby(families, dropna=False)["pvalue"].transform(lambda p: holm(p.to_numpy()))
    else:
        tests["pvalue_holm"] = holm(tests["pvalue"].to_numpy())
    return tests


def _problem_labels(frame: pd.DataFrame) -> pd.Series:
    """A readable label per row: ``task/model/optimizer`` plus ``dial=value`` for the dials that apply."""
    labels = frame["task"].astype(str) + "/" + frame["model"].astype(str) + "/" + frame["optimizer"].astype(str)
    for dial in panel_columns(frame)[3:]:
        labels = labels + np.where(frame[dial].isna(), "", "/" + dial + "=" + frame[dial].map("{:g}".format))
    return labels


def _pivot(summary: pd.DataFrame, value: str) -> tuple[pd.DataFrame, pd.Series]:
    """Problems x strategies of ``value`` (strategies missing on any problem dropped) and each problem's direction."""
    frame = summary.assign(problem=_problem_labels(summary).to_numpy())
    matrix = frame.pivot(index="problem", columns="strategy", values=value).dropna(axis=1)
    order = [s for s in dict.fromkeys(frame["strategy"]) if s in matrix.columns]
    higher = frame.groupby("problem")["higher_is_better"].first().astype(bool)
    return matrix[order].rename_axis(columns=None), higher.reindex(matrix.index)


def score_matrix(summary: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Problems (rows, labelled ``task/model/optimizer[/dial=v]``) x strategies of ``value``, higher = better.

    ``summary`` is :func:`seed_summary` of :func:`best_tuned_runs` (failed runs
    at chance). MSE values are negated. Strategies absent from some problem are dropped.
    """
    matrix, higher = _pivot(summary, value)
    return matrix.mul(_sign(higher), axis=0)


def rank_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """Rank of each strategy on each problem of a :func:`score_matrix`: 1 = best, ties share the average rank."""
    return scores.apply(lambda row: pd.Series(stats.rankdata(-row.to_numpy()), index=row.index), axis=1)


def friedman_test(scores: pd.DataFrame) -> pd.Series:
    """Friedman test over the problems of a :func:`score_matrix` (``scipy.stats.friedmanchisquare``).

    Returns ``statistic``, ``pvalue``, ``problems``, ``strategies``; NaN
    statistic and p-value with fewer than 3 strategies or 2 problems, or when
    every problem ties all strategies.
    """
    problems, strategies = scores.shape
    statistic = pvalue = float("nan")
    if strategies >= 3 and problems >= 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = stats.friedmanchisquare(*(scores[c].to_numpy() for c in scores.columns))
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


def critical_difference(scores: pd.DataFrame, alpha: float = 0.05) -> CriticalDifference:
    """Mean ranks, Nemenyi p-values and the critical difference over the problems of a :func:`score_matrix`.

    CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range
    quantile / sqrt(2), k strategies, N problems.
    """
    problems, strategies = scores.shape
    q = stats.studentized_range.ppf(1 - alpha, strategies, np.inf) / np.sqrt(2)
    return CriticalDifference(
        ranks=rank_matrix(scores).mean(axis=0), pvalues=sp.posthoc_nemenyi_friedman(scores),
        cd=float(q * np.sqrt(strategies * (strategies + 1) / (6 * problems))),
    )


def performance_profile(summary: pd.DataFrame, value: str = "mean",
                        taus: Sequence[float] | None = None) -> pd.DataFrame:
    """Performance profiles: per strategy, the fraction of problems on which it is within a factor tau of the best.

    ``summary`` as for :func:`score_matrix` (failed runs at chance). The ratio
    on a problem is ``best / value`` for higher-is-better metrics and
    ``value / best`` for MSE, so it is >= 1 and 1 for the best (values must be
    >= 0; 0/0 counts as 1, x/0 as inf). ``taus`` defaults to every distinct
    finite ratio, where the profile steps. Columns: ``strategy``, ``tau``, ``fraction``.
    """
    matrix, higher = _pivot(summary, value)
    values = matrix.to_numpy(dtype=float)
    up = higher.to_numpy()[:, None]
    best = np.where(higher, matrix.max(axis=1), matrix.min(axis=1))[:, None]
    numerator, denominator = np.where(up, best, values), np.where(up, values, best)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(numerator == denominator, 1.0, numerator / denominator)
    grid = np.unique(ratios[np.isfinite(ratios)]) if taus is None else np.asarray(taus, dtype=float)
    fractions = (ratios[None, :, :] <= grid[:, None, None]).mean(axis=1)
    return pd.DataFrame({"strategy": np.tile(matrix.columns, len(grid)), "tau": np.repeat(grid, matrix.shape[1]),
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
