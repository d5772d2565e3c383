"""Batched optimizers as transforms, each run with its own learning rate.

Every optimizer turns gradients into additive updates (``params + updates``)
with the arithmetic of its ``torch.optim`` counterpart, applied to tensors with
a leading run dimension K. The learning rate is a float or a (K,) tensor.

- ``sgd``: SGD with heavy-ball or Nesterov momentum (Polyak 1964; Sutskever
  et al. 2013), as ``torch.optim.SGD`` with dampening 0:
  ``b <- mu b + g``; ``d = g + mu b`` (Nesterov) or ``d = b``; ``u = -lr d``.
  Weight decay is coupled: ``g <- g + wd p``.
- ``adam``: Adam (Kingma & Ba 2015), as ``torch.optim.Adam``:
  ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
  ``u = -lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)``.
- ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter 2019), as
  ``torch.optim.AdamW``: ``u <- u - lr wd p``.
"""

from __future__ import annotations

import torch

from bench.transform import Hyperparameter, Params, State, Transform, per_run

OPTIMIZERS = ("sgd", "adam", "adamw")


def sgd(lr: Hyperparameter, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> Transform:
    """SGD with optional (Nesterov) momentum and coupled weight decay."""

    def init(params: Params) -> State:
        return {"momentum": [torch.zeros_like(p) for p in params]}

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        if weight_decay:
            grads = [g + weight_decay * p for g, p in zip(grads, params, strict=True)]
        if not momentum:
            return [-per_run(lr, g) * g for g in grads], state
        buffers = [torch.add(g, b, alpha=momentum) for b, g in zip(state["momentum"], grads, strict=True)]
        directions = buffers
        if nesterov:
            directions = [torch.add(g, b, alpha=momentum) for g, b in zip(grads, buffers, strict=True)]
        return [-per_run(lr, d) * d for d in directions], {"momentum": buffers}

    return Transform("sgd", "optimizer", init, update)


def adam(
    lr: Hyperparameter,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> Transform:
    """Adam, or AdamW when ``decoupled``; the step count is kept per run."""

    def init(params: Params) -> State:
        runs = params[0].shape[0]
        return {
            "step": torch.zeros(runs, dtype=torch.float64, device=params[0].device),
            "m": [torch.zeros_like(p) for p in params],
            "v": [torch.zeros_like(p) for p in params],
        }

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        if weight_decay and not decoupled:
            grads = [g + weight_decay * p for g, p in zip(grads, params, strict=True)]
        step = state["step"] + 1
        first = [beta1 * m + (1 - beta1) * g for m, g in zip(state["m"], grads, strict=True)]
        second = [beta2 * v + (1 - beta2) * g * g for v, g in zip(state["v"], grads, strict=True)]
        bias1 = (1 - beta1**step).to(grads[0].dtype)
        bias2_sqrt = torch.sqrt(1 - beta2**step).to(grads[0].dtype)
        updates = []
        for m, v, p in zip(first, second, params, strict=True):
            denom = v.sqrt() / per_run(bias2_sqrt, v) + eps
            u = -(per_run(lr, m) / per_run(bias1, m)) * m / denom
            if weight_decay and decoupled:
                u = u - per_run(lr, p) * weight_decay * p
            updates.append(u)
        return updates, {"step": step, "m": first, "v": second}

    return Transform("adamw" if decoupled else "adam", "optimizer", init, update)


def make(kind: str, lr: Hyperparameter, **options: float | bool) -> Transform:
    """Build the optimizer ``kind`` (one of OPTIMIZERS) with per-run ``lr``."""
    if kind == "sgd":
        return sgd(lr, **options)
    if kind == "adam":
        return adam(lr, **options)
    if kind == "adamw":
        options.setdefault("weight_decay", 0.01)
        return adam(lr, decoupled=True, **options)
    raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(OPTIMIZERS)}")
