"""What a sweep shows per task x model, as a Markdown table (docs/tiers.md's table for the default tier)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.latex import number
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import problems

METRIC_LABELS = {"accuracy": "accuracy", "mse": "MSE", "bits_per_char": "bits/char"}
"""How the tier table names a task's metric."""


def tier_markdown(runs: pd.DataFrame) -> str:
    """What a sweep shows per task x model, as the Markdown table of docs/tiers.md for the default tier,
    and the divergences over all its runs.

    Per problem: the metric and its chance level; how many of ``none``'s runs diverged and the lowest
    learning rate at which one did; the best-tuned test metric of ``none`` and of the best strategy
    (``best_tuned_runs``: the setting with the best mean validation metric, a failed seed the
    worst; the test metric averaged over its seeds and panels, a failed seed at chance). Below it: the
    share of diverged runs, how many of them crossed the divergence rule with a finite training loss
    (``final_train_loss``, the loss at a diverged run's ``diverged_step``), and ``skip_nonfinite`` against
    ``none``.
    """
    best = best_tuned_runs(runs)
    lines = ["| task / model | metric (chance) | `none`: runs diverged | `none`: lowest diverging lr | "
             "`none` best-tuned test | best strategy, best-tuned test |", "|---|---|---:|---:|---:|---|"]
    for task, model in problems(runs):
        here = runs[(runs["task"] == task) & (runs["model"] == model)]
        first = here.iloc[0]
        higher = bool(first["higher_is_better"])
        metric = METRIC_LABELS.get(first["metric"], first["metric"])
        chance = f"{metric} ({number(float(first['chance_metric']))}{'' if higher else ', lower is better'})"
        none = here[here["strategy"] == "none"]
        diverged = none[none["diverged"].astype(bool)]
        lowest = f"{diverged['lr'].min():g}" if len(diverged) else "none"
        scores = best[(best["task"] == task) & (best["model"] == model)].groupby("strategy")["test_score"].mean()
        top = scores.idxmax() if higher else scores.idxmin()
        none_score = f"{scores['none']:.3f}" if "none" in scores else "n/a"
        lines.append(f"| {task} / {model} | {chance} | {len(diverged)}/{len(none)} | {lowest} | {none_score} | "
                     f"`{top}`, {scores[top]:.3f} |")
    failed = runs[runs["diverged"].astype(bool)]
    lines += ["", f"{len(runs)} runs, {len(failed)} diverged ({100 * len(failed) / len(runs):.0f}%)."]
    if len(failed):
        finite = int(np.isfinite(failed["final_train_loss"].to_numpy(dtype=float)).sum())
        lines.append(f"{finite} of the {len(failed)} diverged runs crossed the divergence rule with a finite "
                     "training loss.")
    for strategy in ("skip_nonfinite", "none"):
        mine = runs[runs["strategy"] == strategy]
        if len(mine):
            lines.append(f"`{strategy}`: {int(mine['diverged'].astype(bool).sum())} of {len(mine)} runs diverged.")
    return "\n".join(lines) + "\n"
