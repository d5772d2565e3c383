"""The peer: K runs of a cell as a ``torch.func`` model ensemble, PyTorch's own recipe.

What a researcher who wants many small trainings at once writes after PyTorch's
"Model ensembling" tutorial: the cell's ``torch.nn`` network built once per run
(``bench.reference.module``) from that run's initial parameters, stacked with
``torch.func.stack_module_state``, and one ``vmap`` over
``grad_and_value(functional_call loss)``. Each run sees its own batches (its
seed's ``tasks.batch_indices``). The per-run gradient stage is vmapped as
well: the global gradient norm (as ``torch.nn.utils.clip_grad_norm_``: the norm
of the tensors' norms) and the strategy, ``none``, ``clip_value`` or
``clip_norm`` (``coef = min(1, c / (norm + 1e-6))``). The optimizer
(:data:`OPTIMIZERS`) works in multi-tensor ``torch._foreach_*`` ops over the
stacked parameters, each run with its own learning rate, in the order of
operations of ``torch.optim``'s ``foreach`` implementation: SGD with momentum,
Nesterov and coupled weight decay as ``torch.optim.SGD`` (dampening 0); Adam as
``torch.optim.Adam`` (bias corrections, ``eps`` outside the square root,
coupled weight decay ``g <- g + wd p``); AdamW as ``torch.optim.AdamW``
(decoupled weight decay ``p <- p - lr wd p``). Every step logs what the engine
logs: each run's loss, its gradient norm before and after the strategy and its
update ratio ``||delta p|| / ||p||``. It trains in the cell's precision
(``dtype``), as the engine does.

Recurrent cells: ``functional_call`` runs ``torch.nn.RNN``/``GRU``/``LSTM`` under
``vmap`` (torch decomposes their kernels into batched per-step ops). On a CPU
the LSTM's oneDNN kernel has no batching rule, and vmap would fall back to a
loop over the runs with a warning; the step turns oneDNN off around the LSTM's
gradient, so it too takes the batched decomposition. Transformers: the network's
``F.scaled_dot_product_attention`` (bench.models.transformer.GPT) has, on a CPU,
no batching rule for its flash kernel either; the step selects SDPA's math
backend (``torch.nn.attention.sdpa_kernel``), whose matrix products vmap batches.

Not done, as a plain ensemble would not: divergence freezing, learning-rate
schedules and the bad-batch dial (a cell that sets them is refused), so the
peer's step does a little less than the engine's.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench import engine, models, reference, strategies, sweep, tasks
from bench.sweep import Cell

Grads = dict[str, Tensor]
Tensors = list[Tensor]


def total_norm(tensors: Grads) -> Tensor:
    """One run's global L2 norm over its tensors, as ``clip_grad_norm_`` computes it."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors.values()]))


def clip_norm(grads: Grads, norm: Tensor, threshold: Tensor) -> Grads:
    """One run's gradients scaled by ``min(1, c / (norm + 1e-6))``."""
    coef = torch.clamp(threshold / (norm + 1e-6), max=1.0)
    return {name: g * coef for name, g in grads.items()}


def clip_value(grads: Grads, norm: Tensor, threshold: Tensor) -> Grads:
    """One run's gradients clamped to [-c, c]."""
    return {name: torch.clamp(g, -threshold, threshold) for name, g in grads.items()}


STRATEGIES = {"none": None, "clip_value": clip_value, "clip_norm": clip_norm}
"""The per-run strategies of the peer (a function of one run's gradients, their norm and its threshold)."""


class Optimizer(Protocol):
    """An optimizer of the peer over the stacked parameters (each a tensor with a leading run dimension)."""

    def deltas(self, params: Tensors, grads: Tensors) -> Tensors:
        """Each parameter's change this step (its state advanced): the step is ``p <- p + delta``."""
        ...


class Sgd:
    """``torch.optim.SGD`` (dampening 0): ``b <- mu b + g``, the change ``-lr b`` (``-lr (g + mu b)``
    with Nesterov, ``-lr g`` without momentum); weight decay coupled (``g <- g + wd p``)."""

    def __init__(self, params: Tensors, neg_lr: Tensors, *, momentum: float, nesterov: bool,
                 weight_decay: float) -> None:
        self.neg_lr, self.momentum, self.nesterov, self.weight_decay = neg_lr, momentum, nesterov, weight_decay
        self.momentum_buffers = [torch.zeros_like(p) for p in params]

    def deltas(self, params: Tensors, grads: Tensors) -> Tensors:
        """Each parameter's change ``-lr d`` this step, the momentum buffers advanced."""
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        directions = grads
        if self.momentum:
            torch._foreach_mul_(self.momentum_buffers, self.momentum)
            torch._foreach_add_(self.momentum_buffers, grads)
            directions = (torch._foreach_add(grads, self.momentum_buffers, alpha=self.momentum) if self.nesterov
                          else self.momentum_buffers)
        return torch._foreach_mul(directions, self.neg_lr)


class Adam:
    """``torch.optim.Adam``: ``m <- lerp(m, g, 1 - b1)``, ``v <- b2 v + (1 - b2) g^2``, the change
    ``-lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; weight decay coupled (``g <- g + wd p``)."""

    decoupled = False
    """Whether weight decay acts on the parameters (AdamW) instead of the gradients."""

    def __init__(self, params: Tensors, neg_lr: Tensors, *, beta1: float, beta2: float, eps: float,
                 weight_decay: float) -> None:
        self.neg_lr, self.beta1, self.beta2, self.eps, self.weight_decay = neg_lr, beta1, beta2, eps, weight_decay
        self.neg_decay = torch._foreach_mul(neg_lr, weight_decay)  # -lr wd of each run
        self.exp_avgs = [torch.zeros_like(p) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
        self.steps = 0  # every run steps together: one count, as torch.optim keeps for one run

    def deltas(self, params: Tensors, grads: Tensors) -> Tensors:
        """Each parameter's change this step, the moments advanced (foreach Adam's order of operations)."""
        self.steps += 1
        if self.weight_decay and not self.decoupled:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avgs, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sqs, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sqs, grads, grads, 1 - self.beta2)
        bias_correction1 = 1 - self.beta1**self.steps
        bias_correction2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        denominators = torch._foreach_sqrt(self.exp_avg_sqs)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, self.eps)
        deltas = torch._foreach_div(self.exp_avgs, denominators)
        torch._foreach_mul_(deltas, torch._foreach_div(self.neg_lr, bias_correction1))  # the step size -lr / bc1
        if self.weight_decay and self.decoupled:
            torch._foreach_addcmul_(deltas, params, self.neg_decay)
        return deltas


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with weight decay decoupled, ``p <- p - lr wd p`` besides Adam's change."""

    decoupled = True


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {"sgd": Sgd, "adam": Adam, "adamw": AdamW}
"""The peer's optimizers by registered kind, each built from the stacked parameters, each run's ``-lr``
(viewed against each parameter) and the registered optimizer's options."""


def refused(cell: Cell) -> list[str]:
    """What ``cell`` asks for that the peer does not train, in words (empty: the peer trains it)."""
    asks = {"more than one member": len(cell.members) != 1,
            f"a member other than {', '.join(STRATEGIES)}": any(m not in STRATEGIES for m in cell.members),
            f"an optimizer other than {', '.join(OPTIMIZERS)}": cell.optimizer["kind"] not in OPTIMIZERS,
            "a schedule": sweep.setting("optimizers", cell.optimizer, "schedule") != "constant",
            "warm-up or bad batches": any(r.dials.get("warmup_steps", 0) or r.dials.get("spike_rate", 0)
                                          for r in cell.runs)}
    return [what for what, asked in asks.items() if asked]


def batched_kernels(spec: models.Model, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """The context the vmapped step runs in: on a CPU, the kernels vmap has no batching rule for (the LSTM's
    oneDNN kernel, SDPA's flash kernel) swapped for the decompositions it batches; else nothing."""
    if device.type != "cpu":
        return contextlib.nullcontext
    if getattr(spec, "cell", None) == "lstm":
        return functools.partial(torch.backends.mkldnn.flags, enabled=False, deterministic=None, allow_tf32=None,
                                 fp32_precision=None)
    if spec.family == "transformer":
        return functools.partial(sdpa_kernel, SDPBackend.MATH)
    return contextlib.nullcontext


class VmapEnsemble:
    """The K runs of ``cell`` trained as one torch.func ensemble; ``step(t)`` trains step ``t``."""

    def __init__(self, cell: Cell) -> None:
        if refusals := refused(cell):
            raise ValueError(f"the vmap peer does not train {', '.join(refusals)}")
        (member,) = cell.members
        torch.set_num_threads(cell.threads)
        self.device = device = engine.resolve_device(cell.device)
        dtype = engine.DTYPES[cell.dtype]
        task = engine.load_task(cell)
        spec = engine.build_model(cell, task)
        initial = engine.initial_parameters(spec, cell)
        nets = []
        for k in range(len(cell.runs)):
            nets.append(reference.module(spec).to(device=device, dtype=dtype))
            reference.load_parameters(nets[-1], [p[k] for p in initial])
        stacked, self.buffers = stack_module_state(nets)
        self.params = {name: p.detach() for name, p in stacked.items()}
        self.base = copy.deepcopy(nets[0]).to("meta")
        form = models.input_form(cell.model["family"])
        self.x = engine.in_precision(task.inputs("train", form), device, dtype)
        self.y = engine.in_precision(task.targets("train"), device, dtype)
        self.batches = torch.stack([tasks.batch_indices(r.seed, len(self.x), cell.batch_size, range(cell.steps))
                                    for r in cell.runs], dim=1).to(device)  # (steps, K, B)
        neg_lr = torch.tensor([-r.lr for r in cell.runs], dtype=dtype, device=device)
        options = {**sweep.registered("optimizers", cell.optimizer).options,
                   **sweep.factory_options("optimizers", cell.optimizer)}
        self.optimizer = OPTIMIZERS[cell.optimizer["kind"]](
            list(self.params.values()), [neg_lr.view(-1, *[1] * (p.dim() - 1)) for p in self.params.values()],
            **options)
        default = strategies.lookup(member).options.get(member, 0.0)
        self.threshold = torch.tensor([float(r.hyperparameters.get(member, default)) for r in cell.runs],
                                      dtype=dtype, device=device)
        self.regression = task.objective == "regression"
        self.strategy = STRATEGIES[member]
        self.gradient_stage = vmap(self.run_gradients)
        self.context = batched_kernels(spec, device)
        self.logs = {name: torch.full((cell.steps, len(cell.runs)), float("nan"), dtype=dtype, device=device)
                     for name in ("train_loss", "grad_norm_pre", "grad_norm_post", "update_ratio")}

    def loss(self, params: Grads, buffers: Grads, xb: Tensor, yb: Tensor) -> Tensor:
        """One run's mean loss on its batch: cross-entropy (over every step of a sequence) or squared error.

        cuDNN is off for the call: its recurrent kernels need the weights in one flat buffer of their
        own, which the batched tensors of ``vmap`` have no storage for (the RNN's forward raises on a GPU).
        """
        with torch.backends.cudnn.flags(enabled=False):
            out = functional_call(self.base, (params, buffers), (xb,))
        if self.regression:
            return (out.squeeze(-1) - yb).square().mean()
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1))

    def run_gradients(self, params: Grads, buffers: Grads, xb: Tensor, yb: Tensor,
                      threshold: Tensor) -> tuple[Tensor, Grads, Tensor, Tensor]:
        """One run's loss, gradients after the strategy, and gradient norm before and after it."""
        grads, loss = grad_and_value(self.loss)(params, buffers, xb, yb)
        norm = total_norm(grads)
        if self.strategy is None:
            return loss, grads, norm, norm
        grads = self.strategy(grads, norm, threshold)
        return loss, grads, norm, total_norm(grads)

    def step(self, t: int) -> None:
        """Train every run one step on its batch of step ``t``, and log the step."""
        index = self.batches[t]
        with self.context():
            loss, grads, norm_pre, norm_post = self.gradient_stage(self.params, self.buffers, self.x[index],
                                                                   self.y[index], self.threshold)
        params = list(self.params.values())
        deltas = self.optimizer.deltas(params, list(grads.values()))
        ratio = vmap(total_norm)(dict(zip(self.params, deltas, strict=True))) / vmap(total_norm)(self.params)
        torch._foreach_add_(params, deltas)
        for name, value in (("train_loss", loss), ("grad_norm_pre", norm_pre), ("grad_norm_post", norm_post),
                            ("update_ratio", ratio)):
            self.logs[name][t] = value
