"""The vocabulary of a runs table: its columns, problems, panels and settings, and the one rule for failed runs.

- a *problem* is a (task, model) pair (:data:`PROBLEM_COLUMNS`), the independent
  unit of every comparison across problems;
- a *panel* is what a strategy is compared on within a problem: task, model,
  optimizer and the stress dials (bench.sweep.stress_dials), see
  :func:`panel_columns`;
- a *setting* is one point of a strategy's tuning grid: learning rate and the
  strategy's hyperparameters (:func:`setting_columns`); its runs differ only
  in the seed.

How failures count (one rule, used everywhere, defined in ``bench.failure`` so that the thinning of
committed curves keeps the runs the analysis picks): a run *fails* when it diverged, or its best
validation metric is not finite, or it ended no better than chance (its validation metric at the last
step below :data:`FAILED_SCORE` of the way from chance to perfect) (:func:`failed`, :func:`score_runs`).

- To choose a setting, a failed seed is the worst possible value (-inf for a
  higher-is-better metric, +inf for MSE): a setting with fewer failed seeds
  always wins, and among equals the higher mean validation metric of the
  remaining seeds (:mod:`analysis.tuning`).
- Where a number is needed (test metrics, means, tests, ranks, learning-rate
  sensitivity), a failed run counts at the task's chance level
  (``chance_metric``: 1 / classes for accuracy, the target variance for MSE).

Test results across problems are compared as a *normalised score*
(:func:`normalised_score`): 0 at chance, 1 perfect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.columns import CURVES_COLUMNS, DISCOVERY, RUNS_COLUMNS, SEED_SETS
from bench.failure import (  # noqa: F401  (the one rule for failed runs, read through this vocabulary)
    FAILED_SCORE,
    METRIC_ERRORS,
    ended_at_chance,
    failed,
    metric_error,
    normalised_score,
)
from bench.sweep import DEFAULT_DTYPE, stress_dials

RUN_COLUMNS = tuple(RUNS_COLUMNS)
"""The fixed columns of runs.parquet (bench.columns)."""
CURVE_COLUMNS = tuple(CURVES_COLUMNS)
"""The columns of curves.parquet (bench.columns)."""

STRESS_DIALS = tuple(stress_dials())
"""Run-level stress dials (bench.sweep.stress_dials): part of the panel, never tuned. Other dials
(an optimizer's ``warmup_steps``) are setting columns, tuned like the learning rate."""

PROBLEM_COLUMNS = ("task", "model")
"""The columns naming a problem: the independent unit of every comparison across problems."""

ADDED_COLUMNS = ("failed", "val_score", "test_score", "time", "observed")
"""Columns the analysis adds to a runs table; neither hyperparameters nor dials."""


def panel_columns(frame: pd.DataFrame) -> list[str]:
    """The columns naming a panel: task, model, optimizer, the stress dials present, and the precision
    (``dtype``) where the table has it."""
    # precision: a float64 cell (Q3's pairs, trained where the identity is exact) forms panels of its own, so
    # no statistic pairs or pools its runs with float32 ones; tables without the column are all float32
    return ["task", "model", "optimizer", *dial_columns(frame), *(["dtype"] if "dtype" in frame.columns else [])]


def hyperparameter_columns(frame: pd.DataFrame) -> list[str]:
    """Strategy-hyperparameter columns of a runs table: every column beyond the fixed ones and the dials."""
    fixed = {*RUN_COLUMNS, *STRESS_DIALS, *ADDED_COLUMNS}
    return [c for c in frame.columns if c not in fixed]


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The columns naming a setting within a problem and strategy: lr and the hyperparameters."""
    return ["lr", *hyperparameter_columns(frame)]


def dial_columns(frame: pd.DataFrame) -> list[str]:
    """The stress-dial columns present in ``frame``, in :data:`STRESS_DIALS` order."""
    return [d for d in STRESS_DIALS if d in frame.columns]


def panel_label_suffix(frame: pd.DataFrame) -> pd.Series | str:
    """Per row, ``/float64`` for a panel of another precision than the default; "" for the default."""
    if "dtype" not in frame.columns:
        return ""
    return pd.Series(np.where(frame["dtype"] == DEFAULT_DTYPE, "", "/" + frame["dtype"].astype(str)),
                     index=frame.index)


def row_key(values: Sequence[Any]) -> tuple:
    """A hashable key of column values in which NaN equals NaN (a panel's or a setting's values)."""
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in values)


def groups(frame: pd.DataFrame, keys: Sequence[str]) -> Any:
    """``frame`` grouped by ``keys`` in order of first appearance, NaN a value of its own."""
    return frame.groupby(list(keys), dropna=False, sort=False)


def sign(higher_is_better: pd.Series | np.ndarray) -> np.ndarray:
    """+1 where higher is better, -1 where lower is (MSE): multiplying by it orients a metric."""
    return np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)


def at_chance(runs: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` with failed runs and non-finite values replaced by the chance level."""
    values = runs[column].to_numpy(dtype=float)
    bad = failed(runs) | ~np.isfinite(values)
    return np.where(bad, runs["chance_metric"].to_numpy(dtype=float), values)


def score_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with ``failed``, ``val_score`` and ``test_score`` added.

    ``failed``: :func:`failed`. ``val_score``:
    best validation metric oriented so that higher is better (negated for MSE),
    -inf where failed. ``test_score``: ``test_metric_at_best_val`` in the
    metric's own units, the chance level where failed.
    """
    scored = runs.copy()
    failures = failed(runs)
    oriented = runs["best_val_metric"].to_numpy(dtype=float) * sign(runs["higher_is_better"])
    scored["failed"] = failures
    scored["val_score"] = np.where(failures, -np.inf, oriented)
    scored["test_score"] = at_chance(runs, "test_metric_at_best_val")
    return scored


LOSS_UNITS = {"mse": "MSE"}
"""The unit of a task's loss by its metric where it is not the cross-entropy in nats: a regression task's loss
(metric ``mse``) is the mean squared error; every other task's (accuracy, bits per character) is the
cross-entropy, in nats (``bench.tasks.Task.loss``)."""


def loss_unit(metric: str) -> str:
    """The unit of the loss (``val_loss``, ``train_loss``, ``chance_loss``) of a task with this metric:
    ``MSE`` for regression, else ``nats`` (:data:`LOSS_UNITS`)."""
    return LOSS_UNITS.get(str(metric), "nats")




def normalised_runs(runs: pd.DataFrame, column: str = "test_score") -> np.ndarray:
    """:func:`normalised_score` of a scored runs table's ``column`` (by default ``test_score``, failed at chance)."""
    return normalised_score(runs[column].to_numpy(dtype=float), runs["metric"].to_numpy(dtype=object),
                            runs["chance_metric"].to_numpy(dtype=float))


def default_precision(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs trained at the default precision (``float32``; all of a table without a ``dtype`` column).

    A sweep trains some pairs again in float64 where a question needs exact arithmetic (Q3's
    rescaling identity); every other statistic, figure and table reads the default-precision runs only,
    so that those replicas are neither counted as problems nor pooled with the study's runs.
    """
    if "dtype" not in runs.columns:
        return runs
    return runs[(runs["dtype"] == DEFAULT_DTYPE).to_numpy()]


BOTH_SEED_SETS = "both"
"""What :func:`of_seed_set` is given for the runs of every seed set."""


def of_seed_set(runs: pd.DataFrame, seed_set: str = DISCOVERY) -> pd.DataFrame:
    """The runs of one seed set (``bench.columns.SEED_SETS``: ``discovery``, the config's ``seeds``, or
    ``replication``, its ``replication_seeds``), or of both with :data:`BOTH_SEED_SETS`; a table without a
    ``seed_set`` column holds the discovery set only. Raises ValueError for another name.

    A replication cell is its cell trained on other seeds: its runs have the same task, model, optimizer,
    strategy and settings, so that every statistic reads either set as it reads the other.
    """
    if seed_set not in (*SEED_SETS, BOTH_SEED_SETS):
        raise ValueError(f"seed set {seed_set!r} is not allowed; allowed: {', '.join((*SEED_SETS, BOTH_SEED_SETS))}")
    if seed_set == BOTH_SEED_SETS:
        return runs
    sets = runs["seed_set"] if "seed_set" in runs.columns else pd.Series(DISCOVERY, index=runs.index)
    return runs[(sets == seed_set).to_numpy()]


def clean_panels(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of panels without bad-batch spikes: ``spike_rate`` absent, NaN or 0."""
    if "spike_rate" not in runs.columns:
        return runs
    rate = runs["spike_rate"]
    return runs[(rate.isna() | (rate == 0)).to_numpy()]


def select(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """Rows of ``frame`` matching every key of ``where`` (NaN matches NaN)."""
    mask = np.ones(len(frame), dtype=bool)
    for key, value in where.items():
        column = frame[key]
        mask &= column.isna().to_numpy() if pd.isna(value) else (column == value).to_numpy()
    return frame[mask]


def problems(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (task, model) pairs of the runs table, in order of first appearance."""
    pairs = runs[list(PROBLEM_COLUMNS)].drop_duplicates()
    return [(str(t), str(m)) for t, m in pairs.itertuples(index=False)]


def strategy_order(runs: pd.DataFrame) -> list[str]:
    """Strategies in a fixed order: ``none`` first, then in order of first appearance (config order)."""
    seen = list(dict.fromkeys(runs["strategy"].astype(str)))
    return sorted(seen, key=lambda s: (s != "none", seen.index(s)))


def panels(runs: pd.DataFrame, task: str, model: str) -> list[dict]:
    """The panels of one problem: one dict of panel-column values per (optimizer, condition)."""
    keys = panel_columns(runs)
    subset = runs[(runs["task"] == task) & (runs["model"] == model)]
    return [dict(zip(keys, values, strict=True)) for values in subset[keys].drop_duplicates().itertuples(index=False)]


def panel_label(panel: dict, runs: pd.DataFrame) -> str:
    """A short title for a panel: task / model, and optimizer and dials where they vary."""
    parts = [f"{panel['task']} / {panel['model']}"]
    if runs["optimizer"].nunique() > 1:
        parts.append(str(panel["optimizer"]))
    for dial in dial_columns(runs):
        value = panel.get(dial)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            if select(runs, {"task": panel["task"], "model": panel["model"]})[dial].nunique() > 1:
                parts.append(f"{dial}={value:g}")
    return ", ".join(parts)
