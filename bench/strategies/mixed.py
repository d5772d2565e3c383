"""Mixed clipping: a clipped momentum step mixed with a clipped gradient step."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import global_norm, per_run, run_values


@register("mixed_clip", acting={"mixed_clip_gamma": [0.1, 1.0, 10.0], "mixed_clip_nu": [0.7, 0.0, 1.0]},
          bounds_spikes=True)
def mixed_clip(
    name: str,
    *,
    mixed_clip_gamma: Hyperparameter = 1.0, mixed_clip_beta: Hyperparameter = 0.999, mixed_clip_nu: Hyperparameter = 0.7
) -> Transform:
    """Mixed clipping (Zhang, Jin, Fang & Wang 2020, "Improved analysis of clipping algorithms
    for non-convex optimization"; the authors' ``MixClip``).

    With its own momentum ``m <- beta m + (1 - beta) g`` (no bias correction, zero at the start)
    and the run's learning rate ``lr`` this step, the gradient becomes
    ``g <- nu m / (1 + lr ||m|| / gamma) + (1 - nu) g / (1 + lr ||g|| / gamma)`` (global norms),
    so that the optimizer ``sgd`` with ``momentum: 0`` and no weight decay steps exactly the
    authors' ``x <- x - lr nu / (1 + lr ||m|| / gamma) m - lr (1 - nu) / (1 + lr ||g|| / gamma) g``:
    their code's smooth form of the paper's ``min(lr, gamma / ||m||)``. Active where a clipping
    term binds, ``lr ||m|| > gamma`` or ``lr ||g|| > gamma`` (where the paper's ``min`` takes
    ``gamma / ||.||``).

    Reads ``lr`` (``Transform.extra_args``); the state keeps the momentum ``m``.
    """

    def init(params: Params) -> State:
        return {"momentum": [torch.zeros_like(p) for p in params]}

    def update(grads: Params, state: State, params: Params, *, lr: Tensor) -> tuple[Params, State, Report]:
        like = grads[0]
        gamma, beta, nu = (run_values(value, like) for value in (mixed_clip_gamma, mixed_clip_beta, mixed_clip_nu))
        rate = run_values(lr.reshape(-1), like)
        momentum = [per_run(beta, g) * m + per_run(1 - beta, g) * g
                    for m, g in zip(state["momentum"], grads, strict=True)]
        norm_m, norm_g = global_norm(momentum), global_norm(grads)
        weight_m = nu / (1 + rate * norm_m / gamma)
        weight_g = (1 - nu) / (1 + rate * norm_g / gamma)
        mixed = [per_run(weight_m, m) * m + per_run(weight_g, g) * g for m, g in zip(momentum, grads, strict=True)]
        return mixed, {"momentum": momentum}, Report(active=(rate * norm_m > gamma) | (rate * norm_g > gamma))

    return Transform(name, "gradient", init, update, layout_free=True, extra_args=("lr",))
