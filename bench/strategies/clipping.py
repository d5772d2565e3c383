"""Clipping of gradients by value, by global norm and by per-tensor norm."""

from __future__ import annotations

import torch

from bench.flat import groups, per_group
from bench.strategies import Params, Report, State, Transform, register
from bench.transform import global_norm, group_tensor_norms, max_abs, per_run, stateless, tensor_factors


@register("none")
def none(name: str) -> Transform:
    """The baseline: gradients pass unchanged."""
    return stateless(name, "gradient", lambda grads, state, params: (grads, state, Report()), layout_free=True)


@register("clip_value", acting={"clip_value": [0.01, 0.1, 1.0]}, bounds_spikes=True)
def clip_value(name: str, *, clip_value: float = 1.0) -> Transform:
    """Clamp every gradient element to [-c, c] (Mikolov 2012, sec. 3.2.2).

    ``g <- clamp(g, -c, c)``, as ``torch.nn.utils.clip_grad_value_``.
    Active where any element of a run exceeds c in magnitude.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        bounds = [per_run(clip_value, g) for g in grads]
        active = max_abs(grads) > clip_value
        clipped = [torch.clamp(g, min=-b, max=b) for g, b in zip(grads, bounds, strict=True)]
        return clipped, state, Report(active=active)

    return stateless(name, "gradient", update, layout_free=True)


@register("clip_norm", acting={"clip_norm": [0.1, 1.0, 2.0]}, bounds_spikes=True)
def clip_norm(name: str, *, clip_norm: float = 1.0) -> Transform:
    """Rescale a run's gradients so their global L2 norm is at most c.

    ``g <- g * min(1, c / (||g||_2 + 1e-6))`` with the norm over all parameter
    tensors of the run (Pascanu, Mikolov & Bengio 2013, "On the difficulty of
    training recurrent neural networks", Alg. 1), the same arithmetic as
    ``torch.nn.utils.clip_grad_norm_``. Active where the factor is below 1.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        coefficient = torch.clamp(clip_norm / (global_norm(grads) + 1e-6), max=1.0)
        scaled = [g * per_run(coefficient, g) for g in grads]
        return scaled, state, Report(active=coefficient < 1.0)

    return stateless(name, "gradient", update, layout_free=True)


@register("clip_norm_layer", acting={"clip_norm_layer": 0.5}, bounds_spikes=True)
def clip_norm_layer(name: str, *, clip_norm_layer: float = 1.0) -> Transform:
    """Rescale each parameter tensor's gradient so its own L2 norm is at most c.

    ``g_l <- g_l * min(1, c / (||g_l||_2 + 1e-6))`` for every tensor l of a run:
    the norm variant of optax's ``clip_by_block_rms`` (Babuschkin et al. 2020),
    i.e. ``torch.nn.utils.clip_grad_norm_`` applied to each tensor alone.
    Active where any tensor of a run was rescaled.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        blocks = groups(grads)
        norms = group_tensor_norms(blocks)
        coefficients = torch.clamp(per_run(clip_norm_layer, norms) / (norms + 1e-6), max=1.0)
        scaled = per_group(torch.mul, grads, tensor_factors(coefficients, blocks))
        return scaled, state, Report(active=(coefficients < 1.0).any(dim=1))

    return stateless(name, "gradient", update)
