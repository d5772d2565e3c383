"""The lockstep training loop: K runs of one cell trained as one.

Each step, for all K runs at once: gather each run's batch, forward, one
backward pass of the summed per-run losses (runs share no parameter, so each
run's gradient is its own), the gradient-stage strategies, the optimizer, the
update-stage strategies and the weight constraints; then each run's new state
is kept only where the run is alive and not skipping this step.

Strategies that act elsewhere than on the update (bench.transform) act in the
same step: a ``model``-stage member's model options are the model's own
(:func:`build_model`), a ``loss``-stage member's term is added to each run's
loss before the backward pass (the logged ``train_loss`` and the divergence
test stay the task's loss). A model with probes (``Model.probe_names``, e.g.
the largest attention logit) has them logged every step beside the step
metrics, from the training step's own forward pass; a cell without such
members or probes takes exactly the steps it took before they existed.

A cell trains in one floating-point precision, its config's ``dtype``
(:data:`DTYPES`): the data's float tensors, the parameters, the learning
rates, the strategies' hyperparameters, every optimizer and strategy state and
the logged metrics are all of it. A float64 cell starts from the initial
weights of its float32 twin, each cast exactly to float64 (the weights are
drawn in float32 as always), and sees the same data and batches: only the
arithmetic differs.

Divergence is data: a run whose loss is non-finite or exceeds
``divergence_factor`` x its initial loss is marked diverged at that step and
frozen; the others go on. On a CPU the batch then narrows to the runs still
alive (bench.shrink): a frozen run costs no more forward and backward passes,
and the history holds all K runs as before (a diverged run's step metrics end
at its divergence step, NaN after, whether it was stepped on or not). Metrics
stay on the device during training and are read back once at the end, so a
CUDA step never waits on the host.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from bench import allocator, checkpoint, graph, models, optim, schedules, shrink, strategies, sweep, tasks
from bench.columns import EVAL_METRICS, PROBE_PATTERN, STEP_METRICS, is_probe
from bench.flat import Layout, Packed, run_norm
from bench.sweep import Cell, ConfigError
from bench.transform import Report, State, Transform, known_empty, select

SPLITS = ("train", "val", "test")
EVAL_CHUNK = 512  # examples evaluated at a time
PLAN_BLOCK = 100  # steps of batch indices drawn at a time
DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The precisions a cell trains in, by the names of the config key ``dtype`` (config/schema.yaml)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device': cuda is not available on this machine; allowed: auto, cpu")
    return torch.device(name)


def per_run_values(values: list[float], device: torch.device, dtype: torch.dtype) -> float | Tensor:
    """A hyperparameter for K runs: a float when all runs share it, else a (K,) tensor of ``dtype``."""
    if len(set(values)) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=dtype, device=device)


def in_precision(data: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``data`` on ``device``, in ``dtype`` if it holds floats (labels and indices keep their integer type)."""
    return data.to(device=device, dtype=dtype if data.is_floating_point() else data.dtype)


@dataclass
class BuiltCell:
    """A cell made ready to train, built once: its data on the device, model, optimizer and strategies."""

    cell: Cell
    task: tasks.Task
    model: models.Model
    device: torch.device
    dtype: torch.dtype
    inputs: dict[str, Tensor]
    targets: dict[str, Tensor]
    initial_params: list[Tensor]
    layout: Layout
    lr: Tensor
    warmup_steps: Tensor
    schedule: str
    spike_rate: Tensor
    spike_scale: float
    optimizer: Transform
    chain: list[Transform]
    hyperparameters: dict[str, float | Tensor]
    """The runs' strategy hyperparameters the chain is built with (:func:`run_hyperparameters`)."""

    def lr_at(self, step: int) -> Tensor:
        """Each run's learning rate at ``step``, (K, 1): its base rate times its schedule's factor."""
        if self.schedule == "constant" and known_empty(self.warmup_steps > step):
            return self.lr
        return self.lr * schedules.factors(self.schedule, step, self.warmup_steps, self.cell.steps)

    @property
    def probes(self) -> tuple[str, ...]:
        """The names of the model's probes, logged every step beside the step metrics."""
        return self.model.probe_names()

    @property
    def loss_terms(self) -> list[Callable[[Tensor, Tensor], Tensor]]:
        """The loss terms of the chain's ``loss``-stage members, in chain order (bench.transform)."""
        return [t.loss_term for t in self.chain if t.loss_term is not None]

    @property
    def skips_nonfinite(self) -> bool:
        """Whether a member of the chain skips non-finite steps: then a non-finite loss skips the
        step (its gradient made non-finite for the member to see) instead of ending the run."""
        return any(t.skips_nonfinite for t in self.chain)


def load_task(cell: Cell, data_cache: str | Path | None = None) -> tasks.Task:
    """The cell's task: made, or reused from the data cache in ``data_cache`` (default
    :func:`bench.tasks.cache_dir`)."""
    return tasks.load(cell.task["kind"], sweep.factory_options("tasks", cell.task), data_cache)


def run_hyperparameters(cell: Cell, device: torch.device, dtype: torch.dtype) -> dict[str, float | Tensor]:
    """The strategy hyperparameters the cell's runs set, each for all K runs (:func:`per_run_values`)."""
    return {key: per_run_values([run.hyperparameters[key] for run in cell.runs], device, dtype)
            for key in cell.runs[0].hyperparameters}


def strategy_model_options(cell: Cell) -> dict[str, Any]:
    """The model options the cell's ``model``-stage strategies set (bench.transform), each shared by its runs or a
    (K,) tensor on the cell's device and in its precision, from the runs' hyperparameters; empty where no member
    sets any. A ConfigError where they cannot be set (:func:`bench.sweep.model_options_conflict`)."""
    setting = [m for m in cell.members if strategies.lookup(m).meta["sets_model_options"]]
    if not setting:
        return {}
    conflict = sweep.model_options_conflict(cell.model_name, cell.model, cell.strategy_name, cell.members)
    if conflict:
        raise ConfigError(conflict)
    hyperparameters = run_hyperparameters(cell, resolve_device(cell.device), DTYPES[cell.dtype])
    owned = {key: value for key, value in hyperparameters.items()
             if strategies.REGISTRY.owner(key, setting) is not None}
    options: dict[str, Any] = {}
    for member in strategies.build(setting, owned):
        declared = strategies.lookup(member.name).meta["sets_model_options"]
        if set(member.model_options) != set(declared):
            raise ValueError(f"strategy {member.name!r} sets the model options {sorted(member.model_options)}, "
                             f"its registration says {sorted(declared)}")
        options.update(member.model_options)
    return options


def build_model(cell: Cell, task: tasks.Task) -> models.Model:
    """The cell's model, shaped for the cell's task, with the model options its strategies set
    (:func:`strategy_model_options`)."""
    cell = dataclasses.replace(cell, model={**cell.model, **strategy_model_options(cell)})  # as its entry's options
    family = cell.model["family"]
    in_shape = task.input_shape(models.input_form(family))
    return models.build(family, in_shape, task.n_outputs, per_step=task.per_step,
                        **sweep.factory_options("models", cell.model))


def initial_parameters(model: models.Model, cell: Cell) -> list[Tensor]:
    """The K runs' initial parameters, each from its own seed and stress dials, in the cell's precision: drawn
    in float32 whatever the precision, then cast (exactly), so that a float64 run starts where its float32
    twin does."""
    params = model.init([run.seed for run in cell.runs], [run.dials for run in cell.runs])
    return [p.to(DTYPES[cell.dtype]) for p in params]


def build(cell: Cell, data_cache: str | Path | None = None) -> BuiltCell:
    """Load the task (from the data cache in ``data_cache``, see :func:`load_task`), build the model,
    the optimizer and the strategy chain; set torch's threads and keep freed host memory for reuse
    (see bench.allocator)."""
    torch.set_num_threads(cell.threads)
    allocator.keep_freed_memory()
    device, dtype = resolve_device(cell.device), DTYPES[cell.dtype]
    task = load_task(cell, data_cache)
    model = build_model(cell, task)
    unnamed = [name for name in model.probe_names() if not is_probe(name)]
    if unnamed:
        raise ValueError(f"model family {cell.model['family']!r} names a probe {unnamed[0]!r} that is no probe "
                         f"column of bench.columns; allowed: names matching {PROBE_PATTERN}")
    form = models.input_form(cell.model["family"])
    inputs = {split: in_precision(task.inputs(split, form), device, dtype) for split in SPLITS}
    targets = {split: in_precision(task.targets(split), device, dtype) for split in SPLITS}
    hyperparameters = run_hyperparameters(cell, device, dtype)
    initial = [p.to(device) for p in initial_parameters(model, cell)]
    return BuiltCell(
        cell=cell, task=task, model=model, device=device, dtype=dtype, inputs=inputs, targets=targets,
        initial_params=initial, layout=Layout.of(initial),
        lr=torch.tensor([[run.lr] for run in cell.runs], dtype=dtype, device=device),
        warmup_steps=torch.tensor([[float(run.dials["warmup_steps"])] for run in cell.runs], dtype=dtype,
                                  device=device),
        schedule=sweep.setting("optimizers", cell.optimizer, "schedule"),
        spike_rate=torch.tensor([float(run.dials["spike_rate"]) for run in cell.runs], device=device),
        spike_scale=float(sweep.setting("tasks", cell.task, "spike_scale")),
        optimizer=optim.make(cell.optimizer["kind"], **sweep.factory_options("optimizers", cell.optimizer)),
        chain=strategies.build(cell.members, hyperparameters),
        hyperparameters=hyperparameters,
    )


@dataclass
class History:
    """What a cell's training produced, as NumPy arrays on the host.

    ``step_metrics`` (the step metrics, then the model's probes) are (steps, K), NaN after a run's
    divergence step; ``eval_metrics`` are (len(eval_steps), K).
    ``diverged_step`` is -1 for runs that never diverged.
    """

    step_metrics: dict[str, np.ndarray]
    eval_steps: list[int]
    eval_metrics: dict[str, np.ndarray]
    diverged_step: np.ndarray
    final_params: list[Tensor]
    wall_time_s: float
    resumed_from: int = 0


@dataclass
class LoopState:
    """Everything that changes during training: what a checkpoint holds.

    ``step`` is the next step to train; ``params`` is the (K, P) flat buffer
    of all runs' parameters (see bench.flat); ``logs`` (the step metrics, then the
    model's probes) are (steps, K) and ``evals``
    (len(eval_steps), K) device tensors, NaN where not yet written;
    ``initial_loss`` is NaN until step 0 has run.
    """

    step: int
    params: Tensor
    opt_state: dict[str, Any]
    chain_states: list[dict[str, Any]]
    alive: Tensor
    diverged_step: Tensor
    initial_loss: Tensor
    logs: dict[str, Tensor]
    evals: dict[str, Tensor]
    elapsed_s: float


def fresh_state(built: BuiltCell) -> LoopState:
    """The state before step 0; its losses and logs in the cell's precision."""
    cell, device, runs, dtype = built.cell, built.device, len(built.cell.runs), built.dtype
    params = built.layout.join(built.initial_params)
    return LoopState(
        step=0, params=params, opt_state=built.optimizer.init([params]),
        chain_states=[t.init([params] if t.layout_free else built.layout.split(params)) for t in built.chain],
        alive=torch.ones(runs, dtype=torch.bool, device=device),
        diverged_step=torch.full((runs,), -1, dtype=torch.long, device=device),
        initial_loss=torch.full((runs,), float("nan"), dtype=dtype, device=device),
        logs={name: torch.full((cell.steps, runs), float("nan"), dtype=dtype, device=device)
              for name in (*STEP_METRICS, *built.probes)},
        evals={name: torch.full((len(eval_steps(cell)), runs), float("nan"), dtype=dtype, device=device)
               for name in EVAL_METRICS},
        elapsed_s=0.0,
    )


def eval_steps(cell: Cell) -> list[int]:
    """Steps at which validation and test metrics are computed: every ``eval_every`` and the last."""
    return sorted({*range(0, cell.steps, cell.eval_every), cell.steps})


def evaluate(built: BuiltCell, params: list[Tensor], split: str) -> tuple[Tensor, Tensor]:
    """Mean loss and metric of each run on a whole split, (K,) each."""
    x, y = built.inputs[split], built.targets[split]
    runs = params[0].shape[0]
    losses, metrics = [], []
    with torch.no_grad():
        for start in range(0, len(x), EVAL_CHUNK):
            xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            outputs = built.model.forward(params, xb.expand(runs, *xb.shape))
            loss, metric = built.task.loss_and_metric(outputs, yb.expand(runs, *yb.shape))
            losses.append(loss * len(xb))
            metrics.append(metric * len(xb))
    return torch.stack(losses).sum(0) / len(x), torch.stack(metrics).sum(0) / len(x)


def record_evaluation(built: BuiltCell, state: LoopState, row: int) -> None:
    """Validation and test loss and metric of every run still alive (or diverging now)."""
    recorded = state.alive | (state.diverged_step == state.step)
    for split in ("val", "test"):
        loss, metric = evaluate(built, built.layout.split(state.params), split)
        state.evals[f"{split}_loss"][row] = torch.where(recorded, loss, float("nan"))
        state.evals[f"{split}_metric"][row] = torch.where(recorded, metric, float("nan"))


def forward_backward(built: BuiltCell, params: Tensor, xb: Tensor,
                     yb: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Each run's loss on its batch (inputs ``xb`` (K, B, ...), targets ``yb``), (K,), its gradient as a
    (K, P) buffer, and the model's probes on the batch by name, each (K,) (none for a model without
    probes): one backward pass of the summed objectives, each run's loss plus the chain's loss terms
    (runs share no parameter, so each run's gradient is its own)."""
    leaf = params.detach().requires_grad_(True)
    weights = built.layout.split(leaf)
    if built.probes:
        outputs, probes = built.model.forward_probed(weights, xb)
    else:
        outputs, probes = built.model.forward(weights, xb), {}
    loss = built.task.loss(outputs, yb)
    objective = loss
    for term in built.loss_terms:
        objective = objective + term(outputs, yb)
    (flat_grads,) = torch.autograd.grad(objective.sum(), leaf)
    return loss.detach(), flat_grads, {name: value.detach() for name, value in probes.items()}


def run_transform(transform: Transform, inputs: Packed, state: State, params: Packed,
                  context: dict[str, Any]) -> tuple[Packed, State, Report]:
    """Apply one transform, on the flat buffer when it is layout-free, else on the tensors, with the
    ``context`` entries it asks for (``extra_args``): its outputs, new state and report (bench.transform)."""
    extra = {name: context[name] for name in transform.extra_args}
    if transform.layout_free:
        (flat,), new_state, report = transform.update([inputs.flat], state, [params.flat], **extra)
        return Packed(inputs.layout, flat=flat), new_state, report
    parts, new_state, report = transform.update(inputs.parts, state, params.parts, **extra)
    return Packed(inputs.layout, parts=parts), new_state, report


def any_of(masks: list[Tensor], like: Tensor) -> Tensor:
    """Per run, whether any of the (K,) ``masks`` is true; all false (shaped as ``like``) for none."""
    return torch.stack(masks).any(dim=0) if masks else torch.zeros_like(like, dtype=torch.bool)


def reported(reports: list[Report], field: str) -> list[Tensor]:
    """The (K,) masks ``field`` (``active``, ``skip`` or ``fail``) of the reports that say something of it."""
    return [mask for report in reports if (mask := getattr(report, field)) is not None]


def keep_where(mask: Tensor, new: Any, old: Any) -> Any:
    """Per run, ``new`` where ``mask`` else ``old`` (see transform.select).

    On a CPU, where reading the mask costs no device synchronisation, the
    common case of every run keeping its new state skips the selection.
    """
    if known_empty(~mask):
        return new
    return select(mask, new, old)


def apply_stage(built: BuiltCell, stage: str, flat: Tensor, params: Packed, states: list[State], keep: Tensor,
                context: dict[str, Any]) -> tuple[Packed, list[Report]]:
    """Apply the chain's members of ``stage`` to the (K, P) buffer ``flat``, in chain order: the outputs
    and the members' reports. Each member's new state replaces its entry of ``states`` (the chain's, in
    chain order) where ``keep`` holds and no earlier member of the stage skips the step."""
    inputs = Packed(built.layout, flat=flat)
    reports: list[Report] = []
    for i, transform in enumerate(built.chain):
        if transform.stage == stage:
            skipped = reported(reports, "skip")
            kept = keep & ~any_of(skipped, keep) if skipped else keep
            inputs, new_state, report = run_transform(transform, inputs, states[i], params, context)
            states[i] = keep_where(kept, new_state, states[i])
            reports.append(report)
    return inputs, reports


def write_row(log: Tensor, t: int | Tensor, values: Tensor) -> None:
    """``log[t] = values``, also for a step ``t`` held on the device (a long scalar: see bench.graph)."""
    if isinstance(t, Tensor):
        log.index_copy_(0, t.view(1), values.unsqueeze(0))
    else:
        log[t] = values


def gather_batch(built: BuiltCell, batch: Tensor, spike: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Each run's training batch: the inputs (K, B, ...) and targets of the examples ``batch`` (K, B).
    ``spike`` (K, 2): the factor on the inputs of one example of each run's batch and its slot (the
    bad-batch dial, see :func:`spike_plan`; None: no run's batch is corrupted)."""
    xb, yb = built.inputs["train"][batch], built.targets["train"][batch]
    if spike is not None:  # a bad batch: one example's inputs scaled
        runs = torch.arange(len(batch), device=batch.device)
        slots = spike[:, 1].long()
        xb[runs, slots] = xb[runs, slots] * spike[:, 0].view(-1, *[1] * (xb.dim() - 2))
    return xb, yb


def step(built: BuiltCell, state: LoopState, xb: Tensor, yb: Tensor, clock: Tensor | None = None) -> None:
    """One lockstep step of all K runs on their batches (inputs ``xb`` (K, B, ...), targets ``yb``: see
    :func:`gather_batch`), in place on ``state``; ``clock``: the step's number as a long scalar on the
    device, read instead of ``state.step`` (the CUDA-graph step, bench.graph)."""
    t = state.step if clock is None else clock
    logs = state.logs
    params = Packed(built.layout, flat=state.params)
    chain_states = list(state.chain_states)  # each member's new state, where it keeps it (apply_stage)
    lr = built.lr_at(t)
    context = {"optimizer_state": state.opt_state, "lr": lr, "step": t}  # what a strategy may read

    # forward/backward: each run's loss on its own batch, its own gradient, and the model's probes
    loss, flat_grads, probes = forward_backward(built, state.params, xb, yb)

    # divergence: a non-finite loss, or one above divergence_factor x the initial (first finite) loss,
    # freezes the run; with a skip strategy a non-finite loss skips the step instead
    state.initial_loss = torch.where(torch.isnan(state.initial_loss), loss, state.initial_loss)
    finite = torch.isfinite(loss)
    blown = loss > built.cell.divergence_factor * state.initial_loss
    if not built.skips_nonfinite:
        blown |= ~finite
    elif not known_empty(~finite):
        flat_grads = torch.where(finite[:, None], flat_grads, float("nan"))
    newly = state.alive & blown
    state.diverged_step = torch.where(newly, t, state.diverged_step)
    alive = state.alive & ~blown

    # gradient strategies: may skip a run's step, end a run as diverged (e.g. too many consecutive
    # skips), or replace the optimizer's state for this step (e.g. a momentum reset)
    grads, gradient_reports = apply_stage(built, "gradient", flat_grads, params, chain_states, alive, context)
    skip = any_of(reported(gradient_reports, "skip"), alive)
    failed = alive & any_of(reported(gradient_reports, "fail"), alive)
    state.diverged_step = torch.where(failed, t, state.diverged_step)
    newly, alive = newly | failed, alive & ~failed
    keep = alive & ~skip  # the runs that take this step

    # optimizer: gradients -> directions (the step is -lr x direction)
    replaced = [report.optimizer_state for report in gradient_reports if report.optimizer_state is not None]
    opt_state = replaced[-1] if replaced else state.opt_state
    (flat_directions,), new_opt_state, _ = built.optimizer.update([grads.flat], opt_state, [params.flat])

    # update strategies: on the optimizer's direction, before the learning rate (Adafactor's update clipping)
    directions, update_reports = apply_stage(built, "update", flat_directions, params, chain_states, keep, context)

    # learning rate: each run's own, on its schedule; p - lr d in one pass over the buffers
    updated = torch.addcmul(params.flat, directions.flat, lr, value=-1.0)

    # weight constraints: project the new parameters
    new_params, weight_reports = apply_stage(built, "weights", updated, params, chain_states, keep, context)

    # logs (the loss and the probes NaN after a run diverged); update_ratio = ||new - old|| / ||old||
    reports = gradient_reports + update_reports + weight_reports
    # without weight constraints the change is lr d, whose norm is lr ||d|| (lr >= 0)
    change_norm = (lr.view(-1) * run_norm(directions.flat) if new_params.flat is updated
                   else run_norm(new_params.flat - params.flat))
    norm_pre = run_norm(flat_grads)
    recorded = alive | newly
    write_row(logs["train_loss"], t, torch.where(recorded, loss, float("nan")))
    for name in built.probes:
        write_row(logs[name], t, torch.where(recorded, probes[name], float("nan")))
    write_row(logs["grad_norm_pre"], t, norm_pre)
    write_row(logs["grad_norm_post"], t, norm_pre if grads.flat is flat_grads else run_norm(grads.flat))
    write_row(logs["update_ratio"], t, torch.where(keep, change_norm / run_norm(params.flat), 0.0))
    write_row(logs["clipped"], t, any_of(reported(reports, "active") + reported(reports, "skip"), alive).to(loss.dtype))

    # keep: each run's new state where it is alive and takes the step (the strategies' by apply_stage)
    state.alive = alive
    state.params = keep_where(keep, new_params.flat, params.flat)
    state.opt_state = keep_where(keep, new_opt_state, state.opt_state)
    state.chain_states = chain_states
    if clock is None:  # the device clock is advanced by bench.graph
        state.step = t + 1


def train_step(built: BuiltCell, state: LoopState, batch: Tensor, spike: Tensor | None = None,
               clock: Tensor | None = None) -> None:
    """Train one step on the examples ``batch`` (K, B) with the bad-batch factors ``spike`` (K, 2) or None:
    :func:`gather_batch`, then :func:`step` (``clock`` as there). What the training loop runs, eagerly
    or as a CUDA graph (bench.graph)."""
    xb, yb = gather_batch(built, batch, spike)
    step(built, state, xb, yb, clock)


def per_seed(built: BuiltCell, draw: Callable[[int], Tensor]) -> Tensor:
    """``draw(seed)`` (steps, ...) for every run, as (steps, K, ...) on the device: each distinct seed's
    draw is made once and shared by the runs that have it."""
    seeds = sorted({r.seed for r in built.cell.runs})
    drawn = torch.stack([draw(seed) for seed in seeds], dim=1)
    return drawn[:, [seeds.index(r.seed) for r in built.cell.runs]].to(built.device)


def batch_plan(built: BuiltCell, steps: range) -> Tensor:
    """Every run's training-example indices for ``steps``, (len(steps), K, B), on the device.
    A run's batches depend on its seed only."""
    n_train, batch_size = len(built.inputs["train"]), built.cell.batch_size
    return per_seed(built, lambda seed: tasks.batch_indices(seed, n_train, batch_size, steps))


def spike_plan(built: BuiltCell, steps: range) -> Tensor | None:
    """Every run's bad-batch factor and example slot for ``steps``, (len(steps), K, 2), or None when no
    run of the cell has a ``spike_rate`` above 0. A run's draws depend on its seed only
    (bench.tasks.spike_draws); its factor is ``spike_scale`` where the draw falls below its rate, else 1."""
    if not any(run.dials["spike_rate"] > 0 for run in built.cell.runs):
        return None
    def draw(seed: int) -> Tensor:  # (steps, 2): the uniform draw and the example slot
        u, slots = tasks.spike_draws(seed, built.cell.batch_size, steps)
        return torch.stack([u, slots.float()], dim=1)

    draws = per_seed(built, draw)
    factor = torch.where(draws[..., 0] < built.spike_rate, built.spike_scale, 1.0)
    return torch.stack([factor, draws[..., 1]], dim=2)


def train(built: BuiltCell, progress: bool = True, checkpoint_path: Path | None = None,
          checkpoint_every: int = 0, narrows: bool = True) -> History:
    """Train all runs of a built cell in lockstep and return their history.

    With ``checkpoint_path`` and ``checkpoint_every`` > 0, the full state is saved
    every ``checkpoint_every`` steps, and a matching checkpoint found at the
    start is resumed: a killed job loses at most that many steps, and the
    resumed run computes exactly what an uninterrupted one would. With
    ``narrows`` (the default), the batch narrows to the runs still alive on a
    CPU (bench.shrink); the results are the same either way.
    """
    cell, device = built.cell, built.device
    saved = checkpoint.load(checkpoint_path, cell, device) if checkpoint_path else None
    batch = shrink.Batch(built, LoopState(**saved) if saved else fresh_state(built), narrows)
    resumed_from = batch.state.step
    plan, spikes, plan_start = batch_plan(built, range(0)), None, 0
    eval_rows = {t: row for row, t in enumerate(eval_steps(cell))}
    has_spikes = any(run.dials["spike_rate"] > 0 for run in cell.runs)
    stepper = (graph.GraphedStep(train_step, built, batch.state.step, has_spikes) if graph.wanted(built)
               else functools.partial(train_step, batch.built))

    started = time.perf_counter() - batch.state.elapsed_s
    bar = tqdm(total=cell.steps, initial=batch.state.step, desc=cell.id, disable=not progress, mininterval=2.0,
               leave=False)
    while not batch.done:
        state = batch.state
        if state.step in eval_rows:
            record_evaluation(batch.built, state, eval_rows[state.step])
        if state.step == cell.steps:
            break
        if not plan_start <= state.step < plan_start + len(plan):  # the plan comes in blocks: bounded memory
            plan_start = state.step
            block = range(plan_start, min(plan_start + PLAN_BLOCK, cell.steps))
            plan, spikes = batch_plan(built, block), spike_plan(built, block)
            rows, spike_rows = batch.rows(plan), batch.rows(spikes)
        row = state.step - plan_start
        stepper(state, rows[row], None if spike_rows is None else spike_rows[row])
        bar.update(1)
        if batch.update():  # runs ended: the batch narrowed to those still alive
            stepper = functools.partial(train_step, batch.built)
            rows, spike_rows = batch.rows(plan), batch.rows(spikes)
        step = batch.state.step
        if checkpoint_path and checkpoint_every and step % checkpoint_every == 0 and step < cell.steps:
            saving = dataclasses.replace(batch.whole(), elapsed_s=time.perf_counter() - started)
            checkpoint.save(dict(saving.__dict__), cell, checkpoint_path)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    state = batch.whole()
    return History(
        step_metrics={name: ended(values, state.diverged_step).cpu().numpy() for name, values in state.logs.items()},
        eval_steps=eval_steps(cell),
        eval_metrics={name: values.cpu().numpy() for name, values in state.evals.items()},
        diverged_step=state.diverged_step.cpu().numpy(),
        final_params=[p.detach().cpu() for p in built.layout.split(state.params)],
        wall_time_s=time.perf_counter() - started,
        resumed_from=resumed_from,
    )


def ended(log: Tensor, diverged_step: Tensor) -> Tensor:
    """A (steps, K) log with NaN after each run's divergence step (``diverged_step``, -1: none): a diverged
    run's metrics end there, whether its frozen state was still stepped in the batch or not (bench.shrink)."""
    steps = torch.arange(log.shape[0], device=log.device)[:, None]
    after = (diverged_step >= 0) & (steps > diverged_step)
    return torch.where(after, torch.nan, log)
