"""Q5: what the seed recipe (clip by value, then decay) costs in convergence against norm clipping."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.curves import loss_matrix
from analysis.effects import Resampling, Study, empty
from analysis.questions import Question
from analysis.survival import steps_to_target, target_levels
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import normalised_runs, row_key


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q5's table: the recipe (``compares``: ``value_then_decay``) against the baseline (``clip_norm``), both
    best-tuned (``tuning.best_tuned_runs``) on each clean panel.

    ``measure``: ``steps_to_target`` (ratio recipe / baseline of the mean
    steps to reach the task's target, ``survival.target_levels`` at the
    ``target_fraction`` threshold, by ``survival.steps_to_target``: a run that
    never gets there, or diverged, counts at its budget, so the mean is the
    restricted mean time to target; ``censored`` = some run never got there),
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
    if table is not None and len(table):
        events = steps_to_target(best, table, target_levels(clean, question.thresholds["target_fraction"]))
        best["_time"] = events["time"].to_numpy(dtype=float)
        best["_reached"] = events["observed"].to_numpy(dtype=bool)
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
            rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer, "measure": measured,
                         "strategy": recipe, "versus": reference, **effect.columns(), "censored": censored,
                         "bound": "", "panels": len(per_panel),
                         "recipe_mean": float(subset.loc[subset["strategy"] == recipe, column].mean()),
                         "reference_mean": float(subset.loc[subset["strategy"] == reference, column].mean())})
    return pd.DataFrame(rows)


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
