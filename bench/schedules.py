"""Learning-rate schedules: the factor each run's learning rate is multiplied by at step t.

The formulas of Hugging Face's ``get_constant_schedule_with_warmup`` and
``get_cosine_schedule_with_warmup`` (the schedules most training recipes use),
with w a run's ``warmup_steps`` (a per-run dial, 0: none) and T the budget:

- warm-up, ``t < w``: ``f(t) = t / w`` (linear from 0; Goyal et al. 2017);
- ``constant``: ``f(t) = 1`` after the warm-up;
- ``cosine``: ``f(t) = (1 + cos(pi (t - w) / (T - w))) / 2`` after the warm-up
  (decay to 0 at the end of the budget; Loshchilov & Hutter 2017, SGDR, without restarts).

The oracle applies the same factor with ``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SCHEDULES = ("constant", "cosine")


def factor(schedule: str, step: int, warmup_steps: float, total_steps: int) -> float:
    """The learning-rate factor of one run at ``step`` (0-based): the LambdaLR lambda."""
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def factors(schedule: str, step: int, warmup_steps: Tensor, total_steps: int) -> Tensor:
    """The factor of every run at ``step``, (K, 1), from the runs' (K, 1) ``warmup_steps``."""
    warming = step < warmup_steps
    ramp = step / warmup_steps.clamp(min=1.0)
    if schedule == "constant":
        after = torch.ones_like(warmup_steps)
    else:
        progress = (step - warmup_steps) / (total_steps - warmup_steps).clamp(min=1.0)
        after = 0.5 * (1.0 + torch.cos(math.pi * progress))
    return torch.where(warming, ramp, after)
