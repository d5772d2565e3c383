"""The peer: K runs of a cell as a ``torch.func`` model ensemble, PyTorch's own recipe.

What a researcher who wants many small trainings at once writes after PyTorch's
"Model ensembling" tutorial: the cell's ``torch.nn`` network built once per run
(``bench.reference.module``) from that run's initial parameters, stacked with
``torch.func.stack_module_state``, and one ``vmap`` over
``grad_and_value(functional_call loss)``. Each run sees its own batches (its
seed's ``tasks.batch_indices``). The per-run gradient stage is vmapped as
well: the global gradient norm (as ``torch.nn.utils.clip_grad_norm_``: the norm
of the tensors' norms) and the strategy, ``none``, ``clip_value`` or
``clip_norm`` (``coef = min(1, c / (norm + 1e-6))``). SGD with momentum,
Nesterov and coupled weight decay is ``torch.optim.SGD``'s arithmetic
(dampening 0) in multi-tensor ``torch._foreach_*`` ops over the stacked
parameters, each run with its own learning rate. Every step logs what the
engine logs: each run's loss, its gradient norm before and after the strategy
and its update ratio ``||delta p|| / ||p||``. It trains in the cell's precision
(``dtype``), as the engine does.

Recurrent cells: ``functional_call`` runs ``torch.nn.RNN``/``GRU``/``LSTM`` under
``vmap`` (torch decomposes their kernels into batched per-step ops). On a CPU
the LSTM's oneDNN kernel has no batching rule, and vmap would fall back to a
loop over the runs with a warning; the step turns oneDNN off around the LSTM's
gradient, so it too takes the batched decomposition.

Not done, as a plain ensemble would not: divergence freezing, learning-rate
schedules and the bad-batch dial (a cell that sets them is refused), so the
peer's step does a little less than the engine's.
"""

from __future__ import annotations

import contextlib
import copy
import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from bench import engine, models, reference, strategies, sweep, tasks
from bench.sweep import Cell

Grads = dict[str, Tensor]


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


STRATEGIES = {"none": None, "clip_norm": clip_norm, "clip_value": clip_value}
"""The per-run strategies of the peer (a function of one run's gradients, their norm and its threshold)."""


class VmapEnsemble:
    """The K runs of ``cell`` trained as one torch.func ensemble; ``step(t)`` trains step ``t``."""

    def __init__(self, cell: Cell) -> None:
        (member,) = cell.members
        options = sweep.factory_options("optimizers", cell.optimizer)
        refused = {"a member other than none, clip_value, clip_norm": member not in STRATEGIES,
                   "an optimizer other than sgd": cell.optimizer["kind"] != "sgd",
                   "a schedule": sweep.setting("optimizers", cell.optimizer, "schedule") != "constant",
                   "warm-up or bad batches": any(r.dials.get("warmup_steps", 0) or r.dials.get("spike_rate", 0)
                                                 for r in cell.runs)}
        if any(refused.values()):
            raise ValueError(f"the vmap peer does not train {', '.join(k for k, v in refused.items() if v)}")
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
        self.momentum_buffers = [torch.zeros_like(p) for p in self.params.values()]
        self.base = copy.deepcopy(nets[0]).to("meta")
        form = models.input_form(cell.model["family"])
        self.x = engine.in_precision(task.inputs("train", form), device, dtype)
        self.y = engine.in_precision(task.targets("train"), device, dtype)
        self.batches = torch.stack([tasks.batch_indices(r.seed, len(self.x), cell.batch_size, range(cell.steps))
                                    for r in cell.runs], dim=1).to(device)  # (steps, K, B)
        neg_lr = torch.tensor([-r.lr for r in cell.runs], dtype=dtype, device=device)
        self.neg_lr = [neg_lr.view(-1, *[1] * (p.dim() - 1)) for p in self.params.values()]
        default = strategies.lookup(member).options.get(member, 0.0)
        self.threshold = torch.tensor([float(r.hyperparameters.get(member, default)) for r in cell.runs],
                                      dtype=dtype, device=device)
        self.momentum, self.nesterov = options.get("momentum", 0.0), options.get("nesterov", False)
        self.weight_decay = options.get("weight_decay", 0.0)
        self.regression = task.objective == "regression"
        self.strategy = STRATEGIES[member]
        self.gradient_stage = vmap(self.run_gradients)
        lstm = device.type == "cpu" and getattr(spec, "cell", None) == "lstm"
        self.context = contextlib.nullcontext if not lstm else functools.partial(
            torch.backends.mkldnn.flags, enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None)
        self.logs = {name: torch.full((cell.steps, len(cell.runs)), float("nan"), dtype=dtype, device=device)
                     for name in ("train_loss", "grad_norm_pre", "grad_norm_post", "update_ratio")}

    def loss(self, params: Grads, buffers: Grads, xb: Tensor, yb: Tensor) -> Tensor:
        """One run's mean loss on its batch: cross-entropy (over every step of a sequence) or squared error."""
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
        params, g = list(self.params.values()), list(grads.values())
        if self.weight_decay:
            g = torch._foreach_add(g, params, alpha=self.weight_decay)
        directions = g
        if self.momentum:
            torch._foreach_mul_(self.momentum_buffers, self.momentum)
            torch._foreach_add_(self.momentum_buffers, g)
            directions = (torch._foreach_add(g, self.momentum_buffers, alpha=self.momentum) if self.nesterov
                          else self.momentum_buffers)
        deltas = torch._foreach_mul(directions, self.neg_lr)
        ratio = vmap(total_norm)(dict(zip(self.params, deltas, strict=True))) / vmap(total_norm)(self.params)
        torch._foreach_add_(params, deltas)
        for name, value in (("train_loss", loss), ("grad_norm_pre", norm_pre), ("grad_norm_post", norm_post),
                            ("update_ratio", ratio)):
            self.logs[name][t] = value
