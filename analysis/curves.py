"""Training curves: per-run loss matrices, smoothing, bands over seeds, gradient-norm spikes and late loss.

Every function reads a curves table (one row per run and step, docs/results.md)
with the runs it concerns. A diverged run is never left out: from its
divergence step on it counts at its task's chance loss (:func:`loss_matrix`),
as a failed run counts at chance everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.inference import bootstrap_columns
from analysis.memo import memoised
from analysis.vocabulary import select, setting_columns

CurveSource = pd.DataFrame | Callable[[Sequence[str]], pd.DataFrame] | None
"""Curves as a table, or a function returning the curve rows of the given run ids (to read only those)."""


def curves_of(curves: CurveSource, run_ids: Sequence[str]) -> pd.DataFrame | None:
    """The curve rows of ``run_ids`` from a :data:`CurveSource`; None without curves."""
    if curves is None:
        return None
    if callable(curves):
        return curves(list(run_ids))
    return curves[curves["run_id"].isin(list(run_ids))]


class RunRows:
    """A curves table indexed by run once: a :data:`CurveSource` whose rows of given runs cost time in proportion
    to those rows, not to the table (``curves[curves["run_id"].isin(run_ids)]`` scans the whole table each time,
    so that reading every panel's runs in turn grows with the square of the sweep).

    Called with run ids it returns exactly that filter's result: the rows of those runs, in the table's order,
    with their index labels.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        codes, runs = pd.factorize(table["run_id"])
        self._runs = pd.Index(runs)
        self._order = np.argsort(codes, kind="stable")  # the rows of run k at _order[_bounds[k]:_bounds[k + 1]]
        self._bounds = np.searchsorted(codes[self._order], np.arange(len(runs) + 1))

    def __call__(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """The rows of ``run_ids`` (an id without curves has none), in the table's order."""
        found = self._runs.get_indexer(pd.unique(pd.Series(list(run_ids), dtype=object)))
        found = found[found >= 0]
        starts, lengths = self._bounds[found], self._bounds[found + 1] - self._bounds[found]
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return self.table.iloc[np.sort(self._order[offsets + np.arange(int(lengths.sum()))])]


def indexed(curves: CurveSource) -> CurveSource:
    """``curves`` as a source that reads the rows of given runs without scanning the table (:class:`RunRows`)
    where it is a table; a reader or None as it is."""
    return RunRows(curves) if isinstance(curves, pd.DataFrame) else curves


def smoothing_window(runs: pd.DataFrame) -> int:
    """Moving-average window for train-loss curves: 2% of the training steps (at least 1)."""
    return max(1, round(0.02 * float(runs["steps"].max())))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last ``window`` points (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, values.size + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def loss_matrix(curves: CurveSource, members: pd.DataFrame, window: int = 1,
                column: str = "train_loss") -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (runs, steps) matrix of a curve column of the runs ``members``, smoothed per run.

    ``members`` are rows of a runs table (``run_id``, ``steps``, ``diverged``,
    ``diverged_step``, ``chance_loss``). Steps run over the training budget
    (0 to ``steps`` - 1). A diverged run is kept in, never left out: from its
    divergence step on (that step included, where the loss blew up) it counts
    at its task's chance loss, the loss of the chance predictor, as a failed
    run counts at chance everywhere. Other non-finite values are carried
    forward; a run without any finite value is NaN throughout. Smoothing
    (trailing mean over ``window`` steps) comes after the filling. A run that logs a step twice counts its
    first row there.
    """
    run_ids = members["run_id"].tolist()
    subset = curves_of(curves, run_ids)
    subset = subset[subset[column].notna().to_numpy()]  # drop eval-only rows
    steps = np.arange(int(members["steps"].max()) if len(members) else 0)
    distinct = pd.Index(list(dict.fromkeys(run_ids)))
    row = distinct.get_indexer(subset["run_id"])
    step = subset["step"].to_numpy(dtype=np.int64)
    inside = (row >= 0) & (step >= 0) & (step < steps.size)
    cell = row[inside] * steps.size + step[inside]
    cell, first = np.unique(cell, return_index=True)
    table = np.full(distinct.size * steps.size, np.nan)
    table[cell] = subset[column].to_numpy(dtype=float)[inside][first]
    matrix = table.reshape(distinct.size, steps.size)[distinct.get_indexer(run_ids)]
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


def curve_band(curves: CurveSource, members: pd.DataFrame, window: int = 1, max_points: int = 200,
               confidence: float = 0.95) -> pd.DataFrame:
    """Mean train loss over the seeds ``members`` with a bootstrap confidence band, on at most ``max_points`` steps.

    Every seed counts at every step: a diverged seed at the chance loss from
    its divergence step on (:func:`loss_matrix`), so the mean never drops a
    seed that blew up. The band is a percentile bootstrap over the seeds (the
    independent unit of one setting), drawn where at least two seeds have a
    value. Columns: step, mean, low, high, seeds (seeds with a value at that
    step), diverged (seeds counted at chance there).
    """
    return _band(curves_of(curves, members["run_id"]), members, window, max_points, confidence)


@memoised
def _band(curves: pd.DataFrame, members: pd.DataFrame, window: int, max_points: int,
          confidence: float) -> pd.DataFrame:
    """:func:`curve_band` of ``members`` from their curve rows (kept per rows and members: a panel's bands are
    drawn in its problem's figure and in the overviews)."""
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
        low[columns], high[columns] = bootstrap_columns(block[rows], confidence)
    return pd.DataFrame({"step": steps, "mean": mean, "low": low, "high": high, "seeds": counts,
                         "diverged": diverged.sum(axis=0)})


def late_median_loss(curves: pd.DataFrame, members: pd.DataFrame, start: float = 0.5) -> pd.Series:
    """Per run of ``members``: the median training loss over the last ``1 - start`` of its budget.

    Diverged runs count at their task's chance loss from the divergence step
    on (:func:`loss_matrix`). Under the bad-batch dial every strategy records
    the loss of a corrupted batch (the loss is taken before the update), an
    isolated high value the median passes over; a lasting rise after a bad
    step, or a divergence, moves it. Indexed like ``members``. Committed (thinned) curves keep every
    step of the runs Q6 reads it of (each setting's best learning rate at each spike rate,
    ``bench.thinning``); of the others they keep some steps, over which the median means nothing.
    """
    steps, matrix = loss_matrix(curves, members)
    late = matrix[:, steps >= start * steps.size] if steps.size else matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmedian(late, axis=1) if late.size else np.full(len(members), np.nan)
    return pd.Series(values, index=members.index)


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


def explosion_traces(runs: pd.DataFrame, curves: CurveSource, where: Mapping[str, Any] | None = None, n: int = 3,
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
    chosen = select(runs, where or {})
    frame = _spike_frame(curves_of(curves, chosen["run_id"]), window, warmup)
    peaks = _peaks(frame).dropna(subset=["max_ratio"]).reset_index()
    top = peaks.sort_values(["max_ratio", "run_id"], ascending=[False, True]).head(n)
    rows = frame.merge(top[["run_id", "peak_step"]], on="run_id")
    rows["offset"] = rows["step"] - rows["peak_step"]
    rows = rows[rows["offset"].between(-before, after)]
    identity = chosen[["run_id", "strategy", *setting_columns(runs), "seed", "diverged"]]
    return rows.merge(identity, on="run_id").reset_index(drop=True)
