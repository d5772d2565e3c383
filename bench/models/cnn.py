"""Plain CNNs without normalisation, 1-D (signals) and 2-D (images).

``depth`` conv layers (the first ``strided_layers`` with stride 2, 'same'
padding), global average pooling, a linear head. K runs are one grouped
convolution (``groups=K``): run k's channels form group k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import ACTIVATIONS, Model, dense, register

ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass(frozen=True)
class CNN(Model):
    """Plain CNN, 1-D or 2-D by ``in_shape`` ((C, L) or (C, H, W))."""

    depth: int = 4
    channels: int = 16
    kernel: int = 3
    strided_layers: int = 2
    activation: str = "tanh"

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
        return dense(pooled, params[-2], params[-1])


class GlobalAveragePool(nn.Module):
    """Mean over all spatial dims: (B, C, *S) -> (B, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(2)


def reference(spec: CNN) -> nn.Module:
    """The torch.nn equivalent: Conv + activation per layer, global average pooling, Linear."""
    conv = nn.Conv1d if spec.spatial == 1 else nn.Conv2d
    layers: list[nn.Module] = []
    channels_in = spec.in_shape[0]
    for i in range(spec.depth):
        layers += [conv(channels_in, spec.channels, spec.kernel, stride=spec.stride(i), padding=spec.kernel // 2),
                   ACTIVATION_MODULES[spec.activation]()]
        channels_in = spec.channels
    return nn.Sequential(*layers, GlobalAveragePool(), nn.Linear(spec.channels, spec.n_outputs))


def plain_cnn(family: str, in_shape: tuple[int, ...], n_outputs: int, per_step: bool, *, depth: int = 4,
              channels: int = 16, kernel: int = 3, strided_layers: int = 2, activation: str = "tanh") -> CNN:
    """A plain CNN of ``family`` (cnn1d on (C, L) signals, cnn2d on (C, H, W) images; one output per example: no
    per-step head)."""
    return CNN(family, in_shape, n_outputs, depth=depth, channels=channels, kernel=kernel,
               strided_layers=strided_layers, activation=activation)


for _family, _form in (("cnn1d", "signal"), ("cnn2d", "image")):
    register(_family, inputs=_form, dials={"init_gain": 1.0}, reference=reference)(plain_cnn)
