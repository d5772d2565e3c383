"""Constraints on the weights, applied after each step."""

from __future__ import annotations

import torch

from bench.flat import groups, per_group
from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import group_unit_norms, run_values, stateless, unit_factors


@register("max_norm", acting={"max_norm": [0.5, 3.0, 1.0]}, bounds_spikes=True)
def max_norm(name: str, *, max_norm: Hyperparameter = 3.0) -> Transform:
    """Max-norm weight constraint (Srivastava et al. 2014, "Dropout: a simple way
    to prevent neural networks from overfitting", sec. 5.1).

    After each step, each unit's incoming weight vector is projected onto the L2
    ball of radius c: ``w_i <- w_i * c / (||w_i|| + 1e-7)`` where ``||w_i|| > c``,
    as ``torch.renorm(w, 2, 0, c)``. Only weight tensors, (K, out, in, ...), are
    constrained; biases are left alone. Active where any unit was projected.
    """

    def update(weights: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        # All units of all weights of one shape at once; biases pass through (factor 1).
        blocks = groups(weights)
        constrained = [block for block in blocks if block.data.dim() >= 4]
        unit_norm = group_unit_norms(constrained)
        radius = run_values(max_norm, unit_norm)[:, None]  # a tensor: true division, as torch.renorm
        outside = unit_norm > radius
        factors = iter(unit_factors(torch.where(outside, radius / (unit_norm + 1e-7), 1.0), constrained))
        scaled = per_group(torch.mul, weights, [next(factors) if block.data.dim() >= 4 else 1.0 for block in blocks])
        return scaled, state, Report(active=outside.any(dim=1))

    return stateless(name, "weights", update)
