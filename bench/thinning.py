"""Which curve values of a cell are committed: the thinning rule of ``python -m bench publish``.

The rule (:data:`RULE` 3) reads one cell's tables and nothing else, so that a study committed cell by
cell is the same whatever order its cells were trained and published in. It keeps, of each run, the
values some consumer of the committed curves reads, and nothing else: a row is kept where one of its
values is, and holds NaN in the columns whose values it does not keep (``clipped`` keeps its value in
every row kept). What reads the curves, and what of them:

========================================  ==========================================================
consumer (analysis)                       curve values it reads
========================================  ==========================================================
convergence figures (``plots``:           ``train_loss`` at every training step of the best-tuned
``curve_band``, ``loss_matrix``)          runs of each panel (smoothed step by step)
Q5 (``q5_seed_recipe``: steps to a        ``train_loss`` at every training step of the best-tuned
training-loss target, loss AUC)           runs of ``value_then_decay`` and ``clip_norm``
Q6 (``q6_spikes``: late median loss;      ``train_loss`` at every training step of each strategy's
``never_acted``)                          best learning rate at its stated setting and each spike
                                          rate; ``clipped`` of those runs (acted: any row clipped)
Q3 (``q3_grad_scale.chaos_onset``)        ``train_loss`` of every pair of runs of ``grad_scale`` and
                                          ``none`` where neither diverged, at :func:`onset_steps`
learning-rate sensitivity (lr-range       ``val_loss`` at step 0 and at the last evaluation step
table, Q8; ``sensitivity.endpoint_``      (``step == steps``) of every run
``losses``)
time-to-target figure (``survival.``      per run that did not diverge, the first evaluation step
``steps_to_target`` at                    whose ``val_metric`` reaches its task's target, half-way
``target_levels``)                        from chance to the task's best run
explosions figure (``curves.``            ``grad_norm_pre`` at every training step (rows with
``explosion_traces``)                     ``train_loss`` or ``update_ratio``) of the most spiking
                                          runs of ``none`` and two other strategies over all cells
stability notebook's spike counts and     ``grad_norm_pre``, ``clipped`` at every training step of
clip rates (``spikes_and_clips``)         the best-tuned runs
attention-logit figure (``mechanisms``)   ``attn_logit_max_<l>`` and ``train_loss`` of every run of
                                          ``none`` and ``qk_norm`` on a transformer problem, every
                                          :func:`attention_stride`-th step and the divergence step
========================================  ==========================================================

The tier table (``overview.tier_markdown``) reads the runs table only; Q1, Q2, Q4, Q7, the
leaderboard, the stability and sensitivity (normalised test metric) figures, the ranking and every
table but the lr-range one too. The figures and the notebooks draw the discovery seeds at the default
precision (``analysis.data.load``); the claims read both seed sets (the replication) and Q3 every
precision. So, per cell, the rule keeps

- every cell: ``val_loss`` at step 0 and at ``steps``; where the cell varies a stress dial (the spike
  rate of Q6), ``train_loss`` at every training step of each setting's best learning rate at each dial
  value; in a cell of :data:`PAIRED` strategies, ``train_loss`` at :func:`onset_steps` of every run
  that did not diverge; in a cell of :data:`LOSS_COMPARED` strategies, ``train_loss`` at every training
  step of the best-tuned runs (:func:`best_tuned_runs`, the rule of ``analysis.tuning.best_tuned``);
  the row of each run's first clipped step;
- a cell of the discovery seeds at the default precision (a *figure cell*, :func:`figure_cell`) also:
  ``train_loss`` at every training step of the best-tuned runs, whatever the strategy; the
  :data:`SPIKING` most spiking runs (:func:`most_spiking`, the ranking of ``explosion_traces``) at
  every training step; every evaluation row at which a run that did not diverge sets a new best
  ``val_metric`` that some target can be the first to be reached at (:func:`target_rows`); in a cell of
  :data:`ATTENTION_STRATEGIES` whose model logs attention logits, ``train_loss`` and the logits of every
  run at the attention steps; and at every training step it keeps, ``grad_norm_pre``. At a kept training
  step whose ``train_loss`` is NaN it keeps ``update_ratio``, so that the step stays a training step.

The explosions figure ranks the runs of a strategy over all its cells by their largest gradient norm
over the running median of the previous ones, which on a thinned run is read from the steps it kept:
a run kept at some steps that would then outrank the most spiking runs is kept at every step too,
until the most spiking runs of the thinned cell are those of the full cell, each read from every step;
a run among the first n of a union is among the first n of its own part, so the figure's picks are
those of the full curves. Thinning thinned curves again keeps them as they are: a restored cell
published again is unchanged.

What it costs (measured 2026-12-04 on 72 trained cells of the study's second edition, 9,965 runs of 300 to
1,250 steps, written as ``python -m bench publish`` writes them): a kept float32 value takes about 3.2
bytes (float64: 7), a kept row without one (a first clipped step) under a byte. Every run needs its two
validation losses (about 7 bytes), and a run of a figure cell about 1.8 records of ``val_metric`` (6
bytes); the rest is per cell, not per run: a figure cell's 5 best-tuned and about 3 most spiking runs
at every step, ``train_loss`` and ``grad_norm_pre``, about 50 bytes a step of its budget, and Q3's and
the attention figure's steps in the cells that have them. Committed as discovery cells, the 72 took
244 bytes a run of curves (rule 2: 1,276) beside 52 of runs table; as replication cells 20 to 160. On
the second edition's 776 cells (110,240 runs, both seed sets) that projects to about 15 MB of curves and
6 MB of runs tables. Keeping one evaluation metric at every evaluation of every run instead (21 a run)
would take about 65 bytes a run, 7 MB on 110,000 runs.

Every figure, table, number and claim drawn from the committed curves is the one drawn from the full
curves: ``tests/test_thinning.py`` holds the rule to the analysis' choices and ``tests/test_study.py``
compares what is drawn from both. Rule 2 kept every row of the best-tuned and most spiking runs, every
evaluation row and every 10th step of the others; rule 1 chose the explosion traces' picks over the whole
sweep. Cells committed under them keep their rows and say so in their record (``bench.record``).

pandas is imported by the functions that use it: ``python -m bench`` loads it only for the
commands that read tables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bench import failure
from bench.columns import ATTENTION_PROBE_PATTERN, DISCOVERY, RUNS_COLUMNS
from bench.sweep import DEFAULT_DTYPE, stress_dials

if TYPE_CHECKING:
    import pandas as pd

RULE = 3
"""The version of the rule; raised whenever it keeps other values."""
SPIKING = 3
"""Runs of each figure cell kept at every step for their gradient-norm spikes: the explosions figure's ``n``."""
WINDOW, WARMUP = 100, 10
"""The running median of a spike (previous finite gradient norms, once ``WARMUP`` exist): as the
analysis' ``curves.spikes_and_clips`` and ``curves.explosion_traces``."""
TARGET_FRACTION = 0.5
"""How far from chance to the task's best run the time-to-target figure's target lies
(``survival.target_levels``)."""
PAIRED = ("none", "grad_scale")
"""The strategies whose runs Q3 pairs across cells and compares step by step (its baseline and strategy)."""
LOSS_COMPARED = ("clip_norm", "value_then_decay")
"""The strategies whose best-tuned training losses a claim reads step by step (Q5's baseline and recipe): kept
on both seed sets, where the other strategies' are kept for the figures (the discovery seeds) only."""
ONSET_RATIO = 2 ** 0.25
"""The growth of the steps Q3 compares paired training losses at (:func:`onset_steps`)."""
ATTENTION_STRATEGIES = ("none", "qk_norm")
"""The strategies the attention-logit figure draws (``analysis.layout.ATTENTION_STRATEGIES``)."""
ATTENTION_POINTS = 100
"""About how many steps of a run the attention-logit figure draws (:func:`attention_stride`)."""


def onset_steps(steps: int) -> np.ndarray:
    """The steps of a budget of ``steps`` at which Q3 compares two runs' training losses for the onset of their
    rounding chaos: 0, every ``round(ONSET_RATIO ** k)`` below ``steps`` (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16,
    ...: a quarter-octave apart), and the last training step ``steps - 1``."""
    grid = {0, steps - 1} if steps > 0 else set()
    k = 0
    while (value := round(ONSET_RATIO ** k)) < steps:
        grid.add(value)
        k += 1
    return np.array(sorted(grid), dtype=np.int64)


def attention_stride(steps: int) -> int:
    """Every how many steps of a budget of ``steps`` the attention-logit figure draws a run: ``steps //``
    :data:`ATTENTION_POINTS` (at least 1); it draws a diverged run at its divergence step too."""
    return max(1, steps // ATTENTION_POINTS)


def figure_cell(runs: pd.DataFrame) -> bool:
    """Whether a cell's runs are of the discovery seed set at the default precision, those the figures and
    notebooks draw (a runs table without ``seed_set`` or ``dtype`` holds such runs)."""
    seed_sets = set(runs["seed_set"]) if "seed_set" in runs.columns else {DISCOVERY}
    dtypes = set(runs["dtype"]) if "dtype" in runs.columns else {DEFAULT_DTYPE}
    return seed_sets == {DISCOVERY} and dtypes == {DEFAULT_DTYPE}


def best_tuned_runs(runs: pd.DataFrame, within: Sequence[str] = ()) -> set[str]:
    """Run ids of each cell's best-tuned setting for every combination of its stress dials (and value of the
    setting columns ``within``, held fixed instead of tuned).

    The best-tuned rule of the analysis (``analysis.tuning.best_tuned``), computed within each cell: a
    setting is a learning rate with the strategy's hyperparameters and tuned dials (every column of
    the runs table beyond the fixed ones and the stress dials); among a cell's settings at one value
    of its stress dials, fewest failed seeds first (``bench.failure.failed``: diverged, a best validation
    metric that is not finite, or ended no better than chance), then the best mean validation metric of the
    other seeds, then the smallest setting.
    """
    dials = [name for name in stress_dials() if name in runs.columns]
    settings = ["lr", *(name for name in runs.columns if name not in RUNS_COLUMNS and name not in dials)]
    best_val = runs["best_val_metric"].to_numpy(dtype=float)
    failed = failure.failed(runs)
    sign = np.where(runs["higher_is_better"].to_numpy(dtype=bool), 1.0, -1.0)
    keys = ["cell", *dials, *settings]
    frame = runs[["run_id", *keys]].assign(_failed=failed, _oriented=np.where(failed, np.nan, best_val * sign))
    summary = frame.groupby(keys, dropna=False, sort=False).agg(
        failed=("_failed", "sum"), oriented=("_oriented", "mean")).reset_index()
    summary = summary.sort_values(["failed", "oriented", *settings], ascending=[True, False, *[True] * len(settings)],
                                  na_position="last", kind="stable")
    best = summary.groupby(["cell", *dials, *within], dropna=False, sort=False).head(1)[keys]
    return set(frame.merge(best, on=keys)["run_id"])


def setting_best_runs(runs: pd.DataFrame) -> set[str]:
    """Where a cell's runs take more than one value of a stress dial, the run ids of each setting's best
    learning rate at each dial value (:func:`best_tuned_runs` with every setting column but ``lr`` held): what
    Q6 compares between spike rates, each strategy at its stated setting. Empty for a cell without such a dial."""
    dials = [name for name in stress_dials() if name in runs.columns]
    if not any(runs[name].nunique(dropna=False) > 1 for name in dials):
        return set()
    held = [name for name in runs.columns if name not in RUNS_COLUMNS and name not in dials]
    return best_tuned_runs(runs, within=held)


def peak_ratios(curves: pd.DataFrame, window: int = WINDOW, warmup: int = WARMUP) -> pd.Series:
    """Per run: its largest gradient norm over the running median of its previous ``window`` finite
    norms (once ``warmup`` exist), inf for a norm that is not finite; NaN where no step had a median.

    Over training steps only (not the evaluation-only row after the last step), as the analysis'
    ``curves.spikes_and_clips`` computes ``max_ratio``.
    """
    training = curves[["train_loss", "update_ratio"]].notna().any(axis=1)
    frame = curves[training].sort_values(["run_id", "step"], ignore_index=True)
    norms = frame["grad_norm_pre"].astype(float)
    previous = norms.where(np.isfinite(norms)).groupby(frame["run_id"], sort=False).shift(1)
    median = previous.groupby(frame["run_id"], sort=False).rolling(window, min_periods=warmup).median()
    median = median.reset_index(level=0, drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(norms), norms / median, np.inf)
    return frame.assign(ratio=ratio).groupby("run_id", sort=False)["ratio"].max()


def most_spiking(curves: pd.DataFrame, n: int = SPIKING) -> list[str]:
    """The ``n`` runs of ``curves`` with the largest :func:`peak_ratios` (ties: the smaller run id), as
    the explosions figure ranks them; runs without a ratio are not ranked."""
    peaks = peak_ratios(curves).dropna().rename("ratio").reset_index()
    return list(peaks.sort_values(["ratio", "run_id"], ascending=[False, True]).head(n)["run_id"])


def target_rows(runs: pd.DataFrame, curves: pd.DataFrame, fraction: float = TARGET_FRACTION) -> np.ndarray:
    """Boolean mask of the curve rows of one cell at which a run that did not diverge is first at or beyond
    some target the time-to-target figure can set for its task.

    The target of a task is ``chance + fraction x (best - chance)``, ``best`` the best ``best_val_metric``
    of the task's runs that did not fail (``survival.target_levels``); a run reaches it at its first
    evaluation step whose ``val_metric`` is at or beyond it, which is a new best of the run (a *record*).
    The task's best is at least this cell's (of its runs that did not fail) and at most the metric's perfect
    value (``bench.failure.PERFECT``), which bound the target: the rows kept are a run's records from the
    first at or beyond the nearer bound to the first at or beyond the farther one, where every target
    between them is first reached.
    """
    import pandas as pd

    higher = bool(runs["higher_is_better"].iloc[0])
    sign = 1.0 if higher else -1.0
    chance = float(runs["chance_metric"].iloc[0])
    alive = runs.loc[~failure.failed(runs), "best_val_metric"]
    best = chance if alive.empty else float(alive.max() if higher else alive.min())
    perfect = failure.PERFECT[str(runs["metric"].iloc[0])]
    near, far = (sign * (chance + fraction * (value - chance)) for value in (best, perfect))
    alive_runs = runs.loc[~runs["diverged"].astype(bool), "run_id"]
    values = sign * curves["val_metric"].to_numpy(dtype=float)
    evals = curves[np.isfinite(values) & curves["run_id"].isin(alive_runs).to_numpy()]
    evals = pd.DataFrame({"run_id": evals["run_id"], "step": evals["step"], "value": values[evals.index]})
    evals = evals.sort_values(["run_id", "step"])
    before = evals.groupby("run_id", sort=False)["value"].cummax().groupby(evals["run_id"], sort=False).shift(1)
    before = before.fillna(-np.inf)
    chosen = (evals["value"] > before) & (evals["value"] >= near) & (before < far)
    return curves.index.isin(evals.index[chosen.to_numpy()])


def _kept(runs: pd.DataFrame, curves: pd.DataFrame, whole: set[str]) -> dict[str, np.ndarray]:
    """Per curves column but ``run_id``, ``step`` and ``clipped``, which rows of one cell's ``curves`` keep their
    value, the runs ``whole`` being kept at every training step."""
    budget = int(runs["steps"].max())  # a cell's runs share their budget
    run_ids = curves["run_id"]
    step = curves["step"].to_numpy()
    training = step < budget
    diverged = run_ids.map(runs.set_index("run_id")["diverged"]).to_numpy(dtype=bool)
    figures = figure_cell(runs)
    strategies = set(runs["strategy"])
    stepped = run_ids.isin(whole).to_numpy() & training
    if strategies <= set(PAIRED):
        stepped |= ~diverged & np.isin(step, onset_steps(budget))
    keep = {name: np.zeros(len(curves), dtype=bool) for name in curves.columns
            if name not in ("run_id", "step", "clipped")}
    logits = [name for name in curves.columns if re.fullmatch(ATTENTION_PROBE_PATTERN, str(name))]
    if figures and logits and strategies <= set(ATTENTION_STRATEGIES):
        last = run_ids.map(runs.set_index("run_id")["diverged_step"]).to_numpy()
        drawn = training & ((step % attention_stride(budget) == 0) | (step == last))
        for name in logits:
            keep[name] |= drawn
        stepped |= drawn
    keep["train_loss"] |= stepped
    keep["update_ratio"] |= stepped & curves["train_loss"].isna().to_numpy()
    if figures:
        keep["grad_norm_pre"] |= stepped
        keep["val_metric"] |= target_rows(runs, curves)
    keep["val_loss"] |= (step == 0) | (step == budget)
    return keep


def _apply(curves: pd.DataFrame, keep: dict[str, np.ndarray]) -> pd.DataFrame:
    """The rows of ``curves`` that keep a value or are a run's first clipped step, NaN in the columns whose
    value a row does not keep."""
    first_clipped = curves[curves["clipped"].astype(bool)].groupby("run_id", sort=False)["step"].min()
    rows = (curves["step"] == curves["run_id"].map(first_clipped)).to_numpy().copy()
    for kept in keep.values():
        rows |= kept
    thinned = curves.copy()
    for name, kept in keep.items():
        thinned[name] = thinned[name].where(kept)
    return thinned[rows]


def _thin_cell(runs: pd.DataFrame, curves: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """One cell's curves thinned, and the runs kept at every training step."""
    curves = curves.reset_index(drop=True)
    figures = figure_cell(runs)
    losses_read = figures or set(runs["strategy"]) <= set(LOSS_COMPARED)
    chosen = (best_tuned_runs(runs) if losses_read else set()) | setting_best_runs(runs)
    spiking = set(most_spiking(curves)) if figures else set()
    while True:
        thinned = _apply(curves, _kept(runs, curves, chosen | spiking))
        extra = set(most_spiking(thinned)) - spiking if figures else set()
        if not extra:
            return thinned, chosen | spiking
        spiking |= extra


def thin(runs: pd.DataFrame, curves: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """The curve values the rule keeps, each cell's thinned on its own (the rows kept in the order of
    ``curves``, NaN where a row's value is not kept), and the ids of the runs kept at every training step.

    ``runs`` and ``curves`` hold the tables of one cell or of several (a sweep's): a cell's values do not
    depend on the others'.
    """
    import pandas as pd

    curves = curves.reset_index(drop=True)
    cell_of = curves["run_id"].map(dict(zip(runs["run_id"], runs["cell"], strict=True)))
    parts, kept = [], set()
    for cell, rows in curves.groupby(cell_of, sort=False):
        thinned, whole = _thin_cell(runs[runs["cell"] == cell], rows)
        parts.append(thinned.set_axis(rows.index[thinned.index]))
        kept |= whole
    if not parts:
        return curves.iloc[:0].reset_index(drop=True), kept
    return pd.concat(parts).sort_index().reset_index(drop=True), kept
