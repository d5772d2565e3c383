"""Results as long-format Parquet: a runs table and a curves table per cell.

Both schemas are written down here (and in the README) and checked on every
write and read; a file that is truncated, foreign or misses a column fails
with its name. Writes are atomic: a temporary file in the same folder, then a
rename, so a killed job never leaves a half-written table behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench import atomic
from bench.columns import CURVES_COLUMNS, RUNS_COLUMNS, TIMING_COLUMNS  # noqa: F401 - TIMING_COLUMNS re-exported
from bench.engine import History
from bench.sweep import Cell
from bench.tasks import Task


class StoreError(ValueError):
    """A results file that cannot be read as the table it should be; names the file."""


def _best(values: np.ndarray, higher_is_better: bool) -> tuple[int, float]:
    """Index and value of the best finite entry (index -1 and NaN when none is finite)."""
    finite = np.isfinite(values)
    if not finite.any():
        return -1, float("nan")
    masked = np.where(finite, values, -np.inf if higher_is_better else np.inf)
    index = int(np.argmax(masked) if higher_is_better else np.argmin(masked))
    return index, float(values[index])


def tables(cell: Cell, task: Task, history: History) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of a trained cell."""
    run_ids = cell.run_ids()
    steps = np.arange(cell.steps)
    eval_steps = np.asarray(history.eval_steps)
    run_rows, curve_parts = [], []
    for k, (run_id, run) in enumerate(zip(run_ids, cell.runs, strict=True)):
        last = int(history.diverged_step[k]) if history.diverged_step[k] >= 0 else cell.steps
        evals = eval_steps <= last
        best, best_val = _best(history.eval_metrics["val_metric"][evals, k], task.higher_is_better)
        train = history.step_metrics["train_loss"][: min(last + 1, cell.steps), k]
        run_rows.append({
            "run_id": run_id, "sweep": cell.sweep, "cell": cell.id, "task": cell.task_name,
            "model": cell.model_name, "family": cell.model["family"], "optimizer": cell.optimizer_name,
            "strategy": cell.strategy_name, "lr": run.lr, "seed": run.seed, "metric": task.metric,
            "higher_is_better": task.higher_is_better, "chance_metric": task.chance_metric,
            "chance_loss": task.chance_loss, "diverged": bool(history.diverged_step[k] >= 0),
            "diverged_step": int(history.diverged_step[k]),
            "final_train_loss": float(train[-1]) if len(train) else float("nan"),
            "best_val_metric": best_val,
            "test_metric_at_best_val": float(history.eval_metrics["test_metric"][evals, k][best])
            if best >= 0 else float("nan"),
            "steps": cell.steps, "wall_time_s": history.wall_time_s,
            **{key: float(value) for key, value in {**run.hyperparameters, **run.dials}.items()},
        })
        rows = steps <= last
        curve = pd.DataFrame({"run_id": run_id, "step": steps[rows]})
        for name in ("train_loss", "grad_norm_pre", "grad_norm_post", "update_ratio"):
            curve[name] = history.step_metrics[name][rows, k].astype(np.float64)
        curve["clipped"] = history.step_metrics["clipped"][rows, k] > 0.5
        evaluated = pd.DataFrame({"run_id": run_id, "step": eval_steps[evals]})
        for name, values in history.eval_metrics.items():
            evaluated[name] = values[evals, k].astype(np.float64)
        curve_parts.append(curve.merge(evaluated, on=["run_id", "step"], how="outer"))
    curves = pd.concat(curve_parts, ignore_index=True)
    curves["clipped"] = curves["clipped"].fillna(False).astype(bool)
    return pd.DataFrame(run_rows), curves[list(CURVES_COLUMNS)].sort_values(["run_id", "step"], ignore_index=True)


def _check(frame: pd.DataFrame, columns: dict[str, pa.DataType], name: str, extra_float: bool) -> pa.Table:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StoreError(f"{name}: missing columns {missing}")
    extra = [c for c in frame.columns if c not in columns]
    if extra and not extra_float:
        raise StoreError(f"{name}: unexpected columns {extra}")
    schema = pa.schema([(c, columns.get(c, pa.float64())) for c in [*columns, *extra]])
    try:
        return pa.Table.from_pandas(frame[[*columns, *extra]], schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as error:
        raise StoreError(f"{name}: {error}") from None


def write(frame: pd.DataFrame, path: str | Path, kind: str) -> None:
    """Check ``frame`` against the ``kind`` ('runs' or 'curves') schema and write it atomically."""
    path = Path(path)
    columns = RUNS_COLUMNS if kind == "runs" else CURVES_COLUMNS
    table = _check(frame, columns, str(path), extra_float=kind == "runs")
    with atomic.writing(path) as partial:
        pq.write_table(table, partial)


def read(path: str | Path, kind: str) -> pd.DataFrame:
    """Read a ``kind`` table, checking its schema; any problem names the file."""
    path = Path(path)
    columns = RUNS_COLUMNS if kind == "runs" else CURVES_COLUMNS
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable {kind} table ({error})") from None
    fields = {f.name: f.type for f in table.schema}
    for column, dtype in columns.items():
        if fields.get(column) != dtype:
            raise StoreError(f"{path}: not a {kind} table (column {column!r} is {fields.get(column)}, not {dtype})")
    if kind == "curves" and set(fields) != set(columns):
        raise StoreError(f"{path}: not a curves table (unexpected columns {sorted(set(fields) - set(columns))})")
    return table.to_pandas()


def write_cell(runs: pd.DataFrame, curves: pd.DataFrame, out: str | Path) -> None:
    """Write a cell's tables; curves first, so runs.parquet existing means the cell is complete."""
    out = Path(out)
    write(curves, out / "curves.parquet", "curves")
    write(runs, out / "runs.parquet", "runs")


def aggregate(cell_dirs: list[Path], out: str | Path) -> tuple[int, int]:
    """Concatenate the cells' tables into ``out``/runs.parquet and curves.parquet.

    Every input is validated first; the run ids must be unique. Returns the
    numbers of runs and curve rows written.
    """
    runs = [read(Path(d) / "runs.parquet", "runs") for d in cell_dirs]
    curves = [read(Path(d) / "curves.parquet", "curves") for d in cell_dirs]
    all_runs = pd.concat(runs, ignore_index=True)
    duplicated = all_runs["run_id"][all_runs["run_id"].duplicated()]
    if len(duplicated):
        raise StoreError(f"run id {duplicated.iloc[0]!r} appears in more than one cell")
    all_curves = pd.concat(curves, ignore_index=True)
    write(all_runs, Path(out) / "runs.parquet", "runs")
    write(all_curves, Path(out) / "curves.parquet", "curves")
    return len(all_runs), len(all_curves)
