"""A sweep's results committed with the repository: ``study/<sweep>/`` (``python -m bench publish``).

A study folder holds what the figures, numbers and paper of a sweep are built
from, so that they rebuild without training:

- ``runs.parquet``: the runs table in full, exactly as aggregated;
- ``curves.parquet``: the curves table thinned to what the figures draw
  (:func:`thin`): every step of the runs a figure draws step by step (each
  strategy's best-tuned runs, the convergence curves; the runs the explosion
  traces pick), every evaluation of every run (time to target), and for the
  other runs every ``every``-th step and the last one. Metrics are stored as
  float32, which is exact: the engine logs them in float32;
- ``fingerprint.json``: :func:`fingerprint` of the config the results were
  trained from (its cells' fingerprints, ``bench.fingerprint``, the one notion
  of what decides results), with the date, the torch version, and the numbers
  of cells, runs and curve rows.

The workflow restores ``results/<sweep>/{runs,curves}.parquet`` from the folder
(``python -m bench restore``) instead of training when the fingerprint matches
the config (:func:`matches`). This module is imported by the Snakefile as it
parses: pandas, pyarrow and the analysis are imported where they are used.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from bench import atomic, paths, sweep
from bench.fingerprint import cell_fingerprint, digest

TABLES = tuple(paths.table("", kind).name for kind in paths.TABLES)
"""A study folder's tables, by file name: runs.parquet, curves.parquet."""
RECORD = "fingerprint.json"
EVERY = 10
"""Default stride of the steps kept for runs no figure draws step by step."""
COMPRESSION = {"compression": "zstd", "compression_level": 19}
FORMAT = 2
"""Of the fingerprint in ``fingerprint.json``: 1 hashed the config's text with its top-level defaults; 2 hashes
its cells' fingerprints (scripts/migrate_fingerprint.py rewrites a record of format 1 whose config matches)."""
THINNING = 1
"""Raised whenever :func:`thin` keeps other curve rows for the same ``every``."""
HASHED = ("sha256 of the canonical JSON (sorted keys, no spaces) of {format, sweep, cells: "
          "bench.fingerprint.cell_fingerprint of each cell of the config in order, thinning: {rule, every}}")
"""What ``fingerprint.json`` says its fingerprint hashes."""


def spec(config: dict[str, Any], every: int = EVERY) -> dict[str, Any]:
    """What decides the published tables of ``config``: the fingerprint's format, the sweep's name (a column
    of the runs table), the fingerprint of each cell in the sweep's order, and the thinning of the curves
    (the rule's version and ``every``)."""
    return {"format": FORMAT, "sweep": config["sweep"],
            "cells": [cell_fingerprint(cell) for cell in sweep.cells(config)],
            "thinning": {"rule": THINNING, "every": every}}


def fingerprint(config: dict[str, Any], every: int = EVERY) -> str:
    """The fingerprint of the results of ``config`` published with stride ``every``: sha256 of :func:`spec`.

    It changes exactly when a cell's fingerprint does (an option, a run, the budget, a cell added, removed or
    moved), when the sweep is renamed, or when the thinning does; not with where or how fast the sweep
    trains, nor with a default spelled out, nor with config entries no cell uses.
    """
    return digest(spec(config, every))


def record(folder: Path | str) -> dict[str, Any] | None:
    """The folder's fingerprint record, or None where it has none or it cannot be read."""
    try:
        loaded = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def matches(config: dict[str, Any], folder: Path | str, name: str = "the config") -> tuple[bool, str]:
    """Whether ``folder`` holds the results of ``config`` (called ``name``), and if not, why (one phrase)."""
    folder = Path(folder)
    path = folder / RECORD
    if not path.is_file():
        return False, f"none committed ({path} absent)"
    stored = record(folder)
    if stored is None or "fingerprint" not in stored:
        return False, f"{path} unreadable"
    missing = [table for table in TABLES if not (folder / table).is_file()]
    if missing:
        return False, f"{folder / missing[0]} absent"
    if stored.get("format", 1) != FORMAT:
        return False, (f"{path} has fingerprint format {stored.get('format', 1)}, not {FORMAT} "
                       f"(python scripts/migrate_fingerprint.py {folder} <its config>)")
    every = stored.get("every", EVERY)
    if not isinstance(every, int) or stored["fingerprint"] != fingerprint(config, every):
        return False, f"{path} does not match {name}"
    return True, ""


def _results_of(config: dict[str, Any], runs: Any, path: Path) -> None:
    """Raise StoreError unless the runs table holds exactly the runs of ``config``."""
    from bench.store import StoreError

    expected = {run_id: cell.steps for cell in sweep.cells(config) for run_id in cell.run_ids()}
    found = dict(zip(runs["run_id"], runs["steps"], strict=True))
    missing = [run_id for run_id in expected if run_id not in found]
    extra = [run_id for run_id in found if run_id not in expected]
    if missing or extra:
        example = (missing or extra)[0]
        raise StoreError(f"{path}: not the runs of this config ({len(missing)} missing, {len(extra)} not in it, "
                         f"e.g. {example!r})")
    wrong = [run_id for run_id, steps in expected.items() if found[run_id] != steps]
    if wrong:
        raise StoreError(f"{path}: run {wrong[0]!r} trained {found[wrong[0]]} steps, the config says "
                         f"{expected[wrong[0]]}")
    names = set(runs["sweep"])
    if names != {config["sweep"]}:
        raise StoreError(f"{path}: runs of sweep {sorted(names)}, the config names {config['sweep']!r}")


def full_resolution_runs(runs: Any, curves: Any) -> set[str]:
    """Run ids whose every step a figure draws, from the full curves table.

    Each strategy's best-tuned runs (``analysis.stats.best_tuned_runs``: the
    convergence curves, smoothed per step) and, for every strategy, the runs
    ``analysis.stats.explosion_traces`` picks (the explosions figure draws the
    first strategies' picks step by step around their largest spike).
    """
    from analysis import stats

    keep = set(stats.best_tuned_runs(runs)["run_id"])
    return keep | _explosion_picks(runs, curves)


def _explosion_traces(runs: Any, curves: Any) -> dict[str, Any]:
    """``analysis.stats.explosion_traces`` of every strategy (its defaults, as the explosions figure calls it)."""
    from analysis import stats

    strategy = curves["run_id"].map(dict(zip(runs["run_id"], runs["strategy"], strict=True)))
    parts = dict(tuple(curves.groupby(strategy, sort=False)))  # each strategy's rows: the same traces, faster
    return {name: stats.explosion_traces(runs, parts.get(name, curves.iloc[:0]), {"strategy": name})
            for name in runs["strategy"].unique()}


def _explosion_picks(runs: Any, curves: Any) -> set[str]:
    return {run_id for traces in _explosion_traces(runs, curves).values() for run_id in traces["run_id"]}


def _thinned_rows(runs: Any, curves: Any, keep: set[str], every: int) -> Any:
    """Boolean mask of the curve rows :func:`thin` keeps for full-resolution runs ``keep``."""
    import numpy as np

    from bench.columns import EVAL_METRICS

    last = runs.set_index("run_id")
    end = np.where(last["diverged"].astype(bool), last["diverged_step"], last["steps"] - 1)
    last_step = curves["run_id"].map(dict(zip(last.index, end, strict=True)))
    evaluated = curves[list(EVAL_METRICS)].notna().any(axis=1)
    return (curves["run_id"].isin(keep) | (curves["step"] % every == 0) | evaluated
            | (curves["step"] == last_step)).to_numpy()


def thin(runs: Any, curves: Any, every: int = EVERY) -> tuple[Any, set[str]]:
    """The curve rows the figures need, and the ids of the runs kept at every step.

    Kept: every row of the runs of :func:`full_resolution_runs`; every
    evaluation row of every run (``val_metric`` at eval steps: time to target);
    for the other runs every ``every``-th step and the last one (the step a
    diverged run ended at). A run kept at a stride has a different running
    median of its gradient norm, so it could be ranked among the explosion
    traces where on the full table it is not: such runs are kept at every step
    too, until the traces' picks on the thinned table are those on the full
    one. Every figure drawn from the thinned table is then the figure drawn
    from the full one (:func:`differences` checks it).
    """
    if every < 1:
        raise ValueError(f"every: {every} is not allowed; allowed: at least 1")
    keep = full_resolution_runs(runs, curves)
    while True:
        thinned = curves[_thinned_rows(runs, curves, keep, every)]
        extra = _explosion_picks(runs, thinned) - keep
        if not extra:
            return thinned.reset_index(drop=True), keep
        keep |= extra


def differences(runs: Any, full: Any, thinned: Any) -> list[str]:
    """What the figures would draw differently from ``thinned`` than from ``full`` curves; empty if nothing.

    Compares what each figure computes from the curves: the best-tuned runs'
    train-loss matrices (convergence), the events of the time-to-target curves,
    and the explosion traces of every strategy.
    """
    import numpy as np
    import pandas as pd

    from analysis import data, plots, stats

    found = []
    best = stats.best_tuned_runs(runs)
    window = plots.smoothing_window(runs)
    # each run's row of the matrix depends on that run alone: all best-tuned runs at once
    _, expected = data.loss_matrix(full, best, window)
    _, got = data.loss_matrix(thinned, best, window)
    unequal = ~np.all((expected == got) | (np.isnan(expected) & np.isnan(got)), axis=1)
    if unequal.any():
        found.append(f"convergence curves of {best['run_id'].iloc[np.flatnonzero(unequal)[0]]}")
    targets = plots.target_levels(runs)
    columns = ["run_id", "time", "observed"]
    if not stats.steps_to_target(runs, full, targets)[columns].equals(
            stats.steps_to_target(runs, thinned, targets)[columns]):
        found.append("time-to-target events")
    expected, got = _explosion_traces(runs, full), _explosion_traces(runs, thinned)
    for strategy in expected:
        try:
            pd.testing.assert_frame_equal(expected[strategy], got[strategy])
        except AssertionError:
            found.append(f"explosion traces of {strategy}")
    return found


def _compact(curves: Any) -> Any:
    """The curves as a pyarrow table in compact types: float32 where exact (else float64), int32 steps."""
    import numpy as np
    import pyarrow as pa

    from bench.columns import CURVES_COLUMNS

    fields = []
    for name, dtype in CURVES_COLUMNS.items():
        if pa.types.is_floating(dtype):
            values = curves[name].to_numpy(dtype=np.float64)
            exact = np.array_equal(values.astype(np.float32).astype(np.float64), values, equal_nan=True)
            dtype = pa.float32() if exact else pa.float64()
        elif name == "step":
            dtype = pa.int32()
        fields.append((name, dtype))
    return pa.Table.from_pandas(curves[list(CURVES_COLUMNS)], schema=pa.schema(fields), preserve_index=False)


def _write_parquet(table: Any, path: Path, floats_split: bool = False) -> None:
    """Write ``table`` with zstd; with ``floats_split``, float columns byte-stream split rather than dictionary
    encoded (a third of the size for noisy curves), the other columns dictionary encoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    options: dict[str, Any] = {}
    if floats_split:
        floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
        options = {"use_byte_stream_split": floats,
                   "use_dictionary": [f.name for f in table.schema if f.name not in floats]}
    with atomic.writing(path) as partial:
        pq.write_table(table, partial, row_group_size=1 << 22, **COMPRESSION, **options)


def publish(sweep_name: str, config_path: str | Path, results: str | Path = paths.RESULTS,
            out: str | Path = paths.STUDY, every: int = EVERY) -> dict[str, Any]:
    """Write ``<out>/<sweep>/`` from ``<results>/<sweep>/{runs,curves}.parquet`` trained from ``config_path``.

    Checks first that the tables hold exactly the runs of the config (and, where
    ``<results>/<sweep>/config.yaml`` exists, the config they trained from has
    the same fingerprint), and that every figure drawn from the thinned curves
    is the one drawn from the full curves. Returns the fingerprint record.
    """
    import pyarrow as pa
    import torch
    import yaml

    from bench import store
    from bench.columns import RUNS_COLUMNS
    from bench.store import StoreError

    config = sweep.load(config_path)
    if config["sweep"] != sweep_name:
        raise sweep.ConfigError(f"config file '{config_path}' names sweep {config['sweep']!r}, not {sweep_name!r}")
    source = Path(results) / sweep_name
    trained = source / paths.SWEEP_CONFIG
    if trained.is_file() and fingerprint(yaml.safe_load(trained.read_text())) != fingerprint(config):
        raise StoreError(f"{trained}: the results were trained from another config than {config_path} "
                         "(fingerprints differ)")
    tables = paths.tables(source)
    runs = store.read(tables["runs"], "runs")
    curves = store.read(tables["curves"], "curves")
    _results_of(config, runs, tables["runs"])
    thinned, keep = thin(runs, curves, every)
    found = differences(runs, curves, thinned)
    if found:
        raise StoreError(f"{tables['curves']}: thinned, the figures would differ ({', '.join(found)})")

    folder = Path(out) / sweep_name
    runs_schema = pa.schema([(c, RUNS_COLUMNS.get(c, pa.float64())) for c in runs.columns])
    _write_parquet(pa.Table.from_pandas(runs, schema=runs_schema, preserve_index=False), folder / TABLES[0])
    _write_parquet(_compact(thinned), folder / TABLES[1], floats_split=True)
    stored = {
        "sweep": sweep_name,
        "config": str(config_path),
        "format": FORMAT,
        "fingerprint": fingerprint(config, every),
        "hashed": HASHED,
        "published": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cells": int(runs["cell"].nunique()),
        "runs": len(runs),
        "curve_rows": len(thinned),
        "curve_rows_full": len(curves),
        "every_step_runs": len(keep),
        "every": every,
        "bytes": {name: (folder / name).stat().st_size for name in TABLES},
    }
    atomic.write_text(folder / RECORD, json.dumps(stored, indent=2) + "\n")
    return stored


def restore(folder: str | Path, out: str | Path, config: dict[str, Any] | None = None) -> tuple[int, int]:
    """Write ``<out>/{runs,curves}.parquet`` (the results schema, validated) from the study ``folder``.

    With ``config``, refuses a folder whose fingerprint does not match it.
    Returns the numbers of runs and curve rows written.
    """
    import pyarrow.parquet as pq

    from bench import store
    from bench.columns import CURVES_COLUMNS, with_run_defaults
    from bench.store import StoreError

    folder, out = Path(folder), Path(out)
    if config is not None:
        ok, why = matches(config, folder)
        if not ok:
            raise StoreError(why)
    tables = {}
    for name, kind in zip(TABLES, paths.TABLES, strict=True):
        try:
            tables[kind] = pq.read_table(folder / name).to_pandas()
        except (OSError, ValueError) as error:
            raise StoreError(f"{folder / name}: not a readable {kind} table ({error})") from None
    tables["runs"] = with_run_defaults(tables["runs"])  # a study committed before a run column existed
    curves = tables["curves"]
    for name in CURVES_COLUMNS:
        if name in curves and name not in ("run_id", "clipped"):
            curves[name] = curves[name].astype("int64" if name == "step" else "float64")
    store.write(curves, paths.table(out, "curves"), "curves")
    store.write(tables["runs"], paths.table(out, "runs"), "runs")
    return len(tables["runs"]), len(curves)

