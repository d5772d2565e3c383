"""Q6: under bad-batch spikes, does a strategy prevent the damage, only hide it, or show it?

Every strategy is compared at one fixed setting, tuned over the learning rate
only (equal budgets): its pre-stated setting (``tuning.settings``: the
question's ``thresholds``, else its registered default, else its only setting),
so ``clip_norm`` runs at its default threshold, never the best of its three.
The seeds of a pair are few (5 in the study), where a percentile bootstrap
under-covers: intervals are Student-t over the per-seed damages, stratified by
pair, with the fewest seeds of a pair minus one degrees of freedom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.curves import late_median_loss
from analysis.effects import UNIT_SEEDS, Study, empty
from analysis.inference import CONFIDENCE
from analysis.questions import Question
from analysis.tuning import at_setting, best_tuned_runs, setting_label, settings
from analysis.vocabulary import normalised_runs, panel_columns, score_runs

VALUES = ("test", "train")


def stratified_t_interval(strata: list[np.ndarray], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean over strata of each stratum's mean, and its Student-t interval: standard error from the strata's
    sample variances (``sqrt(sum s_k^2 / n_k) / K``), degrees of freedom the smallest ``n_k`` minus one.

    NaN values are left out; NaN interval where a stratum has fewer than two values.
    """
    strata = [np.asarray(s, dtype=float)[np.isfinite(np.asarray(s, dtype=float))] for s in strata]
    if not strata or any(s.size == 0 for s in strata):
        return float("nan"), float("nan"), float("nan")
    estimate = float(np.mean([s.mean() for s in strata]))
    if any(s.size < 2 for s in strata):
        return estimate, float("nan"), float("nan")
    error = float(np.sqrt(sum(s.var(ddof=1) / s.size for s in strata)) / len(strata))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, min(s.size for s in strata) - 1)) * error
    return estimate, estimate - half, estimate + half


def never_acted(runs: pd.DataFrame, strategy: str, baseline: str, keys: list[str],
                curves: pd.DataFrame | None = None) -> tuple[int, int]:
    """How many runs of ``strategy`` in ``runs`` acted, and how many it has.

    A run acted where its curve records a clipped or skipped step (``clipped``
    column of ``curves``, where it has one), or where its fate, final training
    loss or test metric differ from the baseline's run of the same panel,
    learning rate and seed (bit for bit; a run without a baseline twin counts
    as acting).
    """
    own = runs[runs["strategy"] == strategy]
    if strategy == baseline or own.empty:
        return len(own), len(own)
    fields = ["diverged", "final_train_loss", "test_metric_at_best_val"]
    twins = own[[*keys, "lr", "seed", "run_id", *fields]].merge(
        runs.loc[runs["strategy"] == baseline, [*keys, "lr", "seed", *fields]], on=[*keys, "lr", "seed"],
        how="left", suffixes=("", "_base"), indicator=True)
    acted = (twins["_merge"] != "both").to_numpy().copy()
    for name in fields:
        a, b = twins[name].to_numpy(dtype=float), twins[f"{name}_base"].to_numpy(dtype=float)
        acted |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if curves is not None and "clipped" in curves.columns and len(curves):
        clipped = curves.loc[curves["clipped"].astype(float) > 0, "run_id"].unique()
        acted |= twins["run_id"].isin(clipped).to_numpy()
    return int(acted.sum()), len(own)


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q6's table: each strategy of ``compares`` under the condition dial (``spike_rate``, bad batches), each at
    its pre-stated setting (``setting``, ``budget`` = 1 setting per learning rate).

    On each task x model pair with panels at ``spike_rate`` 0 and above 0, per
    seed: *test damage* = normalised test score at the spike rate minus at 0 of
    the run at the learning rate chosen on validation (each panel tuned on its
    own), the mean over the pair's optimizers; *training damage* (``train_*``)
    = the same difference of the chosen runs' median training loss over the
    late part of the budget (``curves.late_median_loss`` from the
    ``late_start`` threshold, > 0 when training visibly suffers);
    ``vs_none`` / ``vs_reference`` = the strategy's test damage minus that of
    the baseline / reference (> 0: less damage). ``estimate`` is the mean over
    pairs of the mean over seeds, ``low`` to ``high`` its stratified Student-t
    interval (:func:`stratified_t_interval`), ``n`` the fewest seeds of a pair;
    ``values`` lists the per-pair test damages. ``acted_runs`` of
    ``spike_runs``: runs at the spike rate where the strategy acted
    (:func:`never_acted`); ``never_acted`` = 1 where it acted in none of them
    (its results are the baseline's). ``verdict``: ``prevents`` where the test
    damage interval reaches 0 (``high >= 0``); ``hides`` where the test score
    drops (``high < 0``) but the training loss shows no damage (``train_low <=
    0``); ``shows`` where both do; ``never acted``. Without curves the
    training damage is NaN and the verdict only ``prevents`` or ``damaged``.
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
    has_curves = table is not None and len(table) > 0
    start = question.thresholds["late_start"]
    trains = {(task, model): late_median_loss(table, group, start) if has_curves else None
              for task, model, group, _ in problems}
    stated = {}
    for strategy in dict.fromkeys([*question.compares, question.baseline, question.reference]):
        chosen = [s for s, is_stated in settings(runs, strategy, question.thresholds) if is_stated]
        stated[strategy] = chosen[0] if chosen else None
    rows = []
    for rate in sorted({r for *_, rates in problems for r in rates}):
        for strategy in question.compares:
            parts = []
            for task, model, group, rates in problems:
                if rate not in rates or any(stated[s] is None for s in (strategy, question.baseline,
                                                                           question.reference)):
                    continue
                part = _spike_problem(group, trains[(task, model)], keys, dial, rate, strategy, question, stated)
                if part is not None:
                    parts.append((task, model, group, part))
            if not parts:
                continue
            spiking = pd.concat([g[np.isclose(g[dial].to_numpy(dtype=float), rate)] for *_, g, _ in parts])
            spiking = at_setting(spiking, strategy, stated[strategy])
            acted, total = never_acted(spiking, strategy, question.baseline, keys,
                                       study.curves_of(spiking.loc[spiking["strategy"] == strategy, "run_id"])
                                       if has_curves else None)
            common = {"setting": setting_label(strategy, stated[strategy]), "budget": 1, "acted_runs": acted,
                      "spike_runs": total, "never_acted": int(strategy != question.baseline and acted == 0)}
            for task, model, _, part in parts:
                rows.append(_spike_row(question, task, model, rate, strategy, [part], common))
            if len(parts) >= 2:
                rows.append(_spike_row(question, "all", "all", rate, strategy, [p for *_, p in parts], common))
    return pd.DataFrame(rows) if rows else empty(*columns)


def _spike_problem(group: pd.DataFrame, train: pd.Series | None, keys: list[str], dial: str, rate: float,
                   strategy: str, question: Question, stated: dict) -> dict | None:
    """One pair's per-seed damages (spike rate minus 0) of each needed strategy at its stated setting, by value
    (``test``, ``train``): strategy -> value -> array over the pair's seeds, averaged over its conditions
    (optimizer, other dials). None where a condition lacks one of the strategies at either spike rate."""
    needed = list(dict.fromkeys([strategy, question.baseline, question.reference]))
    seeds = sorted(int(s) for s in group["seed"].unique())
    position = {s: i for i, s in enumerate(seeds)}
    conditions = [k for k in keys if k not in ("task", "model", dial)]
    damages: dict[str, dict[str, list[np.ndarray]]] = {name: {v: [] for v in VALUES} for name in needed}
    for _, runs in group.groupby(conditions, dropna=False, sort=False):
        per_value: dict[float, dict[str, dict[str, np.ndarray]]] = {}
        for value in (0.0, rate):
            panel = runs[np.isclose(runs[dial].to_numpy(dtype=float), value)]
            if not set(needed) <= set(panel["strategy"]):
                return None
            per_value[value] = {}
            for name in needed:
                own = at_setting(panel[panel["strategy"] == name], name, stated[name])
                chosen = own[own["run_id"].isin(best_tuned_runs(own)["run_id"])]
                index = [position[int(s)] for s in chosen["seed"]]
                test, loss = np.full(len(seeds), np.nan), np.full(len(seeds), np.nan)
                test[index] = normalised_runs(score_runs(chosen))
                if train is not None:
                    loss[index] = train.loc[chosen.index].to_numpy(dtype=float)
                per_value[value][name] = {"test": test, "train": loss}
        for name in needed:
            for v in VALUES:
                damages[name][v].append(per_value[rate][name][v] - per_value[0.0][name][v])
    with np.errstate(all="ignore"):
        mean = {name: {v: np.nanmean(np.vstack(damages[name][v]), axis=0) if damages[name][v] else
                       np.full(len(seeds), np.nan) for v in VALUES} for name in needed}
    return {"damage": mean, "seeds": seeds, "has_train": train is not None, "rate": rate}


def _spike_row(question: Question, task: str, model: str, rate: float, strategy: str, parts: list[dict],
               common: dict) -> dict:
    test = [p["damage"][strategy]["test"] for p in parts]
    estimate, low, high = stratified_t_interval(test)
    row = {"question": question.id, "level": "problem" if task != "all" else "all", "strategy": strategy,
           question.condition: rate, "task": task, "model": model, "estimate": estimate, "low": low, "high": high,
           "unit": UNIT_SEEDS, "n": int(min(len(p["seeds"]) for p in parts)), "censored": False,
           "problems": len(parts), **common,
           "values": ", ".join(f"{float(np.nanmean(t)):.2g}" for t in test)}
    for prefix, other in (("vs_none", question.baseline), ("vs_reference", question.reference)):
        row[prefix], row[f"{prefix}_low"], row[f"{prefix}_high"] = stratified_t_interval(
            [p["damage"][strategy]["test"] - p["damage"][other]["test"] for p in parts])
    if all(part["has_train"] for part in parts):
        row["train_estimate"], row["train_low"], row["train_high"] = stratified_t_interval(
            [p["damage"][strategy]["train"] for p in parts])
    else:
        row["train_estimate"] = row["train_low"] = row["train_high"] = np.nan
    if common["never_acted"]:
        verdict = "never acted"
    elif not high < 0:
        verdict = "prevents" if np.isfinite(high) else ""
    elif not np.isfinite(row["train_low"]):
        verdict = "damaged"
    else:
        verdict = "hides" if row["train_low"] <= 0 else "shows"
    row["verdict"] = verdict
    row["reference"], row["baseline"] = question.reference, question.baseline
    return row
