"""scikit-learn's 8x8 handwritten digits (UCI), optionally upsampled to 28x28 for the 2-D CNN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.tasks import Task, register, split


@register("digits", layout="image", objective="classification", packages=("scikit-learn",))
def digits(kind: str, *, size: int = 28, data_seed: int = 0) -> Task:
    """scikit-learn's digits, standardised, 8x8 or upsampled bilinearly to size x size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(data_seed))
    n_eval = len(x) // 6
    return Task(kind, "image", "classification", 10, "accuracy", True, math.log(10), 0.1,
                split(x[order], y[order], n_eval, n_eval))
