"""SGD with heavy-ball or Nesterov momentum (Polyak 1964; Sutskever et al. 2013).

As ``torch.optim.SGD`` with dampening 0: ``b <- mu b + g``;
``d = g + mu b`` (Nesterov) or ``d = b`` (``d = g`` without momentum); the
engine steps ``p <- p - lr d``. Weight decay is coupled: ``g <- g + wd p``.
"""

from __future__ import annotations

import torch

from bench.optim import register
from bench.transform import Params, Report, State, Transform


def reference(params: list[torch.nn.Parameter], lr: float, **options: float | bool) -> torch.optim.Optimizer:
    """torch.optim.SGD with the same options."""
    return torch.optim.SGD(params, lr=lr, **options)


@register("sgd", reference=reference)
def sgd(kind: str, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> Transform:
    """SGD's direction, with optional (Nesterov) momentum and coupled weight decay."""

    def init(params: Params) -> State:
        return {"momentum": [torch.zeros_like(p) for p in params]}

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        if weight_decay:
            grads = [g + weight_decay * p for g, p in zip(grads, params, strict=True)]
        if not momentum:
            return grads, state, Report()
        buffers = [torch.add(g, b, alpha=momentum) for b, g in zip(state["momentum"], grads, strict=True)]
        directions = buffers
        if nesterov:
            directions = [torch.add(g, b, alpha=momentum) for g, b in zip(grads, buffers, strict=True)]
        return directions, {"momentum": buffers}, Report()

    return Transform(kind, "optimizer", init, update)
