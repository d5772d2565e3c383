"""Q7: does learning-rate warm-up widen the stable range as much as norm clipping, and do the two add up?"""

from __future__ import annotations

import pandas as pd

from analysis.effects import Study, empty
from analysis.questions import Question
from analysis.tuning import tuning_budget


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q7's table per optimizer (and ``all``), on the clean panels where warm-up, norm clipping, both (the
    question's ``compares``, in that order) and the baseline ran.

    ``measure`` = ``gain`` (decades over the baseline) of each of the three;
    ``warmup_minus_clipping`` (gain of warm-up minus that of clipping) and
    ``interaction`` (gain(both) - gain(clipping) - gain(warm-up)): 0 when the
    two add up, below 0 when they overlap. Each strategy is tuned over its
    settings at each learning rate (``budget``: hyperparameter settings per
    learning rate of each, ``tuning.tuning_budget``; equal in the study).
    Intervals over task x model pairs (seeds with one pair); ``censored``/``bound`` as in Q1.
    """
    (warmup, clipping, both), baseline = question.compares, question.baseline
    columns = ("optimizer", "measure", "strategy")
    rows = []
    needed = [warmup, clipping, both, baseline]
    budget = tuning_budget(study.runs) if study.panels else pd.DataFrame()
    for optimizer in ["all", *study.optimizers()] if study.panels else []:
        panels = study.select(needed, optimizer)
        if not panels:
            continue
        spent = budget[budget["strategy"].isin(needed[:3])].groupby("strategy")["hyperparameters"].max()
        text = ", ".join(f"{s} {int(spent.get(s, 0))}" for s in needed[:3])
        contrasts = [("gain", warmup, {warmup: 1, baseline: -1}), ("gain", clipping, {clipping: 1, baseline: -1}),
                     ("gain", both, {both: 1, baseline: -1}),
                     ("warmup_minus_clipping", warmup, {warmup: 1, clipping: -1}),
                     ("interaction", both, {both: 1, clipping: -1, warmup: -1, baseline: 1})]
        for measured, strategy, weights in contrasts:
            rows.append({"question": question.id, "level": "optimizer", "optimizer": optimizer, "measure": measured,
                         "strategy": strategy, **study.range_contrast(weights, panels), "budget": text})
    return pd.DataFrame(rows) if rows else empty(*columns)
