"""AdaGC: per-tensor clipping relative to an EMA of each tensor's own clipped gradient norm."""

from __future__ import annotations

import torch

from bench.flat import groups, per_group
from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import group_tensor_norms, run_values, tensor_factors

EPS = 1e-6  # the authors' eps, added to the norm a clipping factor divides by


@register("adagc", acting={"adagc_warmup": [2, 0, 1], "adagc_warmup_clip": [1.0, 1.0, 100.0]}, bounds_spikes=True)
def adagc(
    name: str,
    *,
    adagc_lambda: Hyperparameter = 1.04, adagc_beta: Hyperparameter = 0.99, adagc_warmup: int | torch.Tensor = 100,
    adagc_warmup_clip: Hyperparameter = 1.0,
) -> Transform:
    """AdaGC, adaptive gradient clipping per tensor (Wang et al. 2025, "AdaGC: Improving training
    stability for large language model pretraining"; the authors' ``AdaGC`` in Megatron's
    ``clip_grads.py``, tensor-wise and unsharded).

    Warm-up, the first ``w`` steps: global-norm clipping, ``g <- g * c / (||g|| + 1e-6)`` where that
    factor is below 1, and each tensor's reference ``gamma_l`` is the smallest clipped norm
    ``||g_l||`` seen so far. Afterwards, per tensor l: where ``||g_l|| > lambda * gamma_l``,
    ``g_l <- g_l * lambda gamma_l / (||g_l|| + 1e-6)`` and the clipped norm is ``x = lambda gamma_l``,
    else ``x = ||g_l||``; then ``gamma_l <- beta gamma_l + (1 - beta) x``. With ``w = 0`` a tensor's
    first norm initialises its ``gamma_l``, as in the authors' code. A NaN norm clips nothing and
    never lowers the warm-up minimum (the comparisons are false), as there. Active where the global
    clip (warm-up) or any tensor's clip acted.

    The state keeps each run's step count, ``count`` (K,), and ``gamma`` (K, T), one reference per
    tensor in the order of ``bench.flat.groups``.
    """

    def init(params: Params) -> State:
        runs, device = params[0].shape[0], params[0].device
        return {"count": torch.zeros(runs, dtype=torch.long, device=device),
                "gamma": torch.zeros(runs, len(params), dtype=params[0].dtype, device=device)}

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        blocks = groups(grads)
        norms = group_tensor_norms(blocks)  # (K, T)
        count, gamma = state["count"], state["gamma"]
        ratio, beta = run_values(adagc_lambda, norms)[:, None], run_values(adagc_beta, norms)[:, None]
        warming = (count < run_values(adagc_warmup, count))[:, None]
        first = (count == 0)[:, None]

        # warm-up: global-norm clipping (the norm of the per-tensor norms, as clip_grad_norm_)
        coefficient = run_values(adagc_warmup_clip, norms) / (torch.linalg.vector_norm(norms, dim=1) + EPS)
        global_clip = (coefficient < 1.0)[:, None]
        global_factor = torch.where(global_clip, coefficient[:, None], 1.0)
        clipped_norms = norms * global_factor
        warm_gamma = torch.where(first | (clipped_norms < gamma), clipped_norms, gamma)

        # afterwards: each tensor against its own reference
        reference = torch.where(first, norms, gamma)
        limit = ratio * reference
        tensor_clip = norms > limit
        tensor_factor = torch.where(tensor_clip, limit / (norms + EPS), 1.0)
        ema_gamma = beta * reference + (1 - beta) * torch.where(tensor_clip, limit, norms)

        factor = torch.where(warming, global_factor.expand_as(norms), tensor_factor)
        clip = torch.where(warming, global_clip.expand_as(norms), tensor_clip)
        scaled = per_group(torch.mul, grads, tensor_factors(factor, blocks))
        new_state = {"count": count + 1, "gamma": torch.where(warming, warm_gamma, ema_gamma)}
        return scaled, new_state, Report(active=clip.any(dim=1))

    return Transform(name, "gradient", init, update)
