"""Clipping of gradients by value, by global norm and by per-tensor norm."""

from __future__ import annotations

import torch

from bench.flat import groups, per_group
from bench.strategies import register
from bench.transform import (
    Params,
    State,
    Transform,
    global_norm,
    group_tensor_norms,
    max_abs,
    per_run,
    stateless,
    tensor_factors,
)


@register("none")
def none() -> Transform:
    """The baseline: gradients pass unchanged."""
    return stateless("none", "gradient", lambda grads, state, params: (grads, state), layout_free=True)


@register("clip_value", acting={"clip_value": [0.01, 0.1, 1.0]}, bounds_spikes=True)
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


@register("clip_norm", acting={"clip_norm": [0.1, 1.0, 2.0]}, bounds_spikes=True)
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


@register("clip_norm_layer", acting={"clip_norm_layer": 0.5}, bounds_spikes=True)
def clip_norm_layer(clip_norm_layer: float = 1.0) -> Transform:
    """Rescale each parameter tensor's gradient so its own L2 norm is at most c.

    ``g_l <- g_l * min(1, c / (||g_l||_2 + 1e-6))`` for every tensor l of a run:
    the norm variant of optax's ``clip_by_block_rms`` (Babuschkin et al. 2020),
    i.e. ``torch.nn.utils.clip_grad_norm_`` applied to each tensor alone.
    Active where any tensor of a run was rescaled.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State]:
        blocks = groups(grads)
        norms = group_tensor_norms(blocks)
        coefficients = torch.clamp(per_run(clip_norm_layer, norms) / (norms + 1e-6), max=1.0)
        scaled = per_group(torch.mul, grads, tensor_factors(coefficients, blocks))
        return scaled, {"active": (coefficients < 1.0).any(dim=1)}

    return stateless("clip_norm_layer", "gradient", update)
