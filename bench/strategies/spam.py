"""SPAM's spike-aware clipping against Adam's second moment, with its periodic momentum reset."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import known_empty, per_run, run_mask, run_values

OWN_BETA2 = 0.999  # the second moment kept for an optimizer without one: Adam's default beta2


def _reset(optimizer_state: dict[str, Any], reset: Tensor) -> dict[str, Any]:
    """The optimizer's state with every per-parameter buffer (a list of tensors: Adam's m and v, SGD's
    momentum) zeroed for the runs in ``reset``; counts (Adam's step, for bias correction) kept."""
    def zeroed(buffers: list[Tensor]) -> list[Tensor]:
        return [torch.where(run_mask(reset, b), b.new_zeros(()), b) for b in buffers]
    return {key: zeroed(value) if isinstance(value, list) else value for key, value in optimizer_state.items()}


@register("spam_clip", acting={"spam_theta": [2.0, 5.0, 1.5], "spam_reset_interval": [0, 3, 2],
                               "spam_warmup": [1, 2, 0]}, bounds_spikes=True)
def spam_clip(
    name: str,
    *,
    spam_theta: Hyperparameter = 5000.0, spam_reset_interval: int | Tensor = 0, spam_warmup: int | Tensor = 20
) -> Transform:
    """SPAM's spike-aware clipping and momentum reset (Huang et al. 2025, "SPAM: Spike-Aware Adam
    with Momentum Reset for Stable LLM Training"; the authors' ``SPAM`` optimizer, an AdamW).

    Elementwise, with ``v`` the optimizer's second moment before this step's update (Adam's
    ``v``, not bias-corrected, after any reset below): where ``g^2 > theta * v``,
    ``g <- sign(g) * sqrt(theta * v)``. With ``s`` the optimizer's step count including this
    step, clipping waits until ``s >= w`` and, with resets on, until ``s mod dT >= w`` after
    each reset (right after a reset ``v = 0`` would clip every element to 0). ``theta = 0``
    clips nothing, as in the authors' code. Every ``dT`` steps (``s mod dT == 0``; ``dT = 0``:
    never) the optimizer's ``m`` and ``v`` are zeroed for that run, its step count and so its
    bias correction kept, as the authors do; their cosine warm-up of the learning rate after
    each reset is not applied (a gradient transform has no hold on the step size).

    With an optimizer that keeps no second moment (SGD) the strategy keeps its own, in the state:
    ``v <- 0.999 v + 0.001 g^2`` of the clipped gradient (Adam's default beta2), ``s`` is the
    engine's step + 1, and the reset zeroes SGD's momentum buffer and that ``v``. Active where
    any element was clipped.

    Reads ``optimizer_state`` and ``step`` (``Transform.extra_args``); reports the reset as
    ``Report.optimizer_state``.
    """
    resets = bool(torch.as_tensor(spam_reset_interval).ne(0).any())

    def init(params: Params) -> State:
        return {"v": [torch.zeros_like(p) for p in params]}

    def update(grads: Params, state: State, params: Params, *, optimizer_state: dict[str, Any],
               step: int | Tensor) -> tuple[Params, State, Report]:
        like = grads[0]
        adam_like = "v" in optimizer_state and "step" in optimizer_state
        if adam_like:
            seen = optimizer_state["step"].to(device=like.device, dtype=torch.float64) + 1
        else:
            # the engine's step: a Python int (filled in on the device), or a long scalar there (bench.graph)
            seen = ((step + 1).to(torch.float64).expand(like.shape[0]) if isinstance(step, Tensor)
                    else torch.full((like.shape[0],), float(step + 1), dtype=torch.float64, device=like.device))
        interval = run_values(spam_reset_interval, like, torch.float64)
        warmup = run_values(spam_warmup, like, torch.float64)
        theta = run_values(spam_theta, like)
        periodic = interval > 0
        phase = torch.remainder(seen, torch.where(periodic, interval, 1.0))
        reset = periodic & (phase == 0)
        allowed = (seen >= warmup) & (~periodic | (phase >= warmup)) & (theta != 0)

        second = optimizer_state["v"] if adam_like else state["v"]
        replaced = None  # the optimizer's state with this step's resets, where a run resets
        if resets and not known_empty(reset):
            replaced = _reset(optimizer_state, reset)
            second = replaced["v"] if adam_like else _reset({"v": second}, reset)["v"]

        clipped, active = [], torch.zeros_like(reset)
        for g, v in zip(grads, second, strict=True):
            bound = per_run(theta, g) * v
            spike = (g * g > bound) & run_mask(allowed, g)
            clipped.append(torch.where(spike, torch.copysign(torch.sqrt(bound), g), g))
            active = active | spike.flatten(1).any(dim=1)
        own = state["v"] if adam_like else [OWN_BETA2 * v + (1 - OWN_BETA2) * g * g
                                            for v, g in zip(second, clipped, strict=True)]
        return clipped, {"v": own}, Report(active=active, optimizer_state=replaced)

    return Transform(name, "gradient", init, update, layout_free=True, extra_args=("optimizer_state", "step"))
