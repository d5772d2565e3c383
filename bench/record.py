"""A cell folder's record, ``cell.json``: which cell definition its tables hold, and how they came to be.

Every folder of one cell's tables (``runs.parquet``, ``curves.parquet``) has one beside them:

- ``results/<sweep>/cells/<cell>/``: written by the cell's train job (``python -m bench train``), or by
  the restore job that copied the cell from its committed folder (``bench.publish.restore_cell``);
- ``study/<sweep>/cells/<cell>/``: the committed cell (``python -m bench publish``).

A record is written after both tables and removed before either is rewritten, so a record that
exists says that the tables beside it are complete and whose they are. Its fields (:data:`FORMAT` 1):

- ``format``, ``sweep``, ``cell``;
- ``fingerprint``: ``bench.fingerprint.cell_fingerprint`` of the cell the tables were trained for,
  the one notion of what decides a cell's results;
- ``runs``, ``curve_rows``: the numbers of rows of the tables beside it;
- ``trained``: the date the cell was trained; ``torch``: the torch version it was trained with;
- ``started``: when its train job started, in UTC to the second (ISO 8601; a job resumed from a checkpoint:
  when it resumed), so that a cell can be shown trained after a commit (``analysis.replication``); records
  written before the field existed have the date ``trained`` only;
- ``thinning``: ``null`` where the curves hold every row training logged; else the rule that thinned
  them (``bench.thinning``): ``{"rule", "curve_rows_trained", "every_step_runs"}`` (rules 1 and 2 also
  ``"every"``, the stride of the steps they kept of the other runs);
- ``published`` (committed cells): the date it was committed;
- ``restored_from`` (restored cells in results/): the committed folder it was copied from.

The Snakefile reads records as it parses (which rule makes each cell, ``rules/common.smk``): this
module imports the standard library and ``bench.atomic`` and ``bench.paths`` only.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from bench import atomic, paths

FORMAT = 1
"""Raised whenever a record's fields change meaning."""


def read(folder: Path | str) -> dict[str, Any] | None:
    """The record of the cell folder ``folder``; None where it has none, it cannot be read, or it is of
    another :data:`FORMAT`."""
    try:
        loaded = json.loads(paths.cell_record(folder).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT or not isinstance(loaded.get("fingerprint"), str):
        return None
    return loaded


def holds(folder: Path | str, fingerprint: str) -> dict[str, Any] | None:
    """The record of ``folder`` where it holds complete tables of the cell whose fingerprint is
    ``fingerprint`` (its record says so and both tables exist); else None."""
    stored = read(folder)
    if stored is None or stored["fingerprint"] != fingerprint:
        return None
    if not all(path.is_file() for path in paths.tables(folder).values()):
        return None
    return stored


def write(folder: Path | str, record: dict[str, Any]) -> None:
    """Write ``record`` into ``folder`` (atomically), after its tables."""
    atomic.write_text(paths.cell_record(folder), json.dumps(record, indent=2) + "\n")


def remove(folder: Path | str) -> None:
    """Remove the record of ``folder``, if any: before its tables are rewritten or removed."""
    paths.cell_record(folder).unlink(missing_ok=True)


def now() -> str:
    """The present moment in UTC to the second, ISO 8601 (``2026-12-04T12:02:29+00:00``): a record's ``started``."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def trained(sweep: str, cell: str, fingerprint: str, runs: int, curve_rows: int, torch: str,
            started: str | None = None) -> dict[str, Any]:
    """The record of a cell trained today with torch ``torch``: ``runs`` runs, every one of its
    ``curve_rows`` curve rows kept; ``started``: when its train job started (:func:`now`), if known."""
    stored = {"format": FORMAT, "sweep": sweep, "cell": cell, "fingerprint": fingerprint, "runs": runs,
              "curve_rows": curve_rows, "trained": datetime.date.today().isoformat(), "torch": torch,
              "thinning": None}
    return stored if started is None else {**stored, "started": started}
