"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019).

As ``torch.optim.Adam``: ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
direction ``d = m / (1-b1^t) / (sqrt(v) / sqrt(1-b2^t) + eps)``, the engine
steps ``p <- p - lr d``; weight decay coupled (``g <- g + wd p``). AdamW, as
``torch.optim.AdamW``, decouples it: ``d <- d + wd p`` (so ``p <- p - lr wd p - lr d``).
The step count is kept per run.
"""

from __future__ import annotations

import torch

from bench.optim import register
from bench.transform import Params, Report, State, Transform, per_run


def scale_by_adam(name: str, beta1: float, beta2: float, eps: float, weight_decay: float,
                  decoupled: bool) -> Transform:
    """Adam's direction, or AdamW's when ``decoupled``, as the optimizer ``name``."""

    def init(params: Params) -> State:
        runs = params[0].shape[0]
        return {
            "step": torch.zeros(runs, dtype=torch.float64, device=params[0].device),
            "m": [torch.zeros_like(p) for p in params],
            "v": [torch.zeros_like(p) for p in params],
        }

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        if weight_decay and not decoupled:
            grads = [g + weight_decay * p for g, p in zip(grads, params, strict=True)]
        step = state["step"] + 1
        first = [beta1 * m + (1 - beta1) * g for m, g in zip(state["m"], grads, strict=True)]
        second = [beta2 * v + (1 - beta2) * g * g for v, g in zip(state["v"], grads, strict=True)]
        bias1 = (1 - beta1**step).to(grads[0].dtype)
        bias2_sqrt = torch.sqrt(1 - beta2**step).to(grads[0].dtype)
        directions = []
        for m, v, p in zip(first, second, params, strict=True):
            d = m / per_run(bias1, m) / (v.sqrt() / per_run(bias2_sqrt, v) + eps)
            directions.append(d + weight_decay * p if weight_decay and decoupled else d)
        return directions, {"step": step, "m": first, "v": second}, Report()

    return Transform(name, "optimizer", init, update)


def reference(params: list[torch.nn.Parameter], lr: float, *, beta1: float = 0.9, beta2: float = 0.999,
              **options: float) -> torch.optim.Optimizer:
    """torch.optim.Adam with the same options."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), **options)


def reference_w(params: list[torch.nn.Parameter], lr: float, *, beta1: float = 0.9, beta2: float = 0.999,
                **options: float) -> torch.optim.Optimizer:
    """torch.optim.AdamW with the same options."""
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), **options)


@register("adam", reference=reference)
def adam(kind: str, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> Transform:
    """Adam with coupled weight decay."""
    return scale_by_adam(kind, beta1, beta2, eps, weight_decay, decoupled=False)


@register("adamw", reference=reference_w)
def adamw(kind: str, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.01) -> Transform:
    """AdamW: Adam with decoupled weight decay (torch.optim.AdamW's default 0.01)."""
    return scale_by_adam(kind, beta1, beta2, eps, weight_decay, decoupled=True)
