"""MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals, the package's canonical data set.

Made by the ``mnist1d`` package's ``make_dataset`` with its own defaults
(5,000 examples, seed 42, 4,000 training and 1,000 test examples: the data set
its published baselines use), never its downloader. The 1,000 test examples are
the test split; validation examples are the last ``n_val`` of the 4,000 training
examples and training takes the first ``n_train``. Fed as vectors (MLP), 1-D
signals (CNN) or length-40 sequences (RNN).
"""

from __future__ import annotations

import math

import torch

from bench.tasks import Task, isolated_numpy, register

CANONICAL_TRAIN = 4000


def check(*, n_train: int = 3500, n_val: int = 500, data_seed: int = 42) -> None:
    """Raise ValueError when the splits ask for more examples than MNIST-1D's training set holds."""
    if n_train + n_val > CANONICAL_TRAIN:
        raise ValueError(f"n_train + n_val = {n_train + n_val} is more than the {CANONICAL_TRAIN} training "
                         f"examples of MNIST-1D; allowed: n_train + n_val at most {CANONICAL_TRAIN}")


@register("mnist1d", layout="signal", objective="classification", check=check, packages=("mnist1d",))
def mnist1d(kind: str, *, n_train: int = 3500, n_val: int = 500, data_seed: int = 42) -> Task:
    """Canonical MNIST-1D (``data_seed`` 42) made offline: train, validation and the 1,000 test examples."""
    from mnist1d.data import get_dataset_args, make_dataset

    check(n_train=n_train, n_val=n_val)
    args = get_dataset_args()
    args.seed = data_seed
    with isolated_numpy(data_seed):
        data = make_dataset(args)
    x, y = (torch.tensor(data[key], dtype=dtype) for key, dtype in (("x", torch.float32), ("y", torch.long)))
    x_test = torch.tensor(data["x_test"], dtype=torch.float32).unsqueeze(1)
    y_test = torch.tensor(data["y_test"], dtype=torch.long)
    x = x.unsqueeze(1)
    return Task(kind, "signal", "classification", 10, "accuracy", True, math.log(10), 0.1, {
        "train": (x[:n_train], y[:n_train]),
        "val": (x[CANONICAL_TRAIN - n_val :], y[CANONICAL_TRAIN - n_val :]),
        "test": (x_test, y_test),
    })
