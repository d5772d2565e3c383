"""Q6: under bad-batch spikes, does a strategy prevent the damage, only hide it, or show it?"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.curves import late_median_loss
from analysis.effects import Resampling, Study, empty
from analysis.questions import Question
from analysis.seed_grid import SeedGrid
from analysis.stability import grid_step
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import normalised_runs, panel_columns, row_key


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q6's table: each strategy of ``compares`` under the condition dial (``spike_rate``, bad batches).

    On each task x model pair with panels at ``spike_rate`` 0 and above 0:
    *test damage* (``estimate``) = best-tuned normalised test score at the
    spike rate minus at 0 (each panel tuned on its own), the mean over the
    pair's optimizers; *training damage* (``train_*``) = the same difference
    of the best-tuned runs' median training loss over the late part of the
    budget (``curves.late_median_loss`` from the ``late_start`` threshold, > 0
    when training visibly suffers); ``vs_none_*`` / ``vs_reference_*`` = the
    strategy's test damage minus that of the baseline / reference (> 0: less
    damage). Intervals: percentile bootstrap over seeds within each pair (the
    best-tuned choices redone on every resample; the spiking and clean panels
    share their seeds), the ``all`` row resampling the pairs' seeds
    independently (stratified, ``effects.Study.over_seeds``). ``verdict``:
    ``prevents`` where the test damage interval reaches 0 (``high >= 0``);
    ``hides`` where the test score drops (``high < 0``) but the training loss
    shows no damage (``train_low <= 0``); ``shows`` where both do. Without
    curves the training damage is NaN and the verdict only ``prevents`` or ``damaged``.
    """
    dial, runs = question.condition, study.all_runs
    columns = ("strategy", dial, "task", "model")
    if dial not in runs.columns:
        return empty(*columns)
    keys = panel_columns(runs)
    problems = []
    for (task, model), group in runs.groupby(["task", "model"], sort=False):
        rates = sorted(group[dial].dropna().unique())
        if len(rates) >= 2 and rates[0] == 0:
            problems.append((task, model, group, [r for r in rates if r > 0]))
    if not problems:
        return empty(*columns)
    table = study.curves_of([rid for _, _, group, _ in problems for rid in group["run_id"]])
    start = question.thresholds["late_start"]
    trains = {(task, model): late_median_loss(table, group, start) if table is not None and len(table) else None
              for task, model, group, _ in problems}
    rows = []
    for rate in sorted({r for *_, rates in problems for r in rates}):
        for strategy in question.compares:
            parts = []
            for task, model, group, rates in problems:
                if rate not in rates:
                    continue
                part = _spike_problem(group, trains[(task, model)], keys, dial, rate, strategy, question)
                if part is not None:
                    parts.append((task, model, part))
            for task, model, part in parts:
                rows.append(_spike_row(study, question, task, model, rate, strategy, [part]))
            if len(parts) >= 2:
                rows.append(_spike_row(study, question, "all", "all", rate, strategy, [part for *_, part in parts]))
    return pd.DataFrame(rows) if rows else empty(*columns)


def _spike_problem(group: pd.DataFrame, train: pd.Series | None, keys: list[str], dial: str, rate: float,
                   strategy: str, question: Question) -> dict | None:
    """One pair's Q6 pieces: per condition (optimizer, other dials) and spike rate, the compared strategies' grids.

    None where a condition lacks one of the strategies at either spike rate.
    """
    needed = list(dict.fromkeys([strategy, question.baseline, question.reference]))
    seeds = sorted(int(s) for s in group["seed"].unique())
    conditions = [k for k in keys if k not in ("task", "model", dial)]
    grids: dict[tuple, dict[str, SeedGrid]] = {}
    points: dict[tuple, dict[str, tuple[float, float]]] = {}
    for condition, runs in group.groupby(conditions, dropna=False, sort=False):
        condition = row_key(condition if isinstance(condition, tuple) else (condition,))
        for value in (0.0, rate):
            panel = runs[np.isclose(runs[dial].to_numpy(dtype=float), value)]
            if not set(needed) <= set(panel["strategy"]):
                return None
            step = grid_step(panel["lr"].to_numpy())
            grids[(condition, value)], points[(condition, value)] = {}, {}
            for name in needed:
                own = panel[panel["strategy"] == name]
                grids[(condition, value)][name] = SeedGrid(own, seeds, step,
                                                           {"train": train} if train is not None else None)
                best = best_tuned_runs(own)
                loss = np.nan
                if train is not None:
                    loss = float(train[own.index[own["run_id"].isin(best["run_id"]).to_numpy()]].mean())
                points[(condition, value)][name] = (float(normalised_runs(best).mean()), loss)
    return {"grids": grids, "points": points, "seeds": seeds, "rate": rate, "has_train": train is not None}


def _damage(part: dict, name: str, field: int) -> float:
    conditions = dict.fromkeys(condition for condition, _ in part["points"])
    return float(np.mean([part["points"][(c, part["rate"])][name][field] - part["points"][(c, 0.0)][name][field]
                          for c in conditions]))


def _damage_resampled(part: dict, name: str, weights: np.ndarray, value: str) -> np.ndarray:
    conditions = dict.fromkeys(condition for condition, _ in part["grids"])
    effects = [part["grids"][(c, part["rate"])][name].chosen_mean(weights, value)
               - part["grids"][(c, 0.0)][name].chosen_mean(weights, value) for c in conditions]
    return np.mean(effects, axis=0)


def _spike_row(study: Study, question: Question, task: str, model: str, rate: float, strategy: str,
               parts: list[dict]) -> dict:
    counts = [len(part["seeds"]) for part in parts]

    def resampling(function: Callable[[dict, np.ndarray], np.ndarray]) -> Resampling:
        return Resampling(counts, lambda ws: np.mean([function(p, w) for p, w in zip(parts, ws, strict=True)],
                                                     axis=0))

    test = study.over_seeds(float(np.mean([_damage(p, strategy, 0) for p in parts])),
                            resampling(lambda p, w: _damage_resampled(p, strategy, w, "test")))
    row = {"question": question.id, "level": "problem" if task != "all" else "all", "strategy": strategy,
           question.condition: rate, "task": task, "model": model, **test.columns(), "censored": False,
           "problems": len(parts)}
    for prefix, other in (("vs_none", question.baseline), ("vs_reference", question.reference)):
        row[prefix] = float(np.mean([_damage(p, strategy, 0) - _damage(p, other, 0) for p in parts]))
        row[f"{prefix}_low"], row[f"{prefix}_high"] = study.seed_interval(resampling(
            lambda p, w, other=other: _damage_resampled(p, strategy, w, "test")
            - _damage_resampled(p, other, w, "test")))
    if all(part["has_train"] for part in parts):
        row["train_estimate"] = float(np.mean([_damage(p, strategy, 1) for p in parts]))
        row["train_low"], row["train_high"] = study.seed_interval(
            resampling(lambda p, w: _damage_resampled(p, strategy, w, "train")))
    else:
        row["train_estimate"] = row["train_low"] = row["train_high"] = np.nan
    high = test.high
    if not high < 0:
        verdict = "prevents" if np.isfinite(high) else ""
    elif not np.isfinite(row["train_low"]):
        verdict = "damaged"
    else:
        verdict = "hides" if row["train_low"] <= 0 else "shows"
    row["verdict"] = verdict
    row["reference"], row["baseline"] = question.reference, question.baseline
    return row
