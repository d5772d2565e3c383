"""Clipping of gradients by value, by global norm and by per-tensor norm."""

from __future__ import annotations

import torch

from bench.strategies import register
from bench.transform import Params, State, Transform, global_norm, max_abs, per_run, stateless, tensor_norms


@register("none")
def none() -> Transform:
    """The baseline: gradients pass unchanged."""
    return stateless("none", "gradient", lambda grads, state, params: (grads, state), layout_free=True)


@register("clip_value")
def clip_value(clip_value: float = 1.0) -> Transform:
    """Clamp every gradient element to [-c, c] (Mikolov 2012, sec. 3.2.2).

    ``g <- clamp(g, -c, c)``, as ``torch.nn.utils.clip_grad_value_``.
    Active where any element of a run exceeds c in magnitude.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        bounds = [per_run(clip_value, g) for g in grads]
        active = max_abs(grads) > clip_value
        clipped = [torch.clamp(g, min=-b, max=b) for g, b in zip(grads, bounds, strict=True)]
        return clipped, {"active": active}

    return stateless("clip_value", "gradient", update, layout_free=True)


@register("clip_norm")
def clip_norm(clip_norm: float = 1.0) -> Transform:
    """Rescale a run's gradients so their global L2 norm is at most c.

    ``g <- g * min(1, c / (||g||_2 + 1e-6))`` with the norm over all parameter
    tensors of the run (Pascanu, Mikolov & Bengio 2013, "On the difficulty of
    training recurrent neural networks", Alg. 1), the same arithmetic as
    ``torch.nn.utils.clip_grad_norm_``. Active where the factor is below 1.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        coefficient = torch.clamp(clip_norm / (global_norm(grads) + 1e-6), max=1.0)
        scaled = [g * per_run(coefficient, g) for g in grads]
        return scaled, {"active": coefficient < 1.0}

    return stateless("clip_norm", "gradient", update, layout_free=True)


@register("clip_norm_layer")
def clip_norm_layer(clip_norm_layer: float = 1.0) -> Transform:
    """Rescale each parameter tensor's gradient so its own L2 norm is at most c.

    ``g_l <- g_l * min(1, c / (||g_l||_2 + 1e-6))`` for every tensor l of a run:
    the norm variant of optax's ``clip_by_block_rms`` (Babuschkin et al. 2020),
    i.e. ``torch.nn.utils.clip_grad_norm_`` applied to each tensor alone.
    Active where any tensor of a run was rescaled.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        coefficients = torch.clamp(clip_norm_layer / (tensor_norms(grads) + 1e-6), max=1.0)
        scaled = torch._foreach_mul(grads, [per_run(c, g) for c, g in zip(coefficients, grads, strict=True)])
        return scaled, {"active": (coefficients < 1.0).any(dim=0)}

    return stateless("clip_norm_layer", "gradient", update)
