"""Rescaling of gradients: a constant decay, normalisation, a layer-wise trust ratio."""

from __future__ import annotations

import torch

from bench.flat import groups, per_group
from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import global_norm, group_tensor_norms, per_run, run_values, stateless, tensor_factors


@register("grad_scale", acting={"gamma": 0.9})
def grad_scale(name: str, *, gamma: Hyperparameter = 0.99) -> Transform:
    """Multiply every gradient by a constant factor: ``g <- gamma * g``.

    The classic "gradient decay" advice for exploding gradients (a fixed
    shrinkage, equivalent for plain SGD to a smaller learning rate).
    Active where ``gamma != 1``.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        scaled = torch._foreach_mul(grads, [per_run(gamma, g) for g in grads])
        return scaled, state, Report(active=run_values(gamma, grads[0]) != 1.0)

    return stateless(name, "gradient", update, layout_free=True)


@register("normalized")
def normalized(name: str, *, normalized_eps: Hyperparameter = 1e-6) -> Transform:
    """Normalised gradient descent: ``g <- g / (||g||_2 + eps)``, global norm per run.

    Hazan, Levy & Shalev-Shwartz 2015, "Beyond convexity: stochastic
    quasi-convex optimization" (NGD). The step length is the learning rate
    whatever the gradient's size. Active wherever the factor differs from 1.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        norm = global_norm(grads)
        denominator = norm + per_run(normalized_eps, norm)
        scaled = torch._foreach_div(grads, [per_run(denominator, g) for g in grads])
        return scaled, state, Report(active=denominator != 1.0)

    return stateless(name, "gradient", update, layout_free=True)


@register("trust_ratio", acting={"trust_coefficient": 0.01})
def trust_ratio(name: str, *, trust_coefficient: Hyperparameter = 1.0) -> Transform:
    """Layer-wise trust ratio (LARS; You, Gitman & Ginsburg 2017, "Large batch
    training of convolutional networks"), applied to the gradient.

    For each tensor l of a run: ``g_l <- g_l * eta ||p_l|| / ||g_l||``, with
    ratio 1 where ``||p_l|| = 0`` or ``||g_l|| = 0``: optax's
    ``scale_by_trust_ratio`` (eps 0, min_norm 0). It acts before the optimizer,
    where optax's ``lars`` applies it (before the learning rate and momentum), so
    the learning rate keeps its meaning: with SGD the step of a tensor has norm
    ``lr * eta * ||p_l||``. Active where any ratio differs from 1.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        grad_blocks = groups(grads)
        param_norms, grad_norms = group_tensor_norms(groups(params)), group_tensor_norms(grad_blocks)
        ratios = per_run(trust_coefficient, param_norms) * param_norms / grad_norms
        ratios = torch.where((param_norms == 0) | (grad_norms == 0), 1.0, ratios)
        scaled = per_group(torch.mul, grads, tensor_factors(ratios, grad_blocks))
        return scaled, state, Report(active=(ratios != 1.0).any(dim=1))

    return stateless(name, "gradient", update)
