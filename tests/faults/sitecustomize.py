"""Fault injection for tests/test_faults.py, loaded by every Python process whose path holds this folder.

``BENCH_TEST_KILL`` lists kill points separated by ``;``:

- ``train:<cell>@<step>``: SIGKILL the training job of <cell> just before it trains <step>;
- ``write:<cell>``: SIGKILL it between writing the cell's curves table and its runs table;
- ``aggregate``: SIGKILL the aggregate job between writing the sweep's runs and curves tables.

Each point fires once: it leaves a marker file in ``BENCH_TEST_KILL_MARKS`` before the kill.
"""

import os
import signal
from pathlib import Path

POINTS = [p for p in os.environ.get("BENCH_TEST_KILL", "").split(";") if p]


def _fire(point: str) -> None:
    marks = Path(os.environ["BENCH_TEST_KILL_MARKS"])
    mark = marks / point.replace("/", "_").replace(":", "_").replace("@", "_")
    if mark.exists():
        return
    marks.mkdir(parents=True, exist_ok=True)
    mark.touch()
    os.kill(os.getpid(), signal.SIGKILL)


if POINTS:
    import sys

    # The job's own copy of the project (its working directory), as `python -m bench` would import it
    # once started: this module runs before the working directory joins sys.path.
    sys.path.insert(0, os.getcwd())
    import bench.engine
    import bench.store

    step, write = bench.engine.step, bench.store.write

    def killing_step(built, state, *args):
        point = f"train:{built.cell.id}@{state.step}"
        if point in POINTS:
            _fire(point)
        return step(built, state, *args)

    def killing_write(frame, path, kind):
        write(frame, path, kind)
        path = Path(path)
        cell_point = f"write:{path.parent.name}"
        if kind == "curves" and cell_point in POINTS:
            _fire(cell_point)
        if kind == "runs" and path.parent.name != "cells" and path.parent.parent.name == "results" \
                and "aggregate" in POINTS:
            _fire("aggregate")

    bench.engine.step = killing_step
    bench.store.write = killing_write
