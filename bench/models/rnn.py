"""Single-layer recurrent networks (tanh, LSTM or GRU cell) with a linear head.

Recurrent cells hold ``w_ih`` (K, G*H, F), ``w_hh`` (K, G*H, H), ``b_ih`` and
``b_hh`` (K, G*H) in PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n).
The stress dial ``recurrent_radius`` rescales each gate's H x H block of the
recurrent matrix at init to that spectral radius (radius > 1: the exploding
regime, Pascanu et al. 2013); ``init_gain`` scales the other weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.models import Model, dense, register

GATES = {"tanh": 1, "lstm": 4, "gru": 3}
RECURRENT_MODULES = {"tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def with_radius(block: Tensor, radius: float) -> Tensor:
    """Rescale a square matrix so its spectral radius is ``radius``."""
    current = torch.linalg.eigvals(block.double()).abs().max().item()
    return block * (radius / current)


@dataclass(frozen=True)
class RNN(Model):
    """A recurrent network with a head on the last hidden state, or on every step when ``per_step``."""

    cell: str = "tanh"
    hidden: int = 64
    per_step: bool = False

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        gates, features, hidden = GATES[self.cell], self.in_shape[-1], self.hidden
        return [("w_ih", (gates * hidden, features), features), ("w_hh", (gates * hidden, hidden), hidden),
                ("b_ih", (gates * hidden,), features), ("b_hh", (gates * hidden,), hidden),
                ("w_out", (self.n_outputs, hidden), hidden), ("b_out", (self.n_outputs,), hidden)]

    def init_one(self, name: str, shape: tuple[int, ...], fan_in: int, dials: Mapping[str, float],
                 generator: torch.Generator) -> Tensor:
        if name != "w_hh":
            return super().init_one(name, shape, fan_in, dials, generator)
        blocks = torch.randn(shape, generator=generator).split(self.hidden)
        return torch.cat([with_radius(block, dials.get("recurrent_radius", 1.0)) for block in blocks])

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        w_ih, w_hh, b_ih, b_hh, w_out, b_out = params
        runs, batch, steps, _ = x.shape
        projected = dense(x.flatten(1, 2), w_ih, b_ih).view(runs, batch, steps, -1)
        h = x.new_zeros(runs, batch, self.hidden)
        c = torch.zeros_like(h)
        states = []
        # unbind, not projected[:, :, t]: the backward of T selects writes T full-size zero gradients
        # (quadratic in T, minutes a step at T = 784); unbind's backward stacks the T slices once
        for inp in projected.unbind(2):
            h, c = self.cell_step(inp, dense(h, w_hh, b_hh), h, c)
            if self.per_step:
                states.append(h)
        if not self.per_step:
            return dense(h, w_out, b_out)
        hs = torch.stack(states, dim=2)
        return dense(hs.flatten(1, 2), w_out, b_out).view(runs, batch, steps, -1)

    def cell_step(self, inp: Tensor, rec: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One time step of the cell from the input and recurrent projections: new (h, c)."""
        if self.cell == "tanh":
            return torch.tanh(inp + rec), c
        if self.cell == "lstm":
            i, f, g, o = (inp + rec).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        inp_r, inp_z, inp_n = inp.chunk(3, dim=-1)
        rec_r, rec_z, rec_n = rec.chunk(3, dim=-1)
        r, z = torch.sigmoid(inp_r + rec_r), torch.sigmoid(inp_z + rec_z)
        n = torch.tanh(inp_n + r * rec_n)
        return (1 - z) * n + z * h, c


class Recurrent(nn.Module):
    """torch.nn.RNN/LSTM/GRU with a linear head on the last or every step; its parameters()
    come in the engine's order (w_ih, w_hh, b_ih, b_hh, then the head)."""

    def __init__(self, spec: RNN) -> None:
        super().__init__()
        self.rnn = RECURRENT_MODULES[spec.cell](spec.in_shape[-1], spec.hidden, batch_first=True)
        self.head = nn.Linear(spec.hidden, spec.n_outputs)
        self.per_step = spec.per_step

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.rnn(x)
        return self.head(states if self.per_step else states[:, -1])


@register("rnn", inputs="sequence", per_step_head=True, dials={"init_gain": 1.0, "recurrent_radius": 1.0},
          reference=Recurrent)
def rnn(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool, *, cell: str = "tanh",
        hidden: int = 64) -> RNN:
    """A single-layer recurrent network on (T, F) sequences."""
    return RNN(family, in_shape, n_outputs, cell=cell, hidden=hidden, per_step=per_step)
