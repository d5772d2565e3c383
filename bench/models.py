"""Batched models: K independent networks evaluated as one.

Every parameter carries a leading run dimension K and every input a leading
(K, B) pair, so K runs of a cell cost a few large kernels instead of K small
ones: ``baddbmm`` for dense layers, grouped convolution (``groups=K``) for
convolutions, and per-time-step batched cells for recurrences. None of them
uses normalisation: these are the networks in which gradients explode.

Parameter layout (what strategies rely on): a weight is (K, out, in, *kernel),
a bias (K, out); recurrent cells hold ``w_ih`` (K, G*H, F), ``w_hh``
(K, G*H, H), ``b_ih`` and ``b_hh`` (K, G*H) in PyTorch's gate order (LSTM:
i, f, g, o; GRU: r, z, n). The last two tensors are always the output layer's
weight and bias.

Initialisation (the stress dials): weights are N(0, gain^2 / fan_in), so gain
1 is LeCun's init and larger gains drive deep nets toward exploding gradients;
a recurrent matrix (each gate's H x H block) is a Gaussian matrix rescaled to
spectral radius ``recurrent_radius`` (radius > 1: exploding regime, Pascanu et
al. 2013). Biases start at zero. Each run draws its weights from a generator
seeded by its own seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
GATES = {"tanh": 1, "lstm": 4, "gru": 3}
FAMILIES = ("mlp", "cnn1d", "cnn2d", "rnn")


def _gaussian(shape: Sequence[int], fan_in: int, gain: float, generator: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=generator) * (gain / math.sqrt(fan_in))


def _with_radius(block: Tensor, radius: float) -> Tensor:
    """Rescale a square matrix so its spectral radius is ``radius``."""
    current = torch.linalg.eigvals(block.double()).abs().max().item()
    return block * (radius / current)


def _dense(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Per-run affine map: x (K, N, in), weight (K, out, in), bias (K, out) -> (K, N, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


@dataclass(frozen=True)
class Model:
    """Shape-defining hyperparameters shared by the K runs of a cell."""

    family: str
    in_shape: tuple[int, ...]
    n_outputs: int
    activation: str = "tanh"

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        """(name, shape without K, fan_in) of each parameter, output layer last."""
        raise NotImplementedError

    def init(self, seeds: Sequence[int], init_gain: Sequence[float], recurrent_radius: Sequence[float]) -> list[Tensor]:
        """Initial parameters of K runs, each from a generator seeded by its seed."""
        runs = []
        for seed, gain, radius in zip(seeds, init_gain, recurrent_radius, strict=True):
            generator = torch.Generator().manual_seed(seed)
            runs.append([self._init_one(name, shape, fan_in, gain, radius, generator)
                         for name, shape, fan_in in self.shapes()])
        return [torch.stack(tensors) for tensors in zip(*runs, strict=True)]

    def _init_one(self, name: str, shape: tuple[int, ...], fan_in: int, gain: float, radius: float,
                  generator: torch.Generator) -> Tensor:
        if name.startswith("b"):
            return torch.zeros(shape)
        return _gaussian(shape, fan_in, gain, generator)

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        """Outputs (K, B, n_outputs), or (K, B, T, n_outputs) for per-step heads."""
        raise NotImplementedError


@dataclass(frozen=True)
class MLP(Model):
    """Deep fully connected network: ``depth`` hidden layers of ``width`` units."""

    depth: int = 8
    width: int = 64

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        sizes = [math.prod(self.in_shape)] + [self.width] * self.depth
        layers = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers += [(f"w{i}", (fan_out, fan_in), fan_in), (f"b{i}", (fan_out,), fan_in)]
        return layers + [("w_out", (self.n_outputs, sizes[-1]), sizes[-1]), ("b_out", (self.n_outputs,), sizes[-1])]

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        # Activations are kept feature-major, (K, features, B): each layer is W @ h + b, so the
        # backward pass yields every weight gradient as a contiguous (K, out, in) tensor (no copy).
        act = ACTIVATIONS[self.activation]
        h = x.flatten(2).transpose(1, 2)
        for weight, bias in zip(params[:-2:2], params[1:-2:2], strict=True):
            h = act(torch.baddbmm(bias.unsqueeze(2), weight, h))
        return torch.baddbmm(params[-1].unsqueeze(1), h.transpose(1, 2), params[-2].transpose(1, 2))


@dataclass(frozen=True)
class CNN(Model):
    """Plain CNN: ``depth`` conv layers (the first ``strided_layers`` with stride 2,
    'same' padding), global average pooling, a linear head. 1-D or 2-D by ``in_shape``."""

    depth: int = 4
    channels: int = 16
    kernel: int = 3
    strided_layers: int = 2

    @property
    def spatial(self) -> int:
        return len(self.in_shape) - 1

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        window = (self.kernel,) * self.spatial
        layers, channels_in = [], self.in_shape[0]
        for i in range(self.depth):
            fan_in = channels_in * self.kernel**self.spatial
            layers += [(f"w{i}", (self.channels, channels_in, *window), fan_in), (f"b{i}", (self.channels,), fan_in)]
            channels_in = self.channels
        return layers + [("w_out", (self.n_outputs, self.channels), self.channels),
                         ("b_out", (self.n_outputs,), self.channels)]

    def stride(self, layer: int) -> int:
        return 2 if layer < self.strided_layers else 1

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        runs, batch = x.shape[:2]
        conv = F.conv1d if self.spatial == 1 else F.conv2d
        act = ACTIVATIONS[self.activation]
        # (K, B, C, *S) -> (B, K*C, *S): run k's channels form group k.
        h = x.transpose(0, 1).flatten(1, 2)
        for i, (weight, bias) in enumerate(zip(params[:-2:2], params[1:-2:2], strict=True)):
            h = act(conv(h, weight.flatten(0, 1), bias.flatten(), stride=self.stride(i),
                         padding=self.kernel // 2, groups=runs))
        pooled = h.flatten(2).mean(2).view(batch, runs, self.channels).transpose(0, 1)
        return _dense(pooled, params[-2], params[-1])


@dataclass(frozen=True)
class RNN(Model):
    """Single-layer recurrent network (tanh, LSTM or GRU cell) with a linear head
    on the last hidden state, or on every step when ``per_step``."""

    cell: str = "tanh"
    hidden: int = 64
    per_step: bool = False

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        gates, features, hidden = GATES[self.cell], self.in_shape[-1], self.hidden
        return [("w_ih", (gates * hidden, features), features), ("w_hh", (gates * hidden, hidden), hidden),
                ("b_ih", (gates * hidden,), features), ("b_hh", (gates * hidden,), hidden),
                ("w_out", (self.n_outputs, hidden), hidden), ("b_out", (self.n_outputs,), hidden)]

    def _init_one(self, name: str, shape: tuple[int, ...], fan_in: int, gain: float, radius: float,
                  generator: torch.Generator) -> Tensor:
        if name != "w_hh":
            return super()._init_one(name, shape, fan_in, gain, radius, generator)
        blocks = torch.randn(shape, generator=generator).split(self.hidden)
        return torch.cat([_with_radius(block, radius) for block in blocks])

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        w_ih, w_hh, b_ih, b_hh, w_out, b_out = params
        runs, batch, steps, _ = x.shape
        projected = _dense(x.flatten(1, 2), w_ih, b_ih).view(runs, batch, steps, -1)
        h = x.new_zeros(runs, batch, self.hidden)
        c = torch.zeros_like(h)
        states = []
        for t in range(steps):
            recurrent = _dense(h, w_hh, b_hh)
            h, c = self._step(projected[:, :, t], recurrent, h, c)
            states.append(h)
        if not self.per_step:
            return _dense(h, w_out, b_out)
        hs = torch.stack(states, dim=2)
        return _dense(hs.flatten(1, 2), w_out, b_out).view(runs, batch, steps, -1)

    def _step(self, inp: Tensor, rec: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
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


def build(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool = False, **options: object) -> Model:
    """The model of ``family`` for inputs of ``in_shape`` (without K and B)."""
    if family == "mlp":
        return MLP(family, in_shape, n_outputs, **options)
    if family in ("cnn1d", "cnn2d"):
        expected = 2 if family == "cnn1d" else 3
        if len(in_shape) != expected:
            raise ValueError(f"{family} needs inputs with {expected} dims (C, ...), got {in_shape}")
        return CNN(family, in_shape, n_outputs, **options)
    if family == "rnn":
        return RNN(family, in_shape, n_outputs, per_step=per_step, **options)
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
