"""Every number the paper cites, as LaTeX, computed from a sweep's tables.

Writes into ``paper/generated/<sweep>/``:

- ``numbers.tex``: one ``\\benchdef{key}{value}`` line per number; the paper
  reads them with ``\\benchnum{key}`` (``paper/main.tex`` defines both, and
  an unknown key prints a bold ``??`` and a LaTeX warning);
- ``table-best.tex``: best-tuned test metric per strategy and panel;
- ``table-stability.tex``: divergence rate, stable learning rates and rank per strategy;
- ``table-lr-range.tex``: the stable learning-rate range per strategy and panel;
- ``table-problems.tex``: the task x model pairs with metric, chance level and divergence of ``none``;
- ``table-gains.tex``: decades of stable learning rate each strategy adds over ``none``, per model family
  (question Q1, ``analysis.questions.q1_stable_range``), a lower bound marked where a range is censored;
- ``claims.tex``: the study's claims (``paper/claims.yaml``, evaluated by ``analysis.claims``): one
  ``\\benchclaim{<id>}`` sentence per claim and its numbers as ``\\benchdef`` keys; beside it
  ``claims.json``, the same machine-readable (not in ``bench.paths.GENERATED``, the list of these files
  that the workflow reads: Snakemake removes a rule's outputs before rerunning it, and the previous
  claims.json is what a rerun's flips are judged against).

All statistics come from :mod:`analysis.stats` and follow its one rule for
failed runs (diverged, or no finite validation metric): a failed seed is the
worst value when the best-tuned setting is chosen, and counts at the task's
chance level in every mean, interval, test and rank. Each table says so in its note.

Run it as ``python -m analysis.numbers --sweep default`` from the repository root. It prints which
claims hold and a ``warning: claim <id> flipped: ...`` line for every claim whose outcome changed against
the previous ``claims.json`` at the output path (or ``--reference FILE``). ``--findings`` prints the
answers to the study's seven questions as a Markdown table instead (``--all-claims``: every claim).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import claims, data, layout, questions, stats
from bench import atomic, paths


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    replacements = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
                    "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(replacements.get(ch, ch) for ch in str(text))


def name(text: str) -> str:
    """A strategy, task or model name set in typewriter type."""
    return rf"\texttt{{{tex_escape(text)}}}"


def percent(fraction: float, digits: int = 1) -> str:
    """A fraction as a LaTeX percentage, e.g. ``12.5\\%``; ``n/a`` where undefined."""
    if fraction is None or not np.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{digits}f}\\%"


def number(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``n/a`` where undefined."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def panel_key(panel: dict, runs: pd.DataFrame) -> str:
    """A macro-key fragment naming a panel: task-model, plus optimizer and dials where they vary."""
    parts = [str(panel["task"]), str(panel["model"])]
    if runs["optimizer"].nunique() > 1:
        parts.append(str(panel["optimizer"]))
    for dial in data.dial_columns(runs):
        value = panel.get(dial)
        if value is not None and np.isfinite(value):
            if data.select(runs, {"task": panel["task"], "model": panel["model"]})[dial].nunique() > 1:
                parts.append(f"{dial}{value:g}")
    return "-".join(parts)


def ranking(runs: pd.DataFrame) -> pd.DataFrame:
    """The error matrix the ranks, Friedman test, CD diagram and profiles use: task x model pairs x strategies.

    ``stats.error_matrix`` of ``stats.seed_summary`` of ``stats.best_tuned_runs``:
    per problem, the mean over its panels of the best-tuned mean test error
    (1 - accuracy, or MSE); failed runs count at chance.
    """
    return stats.error_matrix(stats.seed_summary(stats.best_tuned_runs(runs), by=[*stats.panel_columns(runs),
                                                                                    "strategy"]))


def budget_text(runs: pd.DataFrame) -> dict[str, str]:
    """Per strategy, its tuning budget per panel, ``learning rates x hyperparameter values`` (ranges if they vary)."""
    budget = stats.tuning_budget(runs)
    texts = {}
    for strategy, rows in budget.groupby("strategy", sort=False):
        counts = [f"{lo}" if lo == hi else f"{lo}--{hi}"
                  for lo, hi in ((rows[c].min(), rows[c].max()) for c in ("lrs", "hyperparameters"))]
        texts[str(strategy)] = rf"{counts[0]}\,$\times$\,{counts[1]}"
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
    """``stats.cluster_rate`` of ``diverged`` over the runs, clusters = problems."""
    stable: pd.DataFrame
    """``stats.cluster_rate`` of ``stable`` over ``stats.stability_points``, clusters = problems."""
    stable_default: pd.DataFrame
    """The same at each strategy's registered default hyperparameters (``stats.default_runs``)."""
    settings: pd.DataFrame
    """``stats.default_settings``: the defaults and whether the grid holds them."""


def stability(runs: pd.DataFrame) -> Stability:
    """The grid-wide rates per strategy (:class:`Stability`), intervals resampling task x model pairs."""
    defaults = stats.default_runs(runs)
    return Stability(
        divergence=stats.cluster_rate(runs, "diverged").set_index("strategy"),
        stable=stats.cluster_rate(stats.stability_points(runs), "stable").set_index("strategy"),
        stable_default=(stats.cluster_rate(stats.stability_points(defaults), "stable").set_index("strategy")
                        if len(defaults) else pd.DataFrame(columns=["rate", "low", "high"])),
        settings=stats.default_settings(runs),
    )


def rate_text(row: pd.Series | None, digits: int = 1) -> str:
    """``rate [low, high]`` as LaTeX percentages; ``not in the grid`` where there is no row."""
    if row is None:
        return "not in the grid"
    return f"{percent(row['rate'], digits)} [{percent(row['low'], digits)}, {percent(row['high'], digits)}]"


def stable_default_row(result: Stability, strategy: str) -> pd.Series | None:
    """The stable-share row of ``strategy`` at its default: the tuned one for a strategy without hyperparameters."""
    setting = result.settings.set_index("strategy").loc[strategy]
    if not setting["tuned"]:
        return result.stable.loc[strategy]
    return result.stable_default.loc[strategy] if strategy in result.stable_default.index else None


def problem_mean(frame: pd.DataFrame, value: str) -> pd.Series:
    """Per strategy, the mean over task x model pairs of the per-problem mean over panels of ``value`` (NaN skipped)."""
    per_problem = frame.groupby(["strategy", *stats.PROBLEM_COLUMNS], sort=False)[value].mean()
    return per_problem.groupby(level="strategy", sort=False).mean()


def compute(runs: pd.DataFrame) -> dict[str, str]:
    """Every macro of numbers.tex: key -> LaTeX text."""
    values: dict[str, str] = {}
    strategies = data.strategy_order(runs)
    keys = stats.panel_columns(runs)
    values["sweep"] = name(str(runs["sweep"].iloc[0]))
    values["runs"] = number(len(runs))
    values["cells"] = number(runs["cell"].nunique())
    values["problems"] = number(len(data.problems(runs)))
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
    sensitivity = problem_mean(stats.lr_sensitivity(runs), "normalised")
    cost = stats.strategy_cost(runs)
    budgets, defaults = budget_text(runs), default_text(result.settings)
    for strategy in strategies:
        for key, row, digits in ((f"divergence-{strategy}", result.divergence.loc[strategy], 1),
                                 (f"stable-lrs-{strategy}", result.stable.loc[strategy], 0)):
            for suffix, column in (("", "rate"), ("-low", "low"), ("-high", "high")):
                values[key + suffix] = percent(row[column], digits)
        default = stable_default_row(result, strategy)
        values[f"stable-lrs-{strategy}-default"] = "not in the grid" if default is None else percent(default["rate"], 0)
        values[f"default-{strategy}"] = defaults[strategy]
        values[f"budget-{strategy}"] = budgets[strategy]
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
    most_stable = result.divergence["rate"].idxmin()
    values["most-stable-strategy"] = name(most_stable)
    values["most-stable-rate"] = percent(result.divergence.loc[most_stable, "rate"])
    values["rate-clusters"] = number(result.divergence["clusters"].max())

    best = stats.best_tuned(runs)
    summary = stats.seed_summary(stats.best_tuned_runs(runs), by=[*keys, "strategy"])
    for _, row in best.iterrows():
        key = panel_key({k: row[k] for k in keys}, runs)
        values[f"lr-{key}-{row['strategy']}"] = number(row["lr"])
    for _, row in summary.iterrows():
        key = panel_key({k: row[k] for k in keys}, runs)
        values[f"test-{key}-{row['strategy']}"] = number(row["mean"])
        values[f"test-{key}-{row['strategy']}-low"] = number(row["low"])
        values[f"test-{key}-{row['strategy']}-high"] = number(row["high"])
    for _, row in stats.stable_lr_range(runs).iterrows():
        key = panel_key({k: row[k] for k in keys}, runs)
        values[f"lr-range-{key}-{row['strategy']}"] = lr_range(row)
    for task, model in data.problems(runs):
        subset = data.select(runs, {"task": task, "model": model})
        chance = float(subset["chance_metric"].iloc[0])
        values[f"chance-{task}-{model}"] = number(chance)
        values[f"metric-{task}-{model}"] = tex_escape(str(subset["metric"].iloc[0]))
        none = subset[subset["strategy"] == "none"]
        values[f"divergence-{task}-{model}-none"] = percent(none["diverged"].mean() if len(none) else np.nan)

    values.update(ranking_values(ranking(runs)))
    values.update(holm_values(stats.paired_tests(stats.best_tuned_runs(runs))))
    for key, text in TABLE_NOTE.items():
        values[f"note-{key}"] = text
    return values


def ranking_values(errors: pd.DataFrame) -> dict[str, str]:
    """The macros of the ranking over task x model pairs: mean ranks, best strategy, Friedman, critical difference."""
    values: dict[str, str] = {}
    mean_ranks = stats.rank_matrix(errors).mean(axis=0).sort_values()
    for strategy, rank in mean_ranks.items():
        values[f"rank-{strategy}"] = number(rank, 2)
    if len(mean_ranks):
        values["best-strategy"] = name(mean_ranks.index[0])
        values["best-strategy-rank"] = number(mean_ranks.iloc[0], 2)
    else:
        values["best-strategy"] = values["best-strategy-rank"] = "n/a"
    friedman = stats.friedman_test(errors)
    values["ranked-problems"] = number(len(errors))
    values["ranked-strategies"] = number(errors.shape[1])
    values["friedman-stat"] = number(friedman["statistic"])
    values["friedman-p"] = number(friedman["pvalue"], 2)
    defined = layout.cd_defined(errors.shape[1], errors.shape[0])
    values["cd"] = number(stats.critical_difference(errors).cd, 2) if defined else "n/a"
    return values


def holm_values(tests: pd.DataFrame, alpha: float = 0.05) -> dict[str, str]:
    """The macros of the paired tests against ``none``: how many, how many significant, and the Holm family."""
    significant = int((tests["pvalue_holm"] < alpha).sum()) if len(tests) else 0
    return {
        "paired-tests": number(len(tests)),
        "paired-significant": number(significant),
        "paired-family": f"all {number(len(tests))} tests (one per panel and strategy) at once",
    }


def numbers_tex(values: dict[str, str]) -> str:
    """The text of numbers.tex."""
    lines = ["% Generated by `python -m analysis.numbers`; do not edit.", ""]
    lines += [f"\\benchdef{{{key}}}{{{value}}}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


TABLE_NOTE = {
    "best": "Failed runs (diverged or no finite validation metric) count at the task's chance level; "
            "the best-tuned setting is chosen on validation with a failed seed as the worst value.",
    "budget": "Settings: the tuning budget, learning rates $\\times$ hyperparameter values tried per panel; "
              "def.: the strategy's registered default hyperparameters, tuned over the learning rate only "
              "(not in the grid where the sweep never trained them).",
    "rate": "Divergence rate: runs flagged diverged over all runs of the grid; its 95\\% interval is a "
            "percentile bootstrap that resamples whole task--model pairs, the independent unit.",
    "stable": "Stable: a (panel, learning rate) point whose best setting at that learning rate (chosen on "
              "validation) has no diverged seed, so every strategy is judged on one setting's seeds per point; "
              "95\\% interval by bootstrap over task--model pairs.",
    "lr-range": "Stable: the strategy's best setting at that learning rate (chosen on validation) has no "
                "diverged seed, the same number of runs per point for every strategy; "
                "the widest contiguous stable span of the grid.",
    "rank": "Ranks over task--model pairs: per pair, the mean over its panels (optimizers, stress dials) of the "
            "best-tuned test error (1 $-$ accuracy, or MSE), one observation per pair.",
}
"""How each table counts diverged runs; numbers.tex defines them as ``note-<key>`` for the captions."""


def lr_range(row: pd.Series) -> str:
    """A stable learning-rate range ``lo--hi`` (one value if a single lr, ``none`` if no lr is stable)."""
    if row["stable_lrs"] == 0:
        return "none"
    if row["lo"] == row["hi"]:
        return f"{row['lo']:g}"
    return f"{row['lo']:g}--{row['hi']:g}"


def _panels(runs: pd.DataFrame) -> list[dict]:
    keys = stats.panel_columns(runs)
    return [dict(zip(keys, row, strict=True)) for row in runs[keys].drop_duplicates().itertuples(index=False)]


def _panel_header(runs: pd.DataFrame, panels: list[dict]) -> str:
    return " & ".join("\\makecell{" + "\\\\ ".join(tex_escape(part) for part in panel_key(p, runs).split("-"))
                      + "}" for p in panels)


def table_best(runs: pd.DataFrame) -> str:
    """LaTeX tabular: best-tuned mean test metric over its 95% bootstrap CI per strategy (rows) and panel (columns).

    ``stats.seed_summary`` of ``stats.best_tuned_runs``: failed seeds count at
    chance; ``k\\dagger`` marks a setting with k failed seeds. The ``settings``
    column is the tuning budget per panel (:func:`budget_text`); below each
    tuned value of a strategy with hyperparameters, ``def.`` is the same at its
    registered default hyperparameters, tuned over the learning rate only
    (``stats.default_runs``), or ``not in grid``. Needs makecell.
    """
    keys = stats.panel_columns(runs)
    strategies = data.strategy_order(runs)
    panels = _panels(runs)
    summary = stats.seed_summary(stats.best_tuned_runs(runs), by=[*keys, "strategy"])
    defaults = stats.default_runs(runs)
    default_summary = (stats.seed_summary(stats.best_tuned_runs(defaults), by=[*keys, "strategy"])
                       if len(defaults) else summary.iloc[:0])
    settings = stats.default_settings(runs).set_index("strategy")
    budgets = budget_text(runs)
    header = f"strategy & settings & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{ll{'c' * len(panels)}}}", r"\toprule", header]
    metrics = [tex_escape(str(data.select(runs, {"task": p["task"], "model": p["model"]})["metric"].iloc[0]))
               for p in panels]
    lines.append(" & & " + " & ".join(metrics) + r" \\")
    lines.append(r"\midrule")
    cells: dict[tuple[str, int], list[str]] = {}
    for j, panel in enumerate(panels):
        rows = data.select(summary, panel).set_index("strategy")
        fixed = data.select(default_summary, panel).set_index("strategy")
        scores = {}
        for strategy in [s for s in strategies if s in rows.index]:
            row = rows.loc[strategy]
            text = f"{row['mean']:.3g}"
            if row["failed"]:
                text += f"$^{{{int(row['failed'])}\\dagger}}$"
            cells[(strategy, j)] = [text, f"[{row['low']:.3g}, {row['high']:.3g}]" if np.isfinite(row["low"]) else ""]
            if settings.loc[strategy, "tuned"]:
                cells[(strategy, j)].append(f"def. {fixed.loc[strategy, 'mean']:.3g}" if strategy in fixed.index
                                            else "def. not in grid")
            scores[strategy] = row["mean"] if row["higher_is_better"] else -row["mean"]
        if scores:
            winner = max(scores, key=scores.get)
            cells[(winner, j)][0] = f"\\textbf{{{cells[(winner, j)][0]}}}"
    for strategy in strategies:
        entries = []
        for j in range(len(panels)):
            entry = cells.get((strategy, j))
            # mean over its interval (and the default's mean) in small type: \makecell (package makecell) stacks them
            entries.append("\\makecell{" + "\\\\ \\scriptsize ".join(entry) + "}" if entry else "--")
        lines.append(f"{name(strategy)} & {budgets[strategy]} & {' & '.join(entries)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_stability(runs: pd.DataFrame) -> str:
    """LaTeX tabular: per strategy, tuning budget, divergence rate and stable-LR share [95% CI], at default, mean rank.

    Rates over the whole grid with intervals that resample task x model pairs
    (:func:`stability`); the stable share judged per setting
    (``stats.stability_points``), tuned and at the registered default
    hyperparameters; the mean rank over task x model pairs (:func:`ranking`).
    """
    result = stability(runs)
    budgets = budget_text(runs)
    ranks = stats.rank_matrix(ranking(runs)).mean(axis=0)
    lines = [r"\begin{tabular}{llrrrr}", r"\toprule",
             r"strategy & settings & divergence rate [95\% CI] & stable LRs [95\% CI] & stable LRs, default & "
             r"mean rank \\", r"\midrule"]
    for strategy in data.strategy_order(runs):
        default = stable_default_row(result, strategy)
        cells = [name(strategy), budgets[strategy], rate_text(result.divergence.loc[strategy]),
                 rate_text(result.stable.loc[strategy], 0),
                 "not in the grid" if default is None else percent(default["rate"], 0),
                 number(ranks.get(strategy, np.nan), 2)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_lr_range(runs: pd.DataFrame) -> str:
    """LaTeX tabular: the widest contiguous stable learning-rate range per strategy and panel, with the budget.

    ``stats.stable_lr_range``: a learning rate is stable when the strategy's
    best setting at it has no diverged seed (``stats.stability_points``).
    """
    keys = stats.panel_columns(runs)
    panels = _panels(runs)
    ranges = stats.stable_lr_range(runs)
    budgets = budget_text(runs)
    header = f"strategy & settings & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{ll{'c' * len(panels)}}}", r"\toprule", header, r"\midrule"]
    for strategy in data.strategy_order(runs):
        own = ranges[ranges["strategy"] == strategy]
        entries = []
        for panel in panels:
            row = data.select(own, {k: panel[k] for k in keys})
            entries.append(lr_range(row.iloc[0]) if len(row) else "--")
        lines.append(f"{name(strategy)} & {budgets[strategy]} & {' & '.join(entries)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_problems(runs: pd.DataFrame) -> str:
    """LaTeX tabular: per task x model, its family, metric, chance level and the divergence rate of ``none``."""
    lines = [r"\begin{tabular}{llllrr}", r"\toprule",
             r"task & model & family & metric & chance & diverged without mitigation \\", r"\midrule"]
    for task, model in data.problems(runs):
        subset = data.select(runs, {"task": task, "model": model})
        none = subset[subset["strategy"] == "none"]
        rate = percent(none["diverged"].mean()) if len(none) else "n/a"
        first = subset.iloc[0]
        lines.append(f"{name(task)} & {name(model)} & {tex_escape(first['family'])} & "
                     f"{tex_escape(first['metric'])} & {number(float(first['chance_metric']))} & {rate} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_gains(gains: pd.DataFrame, runs: pd.DataFrame) -> str:
    """LaTeX tabular: decades of stable learning rate each strategy adds over ``none`` (rows) per model family.

    ``analysis.questions.q1_stable_range`` at ``level = family`` over all
    optimizers: the mean over the family's task x model pairs of the gain
    per panel, above its 95% interval (over pairs, or seeds for a family
    with one pair); ``$\\geq$`` marks a lower bound (the strategy's range
    reaches the top of the grid on some panel), ``$\\leq$`` an upper one.
    """
    rows = gains[(gains["level"] == "family") & (gains["optimizer"] == "all")] if len(gains) else gains
    families = ["all", *dict.fromkeys(runs["family"].astype(str))]
    lines = [f"\\begin{{tabular}}{{l{'c' * len(families)}}}", r"\toprule",
             "strategy & " + " & ".join("all families" if f == "all" else name(f) for f in families) + r" \\",
             r"\midrule"]
    for strategy in [s for s in data.strategy_order(runs) if s != "none"]:
        cells = []
        for family in families:
            row = rows[(rows["strategy"] == strategy) & (rows["family"] == family)] if len(rows) else rows
            if row.empty:
                cells.append("--")
                continue
            row = row.iloc[0]
            mark = {"lower": r"$\geq$", "upper": r"$\leq$"}.get(row["bound"], "")
            interval = (f"[{signed(row['low'])}, {signed(row['high'])}]" if np.isfinite(row["low"]) else "")
            cells.append(f"\\makecell{{{mark}{signed(row['estimate'])}\\\\ \\scriptsize {interval}}}")
        lines.append(f"{name(strategy)} & {' & '.join(cells)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def signed(value: float, digits: int = 2) -> str:
    """A number for a table cell, its minus sign typeset: ``$-$0.5``; ``n/a`` where undefined."""
    text = number(value, digits)
    return "$-$" + text[1:] if text.startswith("-") else text


def write(runs: pd.DataFrame, out: Path | str, curves: questions.CurveSource = None,
          claims_file: Path | str = claims.CLAIMS_FILE, reference: Path | str | None = None) -> list[Path]:
    """Write numbers.tex, the tables and the claims (claims.tex, claims.json) into ``out``, each atomically;
    return the paths (``bench.paths.GENERATED``, then claims.json).

    Prints one line per claim (holds, fails, not measured) and, on standard
    error, a warning for every claim that flipped against ``reference`` or the
    previous claims.json at ``out`` (``analysis.claims.write``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answers = questions.answer_all(runs, curves)
    texts = (numbers_tex(compute(runs)), table_best(runs), table_stability(runs), table_problems(runs),
             table_lr_range(runs), table_gains(answers["q1_stable_range"], runs))
    tables = [name for name in paths.GENERATED if name != paths.CLAIMS_TEX]  # claims.tex: claims.write
    written_paths = []
    for filename, text in zip(tables, texts, strict=True):
        atomic.write_text(out / filename, text)
        written_paths.append(out / filename)
    written = claims.write(answers, out, str(runs["sweep"].iloc[0]), claims_file, reference)
    for line in written.summary():
        print(line)
    for line in written.warnings:
        print(line, file=sys.stderr)
    return [*written_paths, written.tex, written.json]


def findings_markdown(sweep: str, root: Path | str = ".", headline_only: bool = True,
                      claims_file: Path | str = claims.CLAIMS_FILE) -> str:
    """The answers to the study's questions as a Markdown table, computed from ``results/<sweep>/``.

    Columns: question, answer sentence, effect, 95% interval, figure stem; one
    row per question (its headline claim), or per claim with ``headline_only=False``.
    """
    runs = data.load_runs(sweep, root)
    titles, entries = claims.load(claims_file)
    needed = list(dict.fromkeys(entry.function for entry in entries))
    outcomes = claims.evaluate_claims(questions.answer_all(runs, data.curve_reader(sweep, root), needed), entries)
    return claims.findings_markdown(outcomes, titles, headline_only)


def tier_markdown(sweep: str, root: Path | str = ".") -> str:
    """What a sweep shows per task x model, as the Markdown table of docs/tiers.md for the default tier,
    and the divergences over all its runs.

    Per problem: the metric and its chance level; how many of ``none``'s runs diverged and the lowest
    learning rate at which one did; the best-tuned test metric of ``none`` and of the best strategy
    (``stats.best_tuned_runs``: the setting with the best mean validation metric, a failed seed the
    worst; the test metric averaged over its seeds and panels, a failed seed at chance). Below it: the
    share of diverged runs, how many of them crossed the divergence rule with a finite training loss
    (``curves.parquet`` at each run's ``diverged_step``), and ``skip_nonfinite`` against ``none``.
    """
    runs = data.load_runs(sweep, root)
    best = stats.best_tuned_runs(runs)
    lines = ["| task / model | metric (chance) | `none`: runs diverged | `none`: lowest diverging lr | "
             "`none` best-tuned test | best strategy, best-tuned test |", "|---|---|---:|---:|---:|---|"]
    for task, model in data.problems(runs):
        here = runs[(runs["task"] == task) & (runs["model"] == model)]
        first = here.iloc[0]
        higher = bool(first["higher_is_better"])
        metric = "accuracy" if first["metric"] == "accuracy" else "MSE"
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
    read = data.curve_reader(sweep, root)
    if read is not None and len(failed):
        curves = read(failed["run_id"]).merge(failed[["run_id", "diverged_step"]], on="run_id")
        at = curves[curves["step"] == curves["diverged_step"]]
        finite = int(np.isfinite(at["train_loss"].to_numpy(dtype=float)).sum())
        lines.append(f"{finite} of the {len(failed)} diverged runs crossed the divergence rule with a finite "
                     "training loss.")
    for strategy in ("skip_nonfinite", "none"):
        mine = runs[runs["strategy"] == strategy]
        if len(mine):
            lines.append(f"`{strategy}`: {int(mine['diverged'].astype(bool).sum())} of {len(mine)} runs diverged.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.numbers --sweep NAME [--root DIR] [--out DIR] [--findings]``."""
    parser = argparse.ArgumentParser(prog="python -m analysis.numbers", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="sweep name: reads results/<sweep>/runs.parquet")
    parser.add_argument("--root", default=".", help="repository root (default: current folder)")
    parser.add_argument("--out", default=None, help=f"output folder (default: {paths.generated_dir('<sweep>')})")
    parser.add_argument("--claims", default=None, help="claims file (default: paper/claims.yaml)")
    parser.add_argument("--reference", default=None,
                        help="claims.json to judge flips against (default: the previous one at the output folder)")
    parser.add_argument("--findings", action="store_true",
                        help="print the answers to the study's questions as a Markdown table; write nothing")
    parser.add_argument("--all-claims", action="store_true", help="with --findings: one row per claim")
    parser.add_argument("--tier-table", action="store_true",
                        help="print what the sweep shows per task x model (the default-tier table of docs/tiers.md); "
                             "write nothing")
    args = parser.parse_args(argv)
    claims_file = Path(args.claims) if args.claims else paths.claims_file(args.root)
    if not claims_file.is_file():
        claims_file = claims.CLAIMS_FILE
    try:
        if args.findings:
            print(findings_markdown(args.sweep, args.root, not args.all_claims, claims_file), end="")
            return 0
        if args.tier_table:
            print(tier_markdown(args.sweep, args.root), end="")
            return 0
        runs = data.load_runs(args.sweep, args.root)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or paths.generated_dir(args.sweep, args.root)
    for path in write(runs, out, data.curve_reader(args.sweep, args.root), claims_file, args.reference):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
