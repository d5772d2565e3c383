"""The strategy library against per-run reference implementations, and its edge cases.

Each reference below handles one run with plain tensors and loops, the way the
cited code does it (torch.nn.utils, timm, optax, the authors' code); the
batched strategies must agree with it run by run, with per-run hyperparameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from bench import optim, strategies
from bench.transform import NO_UPDATE, Report, Transform, select

ROOT = Path(__file__).resolve().parent.parent
# A model's parameters: linear, conv1d, recurrent-like (gates*H, in), conv2d, then the output layer.
SHAPES = [(6, 5), (6,), (4, 6, 3), (4,), (12, 4), (5, 4, 2, 2), (3, 4), (3,)]
REPORTS = ("active", "skip")


def said(report: Report) -> dict[str, Tensor]:
    """The masks of ``REPORTS`` a report says something of, by name."""
    return {key: getattr(report, key) for key in REPORTS if getattr(report, key) is not None}


def tensors(runs: int, seed: int, scale: float = 1.0) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(runs, *shape, generator=generator) for shape in SHAPES]


def run_of(values: list[Tensor], k: int) -> list[Tensor]:
    return [v[k].clone() for v in values]


def value_of(hyperparameter, k: int):
    return hyperparameter[k].item() if isinstance(hyperparameter, Tensor) else hyperparameter


LR = 0.05  # every run's learning rate, for transforms that read it


def apply(transform: Transform, inputs: list[list[Tensor]], params: list[Tensor], optimizer: Transform | None = None,
          lr: Tensor | None = None, states: list | None = None):
    """Run ``transform`` over a sequence of inputs as the engine does; outputs, reports and final state.

    A transform that reads the engine's context (``extra_args``) gets what the engine would pass:
    each run's learning rate (``lr``, (K, 1), default LR), the step index, and the state of
    ``optimizer`` (default Adam) before its update, the optimizer taking the transform's outputs
    as its gradients after a reported ``optimizer_state`` has replaced its own. ``states``, when
    given, collects the optimizer's state after each step. A step's report comes as the dict
    :func:`said` makes of it.
    """
    state = transform.init(params)
    optimizer = optimizer or optim.make("adam")
    optimizer_state = optimizer.init(params)
    lr = torch.full((params[0].shape[0], 1), LR) if lr is None else lr
    outputs, reports = [], []
    for step, step_inputs in enumerate(inputs):
        context = {"optimizer_state": optimizer_state, "lr": lr, "step": step}
        out, state, report = transform.update(step_inputs, state, params,
                                              **{key: context[key] for key in transform.extra_args})
        reports.append(said(report))
        replaced = optimizer_state if report.optimizer_state is None else report.optimizer_state
        if "optimizer_state" in transform.extra_args:
            _, optimizer_state, _ = optimizer.update(out, replaced, params)
            if states is not None:
                states.append(optimizer_state)
        outputs.append(out)
    return outputs, reports, state


def as_grads(values: list[Tensor]) -> list[torch.nn.Parameter]:
    """Parameters holding ``values`` as their gradients, for torch.nn.utils."""
    params = [torch.nn.Parameter(torch.zeros_like(v)) for v in values]
    for p, v in zip(params, values, strict=True):
        p.grad = v.clone()
    return params


def leaves(state) -> list[Tensor]:
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, dict):
        return [leaf for value in state.values() for leaf in leaves(value)]
    return [leaf for value in state for leaf in leaves(value)]


# ---------------------------------------------------------------- references (one run each)


def ref_clip_value(grads, c):
    params = as_grads(grads)
    torch.nn.utils.clip_grad_value_(params, c)
    return [p.grad for p in params]


def ref_clip_norm(grads, c):
    params = as_grads(grads)
    torch.nn.utils.clip_grad_norm_(params, c)
    return [p.grad for p in params]


def ref_clip_norm_layer(grads, c):
    return [ref_clip_norm([g], c)[0] for g in grads]


def unitwise_norm(x: Tensor) -> Tensor:
    """timm's unitwise_norm: whole-tensor norm for ndim <= 1, else one per output unit."""
    if x.ndim <= 1:
        return x.norm(2.0)
    return x.norm(2.0, dim=tuple(range(1, x.ndim)), keepdim=True)


def ref_agc(grads, params, clip_factor, eps, exclude_output):
    """timm's adaptive_clip_grad, with NFNets' exclusion of the final classifier layer."""
    out = []
    for index, (p, g) in enumerate(zip(params, grads, strict=True)):
        if exclude_output and index >= len(params) - 2:
            out.append(g.clone())
            continue
        max_norm = unitwise_norm(p).clamp_(min=eps).mul_(clip_factor)
        grad_norm = unitwise_norm(g)
        clipped_grad = g * (max_norm / grad_norm.clamp(min=1e-6))
        out.append(torch.where(grad_norm < max_norm, g, clipped_grad))
    return out


class RefAutoClip:
    """Seetharaman et al.'s autoclip_gradient: history of norms, np.percentile, clip_grad_norm_."""

    def __init__(self, percentile):
        self.percentile, self.history = percentile, []

    def step(self, grads):
        params = as_grads(grads)
        total_norm = sum(p.grad.norm(2).item() ** 2 for p in params) ** 0.5
        self.history.append(total_norm)
        clip_value = np.percentile(self.history, self.percentile)
        torch.nn.utils.clip_grad_norm_(params, clip_value)
        return [p.grad for p in params]


class RefZClip:
    """The authors' ZClip (mode zscore, adaptive_scaling, max_grad_norm None), one run, Python floats."""

    def __init__(self, z_thresh, alpha, warmup_steps, eps=1e-6):
        self.z_thresh, self.alpha, self.warmup_steps, self.eps = z_thresh, alpha, warmup_steps, eps
        self.buffer, self.initialized, self.mean, self.var = [], False, None, None

    def step(self, grads):
        total_norm = torch.sqrt(torch.sum(torch.stack([g.norm(2) for g in grads]) ** 2)).item()
        if not self.initialized:
            self.buffer.append(total_norm)
            if len(self.buffer) >= self.warmup_steps:
                self.mean = sum(self.buffer) / len(self.buffer)
                self.var = sum((x - self.mean) ** 2 for x in self.buffer) / len(self.buffer)
                self.initialized, self.buffer = True, []
            return [g.clone() for g in grads]
        std = self.var**0.5
        z = (total_norm - self.mean) / (std + self.eps)
        clip_val = None
        if z > self.z_thresh:
            eta = z / self.z_thresh
            clip_val = self.mean + (self.z_thresh * std) / eta
        effective = clip_val if clip_val is not None else total_norm
        coefficient = effective / (total_norm + 1e-6) if total_norm > effective else 1.0
        self.mean = self.alpha * self.mean + (1 - self.alpha) * effective
        self.var = self.alpha * self.var + (1 - self.alpha) * (effective - self.mean) ** 2
        return [g * coefficient for g in grads]


class RefSpikeSkip:
    """Skip a step whose norm exceeds factor x the median of the last accepted norms."""

    def __init__(self, factor, window, warmup):
        self.factor, self.window, self.warmup, self.history = factor, window, warmup, []

    def step(self, grads):
        norm = math.sqrt(sum(g.double().norm().item() ** 2 for g in grads))
        skip = not math.isfinite(norm) or (
            len(self.history) >= self.warmup and norm > self.factor * np.median(self.history[-self.window :])
        )
        if not skip:
            self.history.append(norm)
        return ([torch.zeros_like(g) for g in grads] if skip else [g.clone() for g in grads]), skip


def ref_trust_ratio(grads, params, trust_coefficient):
    """optax.scale_by_trust_ratio (eps 0, min_norm 0), tensor by tensor."""
    out = []
    for g, p in zip(grads, params, strict=True):
        param_norm, update_norm = p.norm(), g.norm()
        ratio = trust_coefficient * param_norm / update_norm
        zero_norm = (param_norm == 0.0) | (update_norm == 0.0)
        out.append(g * torch.where(zero_norm, 1.0, ratio))
    return out


def ref_update_clip(updates, threshold):
    """Adafactor's update clipping: u / max(1, RMS(u) / d), RMS = ||u|| / sqrt(numel)."""
    return [u / (u.norm(2) / (u.numel() ** 0.5) / threshold).clamp(min=1.0) for u in updates]


def ref_max_norm(weights, c):
    """torch.renorm on each weight tensor's output units; biases untouched."""
    return [torch.renorm(w, 2, 0, c) if w.dim() >= 2 else w.clone() for w in weights]


class RefAdaGC:
    """The authors' AdaGC (``clip_by_norm``, tensor-wise, unsharded) for one run: the global norm
    as a Python float, per-tensor norms and the reference ``norm_value`` per tensor."""

    def __init__(self, clip_ratio, beta, start_clip_steps, max_norm, eps=1e-6):
        self.clip_ratio, self.beta, self.start_clip_steps, self.max_norm, self.eps = (
            clip_ratio, beta, start_clip_steps, max_norm, eps)
        self.steps, self.state = 0, {}

    def step(self, grads):
        grads = [g.clone() for g in grads]
        self.steps += 1
        total_norm = sum(g.norm(2) ** 2 for g in grads).item() ** 0.5
        if self.steps <= self.start_clip_steps:  # warm-up: GlobalGC, collecting each tensor's smallest norm
            clip_coeff = self.max_norm / (total_norm + self.eps)
            if clip_coeff < 1.0:
                grads = [g * clip_coeff for g in grads]
            for index, g in enumerate(grads):
                norm_value = torch.norm(g, 2)
                if index not in self.state:
                    self.state[index] = norm_value
                if norm_value < self.state[index]:
                    self.state[index] = norm_value
            return grads
        for index, g in enumerate(grads):
            norm_value = torch.norm(g, 2)
            if index not in self.state:
                self.state[index] = norm_value
            avg_norm_value = self.state[index]
            if norm_value > self.clip_ratio * avg_norm_value:
                grads[index] = g * ((self.clip_ratio * avg_norm_value) / (norm_value + self.eps))
                norm_value = self.clip_ratio * avg_norm_value
            self.state[index] = avg_norm_value * self.beta + norm_value * (1.0 - self.beta)
        return grads


class RefSPAM:
    """The authors' SPAM optimizer (their AdamW class, without sparse masks) for one run, up to the
    moments: spike-aware clipping of the gradient against ``exp_avg_sq``, the momentum reset every
    ``DeltaT`` steps (0: never, where their modulo would fail) and Adam's moment updates. Their
    cosine scale of the step after a reset acts on the parameters only, and is left out here."""

    def __init__(self, threshold, delta_t, grad_accu_steps, betas=(0.9, 0.999)):
        self.thres, self.DeltaT, self.grad_accu_steps, self.betas = threshold, delta_t, grad_accu_steps, betas
        self.total_step, self.exp_avg, self.exp_avg_sq = 0, None, None

    def step(self, grads):
        grads = [g.clone() for g in grads]
        if self.exp_avg is None:
            self.exp_avg = [torch.zeros_like(g) for g in grads]
            self.exp_avg_sq = [torch.zeros_like(g) for g in grads]
        beta1, beta2 = self.betas
        for index, grad in enumerate(grads):
            if self.DeltaT != 0 and (self.total_step + 1) % self.DeltaT == 0:
                self.exp_avg[index] = torch.zeros_like(grad)
                self.exp_avg_sq[index] = torch.zeros_like(grad)
            exp_avg, exp_avg_sq = self.exp_avg[index], self.exp_avg_sq[index]
            if self.thres != 0:
                current_step = self.total_step + 1
                if current_step >= self.grad_accu_steps:
                    mask = (grad**2) > (self.thres * exp_avg_sq)
                    if self.DeltaT != 0:
                        if current_step % self.DeltaT >= self.grad_accu_steps:
                            grad[mask] = grad[mask].sign() * torch.sqrt(exp_avg_sq[mask] * self.thres)
                    else:
                        grad[mask] = grad[mask].sign() * torch.sqrt(exp_avg_sq[mask] * self.thres)
            exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        self.total_step += 1
        return grads


class RefMixClip:
    """The authors' ``Algorithm(params, MixClip, lr, gamma, momentum)`` for one run (one parameter
    group, no weight decay): their momentum buffer ``b <- momentum b + (1 - momentum) g`` and the step
    ``x <- x - lr nu / (1 + ||b|| / gamma lr) b - lr (1 - nu) / (1 + ||g|| / gamma lr) g``."""

    def __init__(self, params, lr, gamma, momentum, nu):
        self.params = [torch.nn.Parameter(p.clone()) for p in params]
        self.lr, self.gamma, self.momentum, self.nu = lr, gamma, momentum, nu
        self.state = {p: {} for p in self.params}

    def step(self, grads):
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g.clone()
        with torch.no_grad():
            d_ps = []
            for p in self.params:
                d_p = p.grad.data
                if self.momentum != 0:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(d_p))
                    buf.mul_(self.momentum).add_(d_p, alpha=1 - self.momentum)
                    d_p = buf
                d_ps.append(d_p)
            norm = math.sqrt(sum(d.view(-1).dot(d.view(-1)) for d in d_ps))
            norm2 = math.sqrt(sum(p.grad.view(-1).dot(p.grad.view(-1)) for p in self.params))
            for p, d_p in zip(self.params, d_ps, strict=True):
                p.data.add_(d_p, alpha=-self.lr * self.nu / (1 + norm / self.gamma * self.lr))
                p.data.add_(p.grad.data, alpha=-self.lr * (1 - self.nu) / (1 + norm2 / self.gamma * self.lr))
        return [p.detach().clone() for p in self.params]


# ---------------------------------------------------------------- against the references

RUNS = 3


def assert_runs_match(outputs: list[Tensor], expected: list[Tensor], k: int, **tolerance) -> None:
    for out, ref in zip(outputs, expected, strict=True):
        torch.testing.assert_close(out[k], ref, **tolerance)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clip_value_norm_and_layer_match_torch_nn_utils(scale):
    grads = tensors(RUNS, 1, scale)
    for name, reference, values in [
        ("clip_value", ref_clip_value, [0.5, 0.05, 1e3]),
        ("clip_norm", ref_clip_norm, [1.0, 0.1, 1e3]),
        ("clip_norm_layer", ref_clip_norm_layer, [1.0, 0.1, 1e3]),
    ]:
        for hyperparameter in (values[1], torch.tensor(values)):
            (out,), (report,), _ = apply(strategies.make(name, **{name: hyperparameter}), [grads], tensors(RUNS, 2))
            for k in range(RUNS):
                expected = reference(run_of(grads, k), value_of(hyperparameter, k))
                assert_runs_match(out, expected, k, rtol=1e-6, atol=0)
                changed = any(not torch.equal(e, g) for e, g in zip(expected, run_of(grads, k), strict=True))
                assert bool(report["active"][k]) == changed


@pytest.mark.parametrize("exclude", [True, False, "per_run"])
def test_agc_matches_timm(exclude):
    grads, params = tensors(RUNS, 3, 0.1), tensors(RUNS, 4)
    params[0][1, 2] = 0.0  # a unit with zero weights: its limit is lambda * eps
    params[1][2] = 0.0  # a zero bias
    clipping, eps = torch.tensor([0.01, 0.1, 1.0]), torch.tensor([1e-3, 1e-2, 1e-3])
    exclude_runs = torch.tensor([True, False, True]) if exclude == "per_run" else exclude
    (out,), (report,), _ = apply(
        strategies.make("agc", agc_clipping=clipping, agc_eps=eps, agc_exclude_output=exclude_runs), [grads], params
    )
    for k in range(RUNS):
        expected = ref_agc(run_of(grads, k), run_of(params, k), value_of(clipping, k), value_of(eps, k),
                           value_of(exclude_runs, k))
        assert_runs_match(out, expected, k, rtol=1e-6, atol=0)
        changed = any(not torch.equal(e, g) for e, g in zip(expected, run_of(grads, k), strict=True))
        assert bool(report["active"][k]) == changed


def test_agc_hand_checked():
    weights = torch.tensor([[[0.6, 0.8], [0.0, 0.0], [0.6, 0.8]]])
    params = [weights, torch.zeros(1, 3), torch.ones(1, 1, 3), torch.ones(1, 1)]
    grads = [torch.tensor([[[3.0, 4.0], [3.0, 4.0], [0.003, 0.004]]]), torch.tensor([[0.0, 3.0, 4.0]]),
             torch.full((1, 1, 3), 100.0), torch.full((1, 1), 100.0)]
    (out,), (report,), _ = apply(strategies.make("agc", agc_clipping=0.01), [grads], params)
    # unit norm 1 -> limit 0.01; zero weights -> limit 0.01 * 1e-3; small gradient untouched.
    torch.testing.assert_close(out[0], torch.tensor([[[0.006, 0.008], [6e-6, 8e-6], [0.003, 0.004]]]))
    torch.testing.assert_close(out[1], torch.tensor([[0.0, 6e-6, 8e-6]]))  # a zero bias: limit 1e-5
    assert torch.equal(out[2], grads[2]) and torch.equal(out[3], grads[3])  # the output layer is excluded
    assert report["active"].tolist() == [True]


def norm_sequence(steps: int, seed: int, spikes: dict[int, float]) -> list[list[Tensor]]:
    """Gradients of RUNS runs over ``steps`` steps, with run/step spikes multiplied in."""
    sequence = []
    for step in range(steps):
        grads = tensors(RUNS, 100 * seed + step, 1.0 + 0.1 * step)
        for k in range(RUNS):
            factor = spikes.get((step, k), 1.0)
            for g in grads:
                g[k] *= factor
        sequence.append(grads)
    return sequence


def test_autoclip_matches_authors_code():
    sequence = norm_sequence(12, 5, {(3, 0): 50.0, (6, 1): 20.0, (7, 2): 0.01})
    percentile = torch.tensor([10.0, 50.0, 90.0])
    outputs, reports, state = apply(strategies.make("autoclip", autoclip_percentile=percentile), sequence,
                                    tensors(RUNS, 0))
    for k in range(RUNS):
        reference = RefAutoClip(value_of(percentile, k))
        for step, grads in enumerate(sequence):
            assert_runs_match(outputs[step], reference.step(run_of(grads, k)), k, rtol=1e-5, atol=1e-7)
    assert state["history"].shape == (RUNS, 12)
    assert reports[3]["active"][0] and not reports[0]["active"].any()


def test_autoclip_hand_checked():
    grads = [[torch.tensor([[value]])] for value in (1.0, 2.0, 3.0, 10.0)]
    outputs, reports, _ = apply(strategies.make("autoclip", autoclip_percentile=50.0), grads, [torch.ones(1, 1)])
    # history [1, 2, 3, 10]: the median 2.5 caps the norm 10; each rising norm exceeds its history's median
    torch.testing.assert_close(outputs[-1][0], torch.tensor([[2.5 * 10.0 / (10.0 + 1e-6)]]))
    torch.testing.assert_close(outputs[1][0], torch.tensor([[1.5 * 2.0 / (2.0 + 1e-6)]]))
    assert [r["active"].item() for r in reports] == [False, True, True, True]


def test_autoclip_history_survives_engine_select():
    """A run frozen by the engine keeps its history while the others' grows (select pads the old buffer)."""
    sequence = norm_sequence(6, 6, {(4, 1): 30.0})
    transform = strategies.make("autoclip", autoclip_percentile=30.0)
    params = tensors(RUNS, 0)
    state = transform.init(params)
    frozen = torch.tensor([True, False, True])  # run 1 frozen at steps 2 and 3
    outputs = []
    for step, grads in enumerate(sequence):
        out, new_state, _ = transform.update(grads, state, params)
        state = select(frozen if step in (2, 3) else torch.ones(RUNS, dtype=torch.bool), new_state, state)
        outputs.append(out)
    reference = RefAutoClip(30.0)
    for step, grads in enumerate(sequence):
        expected = reference.step(run_of(grads, 1))
        if step not in (2, 3):
            assert_runs_match(outputs[step], expected, 1, rtol=1e-5, atol=1e-7)
        else:
            reference.history.pop()
    assert state["count"].tolist() == [6, 4, 6]


def test_zclip_matches_authors_code():
    spikes = {(30, 0): 40.0, (31, 0): 30.0, (34, 1): 15.0, (8, 2): 25.0, (15, 2): 25.0, (18, 2): 0.1}
    sequence = norm_sequence(40, 7, spikes)
    z, alpha, warmup = torch.tensor([2.5, 2.0, 3.0]), torch.tensor([0.97, 0.9, 0.99]), torch.tensor([25.0, 5.0, 10.0])
    outputs, reports, _ = apply(strategies.make("zclip", zclip_z=z, zclip_alpha=alpha, zclip_warmup=warmup),
                                sequence, tensors(RUNS, 0))
    for k in range(RUNS):
        reference = RefZClip(value_of(z, k), value_of(alpha, k), int(value_of(warmup, k)))
        for step, grads in enumerate(sequence):
            assert_runs_match(outputs[step], reference.step(run_of(grads, k)), k, rtol=1e-5, atol=1e-6)
    active = torch.stack([r["active"] for r in reports])
    assert active[30, 0] and active[34, 1] and active[15, 2]
    assert not active[:25, 0].any() and not active[8, 2]  # no clipping in warm-up


def test_zclip_hand_checked():
    grads = [[torch.tensor([[value]])] for value in (1.0, 3.0, 10.0)]
    outputs, reports, state = apply(strategies.make("zclip", zclip_warmup=2), grads, [torch.ones(1, 1)])
    # warm-up: mean 2, var 1; then z = 8 / (1 + 1e-6): threshold 2 + 2.5 / (z / 2.5)
    z = 8.0 / (1.0 + 1e-6)
    threshold = 2.0 + 2.5 / (z / 2.5)
    torch.testing.assert_close(outputs[2][0], torch.tensor([[threshold * 10.0 / (10.0 + 1e-6)]]))
    mean = 0.97 * 2.0 + 0.03 * threshold
    torch.testing.assert_close(state["mean"], torch.tensor([mean]))
    torch.testing.assert_close(state["var"], torch.tensor([0.97 + 0.03 * (threshold - mean) ** 2]))
    assert [r["active"].item() for r in reports] == [False, False, True]


def test_spike_skip_matches_reference():
    sequence = norm_sequence(30, 8, {(5, 0): 100.0, (6, 0): 100.0, (12, 1): 8.0, (20, 2): 4.0, (2, 2): 50.0})
    sequence[15][0][1, 0, 0] = float("nan")
    factor, window, warmup = torch.tensor([6.0, 3.0, 2.0]), torch.tensor([100.0, 4.0, 7.0]), torch.tensor([3.0, 1, 5])
    outputs, reports, _ = apply(
        strategies.make("spike_skip", spike_factor=factor, spike_window=window, spike_warmup=warmup),
        sequence, tensors(RUNS, 0))
    skips = torch.stack([r["skip"] for r in reports])
    for k in range(RUNS):
        reference = RefSpikeSkip(value_of(factor, k), int(value_of(window, k)), int(value_of(warmup, k)))
        for step, grads in enumerate(sequence):
            expected, skip = reference.step(run_of(grads, k))
            assert bool(skips[step, k]) == skip, (step, k)
            assert_runs_match(outputs[step], expected, k, rtol=0, atol=0)
    assert skips[5, 0] and skips[6, 0] and skips[15, 1] and skips[20, 2]
    assert not skips[2, 2]  # still in warm-up


def test_spike_skip_hand_checked():
    norms = (1.0, 1.0, 5.0, 1.5, 2.0, 3.5, 10.0)
    grads = [[torch.tensor([[value]])] for value in norms]
    _, reports, state = apply(strategies.make("spike_skip", spike_factor=2.0, spike_window=3, spike_warmup=2),
                              grads, [torch.ones(1, 1)])
    # medians: -, -, 1 (skip 5), 1 (1.5 ok), 1 (2 ok), median(1, 1.5, 2) = 1.5 (skip 3.5), 1.5 (skip 10)
    assert [r["skip"].item() for r in reports] == [False, False, True, False, False, True, True]
    assert state["count"].tolist() == [4]


def test_trust_ratio_matches_optax():
    grads, params = tensors(RUNS, 9), tensors(RUNS, 10)
    grads[2][1] = 0.0  # zero gradient: ratio 1
    params[4][0] = 0.0  # zero weights: ratio 1
    coefficient = torch.tensor([1.0, 0.001, 0.5])
    (out,), (report,), _ = apply(strategies.make("trust_ratio", trust_coefficient=coefficient), [grads], params)
    for k in range(RUNS):
        expected = ref_trust_ratio(run_of(grads, k), run_of(params, k), value_of(coefficient, k))
        assert_runs_match(out, expected, k, rtol=1e-6, atol=0)
    assert torch.equal(out[2][1], grads[2][1]) and torch.equal(out[4][0], grads[4][0])
    assert report["active"].all()


def test_trust_ratio_hand_checked():
    (out,), _, _ = apply(strategies.make("trust_ratio"), [[torch.tensor([[0.0, 4.0]])]], [torch.tensor([[2.0, 0.0]])])
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 2.0]]))


def test_update_clip_matches_adafactor():
    updates = tensors(RUNS, 11, 0.5)
    threshold = torch.tensor([1.0, 0.1, 10.0])
    (out,), (report,), _ = apply(strategies.make("update_clip", update_clip=threshold), [updates], tensors(RUNS, 0))
    for k in range(RUNS):
        assert_runs_match(out, ref_update_clip(run_of(updates, k), value_of(threshold, k)), k, rtol=1e-6, atol=0)
    assert report["active"].tolist() == [False, True, False]
    (out,), _, _ = apply(strategies.make("update_clip"), [[torch.full((1, 2, 3), 2.0)]], [torch.ones(1, 2, 3)])
    torch.testing.assert_close(out[0], torch.ones(1, 2, 3))  # RMS 2 > d = 1: halved


def test_max_norm_matches_renorm():
    weights = tensors(RUNS, 12, 2.0)
    radius = torch.tensor([3.0, 0.5, 100.0])
    transform = strategies.make("max_norm", max_norm=radius)
    assert transform.stage == "weights"
    (out,), (report,), _ = apply(transform, [weights], tensors(RUNS, 0))
    for k in range(RUNS):
        assert_runs_match(out, ref_max_norm(run_of(weights, k), value_of(radius, k)), k, rtol=0, atol=0)
    for w, o in zip(weights, out, strict=True):
        if w.dim() == 2:
            assert torch.equal(w, o)  # biases untouched
    assert report["active"].tolist() == [True, True, False]
    weights = tensors(RUNS, 14, 2.0)
    (out,), _, _ = apply(strategies.make("max_norm", max_norm=1.0), [weights], weights)
    for k in range(RUNS):
        assert_runs_match(out, ref_max_norm(run_of(weights, k), 1.0), k, rtol=0, atol=0)
    (out,), _, _ = apply(strategies.make("max_norm", max_norm=1.0), [[torch.tensor([[[3.0, 4.0], [0.3, 0.4]]])]],
                         [torch.zeros(1, 2, 2)])
    torch.testing.assert_close(out[0], torch.tensor([[[0.6, 0.8], [0.3, 0.4]]]))


def test_grad_scale_normalized_and_skip_nonfinite():
    grads = tensors(RUNS, 13)
    gamma = torch.tensor([0.5, 1.0, 0.99])
    (out,), (report,), _ = apply(strategies.make("grad_scale", gamma=gamma), [grads], grads)
    for k in range(RUNS):
        assert_runs_match(out, [g * value_of(gamma, k) for g in run_of(grads, k)], k, rtol=0, atol=0)
    assert report["active"].tolist() == [True, False, True]

    (out,), _, _ = apply(strategies.make("normalized"), [grads], grads)
    for k in range(RUNS):
        norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in run_of(grads, k)]))
        assert_runs_match(out, [g / (norm + 1e-6) for g in run_of(grads, k)], k, rtol=1e-6, atol=0)
    (out,), _, _ = apply(strategies.make("normalized"), [[torch.tensor([[3.0, 4.0]])]], [torch.ones(1, 2)])
    torch.testing.assert_close(out[0], torch.tensor([[0.6, 0.8]]))

    grads[3][1, 0] = float("inf")
    (out,), (report,), _ = apply(strategies.make("skip_nonfinite"), [grads], grads)
    assert report["skip"].tolist() == [False, True, False]
    assert all(torch.equal(o[1], torch.zeros_like(o[1])) for o in out)
    assert all(torch.equal(o[::2], g[::2]) for o, g in zip(out, grads, strict=True))


def test_adagc_matches_authors_code():
    spikes = {(14, 0): 30.0, (20, 1): 8.0, (25, 2): 50.0, (3, 0): 40.0}
    sequence = norm_sequence(30, 15, spikes)
    sequence[18][2][1] *= 25.0  # one tensor of one run spikes alone
    sequence[22][5][0] *= 0.01  # one tensor drops
    ratio, beta = torch.tensor([1.04, 1.5, 1.2]), torch.tensor([0.99, 0.9, 0.95])
    warmup, clip = torch.tensor([10.0, 0.0, 4.0]), torch.tensor([1.0, 100.0, 5.0])
    outputs, reports, _ = apply(
        strategies.make("adagc", adagc_lambda=ratio, adagc_beta=beta, adagc_warmup=warmup, adagc_warmup_clip=clip),
        sequence, tensors(RUNS, 0))
    for k in range(RUNS):
        reference = RefAdaGC(value_of(ratio, k), value_of(beta, k), int(value_of(warmup, k)), value_of(clip, k))
        for step, grads in enumerate(sequence):
            expected = reference.step(run_of(grads, k))
            assert_runs_match(outputs[step], expected, k, rtol=1e-5, atol=1e-6)
            changed = any(not torch.equal(e, g) for e, g in zip(expected, run_of(grads, k), strict=True))
            assert bool(reports[step]["active"][k]) == changed, (step, k)
    active = torch.stack([r["active"] for r in reports])
    assert active[3, 0] and active[14, 0] and active[18, 2] and active[25, 2]  # warm-up and per-tensor clips
    assert not active[:, 1].all() and not active[0, 1]  # no warm-up: the first norms set the references


def test_adagc_hand_checked():
    grads = [[torch.tensor([[3.0, 4.0]]), torch.tensor([[0.6, 0.8]])] for _ in range(2)]
    grads.append([torch.tensor([[6.0, 8.0]]), torch.tensor([[0.06, 0.08]])])
    params = [torch.ones(1, 2), torch.ones(1, 2)]
    outputs, reports, state = apply(strategies.make("adagc", adagc_warmup=2), grads, params)
    # warm-up: global norm sqrt(26) clipped to 1; the references are the clipped tensor norms
    coefficient = 1.0 / (26**0.5 + 1e-6)
    torch.testing.assert_close(outputs[0][0], grads[0][0] * coefficient)
    # then the first tensor's norm 10 > 1.04 * 5 coefficient: clipped to it; the second's 0.1 < 1.04 coefficient
    limit = 1.04 * 5.0 * coefficient
    torch.testing.assert_close(outputs[2][0], torch.tensor([[6.0, 8.0]]) * limit / (10.0 + 1e-6))
    assert torch.equal(outputs[2][1], grads[2][1])
    torch.testing.assert_close(state["gamma"], torch.tensor([[0.99 * 5.0 * coefficient + 0.01 * limit,
                                                              0.99 * coefficient + 0.01 * 0.1]]))
    assert [r["active"].item() for r in reports] == [True, True, True]


def test_spam_clip_matches_authors_code():
    spikes = {(24, 0): 200.0, (26, 0): 0.01, (9, 1): 30.0, (15, 1): 40.0, (4, 2): 25.0, (12, 2): 60.0}
    sequence = norm_sequence(30, 16, spikes)
    sequence[17][3][1] *= 50.0  # one tensor of one run spikes alone
    theta, interval, warmup = (torch.tensor([5000.0, 50.0, 10.0]), torch.tensor([0.0, 10.0, 7.0]),
                               torch.tensor([20.0, 3.0, 2.0]))
    states = []
    outputs, reports, _ = apply(
        strategies.make("spam_clip", spam_theta=theta, spam_reset_interval=interval, spam_warmup=warmup),
        sequence, tensors(RUNS, 0), states=states)
    for k in range(RUNS):
        reference = RefSPAM(value_of(theta, k), int(value_of(interval, k)), int(value_of(warmup, k)))
        for step, grads in enumerate(sequence):
            expected = reference.step(run_of(grads, k))
            assert_runs_match(outputs[step], expected, k, rtol=1e-6, atol=0)
            assert_runs_match(states[step]["m"], reference.exp_avg, k, rtol=1e-5, atol=1e-7)
            assert_runs_match(states[step]["v"], reference.exp_avg_sq, k, rtol=1e-5, atol=1e-7)
            changed = any(not torch.equal(e, g) for e, g in zip(expected, run_of(grads, k), strict=True))
            assert bool(reports[step]["active"][k]) == changed, (step, k)
    active = torch.stack([r["active"] for r in reports])
    assert active[24, 0] and not active[:20, 0].any()  # clipping waits w steps
    assert active[15, 1] and active[12, 2] and not active[9, 1]  # step 10 resets: 10 mod 10 < w
    assert all(states[step]["step"][1] == step + 1 for step in range(30))  # the reset keeps Adam's step count


def test_spam_clip_with_sgd_keeps_its_own_second_moment():
    """Without a second moment in the optimizer's state it keeps Adam's, and clips as it would with Adam;
    the reset zeroes SGD's momentum buffer."""
    sequence = norm_sequence(12, 17, {(6, 0): 100.0, (9, 2): 50.0})
    values = {"spam_theta": torch.tensor([20.0, 5.0, 10.0]), "spam_reset_interval": torch.tensor([0.0, 4.0, 5.0]),
              "spam_warmup": torch.tensor([3.0, 1.0, 2.0])}
    with_adam, adam_reports, _ = apply(strategies.make("spam_clip", **values), sequence, tensors(RUNS, 0))
    states = []
    with_sgd, sgd_reports, _ = apply(strategies.make("spam_clip", **values), sequence, tensors(RUNS, 0),
                                     optimizer=optim.make("sgd", momentum=0.9), states=states)
    for adam_out, sgd_out in zip(with_adam, with_sgd, strict=True):
        for a, b in zip(adam_out, sgd_out, strict=True):
            assert torch.equal(a, b)
    for adam_report, sgd_report in zip(adam_reports, sgd_reports, strict=True):
        assert torch.equal(adam_report["active"], sgd_report["active"])
    assert any(r["active"].any() for r in sgd_reports)
    for b, g in zip(states[7]["momentum"], with_sgd[7], strict=True):  # step 8: 8 mod 4 == 0, run 1 reset
        assert torch.equal(b[1], g[1]) and not torch.equal(b[0], g[0])


def test_mixed_clip_matches_authors_code():
    """mixed_clip before sgd with momentum 0 steps the parameters exactly as the authors' MixClip."""
    sequence = norm_sequence(15, 18, {(5, 0): 30.0, (9, 1): 0.01, (11, 2): 100.0})
    params = tensors(RUNS, 19)
    gamma, beta, nu = torch.tensor([1.0, 5.0, 0.5]), torch.tensor([0.999, 0.9, 0.0]), torch.tensor([0.7, 0.3, 1.0])
    lr = torch.tensor([[0.1], [0.02], [1.0]])
    transform = strategies.make("mixed_clip", mixed_clip_gamma=gamma, mixed_clip_beta=beta, mixed_clip_nu=nu)
    assert transform.stage == "gradient"
    outputs, reports, _ = apply(transform, sequence, params, lr=lr)
    sgd = optim.make("sgd", momentum=0.0)
    ours, sgd_state = [p.clone() for p in params], sgd.init(params)
    references = [RefMixClip(run_of(params, k), lr[k].item(), value_of(gamma, k), value_of(beta, k), value_of(nu, k))
                  for k in range(RUNS)]
    for step, out in enumerate(outputs):
        directions, sgd_state, _ = sgd.update(out, sgd_state, ours)
        ours = [p - lr.view(-1, *[1] * (p.dim() - 1)) * d for p, d in zip(ours, directions, strict=True)]
        for k in range(RUNS):
            assert_runs_match(ours, references[k].step(run_of(sequence[step], k)), k, rtol=1e-5, atol=1e-6)
    active = torch.stack([r["active"] for r in reports])
    assert active[11, 2] and not active[:, 1].any()  # lr ||g|| > gamma; run 1's steps are all within gamma


def test_mixed_clip_hand_checked():
    grads = [[torch.tensor([[3.0, 4.0]])], [torch.tensor([[0.0, 0.0]])]]
    outputs, reports, _ = apply(strategies.make("mixed_clip", mixed_clip_beta=0.5), grads, [torch.ones(1, 2)],
                                    lr=torch.tensor([[2.0]]))
    # m = (1.5, 2), ||m|| = 2.5: 0.7 / (1 + 2 * 2.5) m + 0.3 / (1 + 2 * 5) g
    torch.testing.assert_close(outputs[0][0], 0.7 / 6.0 * torch.tensor([[1.5, 2.0]]) + 0.3 / 11.0 * grads[0][0])
    # m = (0.75, 1), ||m|| = 1.25, g = 0
    torch.testing.assert_close(outputs[1][0], 0.7 / 3.5 * torch.tensor([[0.75, 1.0]]))
    assert [r["active"].item() for r in reports] == [True, True]


# ---------------------------------------------------------------- edge cases, every strategy

def as_run_values(value):
    """A registered ``acting`` value: a list gives each run its own value (a float32 (K,) tensor)."""
    return torch.tensor([float(v) for v in value]) if isinstance(value, list) else value


# Hyperparameters that make each strategy act within a few steps, from the registry (``acting``).
ACTING = {name: {key: as_run_values(value) for key, value in strategies.lookup(name).meta["acting"].items()}
          for name in strategies.known()}
STAGE = {name: strategies.make(name).stage for name in strategies.known()}
ACTIVE = {name: values for name, values in ACTING.items() if STAGE[name] not in NO_UPDATE}
"""The strategies whose ``update`` the engine calls, run through the update edge cases below; the members of
the ``model`` and ``loss`` stages (never updated) have edge cases of their own (MODEL_STAGE, LOSS_STAGE)."""
MODEL_STAGE = sorted(name for name, stage in STAGE.items() if stage == "model")
LOSS_STAGE = sorted(name for name, stage in STAGE.items() if stage == "loss")
STEPS = 5


def scenario(name: str, runs: int, poison: float | None = None, grad_scale: float = 1.0):
    """Inputs over STEPS steps and params; ``poison`` goes into run 1 at step 2 (and params, for some)."""
    inputs = [tensors(runs, 20 + step, grad_scale * (1.0 + step)) for step in range(STEPS)]
    params = tensors(runs, 40)
    if poison is not None:
        inputs[2][0][1, 0, 0] = poison
        inputs[3][2][1, 1, 1, 1] = poison
    return inputs, params


def per_run_slice(hyperparameters: dict, k: int) -> dict:
    return {key: value[k : k + 1] if isinstance(value, Tensor) else value for key, value in hyperparameters.items()}


def test_every_strategy_is_registered_with_valid_acting_values():
    assert {"none", "clip_value", "clip_norm", "agc", "update_clip", "max_norm", "spike_skip"} <= set(ACTIVE)
    assert set(ACTIVE) | set(MODEL_STAGE) | set(LOSS_STAGE) == set(strategies.known())
    assert {"qk_norm", "softcap"} <= set(MODEL_STAGE) and "z_loss" in LOSS_STAGE
    for name, values in ACTING.items():
        assert set(values) <= set(strategies.lookup(name).options)
        for value in values.values():
            assert not isinstance(value, Tensor) or value.shape == (RUNS,), name


@pytest.mark.parametrize("name", sorted(ACTIVE))
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_run_leaves_others_bit_identical(name, poison):
    clean_inputs, params = scenario(name, RUNS)
    dirty_inputs, _ = scenario(name, RUNS, poison)
    clean = apply(strategies.make(name, **ACTIVE[name]), clean_inputs, params)
    dirty = apply(strategies.make(name, **ACTIVE[name]), dirty_inputs, params)
    others = [0, 2]
    for clean_out, dirty_out in zip(clean[0], dirty[0], strict=True):
        for c, d in zip(clean_out, dirty_out, strict=True):
            assert torch.equal(c[others], d[others])
    for clean_report, dirty_report in zip(clean[1], dirty[1], strict=True):
        for key in clean_report:
            assert torch.equal(clean_report[key][others], dirty_report[key][others])
    for c, d in zip(leaves(clean[2]), leaves(dirty[2]), strict=True):
        assert c.shape[0] == RUNS
        torch.testing.assert_close(c[others], d[others], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_nonfinite_poisoned_params_stay_in_their_run(name):
    inputs, params = scenario(name, RUNS)
    dirty_params = [p.clone() for p in params]
    dirty_params[0][1, 0, 0] = float("nan")
    dirty_params[-2][1, 0, 0] = float("inf")
    clean = apply(strategies.make(name, **ACTIVE[name]), inputs, params)
    dirty = apply(strategies.make(name, **ACTIVE[name]), inputs, dirty_params)
    for clean_out, dirty_out in zip(clean[0], dirty[0], strict=True):
        for c, d in zip(clean_out, dirty_out, strict=True):
            assert torch.equal(c[[0, 2]], d[[0, 2]])


@pytest.mark.parametrize("name", ["skip_nonfinite", "spike_skip"])
def test_skip_strategies_hand_nothing_nonfinite_downstream(name):
    inputs, params = scenario(name, RUNS, float("nan"))
    outputs, reports, _ = apply(strategies.make(name, **ACTIVE[name]), inputs, params)
    assert reports[2]["skip"][1] and reports[3]["skip"][1]
    assert all(torch.isfinite(t).all() for out in outputs for t in out)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_all_zero_inputs_give_zeros(name):
    inputs, params = scenario(name, RUNS)
    zeros = [[torch.zeros_like(t) for t in step] for step in inputs]
    outputs, reports, state = apply(strategies.make(name, **ACTIVE[name]), zeros, params)
    for out in outputs:
        assert all(torch.equal(t, torch.zeros_like(t)) for t in out)
    assert all(torch.isfinite(leaf).all() for leaf in leaves(state) if leaf.is_floating_point())
    for report in reports:
        assert not report.get("skip", torch.zeros(RUNS, dtype=torch.bool)).any()


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_zero_weights_give_finite_outputs(name):
    inputs, params = scenario(name, RUNS)
    zero_params = [torch.zeros_like(p) for p in params]
    outputs, _, _ = apply(strategies.make(name, **ACTIVE[name]), inputs, zero_params)
    assert all(torch.isfinite(t).all() for out in outputs for t in out)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_single_huge_element(name):
    inputs, params = scenario(name, RUNS)
    inputs[3][4][0, 1, 2] = 1e15
    outputs, reports, _ = apply(strategies.make(name, **ACTIVE[name]), inputs, params)
    assert all(torch.isfinite(t).all() for out in outputs for t in out)
    if strategies.lookup(name).meta["bounds_spikes"]:
        assert reports[3].get("active", reports[3].get("skip"))[0]
        assert outputs[3][4][0].abs().max() < 1e3
    if name == "max_norm":  # its own promise besides bounding: every unit within the radius
        radius = ACTIVE[name]["max_norm"][0]
        assert torch.linalg.vector_norm(outputs[3][4][0], dim=1).max() <= radius * (1 + 1e-6)


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_single_run_matches_its_slice_of_a_batch(name):
    inputs, params = scenario(name, RUNS, grad_scale=0.3)
    batched = apply(strategies.make(name, **ACTIVE[name]), inputs, params)
    for k in range(RUNS):
        alone = apply(strategies.make(name, **per_run_slice(ACTIVE[name], k)),
                      [[t[k : k + 1] for t in step] for step in inputs], [p[k : k + 1] for p in params])
        for batch_out, alone_out in zip(batched[0], alone[0], strict=True):
            for b, a in zip(batch_out, alone_out, strict=True):
                torch.testing.assert_close(b[k : k + 1], a, rtol=1e-6, atol=1e-7)
        for batch_report, alone_report in zip(batched[1], alone[1], strict=True):
            for key in batch_report:
                assert torch.equal(batch_report[key][k : k + 1], alone_report[key])


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_engine_style_values(name):
    """The engine passes a shared value as a float (25.0 for 25, 1.0 for True), else a float32 (K,) tensor."""
    inputs, params = scenario(name, RUNS, grad_scale=0.3)
    defaults = strategies.lookup(name).options
    expected = apply(strategies.make(name), inputs, params)
    for values in ({k: float(v) for k, v in defaults.items()},
                   {k: torch.full((RUNS,), float(v)) for k, v in defaults.items()}):
        got = apply(strategies.make(name, **values), inputs, params)
        for expected_out, got_out in zip(expected[0], got[0], strict=True):
            for e, g in zip(expected_out, got_out, strict=True):
                torch.testing.assert_close(g, e, rtol=0, atol=0)


# ---------------------------------------------------------------- registry, schema and docs


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown strategy 'clip_everything'.*agc.*zclip"):
        strategies.make("clip_everything")


def test_unknown_hyperparameter_raises():
    with pytest.raises(KeyError, match=r"'threshold'.*allowed: agc_clipping, agc_eps, agc_exclude_output"):
        strategies.make("agc", threshold=0.1)
    with pytest.raises(KeyError, match="'gamma'"):
        strategies.build(["clip_value", "clip_norm"], {"gamma": 0.5})


def test_chain_builds_and_applies_in_order():
    chain = strategies.build(["clip_value", "grad_scale"], {"clip_value": 0.01, "gamma": 0.99})
    assert [t.name for t in chain] == ["clip_value", "grad_scale"]
    grads = tensors(RUNS, 50)
    for transform in chain:
        (grads,), _, _ = apply(transform, [grads], grads)
    assert max(g.abs().max().item() for g in grads) == pytest.approx(0.0099, rel=1e-6)


def test_stages():
    assert set(STAGE.values()) <= {"model", "loss", "gradient", "update", "weights"}
    text = (ROOT / "docs" / "strategies.md").read_text()
    for name, stage in STAGE.items():  # the strategy table states each strategy's stage
        assert f"| `{name}` | {stage} |" in text, name


def test_schema_lists_every_hyperparameter():
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    properties = schema["$defs"]["strategy"]["properties"]
    for name in strategies.known():
        for key in strategies.lookup(name).options:
            assert key in properties, f"config/schema.yaml lacks {key} ({name})"


def test_strategy_table_lists_every_strategy_and_hyperparameter():
    text = (ROOT / "docs" / "strategies.md").read_text()
    for name in strategies.known():
        assert f"| `{name}` |" in text
        for key, default in strategies.lookup(name).options.items():
            assert f"`{key}`" in text and str(default) in text


# ---------------------------------------------------------------- members of the model and loss stages


@pytest.mark.parametrize("name", MODEL_STAGE + LOSS_STAGE)
def test_model_and_loss_stage_members_are_stateless_and_never_updated(name):
    transform = strategies.make(name, **ACTING[name])
    params = tensors(RUNS, 40)
    assert transform.init(params) == {}
    with pytest.raises(RuntimeError, match="it has no update"):
        transform.update(params, {}, params)


def test_only_model_stage_members_register_the_model_options_they_set():
    for name, stage in STAGE.items():
        declared = strategies.lookup(name).meta["sets_model_options"]
        assert set(strategies.make(name).model_options) == set(declared), name
        assert bool(declared) == (stage == "model"), name
    assert strategies.make("qk_norm").model_options == {"qk_norm": True}
    assert strategies.make("softcap").model_options == {"softcap": 50.0, "output_softcap": 30.0}


def test_a_transform_of_another_stage_sets_no_model_option_and_adds_no_loss_term():
    with pytest.raises(ValueError, match="stage 'model'"):
        Transform("x", "gradient", lambda params: {}, lambda g, s, p: (g, s, Report()), model_options={"qk_norm": True})
    with pytest.raises(ValueError, match="stage 'loss'"):
        Transform("x", "update", lambda params: {}, lambda g, s, p: (g, s, Report()), loss_term=lambda o, t: o)
    with pytest.raises(ValueError, match="stage 'model'"):
        strategies.model_stage("x", {})


@pytest.mark.parametrize("name", MODEL_STAGE)
def test_model_options_are_per_run_and_take_engine_style_values(name):
    """A (K,) hyperparameter gives a (K,) option whose slice is the option of that run alone; a shared value
    comes as a float (the engine's) and gives the option the default would."""
    batched = strategies.make(name, **ACTING[name]).model_options
    for k in range(RUNS):
        alone = strategies.make(name, **per_run_slice(ACTING[name], k)).model_options
        for key, value in batched.items():
            if isinstance(value, Tensor):
                assert value.shape == (RUNS,) and torch.equal(value[k : k + 1], alone[key])
            else:
                assert alone[key] == value
    defaults = strategies.make(name).model_options
    engine_style = strategies.make(name, **{k: float(v) for k, v in strategies.lookup(name).options.items()})
    assert engine_style.model_options == defaults


def outputs_and_targets(runs: int, seed: int, positions: int | None = None) -> tuple[Tensor, Tensor]:
    """Logits (runs, 8, [positions,] 5) of order 3 and class targets."""
    generator = torch.Generator().manual_seed(seed)
    shape = (runs, 8, 5) if positions is None else (runs, 8, positions, 5)
    return 3.0 * torch.randn(*shape, generator=generator), torch.randint(0, 5, shape[1:-1], generator=generator)


@pytest.mark.parametrize("positions", [None, 4])
@pytest.mark.parametrize("name", LOSS_STAGE)
def test_loss_terms_are_per_run(name, positions):
    """Each run's term is its own: a (K,) tensor whose slice is the term of that run alone, finite on finite
    logits (zero ones included), unchanged in the other runs by a non-finite logit of one run."""
    outputs, targets = outputs_and_targets(RUNS, 60, positions)
    term = strategies.make(name, **ACTING[name]).loss_term
    values = term(outputs, targets)
    assert values.shape == (RUNS,) and torch.isfinite(values).all()
    assert torch.isfinite(term(torch.zeros_like(outputs), targets)).all()
    for k in range(RUNS):
        alone = strategies.make(name, **per_run_slice(ACTING[name], k)).loss_term(outputs[k : k + 1], targets)
        torch.testing.assert_close(values[k : k + 1], alone, rtol=1e-6, atol=0)
    for poison in (float("nan"), float("inf")):
        dirty = outputs.clone()
        dirty[1, 0, 0] = poison
        assert torch.equal(term(dirty, targets)[[0, 2]], values[[0, 2]])


@pytest.mark.parametrize("name", LOSS_STAGE)
def test_loss_terms_take_engine_style_values(name):
    outputs, targets = outputs_and_targets(RUNS, 61)
    expected = strategies.make(name).loss_term(outputs, targets)
    for values in ({k: float(v) for k, v in strategies.lookup(name).options.items()},
                   {k: torch.full((RUNS,), float(v)) for k, v in strategies.lookup(name).options.items()}):
        torch.testing.assert_close(strategies.make(name, **values).loss_term(outputs, targets), expected, rtol=0,
                                   atol=0)


def test_z_loss_hand_checked():
    # run 0: logits (0, 0) -> log Z = ln 2; run 1: logits (ln 3, 0) and (0, ln 3) -> log Z = ln 4
    outputs = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[math.log(3.0), 0.0], [0.0, math.log(3.0)]]])
    term = strategies.make("z_loss", z_loss=torch.tensor([1e-4, 0.5])).loss_term(outputs, torch.zeros(2, 2))
    torch.testing.assert_close(term, torch.tensor([1e-4 * math.log(2.0) ** 2, 0.5 * math.log(4.0) ** 2]))
    # a head on every position: the mean over the batch and the positions
    per_position = torch.stack([torch.zeros(3, 2), torch.tensor([[math.log(3.0), 0.0]] * 3)]).unsqueeze(0)
    term = strategies.make("z_loss", z_loss=2.0).loss_term(per_position, torch.zeros(2, 3))
    torch.testing.assert_close(term, torch.tensor([2.0 * (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2]))
