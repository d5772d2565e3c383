"""Q1: decades of learning rate each strategy adds to the stable range over the baseline, per optimizer and family.

Every strategy is compared at fixed settings, one per learning rate like the
baseline: a strategy with several settings in the grid (``clip_norm`` at three
thresholds) gets one row per setting, never the best of its settings at each
learning rate (that would give it more tries per learning rate than the
baseline's one). The *stated* setting, the one a claim reads, is fixed before
the results: the question's ``thresholds`` (hyperparameter -> value:
``clip_norm`` 1, its registered default; ``warmup_steps`` 50, the warm-up
the config gives ``clip_norm_warmup``), else the strategy's registered
default (``tuning.registered_defaults``), else its only setting in the grid
(``tuning.settings``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.effects import Study, bound, empty
from analysis.questions import Question
from analysis.tuning import at_setting, setting_label, settings
from analysis.vocabulary import strategy_order


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q1's table: per clean panel (task x model x optimizer), the width of each strategy's stable range at one
    fixed setting minus that of the baseline, in decades.

    The strategies are the question's ``compares``, or every strategy of the
    sweep but the baseline; each is measured at each of its settings
    (``tuning.settings``; ``setting`` labels it, ``stated`` marks the
    pre-stated one, ``budget`` = 1 setting per learning rate, as the
    baseline's). Rows: ``level`` = ``panel`` (one per panel, no interval),
    ``family`` (``family`` a model family or ``all``, one ``optimizer``
    each: optimizers are never pooled): the mean over the family's task x
    model pairs of each pair's mean over its panels, with a bootstrap interval
    over pairs, or over seeds (best-tuned choices redone) where the family has
    one pair. ``censored``: the strategy's range reaches the top of the grid on
    some panel, so the gain is a lower bound (``bound`` = ``lower``; ``upper``
    or ``both`` where the baseline's does).
    """
    baseline = question.baseline
    columns = ("family", "optimizer", "strategy", "setting", "baseline", "task", "model")
    if not study.panels:
        return empty(*columns)
    runs = study.all_runs
    strategies = list(question.compares) or [s for s in strategy_order(study.runs) if s != baseline]
    rows = []
    for strategy in strategies:
        for setting, stated in settings(study.runs, strategy, question.thresholds):
            label = setting_label(strategy, setting)
            sub = Study(at_setting(runs[runs["strategy"].isin([strategy, baseline])], strategy, setting),
                        n_resamples=study.n_resamples, seed=study.seed)
            common = {"question": question.id, "strategy": strategy, "setting": label, "stated": stated,
                      "budget": 1, "baseline": baseline}
            for panel in sub.select([strategy, baseline]):
                values = sub.panel_values[panel]
                mine, base = sub.width(panel, strategy), sub.width(panel, baseline)
                rows.append({**common, "level": "panel",
                             "family": sub.family[(str(values["task"]), str(values["model"]))],
                             "optimizer": values["optimizer"], "task": values["task"], "model": values["model"],
                             "estimate": mine["width"] - base["width"], "low": np.nan, "high": np.nan, "unit": "",
                             "n": 1, "censored": bool(mine["reaches_top"]),
                             "bound": bound(mine["reaches_top"], base["reaches_top"]),
                             "lo": mine["lo"], "hi": mine["hi"], "baseline_lo": base["lo"],
                             "baseline_hi": base["hi"]})
            for family in ["all", *dict.fromkeys(sub.family.values())]:
                for optimizer in sub.optimizers():
                    panels = sub.select([strategy, baseline], optimizer, family)
                    if not panels:
                        continue
                    effect = sub.range_contrast({strategy: 1.0, baseline: -1.0}, panels)
                    rows.append({**common, "level": "family", "family": family, "optimizer": optimizer,
                                 "task": "all", "model": "all", **effect})
    return pd.DataFrame(rows) if rows else empty(*columns)
