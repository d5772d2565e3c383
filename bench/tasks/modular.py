"""Modular addition, a + b mod p (Power et al. 2022, "Grokking"; Nanda et al. 2023).

Every one of the p^2 pairs (a, b) is an example, read as the three tokens
[a, b, =] (token p is "="; vocabulary p + 1) with the label (a + b) mod p. The
pairs are shuffled by ``data_seed``: the first ``train_fraction`` of them
train, the rest is split in half, validation then test. A transformer reads
the tokens (its head on the last position), an MLP their flattened one-hot.
"""

from __future__ import annotations

import math

import torch

from bench.tasks import Task, register, split


def split_sizes(p: int, train_fraction: float) -> tuple[int, int, int]:
    """Training, validation and test examples among the p^2 pairs."""
    total = p * p
    n_train = int(total * train_fraction)
    n_val = (total - n_train) // 2
    return n_train, n_val, total - n_train - n_val


def check(*, p: int = 97, train_fraction: float = 0.5, data_seed: int = 0) -> None:
    """Raise ValueError when a split would hold no pair."""
    if min(split_sizes(p, train_fraction)) < 1:
        raise ValueError(f"p = {p} with train_fraction {train_fraction} leaves a split without a pair; "
                         "allowed: a larger p, or a train_fraction that leaves at least 2 pairs and takes 1")


@register("modular", layout="tokens", objective="classification", check=check)
def modular(kind: str, *, p: int = 97, train_fraction: float = 0.5, data_seed: int = 0) -> Task:
    """a + b mod p on the tokens [a, b, =]; chance loss ln p, accuracy 1/p."""
    check(p=p, train_fraction=train_fraction)
    a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(data_seed))
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)[order]
    y = ((a + b) % p)[order]
    _, n_val, n_test = split_sizes(p, train_fraction)
    return Task(kind, "tokens", "classification", p, "accuracy", True, math.log(p), 1 / p,
                split(x, y, n_val, n_test), vocab=p + 1)
