"""Reading a sweep's tables: ``results/<sweep>/runs.parquet`` and ``curves.parquet``, their columns checked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from analysis.vocabulary import BOTH_SEED_SETS, CURVE_COLUMNS, RUN_COLUMNS, default_precision, of_seed_set
from bench import paths
from bench.columns import DISCOVERY, with_run_defaults

__all__ = ["check_tables", "curve_reader", "load", "load_runs"]


def load(sweep: str, root: Path | str = ".", every_precision: bool = False,
         seed_set: str = DISCOVERY) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``results/<sweep>/runs.parquet`` and ``curves.parquet``, checking their columns (a runs table written
    before a column of ``bench.columns.RUNS_DEFAULTS`` existed gets its default): the runs of :func:`load_runs`
    and their curves."""
    tables = paths.tables(paths.results_dir(sweep, root))
    runs = load_runs(sweep, root, every_precision, seed_set)
    curves = contiguous(pd.read_parquet(tables["curves"]))
    check_tables(runs, curves)
    if not every_precision or seed_set != BOTH_SEED_SETS:
        curves = curves[curves["run_id"].isin(runs["run_id"]).to_numpy()]
    return runs, curves


def load_runs(sweep: str, root: Path | str = ".", every_precision: bool = False,
              seed_set: str = DISCOVERY) -> pd.DataFrame:
    """Read only ``results/<sweep>/runs.parquet``, checking its columns (defaults filled in as by :func:`load`):
    the runs of the seed set ``seed_set`` (``discovery``, the config's ``seeds``, by default; ``replication``,
    its ``replication_seeds``; ``both``: ``vocabulary.of_seed_set``) at the default precision, or with
    ``every_precision`` at every precision."""
    runs = with_run_defaults(pd.read_parquet(paths.table(paths.results_dir(sweep, root), "runs")))
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {', '.join(missing)}")
    runs = of_seed_set(runs, seed_set)
    return (runs if every_precision else default_precision(runs)).reset_index(drop=True)


def curve_reader(sweep: str, root: Path | str = ".") -> Callable[[Sequence[str]], pd.DataFrame] | None:
    """A reader of ``results/<sweep>/curves.parquet`` giving the rows of the run ids asked for (the columns
    ``run_id``, ``step``, ``train_loss``, ``val_loss``, ``val_metric``, in the table's order, a fresh index);
    None if absent.

    The table is read once, at the first call, and indexed by run (``curves.RunRows``): a question reads the
    curves of many groups of runs, and a filtered read decodes the whole file each time.
    """
    from analysis.curves import RunRows

    path = paths.table(paths.results_dir(sweep, root), "curves")
    if not path.is_file():
        return None
    columns = ["run_id", "step", "train_loss", "val_loss", "val_metric"]
    indexed: list[RunRows] = []

    def read(run_ids: Sequence[str]) -> pd.DataFrame:
        if not indexed:
            indexed.append(RunRows(contiguous(pd.read_parquet(path, columns=columns))))
        return indexed[0](run_ids).reset_index(drop=True)

    return read


def contiguous(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each Arrow-backed column (strings) held in one piece: Parquet reads a large table in
    chunks, and taking rows of a chunked column (any filter) joins its chunks first, at the cost of the
    whole column. Values, dtypes and index are unchanged."""
    joined = {}
    for column in frame.columns:
        values = frame[column].array
        arrow = values.__arrow_array__() if hasattr(values, "__arrow_array__") else None
        if isinstance(arrow, pa.ChunkedArray) and arrow.num_chunks > 1:
            joined[column] = pd.array(arrow.combine_chunks(), dtype=frame[column].dtype)
    return frame.assign(**joined) if joined else frame


def check_tables(runs: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Raise ValueError naming the first column the analysis needs and the tables lack."""
    for name, table, columns in (("runs", runs, RUN_COLUMNS), ("curves", curves, CURVE_COLUMNS)):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{name} table lacks column(s) {', '.join(missing)}")
