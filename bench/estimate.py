"""How long a sweep's training takes on this machine, from a timed sample of its cells.

The cells of a sweep fall into strata of one (task, model, optimizer): within a
stratum they differ only in the strategy and its thresholds, so in their number
of runs K and in a strategy's small overhead. One cell per stratum, drawn at
random (seeded), is built and timed: the seconds to set it up (data, model,
initial weights), per lockstep step over a few steps after a warm-up, and per
evaluation. Every cell c of the stratum is then predicted to take

    setup + K_c / K_timed * (steps_c * step_seconds + evaluations_c * evaluation_seconds)

(step time proportional to K, which holds once K runs fill the device and
overestimates below that), and the sweep's training takes the sum over its
cells, in job-seconds: divide by the number of jobs that run at once for the
wall time. Each job also pays its start, a fresh Python process that imports
the engine and reads the config, timed once in a subprocess.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import torch

from bench import engine, perf, sweep, tasks
from bench.sweep import Cell


@dataclass(frozen=True)
class CellTiming:
    """Measured seconds of one cell: setup, one lockstep step (all K runs), one evaluation."""

    cell: Cell
    setup_s: float
    step_s: float
    evaluation_s: float

    def predict(self, other: Cell, job_start_s: float) -> float:
        """Predicted seconds of the job that trains ``other``, a cell of the same stratum."""
        scale = len(other.runs) / len(self.cell.runs)
        training = other.steps * self.step_s + len(engine.eval_steps(other)) * self.evaluation_s
        return job_start_s + self.setup_s + scale * training


def job_start_seconds(config_path: str) -> float:
    """Seconds a training job spends before its cell's setup: a fresh Python process that
    imports the engine and reads and expands the config (timed once, in a subprocess)."""
    code = "import sys; from bench import engine, store, sweep; sweep.cells(sweep.load(sys.argv[1]))"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, config_path], check=True)
    return time.perf_counter() - started


def stratum(cell: Cell) -> tuple[str, str, str]:
    """The (task, model, optimizer) names a cell's timing stands for."""
    return cell.task_name, cell.model_name, cell.optimizer_name


def time_cell(cell: Cell, steps: int) -> CellTiming:
    """Build ``cell`` and time its setup, ``steps`` lockstep steps after a warm-up, and one evaluation.

    The task's data are made (and cached on disk) first, untimed: in a sweep only
    the first job of a task makes them.
    """
    tasks.load(cell.task["kind"], **engine.task_options(cell))
    timer = perf.EngineTimer(dataclasses.replace(cell, steps=max(steps, 1)))
    step_s = timer.seconds(steps)
    perf.synchronize(timer.setup.device)
    started = time.perf_counter()
    engine.record_evaluation(timer.setup, timer.state, 0)
    perf.synchronize(timer.setup.device)
    return CellTiming(cell, timer.setup_s, step_s, time.perf_counter() - started)


def estimate(config_path: str, device: str | None, steps: int, seed: int,
             report: Callable[[str], None] = print) -> dict[str, Any]:
    """Time one random cell per stratum of the config and predict the whole sweep; the JSON-ready record.

    ``device`` (when given) replaces the config's.
    """
    config = sweep.load(config_path)
    if device is not None:
        config["device"] = device
    cells = sorted(sweep.cells(config), key=stratum)
    job_start_s = job_start_seconds(config_path)
    draw = random.Random(seed)
    strata = []
    for key, members in groupby(cells, key=stratum):
        members = list(members)
        timing = time_cell(draw.choice(members), steps)
        predicted = sum(timing.predict(cell, job_start_s) for cell in members)
        strata.append({"task": key[0], "model": key[1], "optimizer": key[2], "cells": len(members),
                       "runs": sum(len(cell.runs) for cell in members), "timed_cell": timing.cell.id,
                       "timed_K": len(timing.cell.runs), "setup_s": timing.setup_s, "step_s": timing.step_s,
                       "evaluation_s": timing.evaluation_s, "predicted_s": predicted})
        report(f"{'-'.join(key):40s} {len(members):4d} cells  {timing.step_s * 1e3:8.2f} ms/step at "
               f"K={len(timing.cell.runs):4d}  -> {predicted / 3600:7.2f} h")
    device = engine.resolve_device(cells[0].device)
    total = sum(row["predicted_s"] for row in strata)
    report(f"{config['sweep']}: {len(cells)} cells, {sum(r['runs'] for r in strata)} runs: about "
           f"{total / 3600:.2f} job-hours of training on {perf.device_name(device)}")
    return {"date": datetime.date.today().isoformat(), "device": perf.device_name(device),
            "torch": torch.__version__, "python": platform.python_version(), "sweep": config["sweep"],
            "threads": cells[0].threads, "timed_steps": steps, "seed": seed, "job_start_s": job_start_s,
            "cells": len(cells),
            "runs": sum(row["runs"] for row in strata), "predicted_job_s": total, "strata": strata}
