"""Results as long-format Parquet: a runs table and a curves table per cell.

Both schemas are written down here (and in docs/results.md) and checked on every
write and read (a curves table may hold a model's probe columns besides, named as
bench.columns.PROBE_PATTERN says); a file that is truncated, foreign or misses a
column fails with its name. Writes are atomic: a temporary file in the same folder, then a
rename, so a killed job never leaves a half-written table behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import atomic, paths
from bench.columns import (  # noqa: F401 - TIMING_COLUMNS re-exported
    CURVES_COLUMNS,
    EVAL_METRICS,
    RUNS_COLUMNS,
    RUNS_DEFAULTS,
    STEP_METRICS,
    TIMING_COLUMNS,
    curves_columns,
    is_probe,
    with_run_defaults,
)
from bench.engine import History
from bench.errors import StoreError
from bench.sweep import Cell
from bench.tasks import Task

if TYPE_CHECKING:  # pandas is imported where frames are read or combined, never by a training job
    import pandas as pd


def _best(values: np.ndarray, higher_is_better: bool) -> tuple[int, float]:
    """Index and value of the best finite entry (index -1 and NaN when none is finite)."""
    finite = np.isfinite(values)
    if not finite.any():
        return -1, float("nan")
    masked = np.where(finite, values, -np.inf if higher_is_better else np.inf)
    index = int(np.argmax(masked) if higher_is_better else np.argmin(masked))
    return index, float(values[index])


def _run_rows(cell: Cell, task: Task, history: History) -> list[dict[str, object]]:
    """One row per run, in the cell's run order: identity, hyperparameters and summary metrics."""
    eval_steps = np.asarray(history.eval_steps)
    rows: list[dict[str, object]] = []
    for k, (run_id, run) in enumerate(zip(cell.run_ids(), cell.runs, strict=True)):
        last = int(history.diverged_step[k]) if history.diverged_step[k] >= 0 else cell.steps
        evals = eval_steps <= last
        best, best_val = _best(history.eval_metrics["val_metric"][evals, k], task.higher_is_better)
        train = history.step_metrics["train_loss"][: min(last + 1, cell.steps), k]
        rows.append({
            "run_id": run_id, "sweep": cell.sweep, "cell": cell.id, "task": cell.task_name,
            "model": cell.model_name, "family": cell.model["family"], "optimizer": cell.optimizer_name,
            "strategy": cell.strategy_name, "dtype": cell.dtype, "lr": run.lr, "seed": run.seed,
            "seed_set": cell.seed_set,
            "metric": task.metric, "higher_is_better": task.higher_is_better, "chance_metric": task.chance_metric,
            "chance_loss": task.chance_loss, "diverged": bool(history.diverged_step[k] >= 0),
            "diverged_step": int(history.diverged_step[k]),
            "final_train_loss": float(train[-1]) if len(train) else float("nan"),
            "best_val_metric": best_val,
            "final_val_metric": float("nan") if history.diverged_step[k] >= 0
            else float(history.eval_metrics["val_metric"][-1, k]),
            "test_metric_at_best_val": float(history.eval_metrics["test_metric"][evals, k][best])
            if best >= 0 else float("nan"),
            "steps": cell.steps, "wall_time_s": history.wall_time_s,
            **{key: float(value) for key, value in {**run.hyperparameters, **run.dials}.items()},
        })
    return rows


def _curve_columns(cell: Cell, history: History) -> dict[str, np.ndarray]:
    """The curves table's columns (:func:`bench.columns.curves_columns` of the probes the history holds):
    per run (ordered by run id), every step up to its last (its divergence step, else the last step) and
    every evaluation step up to it, in step order; step metrics and probes are NaN (``clipped`` false) at
    the final evaluation step, evaluation metrics off evaluation steps."""
    run_ids = cell.run_ids()
    eval_steps = np.asarray(history.eval_steps, dtype=np.int64)  # sorted
    logged_names = [*STEP_METRICS, *logged_probes(history)]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in curves_columns(logged_names)}
    for k in sorted(range(len(run_ids)), key=run_ids.__getitem__):
        last = int(history.diverged_step[k]) if history.diverged_step[k] >= 0 else cell.steps
        steps = np.union1d(np.arange(min(last + 1, cell.steps)), eval_steps[eval_steps <= last])
        logged = steps[steps < cell.steps]  # the first len(logged) rows have step metrics
        parts["run_id"].append(np.full(len(steps), run_ids[k], dtype=object))
        parts["step"].append(steps)
        for name in logged_names:
            values = np.full(len(steps), False if name == "clipped" else np.nan)
            logs = history.step_metrics[name][logged, k]
            values[: len(logged)] = logs > 0.5 if name == "clipped" else logs
            parts[name].append(values)
        evaluated = np.isin(steps, eval_steps)
        rows = np.searchsorted(eval_steps, steps[evaluated])
        for name in EVAL_METRICS:
            values = np.full(len(steps), np.nan)
            values[evaluated] = history.eval_metrics[name][rows, k]
            parts[name].append(values)
    return {name: np.concatenate(columns) for name, columns in parts.items()}


def logged_probes(history: History) -> list[str]:
    """The probes a history logged besides the step metrics, in their order (bench.columns.PROBE_PATTERN)."""
    return [name for name in history.step_metrics if is_probe(name)]


NUMPY_TYPES = {pa.float64(): np.float64, pa.int64(): np.int64}


def _arrow_array(values: Sequence[object] | np.ndarray, dtype: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``dtype`` (string, bool, int64 or float64), NaN as null.

    Made from its buffers: pyarrow's converters (``pa.array``, ``pa.table``) import pandas, a
    second of every training job. NaN becomes null, as in pyarrow's conversion of a DataFrame, so
    the files are the same either way.
    """
    n = len(values)
    if dtype == pa.string():
        encoded = [str(value).encode() for value in values]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(value) for value in encoded], out=offsets[1:])
        return pa.Array.from_buffers(dtype, n, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    if dtype == pa.bool_():
        bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
        return pa.Array.from_buffers(dtype, n, [None, pa.py_buffer(bits)])
    data = np.ascontiguousarray(values, dtype=NUMPY_TYPES[dtype])
    missing = np.isnan(data) if dtype == pa.float64() else np.zeros(n, dtype=bool)
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little")) if missing.any() else None
    return pa.Array.from_buffers(dtype, n, [validity, pa.py_buffer(data)], null_count=int(missing.sum()))


def _arrow_table(columns: Mapping[str, Sequence[object] | np.ndarray], schema: pa.Schema) -> pa.Table:
    """An Arrow table of ``schema`` from its columns (see :func:`_arrow_array`)."""
    return pa.Table.from_arrays([_arrow_array(columns[field.name], field.type) for field in schema], schema=schema)


def arrow_tables(cell: Cell, task: Task, history: History) -> tuple[pa.Table, pa.Table]:
    """The runs and curves tables of a trained cell, as Arrow tables in the store's schemas.

    Built from NumPy arrays without pandas, which a training job so never imports: the same
    tables as :func:`tables` gives, written the same.
    """
    rows = _run_rows(cell, task, history)
    extra = [key for key in rows[0] if key not in RUNS_COLUMNS]
    runs_schema = pa.schema([(c, RUNS_COLUMNS.get(c, pa.float64())) for c in [*RUNS_COLUMNS, *extra]])
    runs = _arrow_table({name: [row[name] for row in rows] for name in runs_schema.names}, runs_schema)
    curves_schema = pa.schema(list(curves_columns(logged_probes(history)).items()))
    return runs, _arrow_table(_curve_columns(cell, history), curves_schema)


def tables(cell: Cell, task: Task, history: History) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of a trained cell, as DataFrames (see :func:`arrow_tables`)."""
    runs, curves = arrow_tables(cell, task, history)
    return runs.to_pandas(), curves.to_pandas()


def _check(frame: pd.DataFrame | pa.Table, columns: dict[str, pa.DataType], name: str,
           extra_float: bool) -> pa.Table:
    present = _present(frame)
    missing = [c for c in columns if c not in present]
    if missing:
        raise StoreError(f"{name}: missing columns {missing}")
    extra = [c for c in present if c not in columns]
    if extra and not extra_float:
        raise StoreError(f"{name}: unexpected columns {extra}")
    schema = pa.schema([(c, columns.get(c, pa.float64())) for c in [*columns, *extra]])
    try:
        if isinstance(frame, pa.Table):
            table = frame.select(schema.names)
            return table if table.schema.equals(schema) else table.cast(schema)
        return pa.Table.from_pandas(frame[[*columns, *extra]], schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as error:
        raise StoreError(f"{name}: {error}") from None


def _present(frame: pd.DataFrame | pa.Table) -> list[str]:
    """The column names of ``frame``."""
    return frame.column_names if isinstance(frame, pa.Table) else [str(name) for name in frame.columns]


def write(frame: pd.DataFrame | pa.Table, path: str | Path, kind: str) -> None:
    """Check ``frame`` (a DataFrame or an Arrow table) against the ``kind`` ('runs' or 'curves')
    schema and write it atomically; a curves table's probe columns are float64 columns of it."""
    path = Path(path)
    columns = RUNS_COLUMNS if kind == "runs" else curves_columns(_present(frame))
    table = _check(frame, columns, str(path), extra_float=kind == "runs")
    with atomic.writing(path) as partial:
        pq.write_table(table, partial)


def read(path: str | Path, kind: str) -> pd.DataFrame:
    """Read a ``kind`` table, checking its schema (a curves table's probe columns as float64); any problem names
    the file. A runs table written before a column of ``bench.columns.RUNS_DEFAULTS`` existed reads with that
    column holding its default."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable {kind} table ({error})") from None
    fields = {f.name: f.type for f in table.schema}
    columns = RUNS_COLUMNS if kind == "runs" else curves_columns(fields)
    for column, dtype in columns.items():
        if kind == "runs" and column in RUNS_DEFAULTS and column not in fields:
            continue
        if fields.get(column) != dtype:
            raise StoreError(f"{path}: not a {kind} table (column {column!r} is {fields.get(column)}, not {dtype})")
    if kind == "curves" and set(fields) != set(columns):
        raise StoreError(f"{path}: not a curves table (unexpected columns {sorted(set(fields) - set(columns))})")
    return with_run_defaults(table.to_pandas()) if kind == "runs" else table.to_pandas()


def write_cell(runs: pd.DataFrame | pa.Table, curves: pd.DataFrame | pa.Table, out: str | Path) -> None:
    """Write a cell's tables; curves first, so runs.parquet existing means the cell is complete."""
    write(curves, paths.table(out, "curves"), "curves")
    write(runs, paths.table(out, "runs"), "runs")


def aggregate(cell_dirs: list[Path], out: str | Path) -> tuple[int, int]:
    """Concatenate the cells' tables into ``out``/runs.parquet and curves.parquet.

    Every input is validated first; the run ids must be unique. Returns the
    numbers of runs and curve rows written.
    """
    import pandas as pd

    runs = [read(paths.table(d, "runs"), "runs") for d in cell_dirs]
    curves = [read(paths.table(d, "curves"), "curves") for d in cell_dirs]
    all_runs = pd.concat(runs, ignore_index=True)
    duplicated = all_runs["run_id"][all_runs["run_id"].duplicated()]
    if len(duplicated):
        raise StoreError(f"run id {duplicated.iloc[0]!r} appears in more than one cell")
    all_curves = pd.concat(curves, ignore_index=True)
    write(all_runs, paths.table(out, "runs"), "runs")
    write(all_curves, paths.table(out, "curves"), "curves")
    return len(all_runs), len(all_curves)
