"""Deep fully connected network without normalisation: ``depth`` hidden layers of ``width`` units."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.models import ACTIVATIONS, Model, register

ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass(frozen=True)
class MLP(Model):
    """Deep MLP; activations kept feature-major inside (see :meth:`forward`)."""

    depth: int = 8
    width: int = 64
    activation: str = "tanh"

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


def reference(spec: MLP) -> nn.Module:
    """The torch.nn equivalent: Flatten, then Linear + activation per hidden layer, then the head."""
    sizes = [math.prod(spec.in_shape)] + [spec.width] * spec.depth
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), ACTIVATION_MODULES[spec.activation]()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], spec.n_outputs))


@register("mlp", inputs="vector", dials={"init_gain": 1.0}, reference=reference)
def mlp(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool, *, depth: int = 8,
        width: int = 64, activation: str = "tanh") -> MLP:
    """A deep MLP on flat input vectors (one output per example: no per-step head)."""
    return MLP(family, in_shape, n_outputs, depth=depth, width=width, activation=activation)
