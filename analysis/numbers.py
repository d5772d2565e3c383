"""Every number the paper cites, as LaTeX, computed from a sweep's tables.

Writes into ``paper/generated/<sweep>/``:

- ``numbers.tex``: one ``\\benchdef{key}{value}`` line per number; the paper
  reads them with ``\\benchnum{key}`` (``paper/main.tex`` defines both, and
  an unknown key prints a bold ``??`` and a LaTeX warning);
- ``table-best.tex``: best-tuned test metric per strategy and panel;
- ``table-stability.tex``: divergence rate, stable learning rates and rank per strategy;
- ``table-lr-range.tex``: the stable learning-rate range per strategy and panel;
- ``table-problems.tex``: the task x model pairs with metric, chance level and divergence of ``none``.

All statistics come from :mod:`analysis.stats` and follow its one rule for
failed runs (diverged, or no finite validation metric): a failed seed is the
worst value when the best-tuned setting is chosen, and counts at the task's
chance level in every mean, interval, test and rank. Each table says so in its note.

Run it as ``python -m analysis.numbers --sweep default`` from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import data, stats
from analysis.layout import generated_dir


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


def ranking(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Ranks (problems x strategies, 1 = best) of the best-tuned mean test metric and the Friedman test.

    ``stats.seed_summary`` of ``stats.best_tuned_runs``: failed runs count at chance.
    """
    summary = stats.seed_summary(stats.best_tuned_runs(runs), by=[*stats.problem_columns(runs), "strategy"])
    scores = stats.score_matrix(summary)
    return stats.rank_matrix(scores), stats.friedman_test(scores)


def compute(runs: pd.DataFrame) -> dict[str, str]:
    """Every macro of numbers.tex: key -> LaTeX text."""
    values: dict[str, str] = {}
    strategies = data.strategy_order(runs)
    values["sweep"] = name(str(runs["sweep"].iloc[0]))
    values["runs"] = number(len(runs))
    values["cells"] = number(runs["cell"].nunique())
    values["problems"] = number(len(data.problems(runs)))
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

    overall = stats.divergence_rates(runs, by=["strategy"]).set_index("strategy")
    grid = stats.divergence_rates(runs, by=[*stats.problem_columns(runs), "strategy", "lr"])
    grid["stable"] = grid["diverged"] == 0
    stable_fraction = grid.groupby("strategy")["stable"].mean()
    sensitivity = stats.lr_sensitivity(runs, value="test_metric_at_best_val")
    cost = stats.strategy_cost(runs)
    for strategy in strategies:
        row = overall.loc[strategy]
        values[f"divergence-{strategy}"] = percent(row["rate"])
        values[f"divergence-{strategy}-low"] = percent(row["low"])
        values[f"divergence-{strategy}-high"] = percent(row["high"])
        values[f"stable-lrs-{strategy}"] = percent(stable_fraction.get(strategy, np.nan), 0)
        own = sensitivity[sensitivity["strategy"] == strategy]["sensitivity"]
        values[f"sensitivity-{strategy}"] = number(own.mean() if len(own) else np.nan)
        relative = cost[cost["strategy"] == strategy]["relative"].dropna()
        values[f"cost-{strategy}"] = number(relative.median() if len(relative) else np.nan, 2)
    if "none" not in strategies:
        values["divergence-none"] = values["sensitivity-none"] = "n/a"
    relative = cost.dropna(subset=["relative"]).groupby("strategy")["relative"].median()
    relative = relative.drop("none", errors="ignore")
    if len(relative):
        values["costliest-strategy"] = name(relative.idxmax())
        values["costliest-cost"] = number(relative.max(), 2)
    else:
        values["costliest-strategy"] = values["costliest-cost"] = "n/a"
    most_stable = overall["rate"].idxmin()
    values["most-stable-strategy"] = name(most_stable)
    values["most-stable-rate"] = percent(overall.loc[most_stable, "rate"])

    keys = stats.problem_columns(runs)
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
    ranges = stats.stable_lr_range(runs, by=[*keys, "strategy"])
    for _, row in ranges.iterrows():
        key = panel_key({k: row[k] for k in keys}, runs)
        values[f"lr-range-{key}-{row['strategy']}"] = lr_range(row)
    for task, model in data.problems(runs):
        subset = data.select(runs, {"task": task, "model": model})
        chance = float(subset["chance_metric"].iloc[0])
        values[f"chance-{task}-{model}"] = number(chance)
        values[f"metric-{task}-{model}"] = tex_escape(str(subset["metric"].iloc[0]))
        none = subset[subset["strategy"] == "none"]
        values[f"divergence-{task}-{model}-none"] = percent(none["diverged"].mean() if len(none) else np.nan)

    ranks, friedman = ranking(runs)
    mean_ranks = ranks.mean(axis=0).sort_values()
    for strategy, rank in mean_ranks.items():
        values[f"rank-{strategy}"] = number(rank, 2)
    if len(mean_ranks):
        values["best-strategy"] = name(mean_ranks.index[0])
        values["best-strategy-rank"] = number(mean_ranks.iloc[0], 2)
    else:
        values["best-strategy"] = values["best-strategy-rank"] = "n/a"
    values["ranked-panels"] = number(len(ranks))
    values["friedman-stat"] = number(friedman["statistic"])
    values["friedman-p"] = number(friedman["pvalue"], 2)
    tests = stats.paired_tests(stats.best_tuned_runs(runs))
    significant = int((tests["pvalue_holm"] < 0.05).sum()) if len(tests) else 0
    values["paired-tests"] = number(len(tests))
    values["paired-significant"] = number(significant)
    for key, text in TABLE_NOTE.items():
        values[f"note-{key}"] = text
    return values


def numbers_tex(values: dict[str, str]) -> str:
    """The text of numbers.tex."""
    lines = ["% Generated by `python -m analysis.numbers`; do not edit.", ""]
    lines += [f"\\benchdef{{{key}}}{{{value}}}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


TABLE_NOTE = {
    "best": "Failed runs (diverged or no finite validation metric) count at the task's chance level; "
            "the best-tuned setting is chosen on validation with a failed seed as the worst value.",
    "rate": "Divergence rate: runs flagged diverged over all runs of the grid, with a 95\\% Wilson interval.",
    "lr-range": "Stable: no run at that learning rate diverged (seeds and thresholds pooled); "
                "the widest contiguous stable span of the grid.",
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
    keys = stats.problem_columns(runs)
    return [dict(zip(keys, row, strict=True)) for row in runs[keys].drop_duplicates().itertuples(index=False)]


def _panel_header(runs: pd.DataFrame, panels: list[dict]) -> str:
    return " & ".join("\\makecell{" + "\\\\ ".join(tex_escape(part) for part in panel_key(p, runs).split("-"))
                      + "}" for p in panels)


def table_best(runs: pd.DataFrame) -> str:
    """LaTeX tabular: best-tuned mean test metric over its 95% bootstrap CI per strategy (rows) and panel (columns).

    ``stats.seed_summary`` of ``stats.best_tuned_runs``: failed seeds count at
    chance; ``k\\dagger`` marks a setting with k failed seeds. Needs makecell.
    """
    keys = stats.problem_columns(runs)
    strategies = data.strategy_order(runs)
    panels = _panels(runs)
    summary = stats.seed_summary(stats.best_tuned_runs(runs), by=[*keys, "strategy"])
    header = f"strategy & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{l{'c' * len(panels)}}}", r"\toprule", header]
    metrics = [tex_escape(str(data.select(runs, {"task": p["task"], "model": p["model"]})["metric"].iloc[0]))
               for p in panels]
    lines.append(" & " + " & ".join(metrics) + r" \\")
    lines.append(r"\midrule")
    cells: dict[tuple[str, int], str | tuple[str, str]] = {}
    for j, panel in enumerate(panels):
        rows = data.select(summary, panel).set_index("strategy")
        scores = {}
        for strategy in strategies:
            if strategy not in rows.index:
                cells[(strategy, j)] = "--"
                continue
            row = rows.loc[strategy]
            text = f"{row['mean']:.3g}"
            if row["failed"]:
                text += f"$^{{{int(row['failed'])}\\dagger}}$"
            interval = f"[{row['low']:.3g}, {row['high']:.3g}]" if np.isfinite(row["low"]) else ""
            cells[(strategy, j)] = (text, interval)
            scores[strategy] = row["mean"] if row["higher_is_better"] else -row["mean"]
        if scores:
            winner = max(scores, key=scores.get)
            mean, interval = cells[(winner, j)]
            cells[(winner, j)] = (f"\\textbf{{{mean}}}", interval)
    for strategy in strategies:
        entries = []
        for j in range(len(panels)):
            entry = cells.get((strategy, j), "--")
            # mean over an interval in small type: \makecell (package makecell) stacks the two lines
            entries.append(f"\\makecell{{{entry[0]}\\\\ \\scriptsize {entry[1]}}}" if isinstance(entry, tuple)
                           else entry)
        lines.append(f"{name(strategy)} & {' & '.join(entries)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_stability(runs: pd.DataFrame) -> str:
    """LaTeX tabular: per strategy, divergence rate [95% Wilson CI] over the grid, stable LR share, mean rank."""
    strategies = data.strategy_order(runs)
    overall = stats.divergence_rates(runs, by=["strategy"]).set_index("strategy")
    grid = stats.divergence_rates(runs, by=[*stats.problem_columns(runs), "strategy", "lr"])
    stable = (grid["diverged"] == 0).groupby(grid["strategy"]).mean()
    ranks = ranking(runs)[0].mean(axis=0)
    lines = [r"\begin{tabular}{lrrr}", r"\toprule",
             r"strategy & divergence rate [95\% CI] & stable LRs & mean rank \\", r"\midrule"]
    for strategy in strategies:
        row = overall.loc[strategy]
        rate = f"{percent(row['rate'])} [{percent(row['low'])}, {percent(row['high'])}]"
        rank = number(ranks.get(strategy, np.nan), 2)
        lines.append(f"{name(strategy)} & {rate} & {percent(stable.get(strategy, np.nan), 0)} & {rank} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_lr_range(runs: pd.DataFrame) -> str:
    """LaTeX tabular: the widest contiguous stable learning-rate range (no diverged run) per strategy and panel.

    ``stats.stable_lr_range`` pooled over the strategy's hyperparameters and seeds.
    """
    keys = stats.problem_columns(runs)
    panels = _panels(runs)
    ranges = stats.stable_lr_range(runs, by=[*keys, "strategy"])
    header = f"strategy & {_panel_header(runs, panels)} \\\\"
    lines = [f"\\begin{{tabular}}{{l{'c' * len(panels)}}}", r"\toprule", header, r"\midrule"]
    for strategy in data.strategy_order(runs):
        own = ranges[ranges["strategy"] == strategy]
        entries = []
        for panel in panels:
            row = data.select(own, panel)
            entries.append(lr_range(row.iloc[0]) if len(row) else "--")
        lines.append(f"{name(strategy)} & {' & '.join(entries)} \\\\")
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


def write(runs: pd.DataFrame, out: Path | str) -> list[Path]:
    """Write numbers.tex and the tables into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "numbers.tex": numbers_tex(compute(runs)),
        "table-best.tex": table_best(runs),
        "table-stability.tex": table_stability(runs),
        "table-problems.tex": table_problems(runs),
        "table-lr-range.tex": table_lr_range(runs),
    }
    paths = []
    for filename, text in files.items():
        path = out / filename
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.numbers --sweep NAME [--root DIR] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m analysis.numbers", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="sweep name: reads results/<sweep>/runs.parquet")
    parser.add_argument("--root", default=".", help="repository root (default: current folder)")
    parser.add_argument("--out", default=None, help="output folder (default: paper/generated/<sweep>)")
    args = parser.parse_args(argv)
    try:
        runs = data.load_runs(args.sweep, args.root)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or generated_dir(args.sweep, args.root)
    for path in write(runs, out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
