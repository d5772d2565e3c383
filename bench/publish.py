"""A sweep's results committed with the repository, cell by cell: ``study/<sweep>/cells/<cell>/``.

A committed cell holds what the figures, numbers and paper draw from one cell, so that they rebuild
without training it:

- ``runs.parquet``: the cell's runs table in full, exactly as trained;
- ``curves.parquet``: its curves table thinned by a rule that reads this cell alone
  (``bench.thinning``: the values some figure, table or claim reads, NaN for the others). Metrics (a
  model's probe columns too) are stored as float32 where that is exact (the engine logs them in
  float32), steps as int32; zstd, float columns byte-stream split, steps delta-encoded;
- ``cell.json``: its record (``bench.record``): the cell's fingerprint
  (``bench.fingerprint.cell_fingerprint``, the one notion of what decides its results), the date and
  torch version it was trained with, its thinning, the date it was published.

:func:`publish` (``python -m bench publish``) adds and replaces committed cells from the cells trained
in ``results/<sweep>/cells/`` whose record matches the config, keeps the others, and drops the
committed cells the config no longer has: a study trained in several sittings can be published after
each. The workflow restores every cell whose committed record matches the cell's fingerprint
(:func:`restore_cell`, rule ``restore``) and trains only the others.

A cell is written record last and removed record first (``bench.record``): a publish killed at any
moment leaves each committed cell whole or without a record, which nothing restores. This module is
imported by the Snakefile as it parses: pandas, pyarrow and the thinning are imported where they are used.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import paths, record, sweep
from bench.errors import StoreError
from bench.fingerprint import cell_fingerprint

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

COMPRESSION = {"compression": "zstd", "compression_level": 19}


def committed(study: Path | str, cell: str, fingerprint: str) -> dict[str, Any] | None:
    """The record of the committed cell ``cell`` in the study folder ``study`` (``study/<sweep>``) where
    it holds that cell as ``fingerprint`` defines it; else None."""
    return record.holds(Path(study) / paths.CELLS / cell, fingerprint)


def _check_runs(cell: sweep.Cell, runs: pd.DataFrame, path: Path) -> None:
    """Raise StoreError unless ``runs`` holds exactly the runs of ``cell``, trained for its steps, in its sweep."""
    expected = cell.run_ids()
    found = list(runs["run_id"])
    if sorted(found) != sorted(expected):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        example = (missing or extra or found)[0]
        raise StoreError(f"{path}: not the runs of cell {cell.id} ({len(missing)} missing, {len(extra)} not in it, "
                         f"{len(found) - len(set(found))} repeated, e.g. {example!r})")
    wrong = runs[runs["steps"] != cell.steps]
    if len(wrong):
        raise StoreError(f"{path}: run {wrong['run_id'].iloc[0]!r} trained {wrong['steps'].iloc[0]} steps, the config "
                         f"says {cell.steps}")
    names = set(runs["sweep"])
    if names != {cell.sweep}:
        raise StoreError(f"{path}: runs of sweep {sorted(names)}, the config names {cell.sweep!r}")


def _compact(curves: pd.DataFrame) -> pa.Table:
    """The curves (with their probe columns, if any) as a pyarrow table in compact types: float32 where exact
    (else float64), int32 steps."""
    import numpy as np
    import pyarrow as pa

    from bench.columns import curves_columns

    columns = curves_columns(map(str, curves.columns))
    fields = []
    for name, dtype in columns.items():
        if pa.types.is_floating(dtype):
            values = curves[name].to_numpy(dtype=np.float64)
            exact = np.array_equal(values.astype(np.float32).astype(np.float64), values, equal_nan=True)
            dtype = pa.float32() if exact else pa.float64()
        elif name == "step":
            dtype = pa.int32()
        fields.append((name, dtype))
    return pa.Table.from_pandas(curves[list(columns)], schema=pa.schema(fields), preserve_index=False)


def _write_parquet(table: pa.Table, path: Path, floats_split: bool = False) -> None:
    """Write ``table`` with zstd; with ``floats_split`` (a curves table), float columns byte-stream split rather
    than dictionary encoded (a third of the size for noisy curves), ``step`` delta-encoded (a run's steps
    follow one another: a few bits a row rather than a dictionary of every step), the other columns
    dictionary encoded.

    Without what a small file would mostly hold otherwise: pandas' and Arrow's schema records (its
    Parquet types read back as the same Arrow types) and column statistics.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench import atomic

    options: dict[str, Any] = {}
    if floats_split:
        floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
        options = {"use_byte_stream_split": floats, "column_encoding": {"step": "DELTA_BINARY_PACKED"},
                   "use_dictionary": [f.name for f in table.schema if f.name not in (*floats, "step")]}
    with atomic.writing(path) as partial:
        pq.write_table(table.replace_schema_metadata(None), partial, store_schema=False, write_statistics=False,
                       **COMPRESSION, **options)


def write_cell(folder: Path | str, runs: pd.DataFrame, curves: pd.DataFrame, stored: dict[str, Any]) -> None:
    """Commit one cell into ``folder``: its runs table in full, its (thinned) curves in compact types, then
    its record ``stored``; the previous record is removed first."""
    import pyarrow as pa

    from bench.columns import RUNS_COLUMNS

    folder = Path(folder)
    record.remove(folder)
    tables = paths.tables(folder)
    _write_parquet(_compact(curves), tables["curves"], floats_split=True)
    schema = pa.schema([(c, RUNS_COLUMNS.get(c, pa.float64())) for c in runs.columns])
    _write_parquet(pa.Table.from_pandas(runs, schema=schema, preserve_index=False), tables["runs"])
    record.write(folder, stored)


def read_cell(folder: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A committed cell's runs and curves tables in the results schema (float64 metrics, int64 steps)."""
    import pyarrow.parquet as pq

    from bench.columns import curves_columns, with_run_defaults

    frames = {}
    for kind, path in paths.tables(folder).items():
        try:
            frames[kind] = pq.read_table(path).to_pandas()
        except (OSError, ValueError) as error:
            raise StoreError(f"{path}: not a readable {kind} table ({error})") from None
    curves = frames["curves"]
    frames["runs"] = with_run_defaults(frames["runs"])  # a cell committed before a run column existed
    for name in curves_columns(map(str, curves.columns)):
        if name in curves and name not in ("run_id", "clipped"):
            curves[name] = curves[name].astype("int64" if name == "step" else "float64")
    return frames["runs"], curves


def restore_cell(folder: Path | str, out: Path | str, sweep_name: str, fingerprint: str) -> dict[str, Any]:
    """Write the committed cell ``folder`` into the results cell folder ``out``: its tables in the results
    schema (validated), then its record with ``restored_from``. Refuses a folder that does not hold the
    cell of ``fingerprint`` in sweep ``sweep_name``. Returns the record written."""
    from bench import store

    folder, out = Path(folder), Path(out)
    stored = record.holds(folder, fingerprint)
    if stored is None:
        found = record.read(folder)
        why = "no record" if found is None else f"committed for fingerprint {found['fingerprint'][:12]}..."
        raise StoreError(f"{folder}: not the committed cell of fingerprint {fingerprint[:12]}... ({why})")
    if stored.get("sweep") != sweep_name:
        raise StoreError(f"{folder}: committed for sweep {stored.get('sweep')!r}, not {sweep_name!r}")
    runs, curves = read_cell(folder)
    record.remove(out)
    store.write_cell(runs, curves, out)
    restored = {**stored, "restored_from": str(folder)}
    record.write(out, restored)
    return restored


def restore(config: dict[str, Any], study: Path | str, out: Path | str,
            names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Restore into ``<out>/cells/`` every cell of ``config`` (or of ``names``) committed in ``study`` for
    its fingerprint. Returns the ids restored and those not committed for it; a cell of ``names`` that
    is not refuses the whole command, before any write."""
    cells = {cell.id: cell for cell in sweep.cells(config)}
    unknown = [name for name in names or [] if name not in cells]
    if unknown:
        raise sweep.ConfigError(f"cell {unknown[0]!r} is not a cell of the config; allowed: {', '.join(cells)}")
    fingerprints = {name: cell_fingerprint(cells[name]) for name in names or cells}
    matching = [name for name, fingerprint in fingerprints.items() if committed(study, name, fingerprint)]
    missing = [name for name in fingerprints if name not in matching]
    if names and missing:
        raise StoreError(f"{Path(study) / paths.CELLS / missing[0]}: not committed for cell {missing[0]} as the "
                         "config defines it")
    for name in matching:
        restore_cell(Path(study) / paths.CELLS / name, Path(out) / paths.CELLS / name, config["sweep"],
                     fingerprints[name])
    return matching, missing


def _same(committed_tables: tuple[pd.DataFrame, pd.DataFrame], runs: pd.DataFrame, curves: pd.DataFrame) -> bool:
    """Whether the committed tables are ``runs`` and ``curves`` (the curves compared in the results schema)."""
    old_runs, old_curves = committed_tables
    return old_runs.equals(runs) and old_curves.reset_index(drop=True).equals(curves.reset_index(drop=True))


def _published(cell: sweep.Cell, source: Path, trained: dict[str, Any]) -> tuple[Any, Any, dict]:
    """A cell trained in ``source`` (record ``trained``) as it is committed: its runs, its curves thinned
    (or as they are where its record says they were thinned already), and its record."""
    from bench import store, thinning

    tables = paths.tables(source)
    runs = store.read(tables["runs"], "runs")
    curves = store.read(tables["curves"], "curves")
    _check_runs(cell, runs, tables["runs"])
    stored = dict(trained)
    if trained.get("thinning") is None:
        thinned, keep = thinning.thin(runs, curves)
        stored["thinning"] = {"rule": thinning.RULE, "curve_rows_trained": len(curves), "every_step_runs": len(keep)}
        curves = thinned
    stored.update(curve_rows=len(curves), runs=len(runs))
    return runs, curves, stored


def publish(sweep_name: str, config_path: str | Path, results: str | Path = paths.RESULTS,
            out: str | Path = paths.STUDY) -> dict[str, Any]:
    """Bring ``<out>/<sweep>/cells/`` up to date with the cells of ``config_path`` trained in
    ``<results>/<sweep>/cells/``.

    A cell trained there whose record holds the cell's fingerprint is written (thinned, ``bench.thinning``)
    unless the committed one holds the same tables; a committed cell without
    such a trained one is kept as it is (a cell restored from the study is never written back: the
    committed one may be newer); a committed cell of a cell the config no longer has is removed.
    Every trained cell is checked (its runs are the cell's) before anything is written. Returns lists of
    cell ids: ``added``, ``replaced``, ``kept``, ``dropped``, ``untrained`` (neither trained nor
    committed for the config), ``stale`` (committed for another definition of the cell, not trained).
    """
    config = sweep.load(config_path)
    if config["sweep"] != sweep_name:
        raise sweep.ConfigError(f"config file '{config_path}' names sweep {config['sweep']!r}, not {sweep_name!r}")
    study = Path(out) / sweep_name
    cells = sweep.cells(config)
    summary: dict[str, Any] = {name: [] for name in ("added", "replaced", "kept", "dropped", "untrained", "stale")}
    writes = []
    today = datetime.date.today().isoformat()
    for cell in cells:
        fingerprint = cell_fingerprint(cell)
        source = Path(results) / sweep_name / paths.CELLS / cell.id
        target = study / paths.CELLS / cell.id
        previous = record.read(target) if all(p.is_file() for p in paths.tables(target).values()) else None
        trained = record.holds(source, fingerprint)
        if trained is None or "restored_from" in trained:
            if previous is None:
                summary["untrained"].append(cell.id)
            else:
                summary["kept" if previous["fingerprint"] == fingerprint else "stale"].append(cell.id)
            continue
        runs, curves, stored = _published(cell, source, trained)
        if previous is not None and previous["fingerprint"] == fingerprint and _same(read_cell(target), runs, curves):
            summary["kept"].append(cell.id)
            continue
        summary["replaced" if previous is not None else "added"].append(cell.id)
        writes.append((target, runs, curves, {**stored, "published": today}))
    for target, runs, curves, stored in writes:
        write_cell(target, runs, curves, stored)
    ids = {cell.id for cell in cells}
    folder = study / paths.CELLS
    for gone in sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in ids) if folder.is_dir() else []:
        record.remove(folder / gone)
        shutil.rmtree(folder / gone)
        summary["dropped"].append(gone)
    summary["bytes"] = sum(p.stat().st_size for p in study.rglob("*") if p.is_file()) if study.is_dir() else 0
    return summary
