"""The paper's LaTeX tables (``table-*.tex``): best-tuned results, stability, stable ranges, problems, gains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.curves import CurveSource
from analysis.latex import lr_range, name, number, panel_keys, percent, rate_text, signed, tex_escape
from analysis.layout import split_panels
from analysis.macros import budget_text, stability, stable_default_row
from analysis.memo import memoised
from analysis.ranking import rank_matrix, ranking_errors
from analysis.sensitivity import stable_range_and_sensitivity
from analysis.stability import stable_lr_range
from analysis.summaries import seed_summary
from analysis.tuning import best_tuned_runs, default_runs, default_settings
from analysis.vocabulary import loss_unit, panel_columns, problems, select, strategy_order

TABLE_PANELS = 8
"""The most panels (columns) a per-panel table holds; a sweep with more gets the first panels of each model family
and, in the appendix, a table per family (:func:`panel_splits`)."""


def _panels(runs: pd.DataFrame) -> list[dict]:
    keys = panel_columns(runs)
    return [dict(zip(keys, row, strict=True)) for row in runs[keys].drop_duplicates().itertuples(index=False)]


def panel_splits(runs: pd.DataFrame) -> list[tuple[str, list[dict]]]:
    """The per-panel tables' columns: (suffix, panels), the main table's (suffix ``""``) first, then each model
    family's (``layout.split_panels`` at :data:`TABLE_PANELS`)."""
    panels = _panels(runs)
    family = dict(zip(zip(runs["task"], runs["model"], strict=True), runs["family"].astype(str), strict=True))
    split = split_panels([family[(p["task"], p["model"])] for p in panels], TABLE_PANELS)
    return [(suffix, [panels[i] for i in indexes]) for suffix, indexes in split.items()]


def _panel_header(runs: pd.DataFrame, panels: list[dict]) -> str:
    key = panel_keys(runs)
    return " & ".join("\\makecell{" + "\\\\ ".join(tex_escape(part) for part in key(p).split("-")) + "}"
                      for p in panels)


def table_best(runs: pd.DataFrame, panels: list[dict] | None = None) -> str:
    """LaTeX tabular: best-tuned mean test metric over its 95% bootstrap CI per strategy (rows) and panel (columns).

    ``seed_summary`` of ``best_tuned_runs``: failed seeds count at
    chance; ``k\\dagger`` marks a setting with k failed seeds. The ``settings``
    column is the tuning budget per panel (``macros.budget_text``); below each
    tuned value of a strategy with hyperparameters, ``def.`` is the same at its
    registered default hyperparameters, tuned over the learning rate only
    (``default_runs``), or ``not in grid``. ``panels``: the columns (default:
    the main table's, :func:`panel_splits`). Needs makecell.
    """
    keys = panel_columns(runs)
    strategies = strategy_order(runs)
    panels = panel_splits(runs)[0][1] if panels is None else panels
    summary = seed_summary(best_tuned_runs(runs), by=[*keys, "strategy"])
    defaults = default_runs(runs)
    default_summary = (seed_summary(best_tuned_runs(defaults), by=[*keys, "strategy"])
                       if len(defaults) else summary.iloc[:0])
    settings = default_settings(runs).set_index("strategy")
    budgets = budget_text(runs)
    header = f"strategy & settings & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{ll{'c' * len(panels)}}}", r"\toprule", header]
    metrics = [tex_escape(str(select(runs, {"task": p["task"], "model": p["model"]})["metric"].iloc[0]))
               for p in panels]
    lines.append(" & & " + " & ".join(metrics) + r" \\")
    lines.append(r"\midrule")
    cells: dict[tuple[str, int], list[str]] = {}
    for j, panel in enumerate(panels):
        rows = select(summary, panel).set_index("strategy")
        fixed = select(default_summary, panel).set_index("strategy")
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
    (``macros.stability``); the stable share judged per setting
    (``stability_points``), tuned and at the registered default
    hyperparameters; the mean rank over task x model pairs (``ranking.ranking_errors``).
    """
    result = stability(runs)
    budgets = budget_text(runs)
    ranks = rank_matrix(ranking_errors(runs)).mean(axis=0)
    lines = [r"\begin{tabular}{llrrrr}", r"\toprule",
             r"strategy & settings & divergence rate [95\% CI] & stable LRs [95\% CI] & stable LRs, default & "
             r"mean rank \\", r"\midrule"]
    for strategy in strategy_order(runs):
        default = stable_default_row(result, strategy)
        cells = [name(strategy), budgets[strategy], rate_text(result.divergence.loc[strategy]),
                 rate_text(result.stable.loc[strategy], 0),
                 "not in the grid" if default is None else percent(default["rate"], 0),
                 number(ranks.get(strategy, np.nan), 2)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_lr_range(runs: pd.DataFrame, panels: list[dict] | None = None, curves: CurveSource = None) -> str:
    """LaTeX tabular: the widest contiguous stable learning-rate range per strategy and panel, with the budget,
    and below each range the strategy's learning-rate sensitivity there.

    ``stable_lr_range``: a learning rate is stable when the strategy's
    best setting at it has no failed seed (``stability_points``). Below it,
    in small type, ``sensitivity.loss_sensitivity`` (Wortsman et al.'s, in the
    task's loss: the row under the header gives each column's unit, nats or
    MSE): the mean over seeds with its 95% interval over seeds (none with
    fewer than 5). Without ``curves`` the ranges stand alone. ``panels``: the
    columns (default: the main table's, :func:`panel_splits`). Needs makecell.
    """
    keys = panel_columns(runs)
    panels = panel_splits(runs)[0][1] if panels is None else panels
    ranges = stable_lr_range(runs) if curves is None else _ranges_and_sensitivity(runs, curves)
    budgets = budget_text(runs)
    header = f"strategy & settings & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{ll{'c' * len(panels)}}}", r"\toprule", header]
    if curves is not None:
        units = [loss_unit(select(runs, {"task": p["task"], "model": p["model"]})["metric"].iloc[0]) for p in panels]
        lines.append(r"\scriptsize LR sensitivity in & & " + " & ".join(rf"\scriptsize {u}" for u in units)
                     + r" \\")
    lines.append(r"\midrule")
    for strategy in strategy_order(runs):
        own = ranges[ranges["strategy"] == strategy]
        entries = []
        for panel in panels:
            row = select(own, {k: panel[k] for k in keys})
            if row.empty:
                entries.append("--")
            else:
                entries.append(lr_range(row.iloc[0]) if curves is None else _range_and_sensitivity(row.iloc[0]))
        lines.append(f"{name(strategy)} & {budgets[strategy]} & {' & '.join(entries)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


@memoised
def _ranges_and_sensitivity(runs: pd.DataFrame, curves: CurveSource) -> pd.DataFrame:
    """``sensitivity.stable_range_and_sensitivity`` of every panel of ``runs``, once for the main table and the
    appendix's (each panel's range and sensitivity read its own runs only: a table of some panels shows the same
    numbers)."""
    return stable_range_and_sensitivity(runs, curves)


def _range_and_sensitivity(row: pd.Series) -> str:
    """A stable range above its learning-rate sensitivity ``mean [low, high]`` in small type (``\\makecell``)."""
    text = number(row["sensitivity"], 2)
    if np.isfinite(row["sensitivity_low"]):
        text += f" [{number(row['sensitivity_low'], 2)}, {number(row['sensitivity_high'], 2)}]"
    return f"\\makecell{{{lr_range(row)}\\\\ \\scriptsize {text}}}"


def table_problems(runs: pd.DataFrame) -> str:
    """LaTeX tabular: per task x model, its family, metric, chance level and the divergence rate of ``none``."""
    lines = [r"\begin{tabular}{llllrr}", r"\toprule",
             r"task & model & family & metric & chance & diverged without mitigation \\", r"\midrule"]
    for task, model in problems(runs):
        subset = select(runs, {"task": task, "model": model})
        none = subset[subset["strategy"] == "none"]
        rate = percent(none["diverged"].mean()) if len(none) else "n/a"
        first = subset.iloc[0]
        lines.append(f"{name(task)} & {name(model)} & {tex_escape(first['family'])} & "
                     f"{tex_escape(first['metric'])} & {number(float(first['chance_metric']))} & {rate} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_gains(gains: pd.DataFrame, runs: pd.DataFrame) -> str:
    """LaTeX tabular: decades of stable learning rate each strategy at its pre-stated setting adds over ``none``
    (rows: strategy and optimizer, never pooled, an optimizer the strategy was not measured under left out) per
    model family.

    question Q1 (``q1_stable_range``) at ``level = family``, ``stated`` rows
    (one fixed setting per learning rate, as ``none``): the mean over the
    family's task x model pairs of the gain per panel, above its 95% interval
    (over pairs, or seeds for a family with one pair); ``$\\geq$`` marks a
    lower bound (the strategy's range reaches the top of the grid on some
    panel), ``$\\leq$`` an upper one.
    """
    rows = gains[(gains["level"] == "family") & gains["stated"].astype(bool)] if len(gains) else gains
    families = ["all", *dict.fromkeys(runs["family"].astype(str))]
    optimizers = list(dict.fromkeys(rows["optimizer"].astype(str))) if len(rows) else []
    lines = [f"\\begin{{tabular}}{{ll{'c' * len(families)}}}", r"\toprule",
             "strategy & optimizer & " + " & ".join("all families" if f == "all" else name(f) for f in families)
             + r" \\", r"\midrule"]
    for strategy in [s for s in strategy_order(runs) if s != "none"]:
        mine = rows[rows["strategy"] == strategy] if len(rows) else rows
        label = str(mine["setting"].iloc[0]) if len(mine) else strategy
        for optimizer in optimizers or ["--"]:
            cells = []
            for family in families:
                row = mine[(mine["optimizer"] == optimizer) & (mine["family"] == family)] if len(mine) else mine
                if row.empty:
                    cells.append("--")
                    continue
                row = row.iloc[0]
                mark = {"lower": r"$\geq$", "upper": r"$\leq$"}.get(row["bound"], "")
                interval = (f"[{signed(row['low'])}, {signed(row['high'])}]" if np.isfinite(row["low"]) else "")
                cells.append(f"\\makecell{{{mark}{signed(row['estimate'])}\\\\ \\scriptsize {interval}}}")
            if len(mine) and all(cell == "--" for cell in cells):
                continue  # not trained under this optimizer (the transformer's mitigations: Adam only)
            lines.append(f"{name(label)} & {tex_escape(optimizer)} & {' & '.join(cells)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
