"""Constraints on the optimizer's update."""

from __future__ import annotations

import math

import torch

from bench.strategies import register
from bench.transform import Hyperparameter, Params, State, Transform, per_run, stateless, tensor_norms


@register("update_clip")
def update_clip(update_clip: Hyperparameter = 1.0) -> Transform:
    """Update clipping by RMS (Shazeer & Stern 2018, "Adafactor", "update clipping";
    Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
    training instabilities").

    For each tensor l of a run: ``u_l <- u_l / max(1, RMS(u_l) / d)`` with
    ``RMS(u_l) = ||u_l||_2 / sqrt(numel(u_l))``, as Adafactor's implementation.
    Acts on the optimizer's update. Active where any tensor was rescaled.
    """

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State]:
        rms = torch.stack([n / math.sqrt(u[0].numel()) for n, u in zip(tensor_norms(updates), updates, strict=True)])
        divisors = torch.clamp(rms / update_clip, min=1.0)
        clipped = torch._foreach_div(updates, [per_run(d, u) for d, u in zip(divisors, updates, strict=True)])
        return clipped, {"active": (divisors > 1.0).any(dim=0)}

    return stateless("update_clip", "update", update)
