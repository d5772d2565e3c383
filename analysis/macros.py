"""The numbers the paper cites, as ``numbers.tex`` macros: key -> LaTeX text (:func:`compute`).

All statistics come from the analysis modules and follow the one rule for
failed runs (diverged, or no finite validation metric; ``analysis.vocabulary``):
a failed seed is the worst value when the best-tuned setting is chosen, and
counts at the task's chance level in every mean, interval, test and rank. Each
table says so in its note (:data:`TABLE_NOTE`, ``note-<key>`` macros).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis import design
from analysis.design import distinct_pairs
from analysis.latex import lr_range, name, number, panel_keys, percent, tex_escape
from analysis.layout import cd_defined
from analysis.problems import distinct_problems
from analysis.questions import QUESTIONS
from analysis.ranking import critical_difference_width, friedman_test, rank_matrix, ranking_errors, strategy_cost
from analysis.stability import lr_sensitivity, stability_points, stable_lr_range
from analysis.summaries import cluster_rate, paired_tests, seed_summary
from analysis.tuning import best_tuned, best_tuned_runs, default_runs, default_settings, tuning_budget
from analysis.vocabulary import FAILED_SCORE, PROBLEM_COLUMNS, panel_columns, problems, select, strategy_order


def budget_text(runs: pd.DataFrame) -> dict[str, str]:
    """Per strategy, its tuning budget per panel, ``learning rates x hyperparameter values`` (ranges if they vary)."""
    budget = tuning_budget(runs)
    texts = {}
    for strategy, rows in budget.groupby("strategy", sort=False):
        counts = [f"{lo}" if lo == hi else f"{lo}--{hi}"
                  for lo, hi in ((rows[c].min(), rows[c].max()) for c in ("lrs", "hyperparameters"))]
        texts[str(strategy)] = rf"{counts[0]}\,$\times$\,{counts[1]}"
    return texts


def _pairs_text(panels: pd.DataFrame) -> str:
    """The task x model pairs of ``panels``, each once with its optimizers: ``a--b (sgd, adam), ...``."""
    texts = []
    for (task, model), rows in panels.groupby(["task", "model"], sort=False):
        optimizers = ", ".join(tex_escape(str(o)) for o in dict.fromkeys(rows["optimizer"]))
        texts.append(f"{name(task)}--{name(model)} ({optimizers})")
    return ", ".join(texts)


def grid_text(runs: pd.DataFrame) -> dict[str, str]:
    """Per strategy whose hyperparameter grid is not the same on every panel it trains, one sentence saying
    where it trains fewer settings: a claim that tunes a strategy "over its grid" tunes it over that grid
    there (``grid-<strategy>`` macros; the limitations list them). Strategies with one grid everywhere have none."""
    budget = tuning_budget(runs)
    texts = {}
    for strategy, rows in budget.groupby("strategy", sort=False):
        most = int(rows["hyperparameters"].max())
        fewer = rows[rows["hyperparameters"] < most]
        if fewer.empty:
            continue
        where = "; ".join(f"{count} on {_pairs_text(panels)}"
                          for count, panels in fewer.groupby("hyperparameters", sort=True))
        texts[str(strategy)] = (f"{name(strategy)} is tuned over {most} hyperparameter settings on "
                                f"{len(rows) - len(fewer)} of its {len(rows)} panels, and over fewer on the "
                                f"other {len(fewer)}: {where}.")
    return texts


def default_text(settings: pd.DataFrame) -> dict[str, str]:
    """Per strategy, its registered defaults (``c = v``), ``not in the grid`` or ``no hyperparameters``."""
    texts = {}
    for _, row in settings.iterrows():
        if not row["tuned"]:
            texts[row["strategy"]] = "no hyperparameters"
        elif not row["in_grid"]:
            texts[row["strategy"]] = "not in the grid"
        else:
            texts[row["strategy"]] = ", ".join(f"{tex_escape(k)} = {v:g}" for k, v in row["default"].items())
    return texts


class Stability(NamedTuple):
    """Per strategy: the grid-wide rates of the stability table, each with its cluster-bootstrap interval."""

    divergence: pd.DataFrame
    """``cluster_rate`` of ``diverged`` over the runs, clusters = problems."""
    stable: pd.DataFrame
    """``cluster_rate`` of ``stable`` over ``stability_points``, clusters = problems."""
    stable_default: pd.DataFrame
    """The same at each strategy's registered default hyperparameters (``default_runs``)."""
    settings: pd.DataFrame
    """``default_settings``: the defaults and whether the grid holds them."""


def stability(runs: pd.DataFrame) -> Stability:
    """The grid-wide rates per strategy (:class:`Stability`), intervals resampling the distinct task x model pairs
    (duplicate problems merged first, ``problems.distinct_problems``: a pair counted twice would be resampled as
    two independent units, and its shared runs counted twice in the rates)."""
    runs = distinct_problems(runs)[0]
    defaults = default_runs(runs)
    return Stability(
        divergence=cluster_rate(runs, "diverged").set_index("strategy"),
        stable=cluster_rate(stability_points(runs), "stable").set_index("strategy"),
        stable_default=(cluster_rate(stability_points(defaults), "stable").set_index("strategy")
                        if len(defaults) else pd.DataFrame(columns=["rate", "low", "high"])),
        settings=default_settings(runs),
    )


def stable_default_row(result: Stability, strategy: str) -> pd.Series | None:
    """The stable-share row of ``strategy`` at its default: the tuned one for a strategy without hyperparameters."""
    setting = result.settings.set_index("strategy").loc[strategy]
    if not setting["tuned"]:
        return result.stable.loc[strategy]
    return result.stable_default.loc[strategy] if strategy in result.stable_default.index else None


def problem_mean(frame: pd.DataFrame, value: str) -> pd.Series:
    """Per strategy, the mean over task x model pairs of the per-problem mean over panels of ``value`` (NaN skipped)."""
    per_problem = frame.groupby(["strategy", *PROBLEM_COLUMNS], sort=False)[value].mean()
    return per_problem.groupby(level="strategy", sort=False).mean()


def compute(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every macro of numbers.tex: key -> LaTeX text; ``config``, the sweep's, names the task kinds of the
    design's numbers (``design.macros``: distinct tasks, tasks per family, censored compared ranges, seed sets)."""
    values: dict[str, str] = {}
    strategies = strategy_order(runs)
    keys = panel_columns(runs)
    values["sweep"] = name(str(runs["sweep"].iloc[0]))
    values["runs"] = number(len(runs))
    values["cells"] = number(runs["cell"].nunique())
    values["problems"] = number(len(problems(runs)))
    values["distinct-problems"] = number(len(distinct_pairs(runs)))  # duplicates merged
    values["questions"] = number(len(QUESTIONS))
    values.update(design.macros(design.summarise(runs, config)))
    values["panels"] = number(len(runs[keys].drop_duplicates()))
    values["tasks"] = number(runs["task"].nunique())
    values["models"] = number(runs["model"].nunique())
    values["families"] = number(runs["family"].nunique())
    values["optimizers"] = number(runs["optimizer"].nunique())
    values["strategies"] = number(len(strategies))
    values["seeds"] = number(runs["seed"].nunique())
    values["steps"] = number(runs["steps"].max())
    values["lrs"] = number(runs["lr"].nunique())
    values["lr-min"] = number(runs["lr"].min())
    values["lr-max"] = number(runs["lr"].max())
    values["diverged-runs"] = number(runs["diverged"].sum())
    values["divergence-all"] = percent(runs["diverged"].mean())
    # wall_time_s is the time of the whole cell (its runs train together): count it once per cell
    values["compute-hours"] = number(runs.groupby("cell")["wall_time_s"].first().sum() / 3600)

    result = stability(runs)
    sensitivity = problem_mean(lr_sensitivity(runs), "normalised")
    cost = strategy_cost(runs)
    budgets, defaults, grids = budget_text(runs), default_text(result.settings), grid_text(runs)
    for strategy in strategies:
        for key, row, digits in ((f"divergence-{strategy}", result.divergence.loc[strategy], 1),
                                 (f"stable-lrs-{strategy}", result.stable.loc[strategy], 0)):
            for suffix, column in (("", "rate"), ("-low", "low"), ("-high", "high")):
                values[key + suffix] = percent(row[column], digits)
        default = stable_default_row(result, strategy)
        values[f"stable-lrs-{strategy}-default"] = "not in the grid" if default is None else percent(default["rate"], 0)
        values[f"default-{strategy}"] = defaults[strategy]
        values[f"budget-{strategy}"] = budgets[strategy]
        if strategy in grids:
            values[f"grid-{strategy}"] = grids[strategy]
        values[f"sensitivity-{strategy}"] = number(sensitivity.get(strategy, np.nan), 2)
        relative = cost[cost["strategy"] == strategy]["relative"].dropna()
        values[f"cost-{strategy}"] = number(relative.median() if len(relative) else np.nan, 2)
    if "none" not in strategies:
        values["divergence-none"] = values["sensitivity-none"] = values["stable-lrs-none"] = "n/a"
        for bound in ("low", "high"):
            values[f"divergence-none-{bound}"] = values[f"stable-lrs-none-{bound}"] = "n/a"
    relative = cost.dropna(subset=["relative"]).groupby("strategy")["relative"].median()
    relative = relative.drop("none", errors="ignore")
    if len(relative):
        values["costliest-strategy"] = name(relative.idxmax())
        values["costliest-cost"] = number(relative.max(), 2)
    else:
        values["costliest-strategy"] = values["costliest-cost"] = "n/a"
    # compared only where every strategy compared trained: a strategy of one problem (qk_norm, on the
    # transformer alone) is no rival of those trained on every problem
    everywhere = result.divergence[result.divergence["clusters"] == result.divergence["clusters"].max()]
    most_stable = everywhere["rate"].idxmin()
    values["most-stable-strategy"] = name(most_stable)
    values["most-stable-rate"] = percent(result.divergence.loc[most_stable, "rate"])
    for bound in ("low", "high"):
        values[f"most-stable-{bound}"] = percent(result.divergence.loc[most_stable, bound])
    values["rate-clusters"] = number(result.divergence["clusters"].max())
    values["failed-score"] = number(FAILED_SCORE)

    best = best_tuned(runs)
    summary = seed_summary(best_tuned_runs(runs), by=[*keys, "strategy"])
    panel_key = panel_keys(runs)
    for _, row in best.iterrows():
        key = panel_key({k: row[k] for k in keys})
        values[f"lr-{key}-{row['strategy']}"] = number(row["lr"])
    for _, row in summary.iterrows():
        key = panel_key({k: row[k] for k in keys})
        values[f"test-{key}-{row['strategy']}"] = number(row["mean"])
        values[f"test-{key}-{row['strategy']}-low"] = number(row["low"])
        values[f"test-{key}-{row['strategy']}-high"] = number(row["high"])
    for _, row in stable_lr_range(runs).iterrows():
        key = panel_key({k: row[k] for k in keys})
        values[f"lr-range-{key}-{row['strategy']}"] = lr_range(row)
    for task, model in problems(runs):
        subset = select(runs, {"task": task, "model": model})
        chance = float(subset["chance_metric"].iloc[0])
        values[f"chance-{task}-{model}"] = number(chance)
        values[f"metric-{task}-{model}"] = tex_escape(str(subset["metric"].iloc[0]))
        none = subset[subset["strategy"] == "none"]
        values[f"divergence-{task}-{model}-none"] = percent(none["diverged"].mean() if len(none) else np.nan)

    values.update(ranking_values(ranking_errors(runs)))
    values.update(holm_values(paired_tests(best_tuned_runs(runs))))
    for key, text in TABLE_NOTE.items():
        values[f"note-{key}"] = text
    return values


def ranking_values(errors: pd.DataFrame) -> dict[str, str]:
    """The macros of the ranking over task x model pairs: mean ranks, best strategy, Friedman, critical difference."""
    values: dict[str, str] = {}
    mean_ranks = rank_matrix(errors).mean(axis=0).sort_values()
    for strategy, rank in mean_ranks.items():
        values[f"rank-{strategy}"] = number(rank, 2)
    if len(mean_ranks):
        values["best-strategy"] = name(mean_ranks.index[0])
        values["best-strategy-rank"] = number(mean_ranks.iloc[0], 2)
    else:
        values["best-strategy"] = values["best-strategy-rank"] = "n/a"
    friedman = friedman_test(errors)
    values["ranked-problems"] = number(len(errors))
    values["ranked-strategies"] = number(errors.shape[1])
    values["friedman-stat"] = number(friedman["statistic"])
    values["friedman-p"] = number(friedman["pvalue"], 2)
    defined = cd_defined(errors.shape[1], errors.shape[0])
    values["cd"] = number(critical_difference_width(errors.shape[1], errors.shape[0]), 2) if defined else "n/a"
    return values


def holm_values(tests: pd.DataFrame, alpha: float = 0.05) -> dict[str, str]:
    """The macros of the paired tests against ``none``: how many, how many significant, and the Holm family."""
    significant = int((tests["pvalue_holm"] < alpha).sum()) if len(tests) else 0
    return {
        "paired-tests": number(len(tests)),
        "paired-significant": number(significant),
        "paired-family": f"all {number(len(tests))} tests (one per panel and strategy) at once",
    }


TABLE_NOTE = {
    "best": "Failed runs (diverged or no finite validation metric) count at the task's chance level; "
            "the best-tuned setting is chosen on validation with a failed seed as the worst value.",
    "budget": "Settings: the tuning budget, learning rates $\\times$ hyperparameter values tried per panel; "
              "def.: the strategy's registered default hyperparameters, tuned over the learning rate only "
              "(not in the grid where the sweep never trained them).",
    "rate": "Divergence rate: runs flagged diverged over all runs of the grid; its 95\\% interval is a "
            "percentile bootstrap that resamples whole task--model pairs, the independent unit.",
    "stable": "Stable: a (panel, learning rate) point whose best setting at that learning rate (chosen on "
              "validation) has no failed seed (diverged, or ended no better than chance), so every strategy is "
              "judged on one setting's seeds per point; "
              "95\\% interval by bootstrap over task--model pairs.",
    "lr-range": "Stable: the strategy's best setting at that learning rate (chosen on validation) has no "
                "failed seed, the same number of runs per point for every strategy; "
                "the widest contiguous stable span of the grid. Below it, in small type, the learning-rate "
                "sensitivity of Wortsman et al.\\ (2023) at those same settings, in the task's validation loss "
                "(nats, or MSE for regression; the row under the header): per seed, the mean over the grid of "
                "the lesser of the final and the initial loss (a diverged run counts at its initial loss) minus "
                "the best final loss; the mean over seeds and its 95\\% bootstrap interval over seeds "
                "(none with fewer than 5).",
    "rank": "Ranks over task--model pairs: per pair, the mean over its panels (optimizers, stress dials) of the "
            "best-tuned test error (1 $-$ accuracy, MSE, or bits per character), one observation per pair.",
}
"""How each table counts diverged runs; numbers.tex defines them as ``note-<key>`` for the captions."""
