"""Loading a sweep's tables and small helpers to slice and label them; no statistics.

Every statistic (best-tuned choice, divergence rates, intervals, tests, ranks)
lives in :mod:`analysis.stats`, with its one rule for failed runs; this module
only reads the tables, names the problems and panels, and turns curves into
the matrices the figures draw. Vocabulary (see the results schema in docs/results.md):

- a *problem* is a (task, model) pair; a *panel* additionally fixes the
  optimizer and the stress-dial values (``stats.panel_columns``);
- a *setting* of a strategy is one point of its tuning grid (``stats.setting_columns``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import stats
from bench import paths
from bench.columns import CURVES_COLUMNS, with_run_defaults

RUN_COLUMNS = stats.RUN_COLUMNS
CURVE_COLUMNS = tuple(CURVES_COLUMNS)
PROBLEM = list(stats.PROBLEM_COLUMNS)


def load(sweep: str, root: Path | str = ".") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``results/<sweep>/runs.parquet`` and ``curves.parquet``, checking their columns (a runs table written
    before a column of ``bench.columns.RUNS_DEFAULTS`` existed gets its default)."""
    tables = paths.tables(paths.results_dir(sweep, root))
    runs = with_run_defaults(pd.read_parquet(tables["runs"]))
    curves = pd.read_parquet(tables["curves"])
    check_tables(runs, curves)
    return runs, curves


def load_runs(sweep: str, root: Path | str = ".") -> pd.DataFrame:
    """Read only ``results/<sweep>/runs.parquet``, checking its columns (defaults filled in as by :func:`load`)."""
    runs = with_run_defaults(pd.read_parquet(paths.table(paths.results_dir(sweep, root), "runs")))
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {', '.join(missing)}")
    return runs


def curve_reader(sweep: str, root: Path | str = ".") -> Callable[[Sequence[str]], pd.DataFrame] | None:
    """A reader of ``results/<sweep>/curves.parquet`` loading only the rows of the run ids asked for; None if absent."""
    path = paths.table(paths.results_dir(sweep, root), "curves")
    if not path.is_file():
        return None
    columns = ["run_id", "step", "train_loss", "val_metric"]

    def read(run_ids: Sequence[str]) -> pd.DataFrame:
        return pd.read_parquet(path, columns=columns, filters=[("run_id", "in", list(run_ids))])

    return read


def check_tables(runs: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Raise ValueError naming the first column the analysis needs and the tables lack."""
    for name, table, columns in (("runs", runs, RUN_COLUMNS), ("curves", curves, CURVE_COLUMNS)):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{name} table lacks column(s) {', '.join(missing)}")


def problems(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (task, model) pairs of the runs table, in order of first appearance."""
    pairs = runs[PROBLEM].drop_duplicates()
    return [(str(t), str(m)) for t, m in pairs.itertuples(index=False)]


def strategy_order(runs: pd.DataFrame) -> list[str]:
    """Strategies in a fixed order: ``none`` first, then in order of first appearance (config order)."""
    seen = list(dict.fromkeys(runs["strategy"].astype(str)))
    return sorted(seen, key=lambda s: (s != "none", seen.index(s)))


def dial_columns(runs: pd.DataFrame) -> list[str]:
    """Stress-dial columns present in the table."""
    return stats.dial_columns(runs)


def _band_interval(samples: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0 (seeds) for every column (step) at once.

    The vectorised form of ``stats.bootstrap_ci`` for curve bands; fewer than
    two seeds or constant columns collapse to the mean.
    """
    mean = samples.mean(axis=0)
    if samples.shape[0] < 2:
        return mean, mean
    result = scipy_stats.bootstrap(
        (samples,), np.mean, axis=0, vectorized=True, confidence_level=confidence,
        n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed),
    )
    low = np.where(np.isfinite(result.confidence_interval.low), result.confidence_interval.low, mean)
    high = np.where(np.isfinite(result.confidence_interval.high), result.confidence_interval.high, mean)
    return low, high


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last ``window`` points (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, values.size + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def loss_matrix(curves: pd.DataFrame, members: pd.DataFrame, window: int = 1,
                column: str = "train_loss") -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (runs, steps) matrix of a curve column of the runs ``members``, smoothed per run.

    ``members`` are rows of a runs table (``run_id``, ``steps``, ``diverged``,
    ``diverged_step``, ``chance_loss``). Steps run over the training budget
    (0 to ``steps`` - 1). A diverged run is kept in, never left out: from its
    divergence step on (that step included, where the loss blew up) it counts
    at its task's chance loss, the loss of the chance predictor, as a failed
    run counts at chance everywhere. Other non-finite values are carried
    forward; a run without any finite value is NaN throughout. Smoothing
    (trailing mean over ``window`` steps) comes after the filling.
    """
    run_ids = members["run_id"].tolist()
    subset = curves[curves["run_id"].isin(run_ids) & curves[column].notna()]  # drop eval-only rows
    table = subset.pivot_table(index="run_id", columns="step", values=column, aggfunc="first", dropna=False)
    steps = np.arange(int(members["steps"].max()) if len(members) else 0)
    matrix = table.reindex(index=run_ids, columns=steps).to_numpy(dtype=float)
    matrix = np.where(np.isfinite(matrix), matrix, np.nan)
    diverged = members["diverged"].to_numpy(dtype=bool)
    after = diverged[:, None] & (steps[None, :] >= members["diverged_step"].to_numpy()[:, None])
    matrix = np.where(after, members["chance_loss"].to_numpy(dtype=float)[:, None], matrix)
    out = np.full_like(matrix, np.nan)
    for i, row in enumerate(matrix):
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size:
            end = finite[-1] + 1
            out[i, :end] = smooth(pd.Series(row[:end]).ffill().to_numpy(), window)
    return steps, out


def curve_band(curves: pd.DataFrame, members: pd.DataFrame, window: int = 1, max_points: int = 200,
               confidence: float = 0.95) -> pd.DataFrame:
    """Mean train loss over the seeds ``members`` with a bootstrap confidence band, on at most ``max_points`` steps.

    Every seed counts at every step: a diverged seed at the chance loss from
    its divergence step on (:func:`loss_matrix`), so the mean never drops a
    seed that blew up. The band is a percentile bootstrap over the seeds (the
    independent unit of one setting), drawn where at least two seeds have a
    value. Columns: step, mean, low, high, seeds (seeds with a value at that
    step), diverged (seeds counted at chance there).
    """
    steps, matrix = loss_matrix(curves, members, window)
    if steps.size > max_points:
        keep = np.unique(np.linspace(0, steps.size - 1, max_points).round().astype(int))
        steps, matrix = steps[keep], matrix[:, keep]
    present = np.isfinite(matrix)
    counts = present.sum(axis=0)
    diverged = members["diverged"].to_numpy(dtype=bool)[:, None] & (
        steps[None, :] >= members["diverged_step"].to_numpy()[:, None])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step without any value: NaN
        mean = np.nanmean(matrix, axis=0) if matrix.size else np.array([])
    low = np.full(steps.shape, np.nan)
    high = np.full(steps.shape, np.nan)
    for n in np.unique(counts[counts >= 2]):
        columns = counts == n
        block = matrix[:, columns]
        rows = np.isfinite(block).all(axis=1)
        low[columns], high[columns] = _band_interval(block[rows], confidence)
    return pd.DataFrame({"step": steps, "mean": mean, "low": low, "high": high, "seeds": counts,
                         "diverged": diverged.sum(axis=0)})


def panels(runs: pd.DataFrame, task: str, model: str) -> list[dict]:
    """The panels of one problem: one dict of panel-column values per (optimizer, condition)."""
    keys = stats.panel_columns(runs)
    subset = runs[(runs["task"] == task) & (runs["model"] == model)]
    return [dict(zip(keys, values, strict=True)) for values in subset[keys].drop_duplicates().itertuples(index=False)]


def select(frame: pd.DataFrame, values: dict) -> pd.DataFrame:
    """Rows of ``frame`` matching every key of ``values`` (NaN matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in values.items():
        if isinstance(value, float) and np.isnan(value):
            mask &= frame[key].isna()
        else:
            mask &= frame[key] == value
    return frame[mask]


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
