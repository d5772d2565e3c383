"""Constraints on the optimizer's update."""

from __future__ import annotations

import math

import torch

from bench.flat import groups, per_group
from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import per_run, stateless, tensor_factors


@register("update_clip", acting={"update_clip": [0.1, 1.0, 0.5]}, bounds_spikes=True)
def update_clip(name: str, *, update_clip: Hyperparameter = 1.0) -> Transform:
    """Update clipping by RMS (Shazeer & Stern 2018, "Adafactor", "update clipping";
    Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
    training instabilities").

    For each tensor l of a run: ``u_l <- u_l / max(1, RMS(u_l) / d)`` with
    ``RMS(u_l) = ||u_l||_2 / sqrt(numel(u_l))``, as Adafactor's implementation.
    Acts on the optimizer's update. Active where any tensor was rescaled.
    """

    def update(updates: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        blocks = groups(updates)
        # RMS = norm / sqrt(numel), numel shared by the tensors of a group.
        rms = torch.cat([torch.linalg.vector_norm(block.data.flatten(2), dim=2) / math.sqrt(block.data[0, 0].numel())
                         for block in blocks], dim=1)
        divisors = torch.clamp(rms / per_run(update_clip, rms), min=1.0)
        clipped = per_group(torch.div, updates, tensor_factors(divisors, blocks))
        return clipped, state, Report(active=(divisors > 1.0).any(dim=1))

    return stateless(name, "update", update)
