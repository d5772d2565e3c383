"""Figures of convergence and stability, one style and one colour per strategy.

Line colours come from the Okabe-Ito palette (Okabe & Ito 2008), which stays
distinguishable under the common colour-vision deficiencies; the baseline
``none`` is always black. Past seven strategies the colours repeat with a
different dash pattern, so every strategy keeps a unique, colour-blind-safe
style in every figure of a sweep. Heatmaps use a single-hue sequential map
(white to dark blue), readable without colour vision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from analysis import data
from analysis.layout import FIGURE_FORMATS, figures_dir, problem_stem

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
BASELINE_COLOUR = "#000000"
DASHES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Style:
    """How one strategy is drawn."""

    colour: str
    linestyle: str


def strategy_styles(strategies: Sequence[str]) -> dict[str, Style]:
    """A fixed style per strategy: ``none`` black and solid, the others Okabe-Ito colour x dash pattern."""
    styles: dict[str, Style] = {}
    others = [s for s in strategies if s != "none"]
    if "none" in strategies:
        styles["none"] = Style(BASELINE_COLOUR, "-")
    for i, name in enumerate(others):
        styles[name] = Style(OKABE_ITO[i % len(OKABE_ITO)], DASHES[(i // len(OKABE_ITO)) % len(DASHES)])
    return styles


def setup() -> None:
    """A compact style for paper figures."""
    sns.set_theme(context="paper", style="ticks", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 150, "savefig.dpi": 200, "axes.spines.top": False,
                         "axes.spines.right": False, "legend.frameon": False, "pdf.fonttype": 42})


def save(fig: Figure, stem: Path | str) -> list[Path]:
    """Write ``fig`` as ``<stem>.pdf`` and ``<stem>.png``; return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FIGURE_FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def smoothing_window(runs: pd.DataFrame) -> int:
    """Moving-average window for train-loss curves: 2% of the training steps (at least 1)."""
    return max(1, round(0.02 * float(runs["steps"].max())))


def draw_convergence(ax: plt.Axes, runs: pd.DataFrame, curves: pd.DataFrame, panel: dict,
                     styles: dict[str, Style], best: pd.DataFrame | None = None) -> None:
    """Train loss vs step of each strategy's best-tuned setting on one panel: mean and 95% bootstrap band.

    A cross marks the step at which a seed of that setting diverged; the dotted
    grey line is the loss of the chance predictor.
    """
    best = data.best_runs(runs) if best is None else best
    chosen = data.select(best, panel)
    window = smoothing_window(runs)
    for strategy in styles:
        members = chosen[chosen["strategy"] == strategy]
        if members.empty:
            continue
        style = styles[strategy]
        band = data.curve_band(curves, members["run_id"].tolist(), window=window)
        ax.plot(band["step"], band["mean"], color=style.colour, linestyle=style.linestyle, linewidth=1.4)
        ax.fill_between(band["step"], band["low"], band["high"], color=style.colour, alpha=0.2, linewidth=0)
        for _, run in members[members["diverged"].astype(bool)].iterrows():
            at = band[band["step"] <= run["diverged_step"]]
            if not at.empty:
                ax.plot(at["step"].iloc[-1], at["mean"].iloc[-1], marker="x", color=style.colour, markersize=6)
    chance = data.select(runs, panel)["chance_loss"].dropna()
    if not chance.empty and np.isfinite(chance.iloc[0]) and chance.iloc[0] > 0:
        ax.axhline(float(chance.iloc[0]), color="0.5", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title(data.panel_label(panel, runs), fontsize="medium")


def _plain_log_labels(ax: plt.Axes) -> None:
    """Label a log axis with plain numbers (0.5, 2) where it spans less than two decades."""
    low, high = ax.get_ylim()
    if low > 0 and high / low < 100:
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())


def draw_stability(ax: plt.Axes, runs: pd.DataFrame, task: str, model: str, optimizer: str,
                   strategies: Sequence[str], colorbar: bool = True) -> None:
    """Heatmap of the divergence rate per strategy (rows) and learning rate (columns) of one problem.

    The rate pools every seed, strategy hyperparameter and stress-dial value of that cell of the grid.
    """
    subset = data.select(runs, {"task": task, "model": model, "optimizer": optimizer})
    rates = data.divergence_rates(subset, by=("strategy", "lr"), intervals=False)
    table = rates.pivot(index="strategy", columns="lr", values="rate")
    table = table.reindex([s for s in strategies if s in table.index])
    table = table.reindex(sorted(table.columns), axis=1)
    values = table.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [f"{lr:g}" for lr in table.columns])
    ax.set_yticks(range(values.shape[0]), list(table.index))
    ax.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize="x-small",
                    color="white" if value > 0.5 else "black")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="divergence rate", format=PercentFormatter(1.0), fraction=0.05)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("")
    title = f"{task} / {model}" + (f", {optimizer}" if runs["optimizer"].nunique() > 1 else "")
    ax.set_title(title, fontsize="medium")


def legend_handles(styles: dict[str, Style], present: Sequence[str]) -> list[Line2D]:
    """Legend entries for the strategies that appear."""
    return [Line2D([], [], color=styles[s].colour, linestyle=styles[s].linestyle, label=s)
            for s in styles if s in present]


def convergence_figure(runs: pd.DataFrame, curves: pd.DataFrame, task: str, model: str,
                       styles: dict[str, Style], best: pd.DataFrame | None = None) -> Figure:
    """One problem's convergence curves, one axes per panel (optimizer x stress-dial value)."""
    best = data.best_runs(runs) if best is None else best
    panels = data.panels(runs, task, model)
    fig, axes = _grid(len(panels), width=4.2, height=3.0)
    for ax, panel in zip(axes, panels, strict=False):
        draw_convergence(ax, runs, curves, panel, styles, best)
    present = data.select(runs, {"task": task, "model": model})["strategy"].unique()
    fig.legend(handles=legend_handles(styles, present), loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def stability_figure(runs: pd.DataFrame, task: str, model: str, strategies: Sequence[str]) -> Figure:
    """One problem's divergence heatmap, one axes per optimizer."""
    optimizers = list(dict.fromkeys(data.select(runs, {"task": task, "model": model})["optimizer"]))
    n_rows = len(strategies)
    fig, axes = _grid(len(optimizers), width=1.0 + 0.6 * runs["lr"].nunique(), height=0.8 + 0.3 * n_rows)
    for ax, optimizer in zip(axes, optimizers, strict=False):
        draw_stability(ax, runs, task, model, optimizer, strategies)
    return fig


def convergence_overview(runs: pd.DataFrame, curves: pd.DataFrame, styles: dict[str, Style],
                         best: pd.DataFrame | None = None, columns: int = 3) -> Figure:
    """Every panel of the sweep's convergence curves in one grid with one legend (the paper figure)."""
    best = data.best_runs(runs) if best is None else best
    all_panels = [p for task, model in data.problems(runs) for p in data.panels(runs, task, model)]
    fig, axes = _grid(len(all_panels), width=3.4, height=2.5, columns=columns)
    for ax, panel in zip(axes, all_panels, strict=False):
        draw_convergence(ax, runs, curves, panel, styles, best)
    fig.legend(handles=legend_handles(styles, runs["strategy"].unique()), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(5, len(styles)))
    return fig


def stability_overview(runs: pd.DataFrame, strategies: Sequence[str], columns: int = 3) -> Figure:
    """Every problem's divergence heatmap in one grid (the paper figure)."""
    keys = list(dict.fromkeys(
        (t, m, o) for t, m, o in runs[["task", "model", "optimizer"]].itertuples(index=False)))
    width = 1.2 + 0.45 * runs["lr"].nunique()
    fig, axes = _grid(len(keys), width=width, height=0.9 + 0.25 * len(strategies), columns=columns)
    for i, (ax, (task, model, optimizer)) in enumerate(zip(axes, keys, strict=False)):
        draw_stability(ax, runs, task, model, optimizer, strategies, colorbar=False)
        if i % columns:
            ax.set_yticklabels([])
    return fig


def _grid(n: int, width: float, height: float, columns: int | None = None) -> tuple[Figure, list[plt.Axes]]:
    columns = max(1, min(n, columns or n))
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def convergence_and_stability(runs: pd.DataFrame, curves: pd.DataFrame, out: Path | str) -> list[Path]:
    """Write every convergence and stability figure of a sweep into folder ``out``; return the paths.

    Per problem: ``convergence-<task>-<model>`` and ``stability-<task>-<model>``;
    for the whole sweep: ``convergence`` and ``stability``; each as PDF and PNG.
    """
    setup()
    out = Path(out)
    strategies = data.strategy_order(runs)
    styles = strategy_styles(strategies)
    best = data.best_runs(runs)
    paths: list[Path] = []
    for task, model in data.problems(runs):
        fig = convergence_figure(runs, curves, task, model, styles, best)
        paths += save(fig, out / problem_stem("convergence", task, model))
        fig = stability_figure(runs, task, model, strategies)
        paths += save(fig, out / problem_stem("stability", task, model))
    paths += save(convergence_overview(runs, curves, styles, best), out / "convergence")
    paths += save(stability_overview(runs, strategies), out / "stability")
    return paths


def sweep_figures(sweep: str, root: Path | str = ".") -> list[Path]:
    """Load a sweep's tables and write its convergence and stability figures under figures/<sweep>/."""
    runs, curves = data.load(sweep, root)
    return convergence_and_stability(runs, curves, figures_dir(sweep, root))
