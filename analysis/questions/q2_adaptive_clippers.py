"""Q2: each adaptive clipper at its published defaults against norm clipping tuned on the same budget."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.effects import Study, empty, holm_family
from analysis.questions import Question
from analysis.tuning import default_runs, ranked_settings
from analysis.vocabulary import normalised_score, select


def expected_best(test: Sequence[float] | np.ndarray, budget: int) -> float:
    """Expected test score of the setting chosen (on validation) among ``budget`` settings drawn without replacement.

    ``test`` lists the settings' test scores in their validation rank order
    (best first, ``tuning.ranked_settings``). The setting ranked r (1-based)
    of N is the choice of a random subset of size n exactly when it is in the
    subset and the r - 1 better ones are not: probability C(N - r, n - 1) /
    C(N, n). This is the expected validation-chosen performance of Dodge et
    al. (2019) at budget n, computed exactly; n >= N gives the best-ranked one.
    """
    test = np.asarray(test, dtype=float)
    total = len(test)
    if total == 0 or budget < 1:
        return float("nan")
    budget = min(int(budget), total)
    denominator = math.comb(total, budget)
    weights = np.array([math.comb(total - r, budget - 1) / denominator for r in range(1, total + 1)])
    return float(weights @ test)


def measure(study: Study, question: Question) -> pd.DataFrame:
    """Q2's table: each adaptive clipper (``compares``) at its published defaults against the baseline
    (``clip_norm``) tuned on the same budget.

    On each clean panel the adaptive clipper runs at its registered default
    hyperparameters (``tuning.default_runs``), tuned over its n settings
    (learning rates, and any tuned optimizer dial); the baseline gets the same
    budget n as the expected test score of the setting chosen on validation
    among n of its settings drawn at random (:func:`expected_best`). Effect:
    normalised test score of the adaptive clipper minus that of the
    budget-matched baseline, positive when the adaptive one is better. Rows:
    ``problem`` (per task x model pair, the mean over its optimizer panels;
    ``difference_metric`` in the metric's units, oriented so that higher is
    better), ``all`` (mean over pairs) and ``optimizer`` (one optimizer's
    panels), each with a bootstrap interval over pairs and a two-sided Wilcoxon
    signed-rank test over pairs, Holm-adjusted over the adaptive clippers of
    the same row kind (``pvalue_holm``; ``min_p`` and ``underpowered`` after
    that correction, ``effects.holm_family``).
    """
    adaptive, reference = question.compares, question.baseline
    columns = ("strategy", "reference", "optimizer", "task", "model")
    if not study.panels:
        return empty(*columns)
    defaults = default_runs(study.runs)
    ranked = ranked_settings(study.runs[study.runs["strategy"] == reference])
    per_panel: list[dict] = []
    for strategy in adaptive:
        own = defaults[defaults["strategy"] == strategy]
        if own.empty:
            continue
        for panel in study.select([strategy, reference]):
            runs_here = select(own, study.panel_values[panel])
            if runs_here.empty:
                continue
            chosen = ranked_settings(runs_here)
            budget = len(chosen)
            settings = select(ranked, study.panel_values[panel])
            first = runs_here.iloc[0]
            metric, chance = np.array([first["metric"]], dtype=object), float(first["chance_metric"])
            sign = 1.0 if bool(first["higher_is_better"]) else -1.0
            mine_raw = float(chosen["test_mean"].iloc[0])
            ref_raw = expected_best(settings["test_mean"].to_numpy(dtype=float), budget)
            mine, ref = (float(normalised_score([v], metric, [chance])[0]) for v in (mine_raw, ref_raw))
            values = study.panel_values[panel]
            per_panel.append({"strategy": strategy, "panel": panel, "optimizer": values["optimizer"],
                              "task": values["task"], "model": values["model"], "value": mine - ref,
                              "difference_metric": sign * (mine_raw - ref_raw), "budget": budget,
                              "reference_settings": len(settings)})
    if not per_panel:
        return empty(*columns)
    frame = pd.DataFrame(per_panel)
    rows = []
    for (strategy, task, model), group in frame.groupby(["strategy", "task", "model"], sort=False):
        rows.append({"question": question.id, "level": "problem", "strategy": strategy, "reference": reference,
                     "optimizer": "all", "task": task, "model": model, "estimate": group["value"].mean(),
                     "low": np.nan, "high": np.nan, "unit": "", "n": 1, "censored": False,
                     "difference_metric": group["difference_metric"].mean(), "budget": int(group["budget"].max()),
                     "reference_settings": int(group["reference_settings"].max()), "pvalue": np.nan,
                     "pvalue_holm": np.nan})
    summaries = []
    for optimizer in ["all", *study.optimizers()]:
        block = []
        for strategy in adaptive:
            group = frame[(frame["strategy"] == strategy) & ((frame["optimizer"] == optimizer) | (optimizer == "all"))]
            if group.empty:
                continue
            effect = study.over_pairs(dict(zip(group["panel"], group["value"], strict=True)))
            block.append({"question": question.id, "level": "all" if optimizer == "all" else "optimizer",
                          "strategy": strategy, "reference": reference, "optimizer": optimizer, "task": "all",
                          "model": "all", **effect.columns(), "censored": False, "difference_metric": np.nan,
                          "budget": int(group["budget"].max()),
                          "reference_settings": int(group["reference_settings"].max())})
        summaries += holm_family(block)
    return pd.DataFrame([*summaries, *rows])
