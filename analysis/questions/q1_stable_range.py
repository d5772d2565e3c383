"""Q1: decades of learning rate each strategy adds to the stable range over the baseline, per model family."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.effects import Study, bound, empty
from analysis.questions import Question
from analysis.vocabulary import strategy_order


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q1's table: per clean panel (task x model x optimizer), the width of each strategy's stable range minus
    that of the baseline, in decades.

    The strategies are the question's ``compares``, or every strategy of the
    sweep but the baseline. Rows: ``level`` = ``panel`` (one per panel, no
    interval), ``family`` (``family`` a model family or ``all``; ``optimizer``
    one optimizer or ``all``): the mean over the family's task x model pairs of
    each pair's mean over its panels, with a bootstrap interval over pairs, or
    over seeds (best-tuned choices redone) where the family has one pair.
    ``censored``: the strategy's range reaches the top of the grid on some
    panel, so the gain is a lower bound (``bound`` = ``lower``; ``upper`` or
    ``both`` where the baseline's does).
    """
    baseline = question.baseline
    columns = ("family", "optimizer", "strategy", "baseline", "task", "model")
    if not study.panels:
        return empty(*columns)
    strategies = list(question.compares) or [s for s in strategy_order(study.runs) if s != baseline]
    families = list(dict.fromkeys(study.family.values()))
    rows = []
    for strategy in strategies:
        for panel in study.select([strategy, baseline]):
            values = study.panel_values[panel]
            mine, base = study.width(panel, strategy), study.width(panel, baseline)
            rows.append({"question": question.id, "level": "panel",
                         "family": study.family[(str(values["task"]), str(values["model"]))],
                         "optimizer": values["optimizer"], "strategy": strategy, "baseline": baseline,
                         "task": values["task"], "model": values["model"],
                         "estimate": mine["width"] - base["width"], "low": np.nan, "high": np.nan, "unit": "",
                         "n": 1, "censored": bool(mine["reaches_top"]),
                         "bound": bound(mine["reaches_top"], base["reaches_top"]),
                         "lo": mine["lo"], "hi": mine["hi"], "baseline_lo": base["lo"], "baseline_hi": base["hi"]})
        for family in ["all", *families]:
            for optimizer in ["all", *study.optimizers()]:
                panels = study.select([strategy, baseline], optimizer, family)
                if not panels:
                    continue
                effect = study.range_contrast({strategy: 1.0, baseline: -1.0}, panels)
                rows.append({"question": question.id, "level": "family", "family": family, "optimizer": optimizer,
                             "strategy": strategy, "baseline": baseline, "task": "all", "model": "all", **effect})
    return pd.DataFrame(rows) if rows else empty(*columns)
