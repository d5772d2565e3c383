"""Throughput benchmark: the lockstep engine against the per-run oracle, side by side.

Everything is measured in one process, in one run, on the same device:

- run-steps per second of the engine (K runs per step) and of the sequential
  plain-PyTorch oracle (one run at a time, the peers' way) on the first cell of
  each model group (:data:`FAMILY_GROUPS`: MLP, CNN, RNN, transformer) that
  the config has, at several K;
- run-steps per second of the engine and of the real peer for many small
  trainings at once, PyTorch's own model-ensembling recipe (``torch.func``:
  ``stack_module_state``, ``functional_call``, ``vmap`` of ``grad``; see
  :mod:`bench.peer`), on the same cells, K and strategy, where the peer trains
  the cell (its optimizer SGD, Adam or AdamW, see :func:`bench.peer.refused`);
- on the MLP cell (where the config has one): the floating-point rate of the engine's training step,
  counted by ``torch.utils.flop_counter.FlopCounterMode``, against the rate of
  a large matrix product (the machine's practical limit) and of one batched
  product of the cell's own layer shape (the limit for matrices that small),
  and each strategy's step time relative to ``none``, as the median over rounds
  of back-to-back pairs (see :func:`paired_ratios`), but for those that set
  model options (:func:`overhead_strategies`);
- narrowing (:mod:`bench.shrink`): each group's cell, its whole run grid as the config defines it,
  trained to its steps with the batch narrowed to the runs still alive and with the full batch, in
  alternating rounds (see :func:`narrowed_against_full`); on a GPU, where the batch does not narrow, the
  record says so instead;
- peak memory: host RSS, and GPU memory on CUDA.

:func:`measure_narrowing` measures narrowing alone, on the cells of a config chosen by their ids
(``python -m bench perf --narrowing GLOB ...``): what it saves on a study's own cells.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import allocator, columns, engine, peer, reference, shrink, store, strategies, sweep
from bench.sweep import Cell, Run

FAMILY_GROUPS = {"mlp": ("mlp",), "cnn": ("cnn1d", "cnn2d"), "rnn": ("rnn",), "transformer": ("transformer",)}
"""The model groups measured, each with the model families whose first cell stands for it."""

GROUP_WIDTH = max(map(len, FAMILY_GROUPS))
"""The width of a group's name in the printed lines, so that their columns align."""


def group_of(cell: Cell) -> str:
    """The model group (:data:`FAMILY_GROUPS`) of ``cell``'s model family; a family in none, its own name."""
    family = cell.model["family"]
    return next((group for group, families in FAMILY_GROUPS.items() if family in families), family)


def representative_cells(config: dict[str, Any]) -> dict[str, Cell]:
    """The first cell of each model group (:data:`FAMILY_GROUPS`) in ``config``; a group none of whose
    families the config has is left out."""
    chosen: dict[str, Cell] = {}
    for cell in sweep.cells(config):
        if (group := group_of(cell)) in FAMILY_GROUPS:
            chosen.setdefault(group, cell)
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


def overhead_strategies() -> list[str]:
    """The strategies whose step time is measured against ``none`` in the MLP cell: all but those that set model
    options (qk-layernorm, soft-capping), which change the network of a family the MLP is not, not the step."""
    return [name for name in strategies.known() if not strategies.lookup(name).meta["sets_model_options"]]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EngineTimer:
    """A built cell, ready to time its lockstep steps again and again."""

    def __init__(self, cell: Cell, warmup: int = 3, data_cache: str | Path | None = None) -> None:
        started = time.perf_counter()
        self.built = engine.build(cell, data_cache)
        self.build_s = time.perf_counter() - started
        self.state = engine.fresh_state(self.built)
        self.indices = engine.batch_plan(self.built, range(cell.steps))
        self.seconds(warmup)

    def seconds(self, steps: int) -> float:
        """Seconds per lockstep step (all K runs) over the next ``steps`` steps, cycling through the data."""
        synchronize(self.built.device)
        started = time.perf_counter()
        for _ in range(steps):
            self.state.step %= len(self.indices)
            engine.train_step(self.built, self.state, self.indices[self.state.step])
        synchronize(self.built.device)
        return (time.perf_counter() - started) / steps

    def gradient_seconds(self, steps: int) -> float:
        """Seconds per step of the forward and backward passes alone (no update: the state stays)."""
        synchronize(self.built.device)
        started = time.perf_counter()
        for step in range(steps):
            batch = self.indices[step % len(self.indices)]
            engine.forward_backward(self.built, self.state.params, *engine.gather_batch(self.built, batch))
        synchronize(self.built.device)
        return (time.perf_counter() - started) / steps


class PeerTimer:
    """The vmap ensemble of a cell (bench.peer), ready to time its steps again and again."""

    def __init__(self, cell: Cell, warmup: int = 3) -> None:
        self.ensemble = peer.VmapEnsemble(cell)
        self.steps, self.step = cell.steps, 0
        self.seconds(warmup)

    def seconds(self, steps: int) -> float:
        """Seconds per ensemble step (all K runs) over the next ``steps`` steps, cycling through the data."""
        synchronize(self.ensemble.device)
        started = time.perf_counter()
        for _ in range(steps):
            self.ensemble.step(self.step % self.steps)
            self.step += 1
        synchronize(self.ensemble.device)
        return (time.perf_counter() - started) / steps


def paired_ratios(timers: dict[str, EngineTimer], baseline: str, steps: int, rounds: int) -> dict[str, float]:
    """Step time of each timer relative to ``baseline``: each round times the baseline right
    before each other timer, and the ratio of such a pair is taken; the median over rounds.

    Pairs a fraction of a second apart share the machine's state, so slow drifts
    of its speed (other tenants, clocks) cancel in the ratio.
    """
    pairs: dict[str, list[float]] = {name: [] for name in timers if name != baseline}
    for _ in range(rounds):
        for name in pairs:
            reference_seconds = timers[baseline].seconds(steps)
            pairs[name].append(timers[name].seconds(steps) / reference_seconds)
    return {baseline: 1.0, **{name: statistics.median(ratios) for name, ratios in pairs.items()}}


def fastest(blocks: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Seconds per step (or product) of each timed block: the fastest of ``rounds`` interleaved
    rounds, robust to noise; a block is a timer's ``seconds`` with its repeat count bound."""
    best = {name: float("inf") for name in blocks}
    for _ in range(rounds):
        for name, block in blocks.items():
            best[name] = min(best[name], block())
    return best


def reference_seconds(cell: Cell) -> float:
    """Seconds per step of the oracle training the runs of ``cell`` one at a time, averaged over them."""
    total = 0.0
    for index in range(len(cell.runs)):
        history = reference.train_reference(cell, index, keep_params=False)
        total += history.wall_time_s / max(len(history.losses), 1)
    return total / len(cell.runs)


def step_flops(built: engine.BuiltCell) -> int:
    """Floating-point operations of one lockstep training step (forward and backward)."""
    state = engine.fresh_state(built)
    batch = torch.zeros(len(built.cell.runs), built.cell.batch_size, dtype=torch.long, device=built.device)
    counter = FlopCounterMode(display=False)
    with counter:
        engine.train_step(built, state, batch)
    return counter.get_total_flops()


class ProductTimer:
    """A batched float32 matrix product, (runs, rows, inner) @ (runs, inner, columns), ready to time."""

    def __init__(self, device: torch.device, runs: int, rows: int, inner: int, columns: int) -> None:
        self.device, self.flops = device, 2 * runs * rows * inner * columns
        self.a = torch.randn(runs, rows, inner, device=device)
        self.b = torch.randn(runs, inner, columns, device=device)
        self.seconds(1)

    def seconds(self, repeats: int) -> float:
        """Seconds per product over ``repeats`` products."""
        synchronize(self.device)
        started = time.perf_counter()
        for _ in range(repeats):
            torch.bmm(self.a, self.b)
        synchronize(self.device)
        return (time.perf_counter() - started) / repeats


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak host RSS (and GPU memory on CUDA) of this process, in MiB."""
    memory = {"host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        memory["gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return memory


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to time: engine steps per timed block and interleaved rounds; the same for the
    back-to-back strategy pairs; products per block for the large and the layer-shaped matmul; the
    steps a cell trains to with and without narrowing (None: the cell's own) and the rounds of each."""

    steps: int
    rounds: int
    pair_steps: int
    pair_rounds: int
    matmul_repeats: int
    layer_repeats: int
    narrow_steps: int | None
    narrow_rounds: int


QUICK = Budget(steps=5, rounds=1, pair_steps=3, pair_rounds=1, matmul_repeats=2, layer_repeats=200,
               narrow_steps=20, narrow_rounds=1)
FULL = Budget(steps=20, rounds=5, pair_steps=10, pair_rounds=15, matmul_repeats=4, layer_repeats=2000,
              narrow_steps=None, narrow_rounds=3)


def throughput(group: str, cell: Cell, sizes: tuple[int, ...], device: str, threads: int, oracle_runs: int,
               budget: Budget) -> list[dict[str, Any]]:
    """Run-steps per second of the oracle and of the engine at each K in ``sizes``, timed interleaved."""
    timers = {runs: EngineTimer(with_runs(cell, runs, device, budget.steps, threads)) for runs in sizes}
    oracle = with_runs(cell, oracle_runs, device, budget.steps, threads)
    seconds = fastest({"oracle": functools.partial(reference_seconds, oracle),
                       **{runs: functools.partial(timer.seconds, budget.steps) for runs, timer in timers.items()}},
                      budget.rounds)
    reference_rate = 1 / seconds.pop("oracle")
    return [{"model": group, "cell": cell.id, "K": runs, "engine_run_steps_per_s": runs / step_seconds,
             "reference_run_steps_per_s": reference_rate, "speedup": runs / step_seconds / reference_rate}
            for runs, step_seconds in seconds.items()]


PEER_STRATEGIES = ("clip_norm", "none")
"""The strategies timed on both sides against the vmap peer."""


def peer_refusals(cell: Cell, members: tuple[str, ...]) -> list[str]:
    """What the vmap peer does not train (:func:`bench.peer.refused`) of the runs that :func:`with_runs`
    makes of ``cell`` with each strategy of ``members``; empty: :func:`against_peer` can time them."""
    asked = (peer.refused(with_runs(cell, 1, cell.device, cell.steps, cell.threads, [member])) for member in members)
    return list(dict.fromkeys(what for refusals in asked for what in refusals))


def against_peer(group: str, cell: Cell, sizes: tuple[int, ...], members: tuple[str, ...], device: str,
                 threads: int, budget: Budget) -> list[dict[str, Any]]:
    """Run-steps per second of the engine and of the vmap ensemble (bench.peer) on the same runs of
    ``cell`` at each K in ``sizes`` and with each strategy of ``members``, all timed interleaved."""
    timers: dict[tuple[str, int, str], EngineTimer | PeerTimer] = {}
    for member in members:
        for runs in sizes:
            same = with_runs(cell, runs, device, budget.steps, threads, [member])
            timers[member, runs, "engine"], timers[member, runs, "vmap"] = EngineTimer(same), PeerTimer(same)
    seconds = fastest({key: functools.partial(timer.seconds, budget.steps) for key, timer in timers.items()},
                      budget.rounds)
    rows = []
    for member in members:
        for runs in sizes:
            engine_rate, vmap_rate = (runs / seconds[member, runs, side] for side in ("engine", "vmap"))
            rows.append({"model": group, "cell": cell.id, "K": runs, "strategy": member,
                         "engine_run_steps_per_s": engine_rate, "vmap_run_steps_per_s": vmap_rate,
                         "ratio": engine_rate / vmap_rate})
    return rows


def limit(timer: EngineTimer, device: torch.device, size: int, budget: Budget) -> dict[str, Any]:
    """The engine's FLOP rate on ``timer``'s MLP cell against a ``size``-square matrix product and a
    batched product of the cell's layer shape, and how much of its step the forward and backward
    passes take; all timed interleaved."""
    cell, width = timer.built.cell, timer.built.model.width
    layer_shape = [len(cell.runs), width, width, cell.batch_size]
    products = {"matmul": ProductTimer(device, 1, size, size, size), "layer": ProductTimer(device, *layer_shape)}
    repeats = {"matmul": budget.matmul_repeats, "layer": budget.layer_repeats}
    seconds = fastest({"engine": functools.partial(timer.seconds, budget.steps),
                       "gradients": functools.partial(timer.gradient_seconds, budget.steps),
                       **{name: functools.partial(product.seconds, repeats[name])
                          for name, product in products.items()}}, budget.rounds)
    engine_rate = step_flops(timer.built) / seconds["engine"]
    matmul_rate, layer_rate = (products[name].flops / seconds[name] for name in ("matmul", "layer"))
    return {"cell": cell.id, "K": len(cell.runs), "matmul_flops_per_s": matmul_rate,
            "engine_flops_per_s": engine_rate, "fraction": engine_rate / matmul_rate,
            "layer_shape": layer_shape, "layer_matmul_flops_per_s": layer_rate,
            "step_s": seconds["engine"], "gradients_s": seconds["gradients"]}


def header(device: torch.device, threads: int) -> dict[str, Any]:
    """The fields every record starts with: the date, the device in words, torch's version, the threads and
    Python's version."""
    return {"date": datetime.date.today().isoformat(), "device": device_name(device), "torch": torch.__version__,
            "threads": threads, "python": platform.python_version()}


def measure(config: dict[str, Any], device: str, quick: bool, threads: int,
            report: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement and return the JSON-ready record."""
    torch.set_num_threads(threads)
    allocator.keep_freed_memory()  # before the oracle too: both sides run under the same allocator
    resolved = engine.resolve_device(device)
    budget = QUICK if quick else FULL
    cells = representative_cells(config)
    record: dict[str, Any] = {**header(resolved, threads), "quick": quick, "throughput": [], "peer": [],
                              "strategy_overhead": []}
    for group, cell in cells.items():
        rows = throughput(group, cell, (1, 8) if quick else (1, 8, 32, 128), device, threads, 1 if quick else 3,
                          budget)
        record["throughput"] += rows
        for row in rows:
            report(f"{group:{GROUP_WIDTH}s} K={row['K']:4d}  engine {row['engine_run_steps_per_s']:10.1f}  "
                   f"reference {row['reference_run_steps_per_s']:8.1f} run-steps/s  speedup {row['speedup']:6.2f}x")
        if refusals := peer_refusals(cell, PEER_STRATEGIES):
            report(f"{group:{GROUP_WIDTH}s} not timed against the vmap peer: it does not train {', '.join(refusals)}")
            continue
        rows = against_peer(group, cell, (8,) if quick else (8, 32, 128), PEER_STRATEGIES, device, threads, budget)
        record["peer"] += rows
        for row in rows:
            report(f"{group:{GROUP_WIDTH}s} K={row['K']:4d}  {row['strategy']:9s}  "
                   f"engine {row['engine_run_steps_per_s']:10.1f}  vmap {row['vmap_run_steps_per_s']:10.1f} "
                   f"run-steps/s  engine/vmap {row['ratio']:6.2f}x")

    record["narrowing"] = narrowing(cells.values(), device, threads, budget.narrow_steps, budget.narrow_rounds,
                                    report)
    if "mlp" in cells:
        record.update(mlp_costs(cells["mlp"], device, quick, threads, budget, report))
    else:
        report("no MLP cell: the FLOP rate and the strategies' step times are not measured")
    record["memory"] = peak_memory(resolved)
    return record


def mlp_costs(cell: Cell, device: str, quick: bool, threads: int, budget: Budget,
              report: Callable[[str], None]) -> dict[str, Any]:
    """The record's ``limit`` (the engine's FLOP rate on the MLP ``cell``, see :func:`limit`) and
    ``strategy_overhead`` (each strategy's step time relative to ``none`` on it)."""
    timers = {name: EngineTimer(with_runs(cell, 8 if quick else 32, device, budget.steps, threads, [name]))
              for name in overhead_strategies()}
    found = limit(timers["none"], engine.resolve_device(device), 1024 if quick else 2048, budget)
    report(f"MLP K={found['K']}: {found['engine_flops_per_s'] / 1e9:.2f} GFLOP/s, large matmul "
           f"{found['matmul_flops_per_s'] / 1e9:.2f} GFLOP/s ({100 * found['fraction']:.0f}%), its layers' bmm alone "
           f"{found['layer_matmul_flops_per_s'] / 1e9:.2f} GFLOP/s")
    ratios = paired_ratios(timers, "none", budget.pair_steps, budget.pair_rounds)
    return {"limit": found,
            "strategy_overhead": [{"strategy": name, "ratio_to_none": ratios[name]} for name in timers]}


def ended_share(diverged_step: Collection[int], steps: int) -> float:
    """The share of a full batch's run-steps, over ``steps`` steps of every run, spent on runs already ended:
    a run that diverged at step d (``diverged_step``, -1: never) is frozen from then on, and its steps
    d + 1 .. steps - 1 are those a narrowed batch need not train."""
    ended = sum(steps - 1 - int(step) for step in diverged_step if step >= 0)
    return ended / (len(diverged_step) * steps)


WARMUP_STEPS = 3
"""Full-batch steps taken, untimed, before a cell is trained with and without narrowing."""


def narrowed_against_full(group: str, built: engine.BuiltCell, rounds: int) -> dict[str, Any]:
    """The cell of ``built`` trained to its steps by :func:`bench.engine.train` with the batch narrowed to the
    runs still alive (bench.shrink) and with the full batch, in ``rounds`` alternating rounds (the narrowed
    batch first in even rounds, last in odd ones; :data:`WARMUP_STEPS` before them): the seconds of each
    training (its evaluations included; the median over rounds), their ratio, the runs that diverged, the
    share of the full batch's run-steps spent on runs already ended (:func:`ended_share`), and whether every
    training wrote the runs and curves tables (but their timing columns) of the first one with the full batch."""
    cell, state = built.cell, engine.fresh_state(built)
    for batch in engine.batch_plan(built, range(WARMUP_STEPS)):  # untimed: the first steps' one-off costs
        engine.train_step(built, state, batch)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    written: dict[bool, list[tuple[Any, Any]]] = {True: [], False: []}
    for round_ in range(rounds):
        for narrows in (True, False) if round_ % 2 == 0 else (False, True):
            started = time.perf_counter()
            history = engine.train(built, progress=False, narrows=narrows)
            seconds[narrows].append(time.perf_counter() - started)
            runs, curves = store.arrow_tables(cell, built.task, history)
            written[narrows].append((runs.drop_columns(list(columns.TIMING_COLUMNS)).to_pandas(), curves.to_pandas()))
    expected = written[False][0]
    identical = all(mine.equals(theirs) for tables in (*written[True], *written[False])
                    for mine, theirs in zip(tables, expected, strict=True))
    diverged_step = expected[0]["diverged_step"].to_numpy()
    full_s, narrowed_s = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {"model": group, "cell": cell.id, "K": len(cell.runs), "steps": cell.steps, "rounds": rounds,
            "diverged": int((diverged_step >= 0).sum()), "ended_share": ended_share(diverged_step, cell.steps),
            "full_s": full_s, "narrowed_s": narrowed_s, "ratio": narrowed_s / full_s, "identical": identical}


def narrowing(cells: Iterable[Cell], device: str, threads: int, steps: int | None, rounds: int,
              report: Callable[[str], None]) -> dict[str, Any]:
    """The record's ``narrowing``: ``rows``, :func:`narrowed_against_full` in ``rounds`` rounds of each cell of
    ``cells`` with its whole run grid on ``threads`` threads, to its steps or ``steps`` if fewer (None: its
    own), each reported as it finishes; or, where the batch does not narrow (:func:`bench.shrink.wanted`: on a
    GPU), ``off``, the sentence that says so."""
    rows = []
    for cell in cells:
        cell = dataclasses.replace(cell, steps=min(cell.steps, steps or cell.steps), device=device, threads=threads,
                                   checkpoint_every=0)
        built = engine.build(cell)
        if not shrink.wanted(built):
            off = f"not measured on {device_name(built.device)}: the batch narrows on a CPU only"
            report(f"narrowing {off} (bench/shrink.py says why)")
            return {"off": off}
        row = narrowed_against_full(group_of(cell), built, rounds)
        rows.append(row)
        report(f"{row['model']:{GROUP_WIDTH}s} K={row['K']:4d}  narrowed {row['narrowed_s']:8.2f} s  full batch "
               f"{row['full_s']:8.2f} s  narrowed/full {row['ratio']:5.2f}  {row['diverged']} runs ended, "
               f"{100 * row['ended_share']:.0f}% of run-steps on ended runs, tables "
               f"{'identical' if row['identical'] else 'DIFFERENT'}, cell {row['cell']}")
    return {"rows": rows}


def measure_narrowing(cells: list[Cell], patterns: list[str], device: str, threads: int, steps: int | None,
                      rounds: int, report: Callable[[str], None] = print) -> dict[str, Any]:
    """The JSON-ready record of narrowing alone (:func:`narrowing`) on ``cells``, those a config's cell ids
    matching the glob ``patterns`` chose (recorded as ``patterns`` of its ``narrowing``), each with its whole
    run grid, to its steps or ``steps`` if fewer, in ``rounds`` rounds: :func:`header` and ``narrowing``."""
    torch.set_num_threads(threads)
    allocator.keep_freed_memory()  # as measure does: the cells train under the allocator the rest runs under
    record = {**header(engine.resolve_device(device), threads),
              "narrowing": narrowing(cells, device, threads, steps, rounds, report)}
    if "rows" in record["narrowing"]:
        record["narrowing"]["patterns"] = patterns
    return record


PRODUCTS = frozenset({"mm", "bmm", "addmm", "baddbmm", "addbmm", "convolution", "_convolution",
                      "mkldnn_convolution", "convolution_backward", "cudnn_convolution", "_mkl_rnn"})
"""The aten operators that are matrix products or convolutions (the arithmetic a step cannot avoid)."""


def profile(config: dict[str, Any], device: str, runs: int, threads: int, steps: int = 20, rounds: int = 5,
            top: int = 8) -> list[dict[str, Any]]:
    """Where the step time goes, for the engine and the vmap ensemble on the same runs of each
    family's cell at K = ``runs`` with ``clip_norm``: milliseconds per step (the fastest of ``rounds``
    interleaved blocks of ``steps`` steps, unprofiled), then one profiled block of each
    (``torch.profiler``): aten operator calls per step, the share of operator self time in matrix
    products and convolutions (:data:`PRODUCTS`), and the ``top`` operators by self time. A cell the
    peer does not train (:func:`bench.peer.refused`) has the engine's rows alone."""
    torch.set_num_threads(threads)
    allocator.keep_freed_memory()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if engine.resolve_device(device).type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    rows = []
    for group, cell in representative_cells(config).items():
        same = with_runs(cell, runs, device, steps, threads, ["clip_norm"])
        timers: dict[str, EngineTimer | PeerTimer] = {"engine": EngineTimer(same)}
        if not peer.refused(same):
            timers["vmap"] = PeerTimer(same)
        fast = fastest({side: functools.partial(timer.seconds, steps) for side, timer in timers.items()}, rounds)
        for side, timer in timers.items():
            seconds = fast[side]
            with torch.profiler.profile(activities=activities) as profiled:
                timer.seconds(steps)
            ops = [e for e in profiled.key_averages() if e.key.startswith("aten::")]
            self_us = {e.key.removeprefix("aten::"): e.self_cpu_time_total for e in ops}
            total = sum(self_us.values())
            ranked = sorted(self_us.items(), key=lambda item: -item[1])[:top]
            rows.append({"model": group, "cell": cell.id, "K": runs, "side": side, "step_ms": seconds * 1e3,
                         "aten_calls_per_step": sum(e.count for e in ops) / steps,
                         "product_share": sum(us for name, us in self_us.items() if name in PRODUCTS) / total,
                         "top": [{"op": name, "share": us / total} for name, us in ranked]})
    return rows


def profile_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`profile` as a Markdown table."""
    lines = ["| model | K | side | ms / step | aten calls / step | products and convolutions | top operators "
             "(share of operator self time) |", "|---|---:|---|---:|---:|---:|---|"]
    for row in rows:
        top = ", ".join(f"{entry['op']} {100 * entry['share']:.0f}%" for entry in row["top"])
        lines.append(f"| {row['model']} | {row['K']} | {row['side']} | {row['step_ms']:.1f} | "
                     f"{row['aten_calls_per_step']:.0f} | {100 * row['product_share']:.0f}% | {top} |")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's architecture and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def markdown(record: dict[str, Any]) -> str:
    """The record as the Markdown tables of docs/performance.md."""
    lines = [f"Device: {record['device']}; torch {record['torch']}; {record['threads']} thread(s); {record['date']}."]
    if "throughput" not in record:  # narrowing alone (measure_narrowing)
        return "\n".join([*lines, "", *narrowing_markdown(record["narrowing"])])
    lines += ["", "| model | K | engine run-steps/s | oracle run-steps/s | speedup |", "|---|---:|---:|---:|---:|"]
    for row in record["throughput"]:
        lines.append(f"| {row['model']} | {row['K']} | {row['engine_run_steps_per_s']:.0f} | "
                     f"{row['reference_run_steps_per_s']:.0f} | {row['speedup']:.2f}x |")
    lines += ["", "Against the vmap ensemble (PyTorch's model-ensembling recipe, `bench/peer.py`), the same runs "
              "and strategy on both sides:", ""]
    if "peer" not in record:
        lines.append("Not measured yet.")
    else:
        lines += ["| model | K | strategy | engine run-steps/s | vmap run-steps/s | engine / vmap |",
                  "|---|---:|---|---:|---:|---:|"]
        lines += [f"| {row['model']} | {row['K']} | `{row['strategy']}` | {row['engine_run_steps_per_s']:.0f} | "
                  f"{row['vmap_run_steps_per_s']:.0f} | {row['ratio']:.2f}x |" for row in record["peer"]]
    lines += ["", *narrowing_markdown(record.get("narrowing"))]
    memory = record["memory"]
    gpu = f", peak GPU memory: {memory['gpu_mib']:.0f} MiB" if "gpu_mib" in memory else ""
    if "limit" not in record:
        lines += ["", "No MLP cell: the FLOP rate and the strategies' step times not measured. "
                  f"Peak host memory: {memory['host_rss_mib']:.0f} MiB{gpu}."]
        return "\n".join(lines)
    limit = record["limit"]
    runs, rows, inner, columns = limit["layer_shape"]
    lines += ["", f"Engine on the MLP cell at K = {limit['K']}: {limit['engine_flops_per_s'] / 1e9:.1f} GFLOP/s, "
              f"{100 * limit['fraction']:.0f}% of a large matrix product's {limit['matmul_flops_per_s'] / 1e9:.1f} "
              f"GFLOP/s. A batched product of the cell's layer shape alone ({runs} x {rows}x{inner} @ "
              f"{inner}x{columns}) reaches {limit['layer_matmul_flops_per_s'] / 1e9:.1f} GFLOP/s "
              f"({100 * limit['layer_matmul_flops_per_s'] / limit['matmul_flops_per_s']:.0f}%). Of the engine's "
              f"{limit['step_s'] * 1e3:.1f} ms step, the forward and backward passes take "
              f"{limit['gradients_s'] * 1e3:.1f} ms; the strategy, the optimizer and the logs the rest. "
              f"Peak host memory: {memory['host_rss_mib']:.0f} MiB{gpu}.", "",
              "| strategy | step time / none |", "|---|---:|"]
    lines += [f"| `{row['strategy']}` | {row['ratio_to_none']:.2f} |" for row in record["strategy_overhead"]]
    return "\n".join(lines)


def narrowing_markdown(narrowing: dict[str, Any] | None) -> list[str]:
    """The lines of a record's ``narrowing`` (:func:`narrowing`) in docs/performance.md: a sentence, and the
    table where it was measured."""
    title = "Narrowing the batch to the runs still alive (`bench/shrink.py`)"
    if narrowing is None:
        return [f"{title}: not measured yet."]
    if "off" in narrowing:
        return [f"{title}: {narrowing['off']}."]
    rounds = narrowing["rows"][0]["rounds"] if narrowing["rows"] else 0
    chosen = (f"the cells matching {', '.join(f'`{pattern}`' for pattern in narrowing['patterns'])}, each with its "
              "whole run grid," if "patterns" in narrowing else "each group's cell, its whole run grid,")
    lines = [f"{title}: {chosen} trained with and without it in {rounds} alternating "
             "round(s) (seconds: the median over them):", "",
             "| model | cell | K | steps | runs ended | run-steps on ended runs | full batch | narrowed | "
             "narrowed / full | tables identical |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {row['model']} | `{row['cell']}` | {row['K']} | {row['steps']} | {row['diverged']} | "
              f"{100 * row['ended_share']:.0f}% | {row['full_s']:.2f} s | {row['narrowed_s']:.2f} s | "
              f"{row['ratio']:.2f} | {'yes' if row['identical'] else 'no'} |" for row in narrowing["rows"]]
    return lines
