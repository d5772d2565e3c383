"""Adaptive clipping: thresholds set by the weights (AGC) or by the history of the gradient norm."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from bench.flat import groups, per_group
from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import global_norm, group_unit_norms, per_run, run_values, stateless, unit_factors, unit_grid


@functools.cache
def _output_layer_units(grouping: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...], count: int,
                        device: torch.device) -> Tensor:
    """(U,) bool: which units, in the groups' order, belong to the last two of ``count`` tensors
    (the output layer). ``grouping`` holds each group's tensor indices and unit grid."""
    flags = [index >= count - 2 for indices, grid in grouping for index in indices
             for _ in range(math.prod(grid) // len(indices))]
    return torch.tensor(flags, dtype=torch.bool, device=device)


@register("agc", acting={"agc_clipping": [0.01, 0.1, 0.05], "agc_exclude_output": [True, False, True]},
          bounds_spikes=True)
def agc(
    name: str,
    *,
    agc_clipping: Hyperparameter = 0.01, agc_eps: Hyperparameter = 1e-3, agc_exclude_output: bool | Tensor = True
) -> Transform:
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021, "High-performance
    large-scale image recognition without normalization", NFNets, sec. 4).

    For each output unit i of each tensor: with ``m_i = lambda * max(||W_i||, eps)``,
    ``G_i <- G_i`` if ``||G_i|| < m_i``, else ``G_i * m_i / max(||G_i||, 1e-6)``,
    as timm's ``adaptive_clip_grad`` and optax's ``adaptive_grad_clip``. A bias
    is one unit. With ``agc_exclude_output`` (a bool, or a (K,) bool tensor) the
    final classifier layer (the last weight and bias) is left unclipped, as in
    NFNets. Active where any unit of a run was clipped.
    """

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        # All units of all tensors of one shape at once: a few kernels per distinct shape.
        blocks = groups(grads)
        weight_norm, grad_norm = group_unit_norms(groups(params)), group_unit_norms(blocks)
        limit = weight_norm.clamp(min=per_run(agc_eps, weight_norm)) * per_run(agc_clipping, weight_norm)
        clip = ~(grad_norm < limit)
        grouping = tuple((block.indices, unit_grid(block.data)) for block in blocks)
        in_output = _output_layer_units(grouping, len(grads), clip.device)
        clip = clip & ~(run_values(agc_exclude_output, clip, torch.bool)[:, None] & in_output)
        # The per-unit factor is 1 where unclipped (g * 1.0 == g exactly).
        factor = torch.where(clip, limit / grad_norm.clamp(min=1e-6), 1.0)
        return per_group(torch.mul, grads, unit_factors(factor, blocks)), state, Report(active=clip.any(dim=1))

    return stateless(name, "gradient", update)


@register("autoclip", acting={"autoclip_percentile": [10.0, 50.0, 100.0]}, bounds_spikes=True)
def autoclip(name: str, *, autoclip_percentile: Hyperparameter = 10.0) -> Transform:
    """AutoClip: clip the global norm to the p-th percentile of its own history
    (Seetharaman et al. 2020, "AutoClip: Adaptive gradient clipping for source
    separation networks").

    ``h <- h + [||g||]``; ``c = percentile(h, p)`` (linear interpolation, as
    ``np.percentile``; the history includes the current step, as in the
    authors' code); ``g <- g * min(1, c / (||g|| + 1e-6))`` as
    ``torch.nn.utils.clip_grad_norm_``. A NaN in a run's history makes its
    threshold NaN, as ``np.percentile`` does. Active where ``||g|| > c``.

    The state keeps each run's history sorted, ``history`` (K, t), with
    ``count`` (K,) valid entries in front; it grows by one column per step.
    """

    def init(params: Params) -> State:
        runs, device = params[0].shape[0], params[0].device
        return {
            "history": torch.zeros(runs, 0, dtype=params[0].dtype, device=device),
            "count": torch.zeros(runs, dtype=torch.long, device=device),
        }

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        norm = global_norm(grads)
        history, count = state["history"], state["count"]
        runs, size = history.shape
        slots = torch.arange(size + 1, device=norm.device)
        # Insert the new norm into the sorted valid prefix; NaNs go last, as in torch.sort.
        keys = torch.where((slots[:size] < count[:, None]) & ~history.isnan(), history, torch.inf)
        position = torch.searchsorted(keys.contiguous(), norm[:, None]).squeeze(1)
        position = torch.where(norm.isnan(), count, position)
        padded = torch.cat([history, history.new_zeros(runs, 1)], dim=1)
        source = slots - (slots > position[:, None]).long()
        history = torch.where(slots == position[:, None], norm[:, None], padded.gather(1, source))
        count = count + 1
        rank = per_run(autoclip_percentile, count.double()) / 100.0 * (count - 1).double()
        low = rank.floor().long()
        high = torch.minimum(low + 1, count - 1)
        weight = (rank - low.double()).to(norm.dtype)
        threshold = torch.lerp(
            history.gather(1, low[:, None]).squeeze(1), history.gather(1, high[:, None]).squeeze(1), weight
        )
        poisoned = (history.isnan() & (slots < count[:, None])).any(dim=1)
        threshold = torch.where(poisoned, torch.nan, threshold)
        coefficient = torch.clamp(threshold / (norm + 1e-6), max=1.0)
        scaled = torch._foreach_mul(grads, [per_run(coefficient, g) for g in grads])
        return scaled, {"history": history, "count": count}, Report(active=norm > threshold)

    return Transform(name, "gradient", init, update, layout_free=True)


@register("zclip", acting={"zclip_z": 1.0, "zclip_warmup": [2, 3, 2]}, bounds_spikes=True)
def zclip(
    name: str,
    *,
    zclip_z: Hyperparameter = 2.5, zclip_alpha: Hyperparameter = 0.97, zclip_warmup: int | Tensor = 25
) -> Transform:
    """ZClip: z-score spike detection on the global gradient norm with EMA
    statistics, and reciprocal clipping of spikes (Kumar et al. 2025, "ZClip:
    Adaptive spike mitigation for LLM pre-training"; the authors' ``ZClip`` in
    mode "zscore", clip_option "adaptive_scaling", no max_grad_norm).

    Warm-up: the first ``w`` norms pass unchanged and are collected; then
    ``mu = mean``, ``var = population variance`` of them. Afterwards, with
    ``z = (||g|| - mu) / (sqrt(var) + 1e-6)``: on a spike (``z > z_thres``)
    ``c = mu + z_thres * sqrt(var) / (z / z_thres)`` and
    ``g <- g * c / (||g|| + 1e-6)`` where ``||g|| > c``; the EMA takes the
    clipped norm ``x = c`` on a spike and ``x = ||g||`` otherwise:
    ``mu <- alpha mu + (1 - alpha) x``; ``var <- alpha var + (1 - alpha) (x - mu)^2``
    (with the new ``mu``, as in the authors' code). Active where a run's
    gradient was clipped.
    """
    longest = int(torch.as_tensor(zclip_warmup).max())

    def init(params: Params) -> State:
        runs, dtype, device = params[0].shape[0], params[0].dtype, params[0].device
        return {
            "step": torch.zeros(runs, dtype=torch.long, device=device),
            "warmup_norms": torch.zeros(runs, longest, dtype=dtype, device=device),
            "mean": torch.zeros(runs, dtype=dtype, device=device),
            "var": torch.zeros(runs, dtype=dtype, device=device),
        }

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        norm = global_norm(grads)
        warmup = run_values(zclip_warmup, norm, torch.long)
        z_thres, alpha = per_run(zclip_z, norm), per_run(zclip_alpha, norm)
        step, mean, var = state["step"], state["mean"], state["var"]
        # the state's width, not this chain's longest warm-up: a chain of some of the runs (bench.shrink) steps
        # the state its cell's chain made
        slots = torch.arange(state["warmup_norms"].shape[1], device=norm.device)
        warming = step < warmup
        record = warming[:, None] & (slots == step[:, None])
        collected = torch.where(record, norm[:, None], state["warmup_norms"])
        in_window = slots < warmup[:, None]
        first_mean = torch.where(in_window, collected, 0.0).sum(dim=1) / warmup
        first_var = torch.where(in_window, (collected - first_mean[:, None]) ** 2, 0.0).sum(dim=1) / warmup
        step = step + 1
        std = var**0.5
        z = (norm - mean) / (std + 1e-6)
        spike = ~warming & (z > z_thres)
        threshold = mean + (z_thres * std) / (z / z_thres)
        clipped = spike & (norm > threshold)
        coefficient = torch.where(clipped, threshold / (norm + 1e-6), 1.0)
        scaled = torch._foreach_mul(grads, [per_run(coefficient, g) for g in grads])
        effective = torch.where(spike, threshold, norm)
        new_mean = alpha * mean + (1 - alpha) * effective
        new_var = alpha * var + (1 - alpha) * (effective - new_mean) ** 2
        mean = torch.where(warming, torch.where(step >= warmup, first_mean, mean), new_mean)
        var = torch.where(warming, torch.where(step >= warmup, first_var, var), new_var)
        return scaled, {"step": step, "warmup_norms": collected, "mean": mean, "var": var}, Report(active=clipped)

    return Transform(name, "gradient", init, update, layout_free=True)
