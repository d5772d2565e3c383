"""Does a problem's training budget reach convergence? The check of a study's budgets.

A budget of S steps is long enough for a problem when the baseline tuned at S
steps gets most of what it would get with ``factor`` x S steps. For each task x
model x optimizer of a config (its float32 cells of strategy ``baseline``), one
cell trains the baseline's learning-rate grid on the first seed (the stress
dials at their first value) for ``factor`` x S steps, evaluating as the problem
does. Under a constant learning rate (the baseline has no schedule), the first S
steps of that run are the S-step run, so one training answers both budgets.

At a horizon H, each learning rate scores its best validation metric over the
evaluations up to H, a run diverged by H scoring nothing (the study's tuning
rule: a diverged seed is the worst); the baseline tuned at H is the best of
them, and its improvement is the distance from the metric at step 0 (the same
initial weights at every learning rate) in the metric's better direction. The
budget passes when

    improvement(S) >= threshold x improvement(factor x S)        (threshold 0.9)

and its evaluation resolution, ``eval_every`` / S, is at most 5% of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench import engine
from bench.sweep import DEFAULT_DTYPE, Cell

if TYPE_CHECKING:  # pandas is imported where tables are read
    import pandas as pd

FACTOR = 4
"""Steps of the longer budget, as a multiple of the problem's."""
THRESHOLD = 0.9
"""Share of the longer budget's improvement the problem's budget must reach."""
RESOLUTION = 0.05
"""Largest evaluation interval, as a share of the budget."""


@dataclass(frozen=True)
class Check:
    """One task x model x optimizer's budget check (see the module docstring)."""

    task: str
    model: str
    optimizer: str
    steps: int
    eval_every: int
    factor: int
    metric: str
    initial: float
    best_lr: float
    best: float
    best_lr_long: float
    best_long: float
    diverged: int
    runs: int
    seconds: float

    @property
    def fraction(self) -> float:
        """improvement(S) / improvement(factor x S); NaN when the longer budget improves nothing."""
        gain_long = abs(self.best_long - self.initial)
        return abs(self.best - self.initial) / gain_long if gain_long > 0 else math.nan

    @property
    def resolution(self) -> float:
        """``eval_every`` / S."""
        return self.eval_every / self.steps

    @property
    def passes(self) -> bool:
        """Whether the budget reaches ``THRESHOLD`` of the longer one's improvement at ``RESOLUTION``."""
        return self.fraction >= THRESHOLD and self.resolution <= RESOLUTION


def check_cell(cell: Cell, factor: int = FACTOR) -> Cell:
    """The cell that checks ``cell``'s budget: its learning rates on its first seed, its stress dials at their
    first value, ``factor`` x its steps (evaluated every ``eval_every`` as it is). ``cell``'s steps must be a
    multiple of its ``eval_every`` (the budget is then an evaluation step)."""
    if cell.steps % cell.eval_every:
        raise ValueError(f"cell {cell.id}: steps {cell.steps} are not a multiple of eval_every {cell.eval_every}; "
                         "allowed: a budget that is an evaluation step")
    first = cell.runs[0]
    runs = [run for run in cell.runs if run.seed == first.seed and run.dials == first.dials
            and run.hyperparameters == first.hyperparameters]
    return dataclasses.replace(cell, id=f"{cell.id}-budget{factor}x", runs=runs, steps=factor * cell.steps,
                               checkpoint_every=0)


def best_up_to(values: np.ndarray, steps: list[int], diverged_step: np.ndarray, horizon: int,
               higher_is_better: bool) -> np.ndarray:
    """Per run, the best of ``values`` ((evaluations, K)) at evaluation steps up to ``horizon``; NaN for a run
    diverged by then."""
    upto = np.asarray(steps) <= horizon
    seen = values[upto]
    best = np.nanmax(seen, axis=0) if higher_is_better else np.nanmin(seen, axis=0)
    alive = (diverged_step < 0) | (diverged_step > horizon)
    return np.where(alive, best, np.nan)


def measure(cell: Cell, factor: int = FACTOR, data_cache: str | None = None,
            shorter: Iterable[int] = ()) -> list[Check]:
    """Train ``cell``'s budget check (:func:`check_cell`) and score its budget against ``factor`` x it; then each
    budget of ``shorter`` (evaluation steps below the cell's) against ``factor`` x that, from the same training
    (its first steps are the shorter budget's run)."""
    long = check_cell(cell, factor)
    built = engine.build(long, data_cache=data_cache)
    history = engine.train(built, progress=False)
    task = built.task
    values = history.eval_metrics["val_metric"]
    lrs = np.array([run.lr for run in long.runs])

    def tuned(horizon: int) -> tuple[float, float]:
        scores = best_up_to(values, history.eval_steps, history.diverged_step, horizon, task.higher_is_better)
        if np.isnan(scores).all():
            return math.nan, math.nan
        i = int(np.nanargmax(scores) if task.higher_is_better else np.nanargmin(scores))
        return float(lrs[i]), float(scores[i])

    checks = []
    for steps in sorted({cell.steps, *shorter}, reverse=True):
        if steps not in history.eval_steps or steps > cell.steps:
            raise ValueError(f"budget {steps} of cell {cell.id}: allowed: evaluation steps up to {cell.steps}")
        best_lr, best = tuned(steps)
        best_lr_long, best_long = tuned(factor * steps)
        checks.append(Check(task=cell.task_name, model=cell.model_name, optimizer=cell.optimizer_name,
                            steps=steps, eval_every=cell.eval_every, factor=factor, metric=task.metric,
                            initial=float(values[0, 0]), best_lr=best_lr, best=best, best_lr_long=best_lr_long,
                            best_long=best_long, diverged=int((history.diverged_step >= 0).sum()),
                            runs=len(long.runs), seconds=history.wall_time_s))
    return checks


def baseline_cells(cells: Iterable[Cell], baseline: str = "none") -> list[Cell]:
    """The cells whose budgets a study checks: strategy ``baseline``, default precision, one per task x model
    x optimizer."""
    return [cell for cell in cells if cell.strategy_name == baseline and cell.dtype == DEFAULT_DTYPE
            and not cell.id.endswith("-replication")]


def run(cells: Iterable[Cell], factor: int = FACTOR, data_cache: str | None = None,
        report: Callable[[Check], None] | None = None, shorter: Iterable[int] = ()) -> list[Check]:
    """Every cell's budget check (and those of the ``shorter`` budgets below its own), reported as each cell
    finishes."""
    checks = []
    for cell in cells:
        found = measure(cell, factor, data_cache, [s for s in shorter if s < cell.steps])
        checks.extend(found)
        for check in found if report else ():
            report(check)
    return checks


COLUMNS = ("task", "model", "optimizer", "steps", "eval_every", "factor", "metric", "initial", "best_lr", "best",
           "best_lr_long", "best_long", "fraction", "passes", "diverged", "runs", "seconds")
"""The columns of a budget table (one row per :class:`Check`)."""


def row(check: Check) -> dict[str, object]:
    """``check`` as a table row of :data:`COLUMNS`."""
    values = {**dataclasses.asdict(check), "fraction": check.fraction, "passes": check.passes}
    return {name: values[name] for name in COLUMNS}


def line(check: Check) -> str:
    """One readable line of ``check``."""
    verdict = "passes" if check.passes else "FAILS"
    return (f"{check.task}-{check.model}-{check.optimizer}: {check.steps} steps reach {check.fraction:.1%} of the "
            f"improvement of {check.factor * check.steps} ({check.metric} {check.initial:.3g} -> "
            f"{check.best:.4g} at lr {check.best_lr:g}, {check.best_long:.4g} at lr {check.best_lr_long:g}); "
            f"evaluation every {check.resolution:.1%} of the budget: {verdict} ({check.seconds:.0f} s)")


def markdown(table: pd.DataFrame) -> str:
    """A budget table (rows of :data:`COLUMNS`, as ``--out`` writes them) as Markdown: one line per task x model x
    optimizer and budget, with the best-tuned metric at both budgets, the share reached and the verdict."""
    lines = ["| task / model / optimizer | steps | evaluated every | metric: start -> budget (lr) -> 4x (lr) | "
             "share of the 4x improvement | passes |", "|---|---:|---:|---|---:|---|"]
    for row in table.sort_values(["task", "model", "optimizer", "steps"]).itertuples():
        lines.append(f"| {row.task} / {row.model} / {row.optimizer} | {row.steps} | {row.eval_every} | {row.metric}: "
                     f"{row.initial:.3g} -> {row.best:.4g} ({row.best_lr:.2g}) -> {row.best_long:.4g} "
                     f"({row.best_lr_long:.2g}) | {row.fraction:.1%} | {'yes' if row.passes else 'no'} |")
    return "\n".join(lines)
