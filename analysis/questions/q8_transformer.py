"""Q8: which mitigation widens the transformer's stable learning-rate range and lowers its learning-rate
sensitivity, and do qk-layernorm, z-loss and clipping add up?

The transformer's mitigations live in different places of training (a model
option, a loss term, a schedule, a gradient or update transform), and one of its
failures does not cross the divergence rule: at high learning rates the plain
model's attention logits grow by orders of magnitude and its loss collapses to
the chance (unigram) loss while staying below ``divergence_factor`` x its
initial loss. The stable range counts such a run as stable; the learning-rate
sensitivity of Wortsman et al. (``analysis.sensitivity``) sees it, as a final
loss far above the best one. Q8 therefore reports both per mitigation.

The study trains the transformer on a few problems only, too few for an
interval over problems: Q8 pools them (the problems' values listed) and also
answers on each transformer task alone, with intervals over its seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.effects import PanelKey, Study, empty
from analysis.questions import Question
from analysis.tuning import tuning_budget

RANGE, SENSITIVITY = "gain", "sensitivity_change"
"""The measures of one mitigation against the baseline: stable-range gain (decades) and change in sensitivity."""
COMBINED = {RANGE: ("chain_minus_best_gain", "gain_interaction"),
            SENSITIVITY: ("chain_minus_best_sensitivity", "sensitivity_interaction")}
"""Per measure, the chain against its best member and the interaction (chain minus the sum of its members)."""
POOLED = "all"
"""The ``task`` of the rows pooled over every transformer problem."""


def panels_of(study: Study, needed: Sequence[str], optimizer: str, families: Sequence[str],
              task: str = POOLED) -> list[PanelKey]:
    """The clean panels where every strategy of ``needed`` ran, of ``optimizer`` (or all), of a model family of
    ``families`` (every family where empty) and of ``task`` (every task where :data:`POOLED`)."""
    if not families:
        chosen = study.select(needed, optimizer)
    else:
        chosen = [panel for family in families for panel in study.select(needed, optimizer, family)]
    return [p for p in chosen if task == POOLED or str(study.panel_values[p]["task"]) == task]


def tasks_of(study: Study, baseline: str, families: Sequence[str]) -> list[str]:
    """The tasks of the clean panels of ``families`` where ``baseline`` ran, in order of first appearance."""
    panels = panels_of(study, [baseline], "all", families)
    return list(dict.fromkeys(str(study.panel_values[p]["task"]) for p in panels))


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q8's table: pooled over the transformer problems (``task`` ``all``) and on each transformer task alone,
    per optimizer (and ``all``), on the clean panels of the question's model families (the transformer) where
    the baseline and the strategies of each row ran.

    ``measure``:

    - ``gain``: decades of stable range of ``strategy`` minus the baseline's
      (each tuned over its settings at each learning rate, as in Q7;
      ``censored``/``bound`` as in Q1);
    - ``sensitivity_change``: the learning-rate sensitivity of ``strategy``
      minus the baseline's (``effects.Study.sensitivity_contrast``, in
      ``loss_unit``; below 0: less sensitive; only with curves);
    - per chain of ``question.combines`` (``strategy`` the chain):
      ``chain_minus_best_gain`` (its gain minus that of its best member,
      ``versus``: the member with the largest gain on the panels of all
      optimizers, of the row's task or of every task, where the chain, every
      member and the baseline ran) and ``gain_interaction`` (its gain minus
      the sum of its members' gains: 0 where they add up, below 0 where they
      overlap); likewise ``chain_minus_best_sensitivity`` (against the member
      with the lowest sensitivity change) and ``sensitivity_interaction``.

    ``budget``: settings per learning rate of each strategy of the row on the
    row's task, or every transformer task (``tuning.tuning_budget``). Intervals
    over task x model pairs (``effects.Study.over_pairs``): with fewer than 5
    the values are listed instead, as on the study's transformer problems; a
    task's rows rest on its one pair, so their intervals are over its seeds,
    every choice of setting redone on each resample. A sweep without a panel of
    the question's families gives no row.
    """
    baseline, families = question.baseline, question.families
    columns = ("task", "optimizer", "measure", "strategy", "versus")
    if not study.panels:
        return empty(*columns)
    tasks = tasks_of(study, baseline, families)
    rows = [row for task in ([POOLED, *tasks] if tasks else []) for row in _rows(study, question, task)]
    return pd.DataFrame(rows) if rows else empty(*columns)


def _rows(study: Study, question: Question, task: str) -> list[dict]:
    """Q8's rows (see :func:`measure`) on the panels of ``task`` (every transformer task where :data:`POOLED`)."""
    baseline, families = question.baseline, question.families
    optimizers = [o for o in ["all", *study.optimizers()] if panels_of(study, [baseline], o, families, task)]
    runs = study.runs[study.runs["family"].astype(str).isin(families).to_numpy()] if families else study.runs
    runs = runs if task == POOLED else runs[runs["task"].astype(str).to_numpy() == task]
    spent = tuning_budget(runs).groupby("strategy")["hyperparameters"].max()
    quantities = [RANGE, *([SENSITIVITY] if study.curves is not None else [])]

    def contrast(quantity: str, weights: dict[str, float], panels: list[PanelKey]) -> dict:
        if quantity == RANGE:
            return study.range_contrast(weights, panels)
        return study.sensitivity_contrast(weights, panels)

    def row(optimizer: str, measured: str, strategy: str, versus: str, effect: dict) -> dict:
        involved = [strategy, *(s for s in versus.split("+") if s != baseline)]
        return {"question": question.id, "level": "optimizer", "task": task, "optimizer": optimizer,
                "measure": measured, "strategy": strategy, "versus": versus, **effect,
                "budget": ", ".join(f"{s} {int(spent.get(s, 0))}" for s in involved)}

    rows = []
    for optimizer in optimizers:
        for strategy in question.compares:
            panels = panels_of(study, [strategy, baseline], optimizer, families, task)
            for quantity in quantities if panels else []:
                rows.append(row(optimizer, quantity, strategy, baseline,
                                contrast(quantity, {strategy: 1.0, baseline: -1.0}, panels)))
    for chain, members in question.combines.items():
        needed = [chain, *members, baseline]
        pooled = panels_of(study, needed, "all", families, task)
        for quantity in quantities if pooled else []:
            best = best_member(members, [contrast(quantity, {m: 1.0, baseline: -1.0}, pooled)["estimate"]
                                         for m in members], lower=quantity == SENSITIVITY)
            against, interaction = COMBINED[quantity]
            for optimizer in optimizers:
                panels = panels_of(study, needed, optimizer, families, task)
                if not panels:
                    continue
                rows.append(row(optimizer, against, chain, best, contrast(quantity, {chain: 1.0, best: -1.0}, panels)))
                weights = {chain: 1.0, **{m: -1.0 for m in members}, baseline: len(members) - 1.0}
                rows.append(row(optimizer, interaction, chain, "+".join(members), contrast(quantity, weights, panels)))
    return rows


def best_member(members: Sequence[str], estimates: Sequence[float], lower: bool = False) -> str:
    """The member with the largest estimate (``lower``: the smallest), the first on a tie; undefined estimates
    (NaN) are passed over, and where every one is, the first member is taken."""
    values = np.asarray(estimates, dtype=float)
    if not np.isfinite(values).any():
        return members[0]
    values = np.where(np.isfinite(values), -values if lower else values, -np.inf)
    return members[int(np.argmax(values))]
