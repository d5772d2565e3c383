"""Q5: what the seed recipe (clip by value, then decay) costs in convergence against norm clipping."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.curves import loss_matrix, smoothing_window
from analysis.effects import Resampling, Study, empty
from analysis.questions import Question
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import failed, normalised_runs, row_key


def train_loss_targets(runs: pd.DataFrame, fraction: float) -> dict[str, float]:
    """Per task, the training loss counted as reached: ``fraction`` of the way from the task's chance loss down
    to the lowest final training loss of its runs that did not fail (the chance loss where all failed)."""
    targets = {}
    for task, group in runs.groupby("task", sort=False):
        chance = float(group["chance_loss"].iloc[0])
        alive = group.loc[~failed(group), "final_train_loss"].astype(float)
        alive = alive[np.isfinite(alive)]
        targets[str(task)] = chance if alive.empty else chance + fraction * (float(alive.min()) - chance)
    return targets


def train_steps_to_target(members: pd.DataFrame, curves: pd.DataFrame, targets: dict[str, float],
                          window: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per run of ``members``: the first step where its per-step training loss, smoothed over ``window`` steps
    as the convergence figure smooths it (``curves.loss_matrix``), is at or below its task's target; whether it
    got there (a diverged run never does); and the resolution, the widest gap between logged training steps of
    any run as a share of the budget. A run that does not get there counts at its budget ``steps``."""
    _, matrix = loss_matrix(curves, members, window)
    goal = members["task"].astype(str).map(targets).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        below = matrix <= goal[:, None]
    reached = below.any(axis=1) & ~members["diverged"].to_numpy(dtype=bool)
    first = np.where(reached, below.argmax(axis=1), members["steps"].to_numpy(dtype=float)).astype(float)
    logged = curves[curves["run_id"].isin(members["run_id"]) & curves["train_loss"].notna()]
    gaps = logged.sort_values(["run_id", "step"]).groupby("run_id")["step"].diff().max()
    budget = float(members["steps"].max())
    return first, reached, float(gaps) / budget if np.isfinite(gaps) and budget else float("nan")


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q5's table: the recipe (``compares``: ``value_then_decay``) against the baseline (``clip_norm``), both
    best-tuned (``tuning.best_tuned_runs``) on each clean panel.

    ``measure``: ``steps_to_target`` (ratio recipe / baseline of the mean
    steps to reach the task's training-loss target, :func:`train_loss_targets`
    at the ``target_fraction`` threshold, read on the per-step training loss
    smoothed as the convergence figure smooths it (:func:`train_steps_to_target`;
    ``resolution``: the widest gap between logged steps, a share of the budget):
    a run that never gets there, or diverged, counts at its budget, so the mean
    is the restricted mean time to target; ``censored`` = some run never got
    there; ``ties_same_step`` / ``ties_neither``: panels where both reach it at
    the same mean step / neither does),
    ``loss_auc`` (ratio of the mean training loss over the budget,
    ``curves.loss_matrix``: diverged seeds at chance loss from their divergence
    on) and ``test_difference`` (normalised test score, recipe minus baseline).
    Ratios are summarised as the geometric mean over task x model pairs (per
    pair the geometric mean over its optimizer panels), with a bootstrap
    interval of the mean log ratio over pairs; with one pair the interval
    resamples seeds of the chosen settings (:func:`_fixed_choice`). Without
    curves only ``test_difference`` is measured.
    """
    (recipe,), reference = question.compares, question.baseline
    columns = ("optimizer", "measure", "strategy", "versus")
    clean = study.runs
    keys = study.keys
    pair = clean[clean["strategy"].isin([recipe, reference])]
    if pair.empty:
        return empty(*columns)
    best = best_tuned_runs(pair)
    present = best.groupby(keys, dropna=False)["strategy"].nunique()
    best = best.merge(present[present == 2].rename("_n").reset_index(), on=keys).drop(columns="_n")
    if best.empty:
        return empty(*columns)
    best["_test"] = normalised_runs(best)
    table = study.curves_of(best["run_id"])
    resolution = float("nan")
    if table is not None and len(table):
        targets = train_loss_targets(clean, question.thresholds["target_fraction"])
        time, reached, resolution = train_steps_to_target(best, table, targets, smoothing_window(clean))
        best["_time"], best["_reached"] = time, reached
        _, losses = loss_matrix(table, best)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            best["_auc"] = np.nanmean(losses, axis=1)
        measures = [("steps_to_target", "_time", True), ("loss_auc", "_auc", True), ("test_difference", "_test", False)]
    else:
        measures = [("test_difference", "_test", False)]
    rows = []
    optimizers = list(dict.fromkeys(best["optimizer"].astype(str)))
    for optimizer in ["all", *optimizers]:
        subset = best if optimizer == "all" else best[best["optimizer"] == optimizer]
        for measured, column, ratio in measures:
            per_panel = subset.groupby([*keys, "strategy"], dropna=False, sort=False)[column].mean().unstack("strategy")
            if ratio:
                values = np.log(per_panel[recipe] / per_panel[reference])
            else:
                values = per_panel[recipe] - per_panel[reference]
            effect = study.over_pairs(
                {row_key(panel): float(value) for panel, value in values.items()},
                lambda _, subset=subset, column=column, ratio=ratio: _fixed_choice(subset, keys, column, recipe,
                                                                                   reference, ratio), log=ratio)
            censored = bool(measured == "steps_to_target" and not subset["_reached"].all())
            ties = _ties(subset, keys, recipe, reference) if measured == "steps_to_target" else {}
            rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer, "measure": measured,
                         "strategy": recipe, "versus": reference, **effect.columns(), "censored": censored,
                         "bound": "", "panels": len(per_panel),
                         "recipe_mean": float(subset.loc[subset["strategy"] == recipe, column].mean()),
                         "reference_mean": float(subset.loc[subset["strategy"] == reference, column].mean()),
                         "resolution": resolution if measured == "steps_to_target" else np.nan,
                         "resolution_percent": 100 * resolution if measured == "steps_to_target" else np.nan,
                         **ties})
    return pd.DataFrame(rows)


def _ties(best: pd.DataFrame, keys: list[str], recipe: str, reference: str) -> dict[str, int]:
    """Panels where the two strategies' mean steps to target are equal: ``ties_same_step`` (both got there,
    at the same mean step) and ``ties_neither`` (no run of either got there)."""
    same = neither = 0
    for _, panel in best.groupby(keys, dropna=False, sort=False):
        mine, theirs = (panel[panel["strategy"] == s] for s in (recipe, reference))
        if not mine["_reached"].any() and not theirs["_reached"].any():
            neither += 1
        elif mine["_time"].mean() == theirs["_time"].mean():
            same += 1
    return {"ties_same_step": same, "ties_neither": neither}


def _fixed_choice(best: pd.DataFrame, keys: list[str], column: str, recipe: str, reference: str,
                  ratio: bool) -> Resampling:
    """The seed resampling of a one-pair Q5 effect, the best-tuned settings held fixed: per panel the log ratio
    (``ratio``) or the difference of the two strategies' weighted means over seeds, averaged over panels."""
    seeds = sorted(int(s) for s in best["seed"].unique())
    position = {s: i for i, s in enumerate(seeds)}
    blocks = []
    for _, panel in best.groupby(keys, dropna=False, sort=False):
        arrays = {}
        for strategy in (recipe, reference):
            own = panel[panel["strategy"] == strategy]
            values = np.full(len(seeds), np.nan)
            values[[position[int(s)] for s in own["seed"]]] = own[column].to_numpy(dtype=float)
            arrays[strategy] = values
        blocks.append(arrays)

    def statistic(weights: list[np.ndarray]) -> np.ndarray:
        w = weights[0]
        effects = []
        for arrays in blocks:
            means = {}
            for strategy, values in arrays.items():
                ok = np.isfinite(values)
                with np.errstate(divide="ignore", invalid="ignore"):
                    means[strategy] = (w * np.where(ok, values, 0.0)).sum(axis=1) / (w * ok).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                effects.append(np.log(means[recipe] / means[reference]) if ratio else means[recipe] - means[reference])
        return np.mean(effects, axis=0)

    return Resampling([len(seeds)], statistic)
