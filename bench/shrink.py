"""The lockstep batch narrowed to the runs still alive.

A run that has diverged is frozen (bench.engine): its parameters and states
stay as they were. Trained in the batch all the same, it would cost a forward
pass, a backward pass, the strategies and the optimizer every step, all thrown
away. So once a step has ended runs, the loop trains on with the batch of the
runs still alive: a cell of those runs (:func:`subset`: the same task, data,
model and optimizer, the strategy chain rebuilt with their rows of the per-run
hyperparameters, the model with their rows of its per-run options) and their
rows of the loop state (:func:`narrow`). What the narrowed batch computes is
written back into the state of all K runs (:func:`widen`) when the batch
narrows again, at every checkpoint (a checkpoint holds all K runs, so a job
resumes whatever its batch was) and at the end (the history holds all K runs).

What a run computes is its own whatever the other runs of the batch (every
reduction is per run, dense layers are batched products, convolutions grouped
by run), but a CPU kernel may round a run's values differently by where they
sit in memory: a vectorised loop hands the last values of a tensor that fill
no whole vector to scalar code (PyTorch's sigmoid and GELU differ there), and
a matrix kernel may take another path for data aligned otherwise. Narrowing
moves runs within the batch. With sizes like the tests' and the study's
(widths, channels, batches multiples of 8) a narrowed cell writes bit for bit
the tables of a full one, for every model family, optimizer and kind of
strategy state (tests/test_shrink.py; ``python -m bench perf`` compares the
tables of a config's cells, docs/performance.md); with other sizes (a width of
5, a batch of 7) the runs end at the same steps and the stable ones agree to
rounding, as the engine agrees with its oracle. A batch of one run takes other
kernels still (a convolution of one group, a product of one pair of matrices),
so a narrowed batch keeps at least :data:`FEWEST` runs. Which runs the batch
holds at a step depends only on which are alive then, so a resumed job computes
exactly what an uninterrupted one does, and a config trains the same numbers
run after run.

The batch narrows on a CPU only, right after a step that ended runs, where
reading the alive mask costs no device synchronisation. On a GPU the batch
keeps its K runs, as before: there reading the mask waits on the device, a
CUDA graph (bench.graph) replays a step captured for K runs, and no GPU
measurement says yet whether narrowing would pay for a new capture (a step
of small models there is bound by kernel launches more than by arithmetic).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench import graph, strategies

if TYPE_CHECKING:
    from bench.engine import BuiltCell, LoopState

RUN_FIELDS = ("params", "opt_state", "chain_states", "alive", "diverged_step", "initial_loss")
"""The loop state's fields with the runs along their first dimension (nested dicts and lists of tensors)."""
LOG_FIELDS = ("logs", "evals")
"""The loop state's fields of (rows, K) tensors: the runs along the second dimension."""


def wanted(built: BuiltCell) -> bool:
    """Whether the cell's batch narrows to the runs still alive: it trains on a CPU, not as a CUDA graph."""
    return built.device.type == "cpu" and not graph.wanted(built)


def take(tree: Any, runs: Tensor, dim: int = 0) -> Any:
    """The rows ``runs`` (long indices) along ``dim`` of every tensor of a nested dict or list; other leaves
    as they are."""
    if isinstance(tree, Tensor):
        return tree.index_select(dim, runs)
    if isinstance(tree, dict):
        return {key: take(value, runs, dim) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        taken = [take(value, runs, dim) for value in tree]
        return tuple(taken) if isinstance(tree, tuple) else taken
    return tree


def put(whole: Any, part: Any, runs: Tensor, dim: int = 0) -> Any:
    """``whole`` with its rows ``runs`` along ``dim`` replaced by ``part``'s, through nested dicts and lists of
    tensors (non-tensor leaves from ``part``). A buffer that grew along dim 1 in ``part`` (autoclip's history)
    has the other rows of ``whole`` zero-padded to its length, as :func:`bench.transform.select` pads a run
    that keeps its old state."""
    if isinstance(part, Tensor):
        if dim == 0 and part.dim() >= 2 and whole.shape[1] < part.shape[1]:
            grown = (0, 0) * (part.dim() - 2) + (0, part.shape[1] - whole.shape[1])
            whole = torch.nn.functional.pad(whole, grown)
        return whole.index_copy(dim, runs, part)
    if isinstance(part, dict):
        return {key: put(whole[key], value, runs, dim) for key, value in part.items()}
    if isinstance(part, (list, tuple)):
        merged = [put(w, p, runs, dim) for w, p in zip(whole, part, strict=True)]
        return tuple(merged) if isinstance(part, tuple) else merged
    return part


def subset(built: BuiltCell, runs: Tensor) -> BuiltCell:
    """The cell of ``built``'s runs ``runs`` (long indices into all of its runs, ascending), built from it:
    the same task, data, model family and optimizer; its runs' rows of every per-run quantity (learning rate,
    warm-up, bad-batch rate, initial parameters, the model's per-run options); the strategy chain built anew
    from its runs' rows of the hyperparameters (a value the cell's runs share stays shared)."""
    chosen = runs.tolist()
    cell = dataclasses.replace(built.cell, runs=[built.cell.runs[k] for k in chosen])
    hyperparameters = {key: take(value, runs) for key, value in built.hyperparameters.items()}
    model_options = {field.name: take(value, runs) for field in dataclasses.fields(built.model)
                     if isinstance(value := getattr(built.model, field.name), Tensor)}
    return dataclasses.replace(
        built, cell=cell, model=dataclasses.replace(built.model, **model_options),
        initial_params=take(built.initial_params, runs), lr=take(built.lr, runs),
        warmup_steps=take(built.warmup_steps, runs), spike_rate=take(built.spike_rate, runs),
        hyperparameters=hyperparameters, chain=strategies.build(cell.members, hyperparameters))


def narrow(state: LoopState, runs: Tensor) -> LoopState:
    """The loop state of the runs ``runs`` (long indices into the state's runs) only."""
    return dataclasses.replace(state, **{name: take(getattr(state, name), runs) for name in RUN_FIELDS},
                               **{name: take(getattr(state, name), runs, dim=1) for name in LOG_FIELDS})


def widen(whole: LoopState, part: LoopState, runs: Tensor) -> LoopState:
    """``whole`` with the runs ``runs`` replaced by the narrowed state ``part`` of them (its step too)."""
    return dataclasses.replace(
        whole, step=part.step, elapsed_s=part.elapsed_s,
        **{name: put(getattr(whole, name), getattr(part, name), runs) for name in RUN_FIELDS},
        **{name: put(getattr(whole, name), getattr(part, name), runs, dim=1) for name in LOG_FIELDS})


FEWEST = 2
"""The fewest runs a narrowed batch holds. A batch of one run takes other kernels than a batch of several (a
convolution of one group, a product of one pair of matrices) and rounds differently: beside the last run alive,
the batch keeps an ended run, frozen as in the full batch."""


def kept(alive: Tensor) -> Tensor:
    """The runs a narrowed batch holds, ascending, for the (K,) mask ``alive`` of the runs still alive: those,
    and where fewer than :data:`FEWEST` (but some) are, the first ended runs up to that many."""
    runs = torch.nonzero(alive).flatten()
    if 0 < len(runs) < FEWEST:
        ended = torch.nonzero(~alive).flatten()[: FEWEST - len(runs)]
        runs = torch.cat([runs, ended]).sort().values
    return runs


class Batch:
    """The runs a training loop steps, narrowed to those still alive where :func:`wanted` (and ``narrows``).

    ``built`` and ``state`` are the cell and loop state of the runs in the batch (all K runs until the first
    narrowing); :meth:`whole` is the state of all K runs; ``done`` once every run has ended.
    """

    def __init__(self, built: BuiltCell, state: LoopState, narrows: bool = True) -> None:
        self.cell_built, self.whole_state = built, state
        self.built, self.state = built, state
        self.runs: Tensor | None = None  # indices of the batch's runs among all K; None: all of them
        self.narrows = narrows and wanted(built)
        self.alive = len(built.cell.runs)  # the runs alive in the batch when it last narrowed
        self.narrowings = 0
        self.done = False
        self.update()

    def update(self) -> bool:
        """Narrow the batch to the runs still alive (:func:`kept`), if it narrows and a run has ended since it
        last did; whether it narrowed."""
        if not self.narrows or self.done or int(self.state.alive.sum()) == self.alive:
            return False
        whole = self.whole()
        runs = kept(whole.alive)
        self.whole_state, self.alive = whole, int(whole.alive.sum())
        if self.alive == 0:  # every run has ended: nothing left to train
            self.done = True
            return True
        if self.runs is not None and torch.equal(runs, self.runs):
            return False
        self.runs, self.narrowings = runs, self.narrowings + 1
        self.built, self.state = subset(self.cell_built, runs), narrow(whole, runs)
        return True

    def rows(self, per_run: Tensor | None) -> Tensor | None:
        """The batch's runs of a (steps, K, ...) plan (bench.engine.batch_plan, spike_plan), or None."""
        if per_run is None or self.runs is None:
            return per_run
        return per_run.index_select(1, self.runs)

    def whole(self) -> LoopState:
        """The loop state of all K runs: the batch's state written into theirs."""
        if self.runs is None:
            return self.state
        if self.done:
            return self.whole_state
        return widen(self.whole_state, self.state, self.runs)
