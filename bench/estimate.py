"""How long a sweep's training takes on this machine, from a timed sample of its cells.

The cells of a sweep fall into strata of one (task, model, optimizer, precision):
within a stratum they differ only in the strategy and its thresholds, so in their number
of runs K and in a strategy's small overhead. One cell per stratum, drawn at
random (seeded), is timed with its first K1 and its first K2 runs (K1 < K2,
both capped at its K): the seconds to set it up (data, model, initial weights),
per lockstep step over a few steps after a warm-up, and per evaluation. Each
of the three is modelled as ``a + b K`` through those two points (a fixed cost,
as a GPU's kernel launches, plus a cost per run; ``a, b >= 0``; proportional to
K when the cell has too few runs for two sizes), and every cell c of the
stratum is predicted to take

    job start + setup(K_c) + steps_c * step(K_c) + evaluations_c * evaluation(K_c).

The job start, a fresh Python process that imports the engine and reads the
config, is timed once in a subprocess. The sweep's training takes the sum over
its cells, in job-seconds: divide by the number of jobs that run at once for
the wall time.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from bench import engine, perf, sweep
from bench.sweep import Cell


@dataclass(frozen=True)
class Linear:
    """``fixed + per_run * K`` seconds."""

    fixed: float
    per_run: float

    @classmethod
    def through(cls, points: dict[int, float]) -> Linear:
        """The line through two (K, seconds) points, clipped to non-negative fixed and per-run
        parts; through the origin for one point."""
        if len(points) == 1:
            ((runs, seconds),) = points.items()
            return cls(0.0, seconds / runs)
        (k1, s1), (k2, s2) = sorted(points.items())
        per_run = max((s2 - s1) / (k2 - k1), 0.0)
        fixed = max(s2 - per_run * k2, 0.0)
        return cls(fixed, (s2 - fixed) / k2)

    def __call__(self, runs: int) -> float:
        return self.fixed + self.per_run * runs


@dataclass(frozen=True)
class StratumTiming:
    """The timed cell of a stratum and its cost lines: setup, one lockstep step, one evaluation."""

    cell: Cell | None
    """The cell timed; None for cost lines read back from a stored record (:func:`repredict`)."""
    setup: Linear
    step: Linear
    evaluation: Linear

    def predict(self, other: Cell, job_start_s: float) -> float:
        """Predicted seconds of the job that trains ``other``, a cell of the same stratum."""
        runs = len(other.runs)
        return (job_start_s + self.setup(runs) + other.steps * self.step(runs)
                + len(engine.eval_steps(other)) * self.evaluation(runs))


def job_start_seconds(config_path: str) -> float:
    """Seconds a training job spends besides its cell's setup, steps and evaluations: a fresh Python
    process that imports the engine and the store and reads and expands the config, with the garbage
    collector handled as ``python -m bench`` does (timed once, in a subprocess)."""
    code = ("import gc, sys; gc.disable(); from bench import engine, store, sweep; gc.freeze(); gc.enable(); "
            "sweep.cells(sweep.load(sys.argv[1])); gc.freeze()")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, config_path], check=True)
    return time.perf_counter() - started


def stratum(cell: Cell) -> tuple[str, str, str, str]:
    """The (task, model, optimizer) names and the precision a cell's timing stands for."""
    return cell.task_name, cell.model_name, cell.optimizer_name, cell.dtype


def time_runs(cell: Cell, runs: int, steps: int, data_cache: str | Path | None = None) -> tuple[float, float, float]:
    """Seconds of the setup, of one lockstep step (after a warm-up, over ``steps`` steps) and of
    one evaluation of ``cell`` cut to its first ``runs`` runs (its data from ``data_cache``)."""
    timer = perf.EngineTimer(dataclasses.replace(cell, runs=cell.runs[:runs], steps=max(steps, 1)),
                             data_cache=data_cache)
    step_s = timer.seconds(steps)
    perf.synchronize(timer.built.device)
    started = time.perf_counter()
    engine.record_evaluation(timer.built, timer.state, 0)
    perf.synchronize(timer.built.device)
    return timer.build_s, step_s, time.perf_counter() - started


def time_stratum(cell: Cell, sizes: tuple[int, int], steps: int,
                 data_cache: str | Path | None = None) -> StratumTiming:
    """Time ``cell`` at both ``sizes`` (capped at its K) and fit the cost lines.

    The task's data are made (or read from the data cache in ``data_cache``, the one the sweep's
    jobs use) first, untimed: in a sweep only the first job of a task makes them.
    """
    engine.load_task(cell, data_cache)
    measured = {runs: time_runs(cell, runs, steps, data_cache)
                for runs in sorted({min(size, len(cell.runs)) for size in sizes})}
    lines = [Linear.through({runs: seconds[part] for runs, seconds in measured.items()}) for part in range(3)]
    return StratumTiming(cell, *lines)


def print_now(line: str) -> None:
    """Print a progress line at once, also into a pipe (one per stratum: the user sees it advance)."""
    print(line, flush=True)


def estimate(config_path: str, device: str | None, steps: int, sizes: tuple[int, int], seed: int,
             report: Callable[[str], None] | None = None, data_cache: str | Path | None = None,
             only: Collection[str] | None = None) -> dict[str, Any]:
    """Time one random cell per stratum of the config and predict the whole sweep (or its cells named in
    ``only``); the JSON-ready record.

    ``device`` (when given) replaces the config's; data sets come from the data cache in
    ``data_cache`` (default :func:`bench.tasks.cache_dir`, as for the training jobs); ``report``
    receives a line per stratum (default :func:`print_now`).
    """
    report = print_now if report is None else report
    config = sweep.load(config_path)
    if device is not None:
        config["device"] = device
    cells = sorted((cell for cell in sweep.cells(config) if only is None or cell.id in only), key=stratum)
    name = perf.device_name(engine.resolve_device(cells[0].device))  # an unusable device stops here
    job_start_s = job_start_seconds(config_path)
    draw = random.Random(seed)
    strata = []
    for key, members in groupby(cells, key=stratum):
        members = list(members)
        timing = time_stratum(draw.choice(members), sizes, steps, data_cache)
        predicted_cells = {cell.id: timing.predict(cell, job_start_s) for cell in members}
        predicted = sum(predicted_cells.values())
        strata.append({"task": key[0], "model": key[1], "optimizer": key[2], "dtype": key[3], "cells": len(members),
                       "runs": sum(len(cell.runs) for cell in members), "timed_cell": timing.cell.id,
                       **{f"{part}_s": dataclasses.asdict(getattr(timing, part))
                          for part in ("setup", "step", "evaluation")},
                       "predicted_s": predicted, "predicted_cells_s": predicted_cells})
        label = "-".join(key if key[3] != sweep.DEFAULT_DTYPE else key[:3])
        report(f"{label:40s} {len(members):4d} cells  step {timing.step.fixed * 1e3:7.2f} ms + "
               f"{timing.step.per_run * 1e3:7.3f} ms/run  -> {predicted / 3600:7.2f} h")
    total = sum(row["predicted_s"] for row in strata)
    report(f"{config['sweep']}: {len(cells)} cells, {sum(r['runs'] for r in strata)} runs: about "
           f"{total / 3600:.2f} job-hours of training on {name}")
    return {"date": datetime.date.today().isoformat(), "device": name, "torch": torch.__version__,
            "python": platform.python_version(), "sweep": config["sweep"], "threads": cells[0].threads,
            "timed_steps": steps, "timed_sizes": list(sizes), "seed": seed, "job_start_s": job_start_s,
            "cells": len(cells), "runs": sum(row["runs"] for row in strata), "predicted_job_s": total,
            "strata": strata}


def repredict(record: dict[str, Any], cells: list[Cell]) -> dict[str, float]:
    """Each cell's predicted job seconds from a stored :func:`estimate` record's cost lines (its stratum's), for
    the cells of a stratum the record timed; the others are left out."""
    lines = {(row["task"], row["model"], row["optimizer"], row["dtype"]):
             StratumTiming(None, *(Linear(**row[f"{part}_s"]) for part in ("setup", "step", "evaluation")))
             for row in record["strata"]}
    return {cell.id: lines[stratum(cell)].predict(cell, record["job_start_s"]) for cell in cells
            if stratum(cell) in lines}


def measured_seconds(benchmarks: Path, cells: list[Cell], trained: Path) -> dict[str, float]:
    """The wall seconds of each cell's train job that Snakemake's ``benchmark:`` file in ``benchmarks``
    recorded (``<cell>.tsv``, column ``s``, its last row), for the cells trained for their current definition
    (``trained/<cell>/cell.json`` holds the cell's fingerprint: a benchmark file left by an earlier definition
    does not count); the others are left out."""
    import csv

    from bench import record
    from bench.fingerprint import cell_fingerprint

    seconds = {}
    for cell in cells:
        path = benchmarks / f"{cell.id}.tsv"
        if path.is_file() and record.holds(trained / cell.id, cell_fingerprint(cell)):
            with path.open() as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            if rows:
                seconds[cell.id] = float(rows[-1]["s"])
    return seconds


def against(record: dict[str, Any], cells: list[Cell], benchmarks: Path, trained: Path) -> str:
    """A stored prediction against the measured train jobs, as Markdown: per stratum, the cells trained (with a
    benchmark file, and in ``trained`` for their current definition) and their predicted and measured job
    seconds, then the total, then the cells still to train and their prediction."""
    predicted, measured = repredict(record, cells), measured_seconds(benchmarks, cells, trained)
    lines = ["| task | model | optimizer | precision | cells trained | predicted job-s | measured job-s | "
             "measured / predicted |", "|---|---|---|---|---:|---:|---:|---:|"]
    total_p = total_m = 0.0
    for key, members in groupby(sorted(cells, key=stratum), key=stratum):
        timed = [cell.id for cell in members if cell.id in measured and cell.id in predicted]
        if not timed:
            continue
        p, m = sum(predicted[c] for c in timed), sum(measured[c] for c in timed)
        total_p, total_m = total_p + p, total_m + m
        lines.append(f"| {' | '.join(key)} | {len(timed)} | {p:,.0f} | {m:,.0f} | {m / p:.2f} |")
    done = [c for c in predicted if c in measured]
    lines.append(f"| all | | | | {len(done)} | {total_p:,.0f} | {total_m:,.0f} | "
                 f"{total_m / total_p if total_p else float('nan'):.2f} |")
    left = [cell.id for cell in cells if cell.id not in measured]
    unpredicted = [cell.id for cell in cells if cell.id not in predicted]
    lines.append("")
    lines.append(f"Still to train: {len(left)} cells, predicted {sum(predicted.get(c, 0.0) for c in left):,.0f} "
                 f"job-s" + (f" ({len(unpredicted)} of a stratum the record did not time)" if unpredicted else "")
                 + f"; the record: {record['date']}, {record['device']}, {record['cells']} cells.")
    return "\n".join(lines)
