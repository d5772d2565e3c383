"""The whole lockstep step as one CUDA graph (config key ``cuda_graph``).

On a GPU, a step of this benchmark's small models is some hundreds of small
kernels, each launched from Python: the launches, not the arithmetic, bound it.
A CUDA graph records the step's kernels once and replays them with one launch
(``torch.cuda.CUDAGraph``, PyTorch's "CUDA Graphs" recipe). A replay repeats
exactly the recorded kernels on the same memory, so everything the step reads
or writes lives in tensors made before the capture, and nothing in it reads a
value back on the host:

- the step's batch indices and bad-batch factors are copied into static
  buffers before each replay, and the batch is gathered from them inside the
  graph;
- the step counter lives on the device (``clock``, a long scalar advanced by the
  graph itself); the schedule, the logs and the divergence record read it
  instead of the host's ``LoopState.step``, which the step never touches;
- the step's new state is copied into the loop state's own tensors, so what
  the evaluations and checkpoints read is always the static state;
- the step runs under :func:`bench.transform.device_only`, so no shortcut reads
  a mask on the host (each shortcut only skips work that would change nothing:
  the graphed step computes exactly what the eager one does).

The first :data:`WARMUP` steps run eagerly on a side stream (capture needs the
allocator and the cuBLAS and cuDNN handles warmed up); then one step is
captured and every step from there on, that one included, is a replay. A cell
whose state changes shape during training (``autoclip``'s history of norms
grows by one entry a step) cannot be replayed on fixed memory: it keeps
stepping eagerly. On a CPU, where there is no CUDA graph, the switch changes
nothing; the tests run this module there with stand-ins for ``torch.cuda``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench.transform import device_only

if TYPE_CHECKING:
    from bench.engine import BuiltCell, LoopState

WARMUP = 3
"""Eager steps on a side stream before the capture (as PyTorch's recipe warms up)."""

STATE_FIELDS = ("params", "opt_state", "chain_states", "alive", "diverged_step", "initial_loss")
"""The loop state's fields a step replaces (the logs it writes in place)."""


def shapes(tree: Any) -> Any:
    """The shapes of every tensor in a nested dict or list, in the same nesting."""
    if isinstance(tree, Tensor):
        return tuple(tree.shape)
    if isinstance(tree, dict):
        return {key: shapes(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [shapes(value) for value in tree]
    return tree


def copy_into(static: Any, new: Any) -> None:
    """Copy every tensor of ``new`` into the tensor at the same place of ``static`` (same shapes)."""
    if isinstance(static, Tensor):
        static.copy_(new)
    elif isinstance(static, dict):
        for key, value in static.items():
            copy_into(value, new[key])
    elif isinstance(static, (list, tuple)):
        for value, replacement in zip(static, new, strict=True):
            copy_into(value, replacement)


def capture(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` recorded as a CUDA graph (recording runs none of it); returns the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def on_side_stream(side: Any, step: Callable[[], None]) -> None:
    """Run ``step`` on the stream ``side``, which waits for, and is waited on by, the current one."""
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)


def wanted(built: BuiltCell) -> bool:
    """Whether the cell's steps are graphed: its config asks for it and it trains on a GPU."""
    return built.cell.cuda_graph and built.device.type == "cuda"


class GraphedStep:
    """``step`` (bench.engine.train_step: the batch gathered, then the step) of ``built`` for a loop state
    that starts at step ``start``, as one CUDA graph after :data:`WARMUP` eager steps; ``spikes``: whether
    the steps take bad-batch factors."""

    def __init__(self, step: Callable[..., None], built: BuiltCell, start: int, spikes: bool) -> None:
        runs, device = len(built.cell.runs), built.device
        self.step, self.built = step, built
        self.side_stream: Any = None
        self.batch = torch.zeros(runs, built.cell.batch_size, dtype=torch.long, device=device)
        self.spike = torch.zeros(runs, 2, device=device) if spikes else None
        self.clock = torch.tensor(start, dtype=torch.long, device=device)
        self.replay: Callable[[], None] | None = None
        self.eager_steps = 0
        self.fixed_shapes = True

    def __call__(self, state: LoopState, batch: Tensor, spike: Tensor | None) -> None:
        """Train step ``state.step`` on ``batch`` (K, B) and ``spike`` (K, 2) or None, in place on ``state``."""
        self.batch.copy_(batch)
        if self.spike is not None:
            self.spike.copy_(spike)
        if self.replay is None and self.fixed_shapes and self.eager_steps >= WARMUP:
            self.replay = capture(lambda: self.device_step(state))
        if self.replay is not None:
            self.replay()
        else:
            self.side_stream = self.side_stream or torch.cuda.Stream()
            on_side_stream(self.side_stream, lambda: self.device_step(state))
            self.eager_steps += 1
        state.step += 1

    def device_step(self, state: LoopState) -> None:
        """One step read from the static buffers and the device clock, written into ``state``'s tensors."""
        scratch = dataclasses.replace(state, step=None)  # the step reads the clock, never the host's step
        with device_only():
            self.step(self.built, scratch, self.batch, self.spike, clock=self.clock)
        for field in STATE_FIELDS:
            old, new = getattr(state, field), getattr(scratch, field)
            if self.fixed_shapes and shapes(old) == shapes(new):
                copy_into(old, new)
            else:  # a state that changes shape: never captured, stepped eagerly
                self.fixed_shapes = False
                setattr(state, field, new)
        self.clock += 1
