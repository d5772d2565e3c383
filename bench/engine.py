"""The lockstep training loop: K runs of one cell trained as one.

Each step, for all K runs at once: gather each run's batch, forward, one
backward pass of the summed per-run losses (runs share no parameter, so each
run's gradient is its own), the gradient-stage strategies, the optimizer, the
update-stage strategies and the weight constraints; then each run's new state
is kept only where the run is alive and not skipping this step.

Divergence is data: a run whose loss is non-finite or exceeds
``divergence_factor`` x its initial loss is marked diverged at that step and
frozen; the others go on. Metrics stay on the device during training and are
read back once at the end, so a CUDA step never waits on the host.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from bench import allocator, models, optim, strategies, tasks
from bench.flat import Layout, Packed, run_norm
from bench.sweep import Cell, ConfigError
from bench.transform import Transform, known_empty, select

STEP_METRICS = ("train_loss", "grad_norm_pre", "grad_norm_post", "clipped", "update_ratio")
EVAL_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")
EVAL_CHUNK = 512
REPORTS = ("active", "skip")
PLAN_BLOCK = 100  # steps of batch indices drawn at a time
# Raised whenever the meaning of a saved state changes (2: the flat buffer groups tensors by shape).
CHECKPOINT_FORMAT = 2


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device': cuda is not available on this machine; allowed: auto, cpu")
    return torch.device(name)


def per_run_values(values: list[float], device: torch.device) -> float | Tensor:
    """A hyperparameter for K runs: a float when all runs share it, else a (K,) tensor."""
    if len(set(values)) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=torch.float32, device=device)


@dataclass
class Setup:
    """Everything a cell's loop needs, built once."""

    cell: Cell
    task: tasks.Task
    model: models.Model
    device: torch.device
    inputs: dict[str, Tensor]
    targets: dict[str, Tensor]
    initial_params: list[Tensor]
    layout: Layout
    optimizer: Transform
    chain: list[Transform]


def task_options(cell: Cell) -> dict[str, Any]:
    """The options of the cell's task, without its kind."""
    return {k: v for k, v in cell.task.items() if k != "kind"}


def model_options(cell: Cell) -> dict[str, Any]:
    """The shape options of the cell's model, without family and run-level dials."""
    return {k: v for k, v in cell.model.items() if k not in ("family", "init_gain", "recurrent_radius")}


def build_model(cell: Cell, task: tasks.Task) -> models.Model:
    """The cell's model, shaped for the cell's task."""
    family = cell.model["family"]
    in_shape = tuple(task.inputs("train", family).shape[1:])
    return models.build(family, in_shape, task.n_outputs, per_step=task.objective == "sequence",
                        **model_options(cell))


def initial_parameters(model: models.Model, cell: Cell) -> list[Tensor]:
    """The K runs' initial parameters, each from its own seed and stress dials."""
    return model.init(
        [run.seed for run in cell.runs],
        [run.dials.get("init_gain", 1.0) for run in cell.runs],
        [run.dials.get("recurrent_radius", 1.0) for run in cell.runs],
    )


def setup(cell: Cell) -> Setup:
    """Load the task, build the model, the optimizer and the strategy chain; set torch's threads
    and keep freed host memory for reuse (see bench.allocator)."""
    torch.set_num_threads(cell.threads)
    allocator.keep_freed_memory()
    device = resolve_device(cell.device)
    task = tasks.load(cell.task["kind"], **task_options(cell))
    model = build_model(cell, task)
    family = cell.model["family"]
    inputs = {split: task.inputs(split, family).to(device) for split in ("train", "val", "test")}
    targets = {split: task.targets(split).to(device) for split in ("train", "val", "test")}
    hyperparameters = {
        key: per_run_values([run.hyperparameters[key] for run in cell.runs], device)
        for key in cell.runs[0].hyperparameters
    }
    lr = torch.tensor([run.lr for run in cell.runs], dtype=torch.float32, device=device)
    options = {k: v for k, v in cell.optimizer.items() if k not in ("kind", "learning_rates")}
    return Setup(
        cell=cell, task=task, model=model, device=device, inputs=inputs, targets=targets,
        initial_params=(initial := [p.to(device) for p in initial_parameters(model, cell)]),
        layout=Layout.of(initial),
        optimizer=optim.make(cell.optimizer["kind"], lr, **options),
        chain=strategies.build(cell.members, hyperparameters),
    )


@dataclass
class History:
    """What a cell's training produced, as NumPy arrays on the host.

    ``steps`` arrays are (steps, K); ``evals`` arrays are (len(eval_steps), K).
    ``diverged_step`` is -1 for runs that never diverged.
    """

    step_metrics: dict[str, np.ndarray]
    eval_steps: list[int]
    eval_metrics: dict[str, np.ndarray]
    diverged_step: np.ndarray
    final_params: list[Tensor]
    wall_time_s: float
    resumed_from: int = 0


def evaluate(setup: Setup, params: list[Tensor], split: str) -> tuple[Tensor, Tensor]:
    """Mean loss and metric of each run on a whole split, (K,) each."""
    x, y = setup.inputs[split], setup.targets[split]
    runs = params[0].shape[0]
    losses, metrics = [], []
    with torch.no_grad():
        for start in range(0, len(x), EVAL_CHUNK):
            xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            outputs = setup.model.forward(params, xb.expand(runs, *xb.shape))
            loss, metric = setup.task.loss_and_metric(outputs, yb.expand(runs, *yb.shape))
            losses.append(loss * len(xb))
            metrics.append(metric * len(xb))
    return torch.stack(losses).sum(0) / len(x), torch.stack(metrics).sum(0) / len(x)


def _stage(chain: list[Transform], stage: str) -> list[tuple[int, Transform]]:
    return [(i, t) for i, t in enumerate(chain) if t.stage == stage]


def _apply(transform: Transform, inputs: Packed, state: dict[str, Any], params: Packed,
           flags: dict[str, list[Tensor]]) -> tuple[Packed, dict[str, Any]]:
    """Run one transform, on the flat buffer when it is layout-free, else on the tensors;
    move what it reports (``active``, ``skip``) from its state into ``flags``."""
    if transform.layout_free:
        (flat,), new_state = transform.update([inputs.flat], state, [params.flat])
        outputs = Packed(inputs.layout, flat=flat)
    else:
        parts, new_state = transform.update(inputs.parts, state, params.parts)
        outputs = Packed(inputs.layout, parts=parts)
    new_state = dict(new_state)
    for key in REPORTS:
        if key in new_state:
            flags[key].append(new_state.pop(key))
    return outputs, new_state


def _any(flags: list[Tensor], runs: int, device: torch.device) -> Tensor:
    if not flags:
        return torch.zeros(runs, dtype=torch.bool, device=device)
    return torch.stack(flags).any(dim=0)


def train(cell: Cell, progress: bool = True, checkpoint: Path | None = None, checkpoint_every: int = 0) -> History:
    """Train all runs of ``cell`` in lockstep and return their history."""
    return train_setup(setup(cell), progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every)


@dataclass
class LoopState:
    """Everything that changes during training: what a checkpoint holds.

    ``step`` is the next step to train; ``params`` is the (K, P) flat buffer
    of all runs' parameters (see bench.flat); ``logs`` are (steps, K) and ``evals``
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


def fresh_state(run: Setup) -> LoopState:
    """The state before step 0."""
    cell, device, runs = run.cell, run.device, len(run.cell.runs)
    params = run.layout.join(run.initial_params)
    return LoopState(
        step=0, params=params, opt_state=run.optimizer.init([params]),
        chain_states=[t.init([params] if t.layout_free else run.layout.split(params)) for t in run.chain],
        alive=torch.ones(runs, dtype=torch.bool, device=device),
        diverged_step=torch.full((runs,), -1, dtype=torch.long, device=device),
        initial_loss=torch.full((runs,), float("nan"), device=device),
        logs={name: torch.full((cell.steps, runs), float("nan"), device=device) for name in STEP_METRICS},
        evals={name: torch.full((len(eval_steps(cell)), runs), float("nan"), device=device) for name in EVAL_METRICS},
        elapsed_s=0.0,
    )


def fingerprint(cell: Cell) -> str:
    """What a checkpoint must match to be resumed: its format, the cell, its runs and its budget."""
    budget = f"{cell.steps}|{cell.eval_every}|{cell.batch_size}|{cell.divergence_factor}"
    return f"{CHECKPOINT_FORMAT}|{cell.id}|{budget}|" + ";".join(cell.run_ids())


def save_checkpoint(state: LoopState, cell: Cell, path: Path) -> None:
    """Write ``state`` atomically (temporary file, then rename), loadable with weights_only=True."""
    payload = {**state.__dict__, "fingerprint": fingerprint(cell)}
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, run: Setup) -> LoopState | None:
    """The state saved at ``path`` if it exists and belongs to this cell, else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location=run.device, weights_only=True)
    except Exception:  # a foreign or damaged checkpoint is not resumed: training restarts
        return None
    if payload.pop("fingerprint", None) != fingerprint(run.cell):
        return None
    return LoopState(**payload)


def eval_steps(cell: Cell) -> list[int]:
    """Steps at which validation and test metrics are computed: every ``eval_every`` and the last."""
    return sorted({*range(0, cell.steps, cell.eval_every), cell.steps})


def record_evaluation(run: Setup, state: LoopState, row: int) -> None:
    """Validation and test loss and metric of every run still alive (or diverging now)."""
    recorded = state.alive | (state.diverged_step == state.step)
    for split in ("val", "test"):
        loss, metric = evaluate(run, run.layout.split(state.params), split)
        state.evals[f"{split}_loss"][row] = torch.where(recorded, loss, float("nan"))
        state.evals[f"{split}_metric"][row] = torch.where(recorded, metric, float("nan"))


def keep_where(mask: Tensor, new: Any, old: Any) -> Any:
    """Per run, ``new`` where ``mask`` else ``old`` (see transform.select).

    On a CPU, where reading the mask costs no device synchronisation, the
    common case of every run keeping its new state skips the selection.
    """
    if known_empty(~mask):
        return new
    return select(mask, new, old)


def gradients(run: Setup, params: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
    """Each run's loss on its batch ``batch`` (K, B), (K,), and its gradient as a (K, P) buffer:
    one backward pass of the summed losses (runs share no parameter, so each run's gradient is its own)."""
    xb, yb = run.inputs["train"][batch], run.targets["train"][batch]
    leaf = params.detach().requires_grad_(True)
    loss = run.task.loss(run.model.forward(run.layout.split(leaf), xb), yb)
    (flat_grads,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), flat_grads


def train_step(run: Setup, state: LoopState, batch: Tensor) -> None:
    """One lockstep step of all runs on their batches ``batch`` (K, B), in place on ``state``."""
    loss, flat_grads = gradients(run, state.params, batch)
    apply_step(run, state, loss, flat_grads)


def apply_step(run: Setup, state: LoopState, loss: Tensor, flat_grads: Tensor) -> None:
    """Everything of a step after the gradients: divergence, the strategies, the optimizer, the
    logs, and each run's new state kept where it is alive and not skipping."""
    step, runs, device, logs, layout = state.step, len(run.cell.runs), run.device, state.logs, run.layout
    if step == 0:
        state.initial_loss = loss.clone()
    blown = ~torch.isfinite(loss) | (loss > run.cell.divergence_factor * state.initial_loss)
    newly = state.alive & blown
    state.diverged_step = torch.where(newly, step, state.diverged_step)
    alive = state.alive & ~blown
    state.alive = alive

    chain_states = state.chain_states
    params = Packed(layout, flat=state.params)
    logs["train_loss"][step] = torch.where(alive | newly, loss, float("nan"))
    logs["grad_norm_pre"][step] = run_norm(flat_grads)
    new_chain_states = list(chain_states)
    flags: dict[str, list[Tensor]] = {key: [] for key in REPORTS}
    # A gradient-stage member keeps its new state where the run is alive and no
    # earlier member skipped the step; later stages only where the step is taken.
    kept = [alive] * len(run.chain)
    grads = Packed(layout, flat=flat_grads)
    for i, transform in _stage(run.chain, "gradient"):
        kept[i] = alive & ~_any(flags["skip"], runs, device)
        grads, new_chain_states[i] = _apply(transform, grads, chain_states[i], params, flags)
    logs["grad_norm_post"][step] = logs["grad_norm_pre"][step] if grads.flat is flat_grads else run_norm(grads.flat)
    skip = _any(flags["skip"], runs, device)

    (flat_updates,), new_opt_state = run.optimizer.update([grads.flat], state.opt_state, [params.flat])
    updates = Packed(layout, flat=flat_updates)
    for i, transform in _stage(run.chain, "update"):
        updates, new_chain_states[i] = _apply(transform, updates, chain_states[i], params, flags)
    updated = params.flat + updates.flat
    new_params = Packed(layout, flat=updated)
    for i, transform in _stage(run.chain, "weights"):
        new_params, new_chain_states[i] = _apply(transform, new_params, chain_states[i], params, flags)

    keep = alive & ~skip
    # ||new - old|| / ||old||; without weight constraints the change is the update itself.
    change = updates.flat if new_params.flat is updated else new_params.flat - params.flat
    ratio = run_norm(change) / run_norm(params.flat)
    logs["update_ratio"][step] = torch.where(keep, ratio, 0.0)
    logs["clipped"][step] = _any(flags["active"] + flags["skip"], runs, device).float()
    state.params = keep_where(keep, new_params.flat, params.flat)
    state.opt_state = keep_where(keep, new_opt_state, state.opt_state)
    state.chain_states = [
        keep_where(mask if transform.stage == "gradient" else keep, new, old)
        for transform, mask, new, old in zip(run.chain, kept, new_chain_states, chain_states, strict=True)
    ]
    state.step = step + 1


def batch_plan(run: Setup, steps: range) -> Tensor:
    """Every run's training-example indices for ``steps``, (len(steps), K, B), on the device.

    A run's batches depend on its seed only: each distinct seed's are drawn once
    and shared by the runs that have it.
    """
    seeds = sorted({r.seed for r in run.cell.runs})
    drawn = torch.stack([tasks.batch_indices(seed, len(run.inputs["train"]), run.cell.batch_size, steps)
                         for seed in seeds], dim=1)
    return drawn[:, [seeds.index(r.seed) for r in run.cell.runs]].to(run.device)


def train_setup(run: Setup, progress: bool = True, checkpoint: Path | None = None,
                checkpoint_every: int = 0) -> History:
    """The loop proper, for an already built :class:`Setup`.

    With ``checkpoint`` and ``checkpoint_every`` > 0, the full state is saved
    every ``checkpoint_every`` steps, and a matching checkpoint found at the
    start is resumed: a killed job loses at most that many steps, and the
    resumed run computes exactly what an uninterrupted one would.
    """
    cell, device = run.cell, run.device
    state = (load_checkpoint(checkpoint, run) if checkpoint else None) or fresh_state(run)
    resumed_from = state.step
    plan, plan_start = batch_plan(run, range(0)), 0
    eval_rows = {step: row for row, step in enumerate(eval_steps(cell))}

    started = time.perf_counter() - state.elapsed_s
    bar = tqdm(total=cell.steps, initial=state.step, desc=cell.id, disable=not progress, mininterval=2.0,
               leave=False)
    while True:
        if state.step in eval_rows:
            record_evaluation(run, state, eval_rows[state.step])
        if state.step == cell.steps:
            break
        if not plan_start <= state.step < plan_start + len(plan):  # the plan comes in blocks: bounded memory
            plan_start = state.step
            plan = batch_plan(run, range(plan_start, min(plan_start + PLAN_BLOCK, cell.steps)))
        train_step(run, state, plan[state.step - plan_start])
        bar.update(1)
        if checkpoint and checkpoint_every and state.step % checkpoint_every == 0 and state.step < cell.steps:
            state.elapsed_s = time.perf_counter() - started
            save_checkpoint(state, cell, checkpoint)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return History(
        step_metrics={name: values.cpu().numpy() for name, values in state.logs.items()},
        eval_steps=eval_steps(cell),
        eval_metrics={name: values.cpu().numpy() for name, values in state.evals.items()},
        diverged_step=state.diverged_step.cpu().numpy(),
        final_params=[p.detach().cpu() for p in run.layout.split(state.params)],
        wall_time_s=time.perf_counter() - started,
        resumed_from=resumed_from,
    )
