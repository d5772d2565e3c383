"""Constraints on the weights, applied after each step."""

from __future__ import annotations

import torch

from bench.strategies import register
from bench.transform import Hyperparameter, Params, State, Transform, per_run, run_values, stateless


@register("max_norm")
def max_norm(max_norm: Hyperparameter = 3.0) -> Transform:
    """Max-norm weight constraint (Srivastava et al. 2014, "Dropout: a simple way
    to prevent neural networks from overfitting", sec. 5.1).

    After each step, each unit's incoming weight vector is projected onto the L2
    ball of radius c: ``w_i <- w_i * c / (||w_i|| + 1e-7)`` where ``||w_i|| > c``,
    as ``torch.renorm(w, 2, 0, c)``. Only weight tensors, (K, out, in, ...), are
    constrained; biases are left alone. Active where any unit was projected.
    """

    def update(weights: Params, state: State, params: Params) -> tuple[Params, State]:
        projected, active = [], []
        for w in weights:
            if w.dim() < 3:
                projected.append(w)
                continue
            norms = torch.linalg.vector_norm(w, dim=tuple(range(2, w.dim())), keepdim=True)
            radius = per_run(run_values(max_norm, norms), norms)  # a tensor: true division, as torch.renorm
            outside = norms > radius
            projected.append(w * torch.where(outside, radius / (norms + 1e-7), 1.0))
            active.append(outside.flatten(1).any(dim=1))
        return projected, {"active": torch.stack(active).any(dim=0)}

    return stateless("max_norm", "weights", update)
