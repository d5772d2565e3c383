"""The oracle: one run trained the plain-PyTorch way.

``train_reference`` trains a single run of a cell with ``torch.nn`` layers,
``torch.optim`` and ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``,
one run at a time, as a peer's per-run training loop would (DeepOBS and
AlgoPerf runners train this way). It starts from the same initial weights and
sees the same batches as the engine's run of the same seed, in the cell's
precision (``dtype``: the network, its data and torch.optim's state). A strategy
that sets model options (qk-layernorm, soft-capping) reaches it through
``engine.build_model``, which builds the run's network with them; a loss term
(z-loss) is added to the loss before ``backward``, written here as a peer would.
Tests hold the lockstep engine to it step by step; ``python -m bench perf``
measures speed against it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench import engine, models, optim, schedules, strategies, sweep, tasks
from bench.sweep import Cell, Run


def module(spec: models.Model) -> nn.Module:
    """The torch.nn network equivalent to the batched model ``spec`` (its family's ``reference``)."""
    build = models.REGISTRY.lookup(spec.family).meta.get("reference")
    if build is None:
        raise ValueError(f"model family {spec.family!r} registers no plain-PyTorch reference")
    return build(spec)


def load_parameters(net: nn.Module, params: list[Tensor]) -> None:
    """Copy one run's parameters (engine order) into ``net``'s parameters (the same order)."""
    with torch.no_grad():
        for target, value in zip(net.parameters(), params, strict=True):
            target.copy_(value)


def optimizer(cell: Cell, run: Run, net: nn.Module) -> torch.optim.Optimizer:
    """The torch.optim optimizer of the cell, for one run (its optimizer's ``reference``)."""
    build = optim.REGISTRY.lookup(cell.optimizer["kind"]).meta["reference"]
    return build(list(net.parameters()), run.lr, **sweep.factory_options("optimizers", cell.optimizer))


def hyperparameters(cell: Cell, run: Run) -> dict[str, float]:
    """Every hyperparameter of the cell's strategies for ``run``: its own value, else the registered default."""
    defaults = {key: value for member in cell.members for key, value in strategies.lookup(member).options.items()}
    return {**defaults, **run.hyperparameters}


def _unitwise_norm(x: Tensor) -> Tensor:
    """timm's unitwise_norm: a vector's norm, or each output unit's norm (dim 0 kept)."""
    return x.norm() if x.ndim <= 1 else x.norm(dim=tuple(range(1, x.ndim)), keepdim=True)


def _agc(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    """Adaptive gradient clipping as timm's ``adaptive_clip_grad``, the classifier excluded (NFNets)."""
    clipped = params[:-2] if hp["agc_exclude_output"] else params
    for p in clipped:
        limit = _unitwise_norm(p.detach()).clamp(min=hp["agc_eps"]) * hp["agc_clipping"]
        grad_norm = _unitwise_norm(p.grad.detach())
        scaled = p.grad.detach() * (limit / grad_norm.clamp(min=1e-6))
        p.grad.detach().copy_(torch.where(grad_norm < limit, p.grad.detach(), scaled))
    return True


def _trust_ratio(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    """LARS's layer-wise trust ratio on the gradient, as optax's ``scale_by_trust_ratio``."""
    for p in params:
        weight_norm, grad_norm = p.detach().norm(), p.grad.norm()
        ratio = hp["trust_coefficient"] * weight_norm / grad_norm
        p.grad.mul_(torch.where((weight_norm > 0) & (grad_norm > 0), ratio, torch.ones_like(ratio)))
    return True


def _normalized(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    """Normalised gradient descent: every gradient divided by the global norm plus eps."""
    total = nn.utils.get_total_norm([p.grad for p in params])
    for p in params:
        p.grad.div_(total + hp["normalized_eps"])
    return True


def _clip_value(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    nn.utils.clip_grad_value_(params, hp["clip_value"])
    return True


def _clip_norm(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    nn.utils.clip_grad_norm_(params, hp["clip_norm"])
    return True


def _clip_norm_layer(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    for p in params:
        nn.utils.clip_grad_norm_([p], hp["clip_norm_layer"])
    return True


def _grad_scale(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    for p in params:
        p.grad.mul_(hp["gamma"])
    return True


def _skip_nonfinite(params: list[nn.Parameter], hp: dict[str, float]) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in params)


def _max_norm(params: list[nn.Parameter], hp: dict[str, float]) -> None:
    with torch.no_grad():
        for p in params:
            if p.ndim >= 2:
                p.copy_(torch.renorm(p, 2, 0, hp["max_norm"]))


GRADIENT_STEPS: dict[str, Callable[[list[nn.Parameter], dict[str, float]], bool]] = {
    "none": lambda params, hp: True,
    "clip_value": _clip_value,
    "clip_norm": _clip_norm,
    "clip_norm_layer": _clip_norm_layer,
    "agc": _agc,
    "grad_scale": _grad_scale,
    "normalized": _normalized,
    "trust_ratio": _trust_ratio,
    "skip_nonfinite": _skip_nonfinite,
}
"""Gradient strategies with a plain-PyTorch counterpart, applied in place to one run's
gradients, with the run's hyperparameters (:func:`hyperparameters`); each returns whether the optimizer
step is taken."""

WEIGHT_STEPS: dict[str, Callable[[list[nn.Parameter], dict[str, float]], None]] = {"max_norm": _max_norm}
"""Weight constraints applied after the optimizer step (max-norm: torch.renorm over output units)."""

LOSS_TERMS: dict[str, Callable[[Tensor, dict[str, float]], Tensor]] = {
    "z_loss": lambda out, hp: hp["z_loss"] * torch.logsumexp(out, -1).square().mean(),
}
"""Loss terms added to one run's loss before ``backward``, from its outputs (z-loss, PaLM's
``1e-4 * log(Z)^2``: the mean over the batch and the positions)."""

MODEL_OPTIONS = ("qk_norm", "softcap")
"""Strategies that set model options: ``engine.build_model`` builds the run's network with them."""

SUPPORTED = (*GRADIENT_STEPS, *WEIGHT_STEPS, *LOSS_TERMS, *MODEL_OPTIONS)

@dataclass
class ReferenceHistory:
    """One run's per-step training losses, its parameters after each step, and its divergence step."""

    losses: list[float]
    params: list[list[Tensor]]
    diverged_step: int
    wall_time_s: float


def train_reference(cell: Cell, index: int, keep_params: bool = True) -> ReferenceHistory:
    """Train run ``index`` of ``cell`` alone, with torch.nn, torch.optim and torch's clipping."""
    unsupported = [m for m in cell.members if m not in SUPPORTED]
    if unsupported:
        raise ValueError(f"the reference has no plain-PyTorch counterpart of {unsupported}; "
                         f"known: {', '.join(SUPPORTED)}")
    run = cell.runs[index]
    hp = hyperparameters(cell, run)
    single = Cell(**{**cell.__dict__, "runs": [run]})
    device, dtype = engine.resolve_device(cell.device), engine.DTYPES[cell.dtype]
    task = engine.load_task(cell)
    spec = engine.build_model(single, task)
    net = module(spec).to(device=device, dtype=dtype)
    load_parameters(net, [p[0] for p in engine.initial_parameters(spec, single)])
    opt = optimizer(cell, run, net)
    schedule, warmup = sweep.setting("optimizers", cell.optimizer, "schedule"), run.dials["warmup_steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedules.factor(schedule, t, warmup, cell.steps))
    form = models.input_form(cell.model["family"])
    x = engine.in_precision(task.inputs("train", form), device, dtype)
    y = engine.in_precision(task.targets("train"), device, dtype)
    order = tasks.batch_indices(run.seed, len(x), cell.batch_size, range(cell.steps)).to(device)
    rate, scale = run.dials["spike_rate"], sweep.setting("tasks", cell.task, "spike_scale")
    draws, slots = tasks.spike_draws(run.seed, cell.batch_size, range(cell.steps))
    losses, snapshots, initial, diverged, consecutive = [], [], None, -1, 0
    skips_nonfinite = "skip_nonfinite" in cell.members  # optax's apply_if_finite: a bad step is skipped
    started = time.perf_counter()
    for step in range(cell.steps):
        xb, yb = x[order[step]], y[order[step]]
        if draws[step] < rate:  # a bad batch: one example's inputs scaled
            xb = xb.clone()
            xb[slots[step]] *= scale
        opt.zero_grad()
        outputs = net(xb)
        loss = task.loss(outputs.unsqueeze(0), yb.unsqueeze(0))[0]
        objective = loss
        for member in cell.members:
            if member in LOSS_TERMS:
                objective = objective + LOSS_TERMS[member](outputs, hp)
        objective.backward()
        value = float(loss.detach())
        initial = value if initial is None and math.isfinite(value) else initial
        losses.append(value)
        if (not math.isfinite(value) and not skips_nonfinite) or value > cell.divergence_factor * (initial or math.inf):
            diverged = step
            break
        parameters = list(net.parameters())
        take_step = math.isfinite(value)
        for member in cell.members:
            if member in GRADIENT_STEPS:
                take_step = GRADIENT_STEPS[member](parameters, hp) and take_step
        if skips_nonfinite:
            consecutive = 0 if take_step else consecutive + 1
            if consecutive > hp["max_consecutive_skips"]:
                diverged = step
                break
        if take_step:
            opt.step()
            for member in cell.members:
                if member in WEIGHT_STEPS:
                    WEIGHT_STEPS[member](parameters, hp)
        scheduler.step()
        if keep_params:
            snapshots.append([p.detach().clone() for p in net.parameters()])
    return ReferenceHistory(losses, snapshots, diverged, time.perf_counter() - started)
