"""The oracle: one run trained the plain-PyTorch way.

``train_reference`` trains a single run of a cell with ``torch.nn`` layers,
``torch.optim`` and ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``,
one run at a time, as a peer's per-run training loop would (DeepOBS and
AlgoPerf runners train this way). It starts from the same initial weights and
sees the same batches as the engine's run of the same seed. Tests hold the
lockstep engine to it step by step; ``python -m bench perf`` measures speed
against it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench import engine, models, tasks
from bench.sweep import Cell, Run

ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU}
RECURRENT_MODULES = {"tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(nn.Module):
    """torch.nn.RNN/LSTM/GRU with a linear head on the last or every step."""

    def __init__(self, spec: models.RNN) -> None:
        super().__init__()
        self.rnn = RECURRENT_MODULES[spec.cell](spec.in_shape[-1], spec.hidden, batch_first=True)
        self.head = nn.Linear(spec.hidden, spec.n_outputs)
        self.per_step = spec.per_step

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.rnn(x)
        return self.head(states if self.per_step else states[:, -1])


class GlobalAveragePool(nn.Module):
    """Mean over all spatial dims: (B, C, *S) -> (B, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(2)


def module(spec: models.Model) -> nn.Module:
    """The torch.nn network equivalent to the batched model ``spec``."""
    if isinstance(spec, models.RNN):
        return Recurrent(spec)
    act = ACTIVATION_MODULES[spec.activation]
    layers: list[nn.Module] = []
    if isinstance(spec, models.MLP):
        layers.append(nn.Flatten())
        sizes = [int(torch.tensor(spec.in_shape).prod())] + [spec.width] * spec.depth
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), act()]
        layers.append(nn.Linear(sizes[-1], spec.n_outputs))
        return nn.Sequential(*layers)
    conv = nn.Conv1d if spec.spatial == 1 else nn.Conv2d
    channels_in = spec.in_shape[0]
    for i in range(spec.depth):
        layers += [conv(channels_in, spec.channels, spec.kernel, stride=spec.stride(i), padding=spec.kernel // 2),
                   act()]
        channels_in = spec.channels
    layers += [GlobalAveragePool(), nn.Linear(spec.channels, spec.n_outputs)]
    return nn.Sequential(*layers)


def ordered_parameters(net: nn.Module) -> list[Tensor]:
    """``net``'s parameters in the engine's order (nn.RNN: w_ih, w_hh, b_ih, b_hh; then the head)."""
    if isinstance(net, Recurrent):
        return [*net.rnn.parameters(), *net.head.parameters()]
    return list(net.parameters())


def load_parameters(net: nn.Module, params: list[Tensor]) -> None:
    """Copy one run's parameters (engine order) into ``net``'s parameters (same order)."""
    with torch.no_grad():
        for target, value in zip(ordered_parameters(net), params, strict=True):
            target.copy_(value)


def optimizer(cell: Cell, run: Run, net: nn.Module) -> torch.optim.Optimizer:
    """The torch.optim optimizer of the cell, for one run."""
    options = {k: v for k, v in cell.optimizer.items() if k not in ("kind", "learning_rates")}
    kind = cell.optimizer["kind"]
    if kind == "sgd":
        return torch.optim.SGD(net.parameters(), lr=run.lr, **options)
    betas = (options.pop("beta1", 0.9), options.pop("beta2", 0.999))
    if kind == "adam":
        return torch.optim.Adam(net.parameters(), lr=run.lr, betas=betas, **options)
    return torch.optim.AdamW(net.parameters(), lr=run.lr, betas=betas, **options)


CLIPPERS = {
    "none": lambda params, hp: None,
    "clip_value": lambda params, hp: nn.utils.clip_grad_value_(params, hp.get("clip_value", 1.0)),
    "clip_norm": lambda params, hp: nn.utils.clip_grad_norm_(params, hp.get("clip_norm", 1.0)),
}
"""Strategies with a plain-PyTorch counterpart, applied to one run's gradients in place."""


@dataclass
class ReferenceHistory:
    """One run's per-step training losses, its parameters after each step, and its divergence step."""

    losses: list[float]
    params: list[list[Tensor]]
    diverged_step: int
    wall_time_s: float


def train_reference(cell: Cell, index: int, keep_params: bool = True) -> ReferenceHistory:
    """Train run ``index`` of ``cell`` alone, with torch.nn, torch.optim and torch's clipping."""
    unsupported = [m for m in cell.members if m not in CLIPPERS]
    if unsupported:
        raise ValueError(f"the reference has no plain-PyTorch counterpart of {unsupported}; "
                         f"known: {', '.join(CLIPPERS)}")
    run = cell.runs[index]
    single = Cell(**{**cell.__dict__, "runs": [run]})
    device = engine.resolve_device(cell.device)
    task = tasks.load(cell.task["kind"], **engine.task_options(cell))
    spec = engine.build_model(single, task)
    net = module(spec).to(device)
    load_parameters(net, [p[0] for p in engine.initial_parameters(spec, single)])
    opt = optimizer(cell, run, net)
    family = cell.model["family"]
    x, y = task.inputs("train", family).to(device), task.targets("train").to(device)
    order = tasks.batch_indices(run.seed, len(x), cell.batch_size, range(cell.steps)).to(device)
    losses, snapshots, initial, diverged = [], [], None, -1
    started = time.perf_counter()
    for step in range(cell.steps):
        xb, yb = x[order[step]], y[order[step]]
        opt.zero_grad()
        outputs = net(xb)
        loss, _ = task.loss_and_metric(outputs.unsqueeze(0), yb.unsqueeze(0))
        loss = loss[0]
        loss.backward()
        value = float(loss.detach())
        initial = value if initial is None else initial
        losses.append(value)
        if not torch.isfinite(loss) or value > cell.divergence_factor * initial:
            diverged = step
            break
        for member in cell.members:
            CLIPPERS[member](list(net.parameters()), run.hyperparameters)
        opt.step()
        if keep_params:
            snapshots.append([p.detach().clone() for p in ordered_parameters(net)])
    return ReferenceHistory(losses, snapshots, diverged, time.perf_counter() - started)
