"""Throughput benchmark: the lockstep engine against the per-run oracle, side by side.

Everything is measured in one process, in one run, on the same device:

- run-steps per second of the engine (K runs per step) and of the sequential
  plain-PyTorch oracle (one run at a time, the peers' way) for the MLP, CNN
  and RNN cells of a config, at several K;
- the floating-point rate of the engine's training step on the MLP cell,
  counted by ``torch.utils.flop_counter.FlopCounterMode``, against the rate of
  a large matrix product (the machine's practical limit);
- each strategy's step time relative to ``none`` in the MLP cell;
- peak memory: host RSS, and GPU memory on CUDA.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import allocator, engine, reference, strategies, sweep
from bench.sweep import Cell, Run

FAMILY_GROUPS = {"mlp": ("mlp",), "cnn": ("cnn1d", "cnn2d"), "rnn": ("rnn",)}


def representative_cells(config: dict[str, Any]) -> dict[str, Cell]:
    """The first cell of each model group (MLP, CNN, RNN) in ``config``."""
    chosen: dict[str, Cell] = {}
    for cell in sweep.cells(config):
        for group, families in FAMILY_GROUPS.items():
            if cell.model["family"] in families and group not in chosen:
                chosen[group] = cell
    return chosen


def with_runs(cell: Cell, runs: int, device: str, steps: int, threads: int,
              members: list[str] | None = None) -> Cell:
    """``cell`` with K = ``runs`` stable runs (its smallest learning rate, seeds 0..K-1) on ``threads`` threads."""
    lr = min(run.lr for run in cell.runs)
    dials = cell.runs[0].dials
    members = members or ["none"]
    hyperparameters = {}
    return dataclasses.replace(
        cell, runs=[Run(lr=lr, seed=seed, hyperparameters=hyperparameters, dials=dials) for seed in range(runs)],
        members=members, strategy_name="+".join(members), steps=steps, eval_every=steps, device=device,
        threads=threads, checkpoint_every=0,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EngineTimer:
    """A built cell, ready to time its lockstep steps again and again."""

    def __init__(self, cell: Cell, warmup: int = 3) -> None:
        self.setup = engine.setup(cell)
        self.state = engine.fresh_state(self.setup)
        self.indices = engine.batch_plan(self.setup)
        self.seconds(warmup)

    def seconds(self, steps: int) -> float:
        """Seconds per lockstep step (all K runs) over the next ``steps`` steps, cycling through the data."""
        _synchronize(self.setup.device)
        started = time.perf_counter()
        for _ in range(steps):
            self.state.step %= len(self.indices)
            engine.train_step(self.setup, self.state, self.indices[self.state.step])
        _synchronize(self.setup.device)
        return (time.perf_counter() - started) / steps


def fastest(timers: dict[str, EngineTimer], steps: int, rounds: int) -> dict[str, float]:
    """Seconds per step of each timer: the fastest of ``rounds`` interleaved rounds (robust to noise)."""
    best = {name: float("inf") for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.seconds(steps))
    return best


def time_reference_steps(cell: Cell, runs: int) -> float:
    """Seconds per step of the oracle, one run at a time, averaged over ``runs`` runs."""
    total = 0.0
    for index in range(runs):
        history = reference.train_reference(cell, index, keep_params=False)
        total += history.wall_time_s / max(len(history.losses), 1)
    return total / runs


def step_flops(setup: engine.Setup) -> int:
    """Floating-point operations of one lockstep training step (forward and backward)."""
    state = engine.fresh_state(setup)
    batch = torch.zeros(len(setup.cell.runs), setup.cell.batch_size, dtype=torch.long, device=setup.device)
    counter = FlopCounterMode(display=False)
    with counter:
        engine.train_step(setup, state, batch)
    return counter.get_total_flops()


def matmul_flops_per_s(device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of a float32 size x size matrix product: the device's practical limit."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak host RSS (and GPU memory on CUDA) of this process, in MiB."""
    memory = {"host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        memory["gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return memory


def measure(config: dict[str, Any], device: str, quick: bool, threads: int,
            report: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement and return the JSON-ready record."""
    torch.set_num_threads(threads)
    allocator.keep_freed_memory()  # before the oracle too: both sides run under the same allocator
    resolved = engine.resolve_device(device)
    sizes = (1, 8) if quick else (1, 8, 32, 128)
    steps, rounds = (5, 1) if quick else (20, 3)
    oracle_runs = 1 if quick else 3
    cells = representative_cells(config)
    record: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "device": _device_name(resolved),
        "torch": torch.__version__, "threads": threads, "python": platform.python_version(),
        "quick": quick, "throughput": [], "strategy_overhead": [],
    }
    for group, cell in cells.items():
        reference_rate = 1 / time_reference_steps(with_runs(cell, oracle_runs, device, steps, threads), oracle_runs)
        for runs in sizes:
            timer = EngineTimer(with_runs(cell, runs, device, steps, threads))
            seconds = fastest({group: timer}, steps, rounds)[group]
            row = {"model": group, "cell": cell.id, "K": runs, "engine_run_steps_per_s": runs / seconds,
                   "reference_run_steps_per_s": reference_rate, "speedup": runs / seconds / reference_rate}
            record["throughput"].append(row)
            report(f"{group:4s} K={runs:4d}  engine {row['engine_run_steps_per_s']:10.1f}  "
                   f"reference {reference_rate:8.1f} run-steps/s  speedup {row['speedup']:6.2f}x")

    mlp = cells["mlp"]
    limit_runs = 8 if quick else 32
    timers = {name: EngineTimer(with_runs(mlp, limit_runs, device, steps, threads, [name]))
              for name in strategies.known()}
    seconds = fastest(timers, steps, rounds)
    engine_rate = step_flops(timers["none"].setup) / seconds["none"]
    matmul_rate = matmul_flops_per_s(resolved, 1024 if quick else 2048, 3 if quick else 10)
    record["limit"] = {"cell": mlp.id, "K": limit_runs, "matmul_flops_per_s": matmul_rate,
                       "engine_flops_per_s": engine_rate, "fraction": engine_rate / matmul_rate}
    report(f"MLP K={limit_runs}: {engine_rate / 1e9:.2f} GFLOP/s, large matmul {matmul_rate / 1e9:.2f} GFLOP/s "
           f"({100 * engine_rate / matmul_rate:.0f}%)")
    for name in strategies.known():
        record["strategy_overhead"].append({"strategy": name, "ratio_to_none": seconds[name] / seconds["none"]})
    record["memory"] = peak_memory(resolved)
    return record


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def markdown(record: dict[str, Any]) -> str:
    """The record as the README's Markdown tables."""
    lines = [f"Device: {record['device']}; torch {record['torch']}; {record['threads']} thread(s); {record['date']}.",
             "",
             "| model | K | engine run-steps/s | oracle run-steps/s | speedup |", "|---|---:|---:|---:|---:|"]
    for row in record["throughput"]:
        lines.append(f"| {row['model']} | {row['K']} | {row['engine_run_steps_per_s']:.0f} | "
                     f"{row['reference_run_steps_per_s']:.0f} | {row['speedup']:.2f}x |")
    limit = record["limit"]
    lines += ["", f"Engine on the MLP cell at K = {limit['K']}: {limit['engine_flops_per_s'] / 1e9:.1f} GFLOP/s, "
              f"{100 * limit['fraction']:.0f}% of a large matrix product's {limit['matmul_flops_per_s'] / 1e9:.1f} "
              f"GFLOP/s. Peak host memory: {record['memory']['host_rss_mib']:.0f} MiB.", "",
              "| strategy | step time / none |", "|---|---:|"]
    lines += [f"| `{row['strategy']}` | {row['ratio_to_none']:.2f} |" for row in record["strategy_overhead"]]
    return "\n".join(lines)
