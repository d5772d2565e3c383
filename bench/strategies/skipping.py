"""Skipping of bad steps: non-finite gradients and gradient-norm spikes."""

from __future__ import annotations

import torch

from bench.strategies import Hyperparameter, Params, Report, State, Transform, register
from bench.transform import global_norm, known_empty, max_abs, per_run, run_mask, run_values


def _zero_runs(grads: Params, skip: torch.Tensor) -> Params:
    """The gradients with every run in ``skip`` replaced by zeros (the same tensors where none is)."""
    if known_empty(skip):
        return grads
    zero = grads[0].new_zeros(())  # a 0-dim tensor: torch.where with a Python scalar is slower on CPU
    return [torch.where(run_mask(skip, g), zero, g) for g in grads]


@register("skip_nonfinite", acting={"max_consecutive_skips": [5, 2, 1]})
def skip_nonfinite(name: str, *, max_consecutive_skips: int | torch.Tensor = 5) -> Transform:
    """Skip the step of a run whose loss or gradient holds a NaN or an infinity.

    The rule of optax's ``apply_if_finite(inner, max_consecutive_errors)`` and of
    dynamic loss scaling in mixed-precision training (Micikevicius et al. 2018,
    "Mixed precision training"). Up to ``max_consecutive_skips`` consecutive
    non-finite steps are skipped; the next one ends the run as diverged (optax
    then applies the non-finite update, which poisons the parameters: the same
    end). optax has no default for it; ours is 5. A non-finite loss reaches this
    transform as a non-finite gradient (the engine sees to it, see
    ``Transform.skips_nonfinite``), so the run goes on instead of ending at once.
    A skipped run's gradients become zeros so that nothing downstream sees a
    non-finite value; ``skip`` and ``active`` mark it, ``fail`` the end.

    The state keeps each run's number of consecutive skipped steps in ``consecutive`` (K,).
    """

    def init(params: Params) -> State:
        return {"consecutive": torch.zeros(params[0].shape[0], dtype=torch.long, device=params[0].device)}

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        nonfinite = ~torch.isfinite(max_abs(grads))
        consecutive = torch.where(nonfinite, state["consecutive"] + 1, 0)
        fail = consecutive > run_values(max_consecutive_skips, consecutive)
        skip = nonfinite & ~fail
        report = Report(active=nonfinite, skip=skip, fail=fail)
        return _zero_runs(grads, nonfinite), {"consecutive": consecutive}, report

    return Transform(name, "gradient", init, update, layout_free=True, skips_nonfinite=True)


@register("spike_skip", acting={"spike_factor": 1.5, "spike_window": [3, 2, 5], "spike_warmup": 2}, bounds_spikes=True)
def spike_skip(
    name: str,
    *,
    spike_factor: Hyperparameter = 6.0, spike_window: int | torch.Tensor = 100, spike_warmup: int | torch.Tensor = 10
) -> Transform:
    """Skip the step of a run whose gradient norm spikes above its running median.

    Skip where ``||g|| > k * median(h)``, ``h`` the run's last ``window``
    accepted norms, once ``h`` holds at least ``warmup`` of them; a non-finite
    norm is always skipped. A skipped norm does not enter the history. The
    spike skipping of large-model training, automated (PaLM skipped the batches
    around loss spikes by hand: Chowdhery et al. 2022, sec. 5.1; OLMo-core's
    ``SkipStepOptimizer`` skips above the rolling mean + 6 sigma of the last
    128 norms). The median is robust to the spikes themselves. A skipped run's
    gradients become zeros; ``skip`` and ``active`` mark it. A lasting jump of
    the norm is skipped for ever: the history only takes accepted steps.

    The state keeps each run's accepted norms, newest last, in ``history``
    (K, max window) and their number in ``count`` (K,).
    """
    longest = int(torch.as_tensor(spike_window).max())

    def init(params: Params) -> State:
        runs, device = params[0].shape[0], params[0].device
        return {
            "history": torch.zeros(runs, longest, dtype=params[0].dtype, device=device),
            "count": torch.zeros(runs, dtype=torch.long, device=device),
        }

    def update(grads: Params, state: State, params: Params) -> tuple[Params, State, Report]:
        norm = global_norm(grads)
        history, count = state["history"], state["count"]
        window, warmup = run_values(spike_window, count), run_values(spike_warmup, count)
        filled = torch.minimum(count, window)
        longest = history.shape[1]  # the state's, not this chain's: a chain of some of the runs (bench.shrink)
        slots = torch.arange(longest, device=norm.device)
        ordered = torch.where(slots >= longest - filled[:, None], history, torch.inf).sort(dim=1).values
        low = ordered.gather(1, ((filled - 1).clamp(min=0) // 2)[:, None]).squeeze(1)
        high = ordered.gather(1, (filled // 2).clamp(max=longest - 1)[:, None]).squeeze(1)
        median = (low + high) / 2
        spike = (count >= warmup) & (norm > per_run(spike_factor, norm) * median)
        skip = spike | ~torch.isfinite(norm)
        shifted = torch.cat([history[:, 1:], norm[:, None]], dim=1)
        history = torch.where(skip[:, None], history, shifted)
        count = count + (~skip).long()
        return _zero_runs(grads, skip), {"history": history, "count": count}, Report(active=skip, skip=skip)

    return Transform(name, "gradient", init, update, layout_free=True)
