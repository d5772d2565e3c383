"""Every number the paper cites, as LaTeX, computed from a sweep's tables.

Writes into ``paper/generated/<sweep>/``:

- ``numbers.tex``: one ``\\benchdef{key}{value}`` line per number; the paper
  reads them with ``\\benchnum{key}`` (``paper/main.tex`` defines both, and
  an unknown key prints a bold ``??`` and a LaTeX warning);
- ``table-best.tex``: best-tuned test metric per strategy and panel;
- ``table-stability.tex``: divergence rate, stable learning rates and rank per strategy;
- ``table-problems.tex``: the task x model pairs with metric, chance level and divergence of ``none``.

Run it as ``python -m analysis.numbers --sweep default`` from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis import data
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


def strategy_ranks(best: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Rank of each strategy's best-tuned setting on every panel (1 = best), panels as rows.

    A setting is scored by its mean oriented test metric over seeds that did not
    diverge; a setting with diverged seeds ranks below every one without, as in
    the choice of the best setting. Only strategies present on every panel are ranked.
    """
    keys = data.panel_columns(runs)
    frame = best.copy()
    higher = runs.groupby(["task", "model"])["higher_is_better"].first()
    frame["_higher"] = [bool(higher[(t, m)]) for t, m in zip(frame["task"], frame["model"], strict=True)]
    frame["_score"] = data.oriented(frame["test_metric"], frame["_higher"])
    frame["_score"] = frame["_score"].fillna(-np.inf) - 1e9 * frame["diverged_fraction"]
    frame["_panel"] = [panel_key(dict(zip(keys, row, strict=True)), runs)
                       for row in frame[keys].itertuples(index=False)]
    scores = frame.pivot_table(index="_panel", columns="strategy", values="_score", aggfunc="first")
    scores = scores.dropna(axis=1)
    ranks = scores.apply(lambda row: pd.Series(stats.rankdata(-row.to_numpy()), index=row.index), axis=1)
    return ranks


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

    overall = data.divergence_rates(runs, by=("strategy",)).set_index("strategy")
    grid = data.divergence_rates(runs, by=("task", "model", "optimizer", "strategy", "lr"))
    grid["stable"] = grid["diverged"] == 0
    stable_fraction = grid.groupby("strategy")["stable"].mean()
    for strategy in strategies:
        row = overall.loc[strategy]
        values[f"divergence-{strategy}"] = percent(row["rate"])
        values[f"divergence-{strategy}-low"] = percent(row["low"])
        values[f"divergence-{strategy}-high"] = percent(row["high"])
        values[f"stable-lrs-{strategy}"] = percent(stable_fraction.get(strategy, np.nan), 0)
    if "none" not in strategies:
        values["divergence-none"] = "n/a"
    most_stable = overall["rate"].idxmin()
    values["most-stable-strategy"] = name(most_stable)
    values["most-stable-rate"] = percent(overall.loc[most_stable, "rate"])

    best = data.best_settings(runs)
    keys = data.panel_columns(runs)
    for _, row in best.iterrows():
        key = panel_key({k: row[k] for k in keys}, runs)
        values[f"test-{key}-{row['strategy']}"] = number(row["test_metric"])
        values[f"lr-{key}-{row['strategy']}"] = number(row["lr"])
    for task, model in data.problems(runs):
        subset = data.select(runs, {"task": task, "model": model})
        chance = float(subset["chance_metric"].iloc[0])
        values[f"chance-{task}-{model}"] = number(chance)
        values[f"metric-{task}-{model}"] = tex_escape(str(subset["metric"].iloc[0]))
        none = subset[subset["strategy"] == "none"]
        values[f"divergence-{task}-{model}-none"] = percent(none["diverged"].mean() if len(none) else np.nan)

    ranks = strategy_ranks(best, runs)
    mean_ranks = ranks.mean(axis=0).sort_values()
    for strategy, rank in mean_ranks.items():
        values[f"rank-{strategy}"] = number(rank, 2)
    if len(mean_ranks):
        values["best-strategy"] = name(mean_ranks.index[0])
        values["best-strategy-rank"] = number(mean_ranks.iloc[0], 2)
    else:
        values["best-strategy"] = values["best-strategy-rank"] = "n/a"
    values["ranked-panels"] = number(len(ranks))
    if ranks.shape[0] >= 2 and ranks.shape[1] >= 3:
        result = stats.friedmanchisquare(*[ranks[c].to_numpy() for c in ranks.columns])
        values["friedman-stat"] = number(result.statistic)
        values["friedman-p"] = number(result.pvalue, 2)
    else:
        values["friedman-stat"] = values["friedman-p"] = "n/a"
    return values


def numbers_tex(values: dict[str, str]) -> str:
    """The text of numbers.tex."""
    lines = ["% Generated by `python -m analysis.numbers`; do not edit.", ""]
    lines += [f"\\benchdef{{{key}}}{{{value}}}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def table_best(runs: pd.DataFrame) -> str:
    """LaTeX tabular: best-tuned mean test metric over its 95% bootstrap CI per strategy (rows) and panel (columns).

    Needs the LaTeX package makecell.
    """
    chosen = data.best_runs(runs)
    keys = data.panel_columns(runs)
    strategies = data.strategy_order(runs)
    panel_rows = runs[keys].drop_duplicates()  # config order
    panels = [dict(zip(keys, row, strict=True)) for row in panel_rows.itertuples(index=False)]
    header = " & ".join("\\makecell{" + "\\\\ ".join(tex_escape(part) for part in panel_key(p, runs).split("-")) + "}"
                        for p in panels)
    lines = [f"\\begin{{tabular}}{{l{'c' * len(panels)}}}", r"\toprule", f"strategy & {header} \\\\"]
    metrics = [tex_escape(str(data.select(runs, {"task": p["task"], "model": p["model"]})["metric"].iloc[0]))
               for p in panels]
    lines.append(" & " + " & ".join(metrics) + r" \\")
    lines.append(r"\midrule")
    cells: dict[tuple[str, int], str | tuple[str, str]] = {}
    for j, panel in enumerate(panels):
        members = data.select(chosen, panel)
        higher = bool(members["higher_is_better"].iloc[0]) if len(members) else True
        scores = {}
        for strategy in strategies:
            seeds = members[(members["strategy"] == strategy) & ~members["diverged"].astype(bool)]
            values = seeds["test_metric_at_best_val"].to_numpy(dtype=float)
            total = int((members["strategy"] == strategy).sum())
            if total == 0:
                cells[(strategy, j)] = "--"
                continue
            if values.size == 0:
                cells[(strategy, j)] = "diverged"
                continue
            low, high = data.bootstrap_ci(values[:, None])
            text = f"{values.mean():.3g}"
            if values.size < total:
                text += f"$^{{{total - values.size}\\dagger}}$"
            cells[(strategy, j)] = (text, f"[{low[0]:.3g}, {high[0]:.3g}]")
            scores[strategy] = values.mean() if higher else -values.mean()
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
    overall = data.divergence_rates(runs, by=("strategy",)).set_index("strategy")
    grid = data.divergence_rates(runs, by=("task", "model", "optimizer", "strategy", "lr"))
    stable = (grid["diverged"] == 0).groupby(grid["strategy"]).mean()
    ranks = strategy_ranks(data.best_settings(runs), runs).mean(axis=0)
    lines = [r"\begin{tabular}{lrrr}", r"\toprule",
             r"strategy & divergence rate [95\% CI] & stable LRs & mean rank \\", r"\midrule"]
    for strategy in strategies:
        row = overall.loc[strategy]
        rate = f"{percent(row['rate'])} [{percent(row['low'])}, {percent(row['high'])}]"
        rank = number(ranks.get(strategy, np.nan), 2)
        lines.append(f"{name(strategy)} & {rate} & {percent(stable.get(strategy, np.nan), 0)} & {rank} \\\\")
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
