"""Which curve rows of a cell are committed: the thinning rule of ``python -m bench publish``.

The rule (:data:`RULE` 2) reads one cell's tables and nothing else, so that a study committed cell by
cell is the same whatever order its cells were trained and published in. Of a cell's curves it keeps

- every row of the cell's best-tuned runs (:func:`best_tuned_runs`, the rule of the analysis'
  ``stats.best_tuned``): the convergence figures draw them step by step, and the questions that read
  curves read theirs;
- every row of the cell's :data:`SPIKING` most spiking runs (:func:`most_spiking`, the ranking of the
  analysis' ``stats.explosion_traces``): the explosions figure draws the most spiking runs of a
  strategy over all its cells, and a run among the first n of a union is among the first n of its
  own part;
- every evaluation row of every run (time to target);
- every ``every``-th step and the last step (the one a diverged run ended at) of the other runs.

It keeps rows, never columns: a cell's probe columns (``bench.columns.PROBE_PATTERN``) stay in every row kept.

A run kept at a stride has another running median of its gradient norm, so on the thinned table it
could outrank the runs kept whole: such runs are kept whole too, until the most spiking runs of the
thinned cell are those of the full cell. A run kept at a stride then ranks below the :data:`SPIKING`
runs its own cell keeps whole, so the most spiking runs of a strategy over any of its cells, thinned
so, are those of the full curves, and so are the traces drawn. Thinning thinned curves again keeps
them as they are: a restored cell published again is unchanged.

Rule 1 (studies published whole before the study was committed cell by cell) chose the same
best-tuned runs, but the explosion traces' picks over the whole sweep (each strategy's first
:data:`SPIKING` and the runs needed to keep them first); cells committed under it keep their rows
and say so in their record (``bench.record``).

pandas is imported by the functions that use it: ``python -m bench`` loads it only for the
commands that read tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench import failure
from bench.columns import EVAL_METRICS, RUNS_COLUMNS
from bench.sweep import stress_dials

if TYPE_CHECKING:
    import pandas as pd

RULE = 2
"""The version of the rule; raised whenever it keeps other rows for the same ``every``."""
EVERY = 10
"""Default stride of the steps kept of the runs no figure draws step by step."""
SPIKING = 3
"""Runs of each cell kept whole for their gradient-norm spikes: the explosions figure's ``n``."""
WINDOW, WARMUP = 100, 10
"""The running median of a spike (previous finite gradient norms, once ``WARMUP`` exist): as the
analysis' ``stats.spikes_and_clips`` and ``stats.explosion_traces``."""


def best_tuned_runs(runs: pd.DataFrame) -> set[str]:
    """Run ids of each cell's best-tuned setting for every combination of its stress dials.

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
    best = summary.groupby(["cell", *dials], dropna=False, sort=False).head(1)[keys]
    return set(frame.merge(best, on=keys)["run_id"])


def peak_ratios(curves: pd.DataFrame, window: int = WINDOW, warmup: int = WARMUP) -> pd.Series:
    """Per run: its largest gradient norm over the running median of its previous ``window`` finite
    norms (once ``warmup`` exist), inf for a norm that is not finite; NaN where no step had a median.

    Over training steps only (not the evaluation-only row after the last step), as the analysis'
    ``stats.spikes_and_clips`` computes ``max_ratio``.
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


def _kept_rows(runs: pd.DataFrame, curves: pd.DataFrame, keep: set[str], every: int) -> np.ndarray:
    """Boolean mask of the curve rows kept where the runs ``keep`` are kept whole."""
    last = runs.set_index("run_id")
    end = np.where(last["diverged"].astype(bool), last["diverged_step"], last["steps"] - 1)
    last_step = curves["run_id"].map(dict(zip(last.index, end, strict=True)))
    evaluated = curves[list(EVAL_METRICS)].notna().any(axis=1)
    return (curves["run_id"].isin(keep) | (curves["step"] % every == 0) | evaluated
            | (curves["step"] == last_step)).to_numpy()


def _thin_cell(runs: pd.DataFrame, curves: pd.DataFrame, every: int) -> tuple[pd.DataFrame, set[str]]:
    keep = best_tuned_runs(runs) | set(most_spiking(curves))
    while True:
        thinned = curves[_kept_rows(runs, curves, keep, every)]
        extra = set(most_spiking(thinned)) - keep
        if not extra:
            return thinned, keep
        keep |= extra


def thin(runs: pd.DataFrame, curves: pd.DataFrame, every: int = EVERY) -> tuple[pd.DataFrame, set[str]]:
    """The curve rows the rule keeps, each cell's thinned on its own (in the order of ``curves``), and
    the ids of the runs kept at every step.

    ``runs`` and ``curves`` hold the tables of one cell or of several (a sweep's): a cell's rows do not
    depend on the others'.
    """
    import pandas as pd

    if every < 1:
        raise ValueError(f"every: {every} is not allowed; allowed: at least 1")
    curves = curves.reset_index(drop=True)
    cell_of = curves["run_id"].map(dict(zip(runs["run_id"], runs["cell"], strict=True)))
    parts, kept = [], set()
    for cell, rows in curves.groupby(cell_of, sort=False):
        thinned, keep = _thin_cell(runs[runs["cell"] == cell], rows, every)
        parts.append(thinned)
        kept |= keep
    if not parts:
        return curves.iloc[:0].reset_index(drop=True), kept
    return pd.concat(parts).sort_index().reset_index(drop=True), kept
