"""Split a study committed whole (study/<sweep>/{runs,curves}.parquet, fingerprint.json) into committed cells.

    python scripts/split_study.py study/paper config/paper.yaml

Used once, for study/paper/ as published on 2026-12-02: its full curves no longer exist, so its cells
keep the rows thinning rule 1 kept (over the whole sweep) and their records say so. Refuses unless
the whole-sweep fingerprint (format 2) matches the config, and unless the split cells, read back and
concatenated in the config's order, are the whole tables exactly. Removes the whole-sweep files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bench import engine, paths, publish, record, sweep
from bench.columns import RUNS_COLUMNS
from bench.fingerprint import cell_fingerprint, digest


def trained_rows(cell: sweep.Cell, runs: pd.DataFrame) -> int:
    """The number of curve rows the cell's training logged (bench.store: every step up to a run's last,
    every evaluation up to it)."""
    evals = np.asarray(engine.eval_steps(cell))
    total = 0
    for diverged, step in zip(runs["diverged"], runs["diverged_step"], strict=True):
        last = int(step) if diverged else cell.steps
        total += len(np.union1d(np.arange(min(last + 1, cell.steps)), evals[evals <= last]))
    return total


def main(folder: Path, config_path: str) -> None:
    config = sweep.load(config_path)
    cells = sweep.cells(config)
    old = json.loads((folder / "fingerprint.json").read_text())
    whole = digest({"format": 2, "sweep": config["sweep"], "cells": [cell_fingerprint(c) for c in cells],
                    "thinning": {"rule": 1, "every": old["every"]}})
    if old.get("format") != 2 or old["fingerprint"] != whole:
        sys.exit(f"error: {folder / 'fingerprint.json'} does not match {config_path}")
    runs = pq.read_table(folder / "runs.parquet").to_pandas()
    curves = pq.read_table(folder / "curves.parquet").to_pandas()
    by_cell = curves.groupby(curves["run_id"].map(dict(zip(runs["run_id"], runs["cell"], strict=True))), sort=False)
    parts = dict(tuple(by_cell))
    for cell in cells:
        own = runs[runs["cell"] == cell.id]
        extra = [*cell.runs[0].hyperparameters, *cell.runs[0].dials]
        unused = own.drop(columns=[*RUNS_COLUMNS, *extra])
        if unused.notna().any().any():
            sys.exit(f"error: cell {cell.id} has values in columns {list(unused.columns[unused.notna().any()])}")
        own = own[[*RUNS_COLUMNS, *extra]].reset_index(drop=True)
        publish._check_runs(cell, own, folder / "runs.parquet")
        kept = parts[cell.id].reset_index(drop=True)
        stored = {"format": record.FORMAT, "sweep": config["sweep"], "cell": cell.id,
                  "fingerprint": cell_fingerprint(cell), "runs": len(own), "curve_rows": len(kept),
                  "trained": old["published"], "torch": old["torch"],
                  "thinning": {"rule": 1, "every": old["every"], "curve_rows_trained": trained_rows(cell, own),
                               "every_step_runs": None},
                  "published": old["published"]}
        publish.write_cell(folder / paths.CELLS / cell.id, own, kept, stored)
    back = [publish.read_cell(folder / paths.CELLS / cell.id) for cell in cells]
    runs_back = pd.concat([r for r, _ in back], ignore_index=True)
    curves_back = pd.concat([c for _, c in back], ignore_index=True)
    full = pq.read_table(folder / "curves.parquet").to_pandas()
    for name in full.columns:
        if name not in ("run_id", "clipped"):
            full[name] = full[name].astype("int64" if name == "step" else "float64")
    assert runs_back.equals(runs), "runs differ once split"
    assert curves_back.equals(full), "curves differ once split"
    trained = sum(json.loads(paths.cell_record(folder / paths.CELLS / c.id).read_text())["thinning"]
                  ["curve_rows_trained"] for c in cells)
    assert trained == old["curve_rows_full"], (trained, old["curve_rows_full"])
    for name in ("runs.parquet", "curves.parquet", "fingerprint.json"):
        (folder / name).unlink()
    print(f"split {folder} into {len(cells)} cells: {len(runs)} runs, {len(curves)} curve rows of {trained}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
