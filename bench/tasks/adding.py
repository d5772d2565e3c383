"""The adding problem, in the variant of Le, Jaitly & Hinton 2015 and Arjovsky et al. 2016.

A length-T sequence of (value, marker) pairs, values uniform on [0, 1], two
positions marked (one in each half); the target is the sum of the two marked
values. Predicting the mean gives MSE 1/6. (Hochreiter & Schmidhuber 1997
introduced the problem with values on [-1, 1] and a rescaled target.)
"""

from __future__ import annotations

import torch

from bench.tasks import Task, register, split


@register("adding", layout="sequence", objective="regression")
def adding(kind: str, *, length: int = 50, n_train: int = 5000, n_eval: int = 1000, data_seed: int = 0) -> Task:
    """The adding problem of length T; chance MSE 1/6 (predicting the mean, 1)."""
    g = torch.Generator().manual_seed(data_seed)
    n = n_train + 2 * n_eval
    values = torch.rand(n, length, generator=g)
    half = max(length // 2, 1)
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g) if length > 1 else first
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = (values * markers).sum(1)
    return Task(kind, "sequence", "regression", 1, "mse", False, 1 / 6, 1 / 6, split(x, y, n_eval, n_eval))
