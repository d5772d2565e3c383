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


def panels_of(study: Study, needed: Sequence[str], optimizer: str, families: Sequence[str]) -> list[PanelKey]:
    """The clean panels where every strategy of ``needed`` ran, of ``optimizer`` (or all) and of a model family of
    ``families`` (every family where empty)."""
    if not families:
        return study.select(needed, optimizer)
    return [panel for family in families for panel in study.select(needed, optimizer, family)]


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q8's table per optimizer (and ``all``), on the clean panels of the question's model families (the
    transformer) where the baseline and the strategies of each row ran.

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
      optimizers where the chain, every member and the baseline ran) and
      ``gain_interaction`` (its gain minus the sum of its members' gains: 0
      where they add up, below 0 where they overlap); likewise
      ``chain_minus_best_sensitivity`` (against the member with the lowest
      sensitivity change) and ``sensitivity_interaction``.

    ``budget``: settings per learning rate of each strategy of the row
    (``tuning.tuning_budget``). Intervals over task x model pairs (over seeds
    with one pair, every choice of setting redone); with fewer than 5 units the
    values are listed instead (``effects.Study.over_pairs``). A sweep without a
    panel of the question's families gives no row.
    """
    baseline, families = question.baseline, question.families
    columns = ("optimizer", "measure", "strategy", "versus")
    if not study.panels:
        return empty(*columns)
    optimizers = [o for o in ["all", *study.optimizers()] if panels_of(study, [baseline], o, families)]
    if not optimizers:
        return empty(*columns)
    runs = study.runs[study.runs["family"].astype(str).isin(families).to_numpy()] if families else study.runs
    spent = tuning_budget(runs).groupby("strategy")["hyperparameters"].max()
    quantities = [RANGE, *([SENSITIVITY] if study.curves is not None else [])]

    def contrast(quantity: str, weights: dict[str, float], panels: list[PanelKey]) -> dict:
        if quantity == RANGE:
            return study.range_contrast(weights, panels)
        return study.sensitivity_contrast(weights, panels)

    def row(optimizer: str, measured: str, strategy: str, versus: str, effect: dict) -> dict:
        involved = [strategy, *(s for s in versus.split("+") if s != baseline)]
        return {"question": question.id, "level": "optimizer", "optimizer": optimizer, "measure": measured,
                "strategy": strategy, "versus": versus, **effect,
                "budget": ", ".join(f"{s} {int(spent.get(s, 0))}" for s in involved)}

    rows = []
    for optimizer in optimizers:
        for strategy in question.compares:
            panels = panels_of(study, [strategy, baseline], optimizer, families)
            for quantity in quantities if panels else []:
                rows.append(row(optimizer, quantity, strategy, baseline,
                                contrast(quantity, {strategy: 1.0, baseline: -1.0}, panels)))
    for chain, members in question.combines.items():
        needed = [chain, *members, baseline]
        pooled = panels_of(study, needed, "all", families)
        for quantity in quantities if pooled else []:
            best = best_member(members, [contrast(quantity, {m: 1.0, baseline: -1.0}, pooled)["estimate"]
                                         for m in members], lower=quantity == SENSITIVITY)
            against, interaction = COMBINED[quantity]
            for optimizer in optimizers:
                panels = panels_of(study, needed, optimizer, families)
                if not panels:
                    continue
                rows.append(row(optimizer, against, chain, best, contrast(quantity, {chain: 1.0, best: -1.0}, panels)))
                weights = {chain: 1.0, **{m: -1.0 for m in members}, baseline: len(members) - 1.0}
                rows.append(row(optimizer, interaction, chain, "+".join(members), contrast(quantity, weights, panels)))
    return pd.DataFrame(rows) if rows else empty(*columns)


def best_member(members: Sequence[str], estimates: Sequence[float], lower: bool = False) -> str:
    """The member with the largest estimate (``lower``: the smallest), the first on a tie; undefined estimates
    (NaN) are passed over, and where every one is, the first member is taken."""
    values = np.asarray(estimates, dtype=float)
    if not np.isfinite(values).any():
        return members[0]
    values = np.where(np.isfinite(values), -values if lower else values, -np.inf)
    return members[int(np.argmax(values))]
