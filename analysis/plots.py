"""Figures of convergence and stability, one style and one colour per strategy.

Line colours come from the Okabe-Ito palette (Okabe & Ito 2008), which stays
distinguishable under the common colour-vision deficiencies; the baseline
``none`` is always black. Past seven strategies the colours repeat with a
different dash pattern, so every strategy keeps a unique, colour-blind-safe
style in every figure of a sweep. Heatmaps use a single-hue sequential map
(white to dark blue), readable without colour vision.

All statistics come from the analysis modules (tuning, stability, survival,
ranking, ...), so every figure counts failed runs by the one rule of
``analysis.vocabulary`` (a run *fails* when it diverged or its best
validation metric is not finite): a failed seed is the worst value when a
setting is chosen, and sits at the task's chance level wherever a number is
averaged, tested or ranked. Each figure states this in a note above its panels (:data:`NOTES`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scikit_posthocs as sp
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from analysis import layout, ranking, stability, summaries, tuning, vocabulary
from analysis.curves import CurveSource, curve_band, explosion_traces, indexed, smoothing_window
from analysis.layout import FIGURE_FORMATS, problem_stem
from analysis.survival import kaplan_meier, steps_to_target, target_levels, time_to_divergence
from bench import atomic

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
    """Write ``fig`` as ``<stem>.pdf`` and ``<stem>.png``, each atomically (``bench.atomic``); return the paths."""
    stem = Path(stem)
    written = []
    for fmt in FIGURE_FORMATS:
        path = stem.with_suffix(f".{fmt}")
        with atomic.writing(path) as partial:
            fig.savefig(partial, format=fmt, bbox_inches="tight",
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
        written.append(path)
    plt.close(fig)
    return written


def draw_convergence(ax: plt.Axes, runs: pd.DataFrame, curves: CurveSource, panel: dict,
                     styles: dict[str, Style], best: pd.DataFrame | None = None) -> None:
    """Train loss vs step of each strategy's best-tuned setting on one panel: mean and 95% bootstrap band.

    Every seed counts at every step (``curve_band``): a diverged seed at
    the chance loss from its divergence step on. A cross marks the step at
    which a seed of that setting diverged; the dotted grey line is the loss of
    the chance predictor.
    """
    best = tuning.best_tuned_runs(runs) if best is None else best
    chosen = vocabulary.select(best, panel)
    window = smoothing_window(runs)
    for strategy in styles:
        members = chosen[chosen["strategy"] == strategy]
        if members.empty:
            continue
        style = styles[strategy]
        band = curve_band(curves, members, window=window)
        ax.plot(band["step"], band["mean"], color=style.colour, linestyle=style.linestyle, linewidth=1.4)
        ax.fill_between(band["step"], band["low"], band["high"], color=style.colour, alpha=0.2, linewidth=0)
        for _, run in members[members["diverged"].astype(bool)].iterrows():
            at = band[band["step"] <= run["diverged_step"]]
            if not at.empty:
                ax.plot(at["step"].iloc[-1], at["mean"].iloc[-1], marker="x", color=style.colour, markersize=6)
    chance = vocabulary.select(runs, panel)["chance_loss"].dropna()
    if not chance.empty and np.isfinite(chance.iloc[0]) and chance.iloc[0] > 0:
        ax.axhline(float(chance.iloc[0]), color="0.5", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    panel_title(ax, vocabulary.panel_label(panel, runs))


def _plain_log_labels(ax: plt.Axes) -> None:
    """Label a log axis with plain numbers (0.5, 2) where it spans less than two decades."""
    low, high = ax.get_ylim()
    if low > 0 and high / low < 100:
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())


def draw_stability(ax: plt.Axes, runs: pd.DataFrame, task: str, model: str, optimizer: str,
                   strategies: Sequence[str], colorbar: bool = True) -> None:
    """Heatmap of the divergence rate per strategy (rows) and learning rate (columns) of one problem and optimizer.

    Judged per setting (``stability.stability_points``): each cell is the share of
    diverged seeds of the strategy's best setting at that lr, averaged over the
    stress-dial panels, so every strategy's cell holds the same number of runs
    whatever the size of its threshold grid.
    """
    subset = vocabulary.select(runs, {"task": task, "model": model, "optimizer": optimizer})
    rates = stability.stability_points(subset).groupby(["strategy", "lr"])["rate"].mean().reset_index()
    table = rates.pivot(index="strategy", columns="lr", values="rate")
    table = table.reindex([s for s in strategies if s in table.index])
    table = table.reindex(sorted(table.columns), axis=1)
    values = table.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [f"{lr:.2g}" for lr in table.columns], rotation=90)
    ax.set_yticks(range(values.shape[0]), list(table.index))
    ax.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    # each cell's label lies inside its cell: left out of the layout, which would measure every one of them
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize="small",
                    color="white" if value > 0.5 else "black", in_layout=False)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="divergence rate", format=PercentFormatter(1.0), fraction=0.05)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("")
    title = f"{task} / {model}" + (f", {optimizer}" if runs["optimizer"].nunique() > 1 else "")
    panel_title(ax, title)


def legend_handles(styles: dict[str, Style], present: Sequence[str]) -> list[Line2D]:
    """Legend entries for the strategies that appear."""
    return [Line2D([], [], color=styles[s].colour, linestyle=styles[s].linestyle, label=s)
            for s in styles if s in present]


def convergence_figure(runs: pd.DataFrame, curves: CurveSource, task: str, model: str,
                       styles: dict[str, Style], best: pd.DataFrame | None = None) -> Figure:
    """One problem's convergence curves, one axes per panel (optimizer x stress-dial value)."""
    best = tuning.best_tuned_runs(runs) if best is None else best
    panels = vocabulary.panels(runs, task, model)
    fig, axes = _grid(len(panels), width=4.2, height=3.0)
    for ax, panel in zip(axes, panels, strict=False):
        draw_convergence(ax, runs, curves, panel, styles, best)
    present = vocabulary.select(runs, {"task": task, "model": model})["strategy"].unique()
    fig.legend(handles=legend_handles(styles, present), loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def stability_figure(runs: pd.DataFrame, task: str, model: str, strategies: Sequence[str]) -> Figure:
    """One problem's divergence heatmap, one axes per optimizer."""
    optimizers = list(dict.fromkeys(vocabulary.select(runs, {"task": task, "model": model})["optimizer"]))
    n_rows = len(strategies)
    fig, axes = _grid(len(optimizers), width=1.0 + 0.6 * runs["lr"].nunique(), height=0.8 + 0.3 * n_rows)
    for ax, optimizer in zip(axes, optimizers, strict=False):
        draw_stability(ax, runs, task, model, optimizer, strategies)
    return fig


def convergence_overview(runs: pd.DataFrame, curves: CurveSource, styles: dict[str, Style],
                         best: pd.DataFrame | None = None, panels: list[dict] | None = None,
                         columns: int = 3) -> Figure:
    """The sweep's convergence curves, one axes per panel (default: every panel), with one legend."""
    best = tuning.best_tuned_runs(runs) if best is None else best
    all_panels = _problem_panels(runs) if panels is None else panels
    fig, axes = _grid(len(all_panels), width=PANEL_WIDTH, height=PANEL_HEIGHT, columns=columns)
    for ax, panel in zip(axes, all_panels, strict=False):
        draw_convergence(ax, runs, curves, panel, styles, best)
    fig.legend(handles=legend_handles(styles, runs["strategy"].unique()), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(5, len(styles)))
    return fig


def stability_keys(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (task, model, optimizer) triples of the stability heatmaps, in the order of the runs' problems."""
    triples = dict.fromkeys((t, m, o) for t, m, o in runs[["task", "model", "optimizer"]].itertuples(index=False))
    return [key for task, model in vocabulary.problems(runs) for key in triples if key[:2] == (task, model)]


def stability_overview(runs: pd.DataFrame, strategies: Sequence[str], keys: list[tuple[str, str, str]] | None = None,
                       columns: int = 2) -> Figure:
    """Divergence heatmaps, one axes per (task, model, optimizer) of ``keys`` (default: all), in one grid."""
    keys = stability_keys(runs) if keys is None else keys
    fig, axes = _grid(len(keys), width=3.4, height=0.8 + 0.16 * len(strategies), columns=columns)
    for i, (ax, (task, model, optimizer)) in enumerate(zip(axes, keys, strict=False)):
        draw_stability(ax, runs, task, model, optimizer, strategies, colorbar=False)
        if i % columns:
            ax.set_yticklabels([])
    return fig


PANEL_WIDTH, PANEL_HEIGHT = 2.3, 1.9
"""Inches of one axes of a paneled overview: three to a row, at most 7 inches, so that included at the text width
(6.5 inches) the axis labels keep at least 7 pt (:func:`smallest_print_size`)."""


def smallest_print_size(fig: Figure, width: float) -> float:
    """The smallest font size (pt) of ``fig``'s visible text once the figure is scaled to ``width`` inches."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.get_tightbbox(renderer)
    sizes = [text.get_fontsize() for text in fig.findobj(match=lambda a: hasattr(a, "get_fontsize"))
             if text.get_visible() and getattr(text, "get_text", lambda: "")()]
    return min(sizes) * width / box.width


def _grid(n: int, width: float, height: float, columns: int | None = None) -> tuple[Figure, list[plt.Axes]]:
    columns = max(1, min(n, columns or n))
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


NOTES = {
    "best": "Best-tuned setting per strategy, chosen on validation: a failed (diverged) seed counts as the worst.",
    "chance": "Failed (diverged) runs count at the task's chance level.",
    "rate": "Divergence rate (%) of each strategy's best setting at each learning rate (chosen on validation): "
            "share of its seeds flagged diverged, averaged over stress dials; the same runs per cell for every "
            "strategy.",
    "region": "Divergence rate: share of runs flagged diverged, pooled over seeds and stress dials.",
    "target": "Runs that never reach the target are censored at their step budget; a diverged run never counts as "
              "reached, even if it got there before diverging. Band: 95% bootstrap over seeds (clusters).",
    "divergence": "Runs that never diverge are censored at their step budget. Band: 95% bootstrap over seeds "
                  "(clusters).",
    "curves": "Diverged seeds stay in the mean: at the chance loss from their divergence step on.",
    "sensitivity": "Each point: the strategy's best setting at that learning rate (chosen on validation), its seeds; "
                   "failed (diverged) runs count at the task's chance level.",
    "profiles": "Error = 1 - accuracy, MSE or bits/char; one problem (task x model) = the mean error over its panels.",
    "traces": "Diverged runs take part like the others; their curves end at divergence.",
    "cost": "Diverged runs count: they stay in their cell's lockstep batch.",
    "attention": "Largest attention logit q.k/sqrt(d) over layers, heads, batch and causal pairs, before any cap; "
                 "below, the training loss (dashed: chance); one line per run; a diverged run ends at an x.",
}
"""How each figure counts failed runs, written above the figure (one line per note)."""


def note(fig: Figure, *keys: str) -> None:
    """Write the notes ``keys`` of :data:`NOTES` in small type above ``fig`` (legends may sit below it), wrapped
    to the figure's width."""
    size = FontProperties(size="small").get_size_in_points()
    columns = max(40, int(fig.get_figwidth() * 72 / (0.5 * size)))
    lines = [line for k in keys for line in textwrap.wrap(NOTES[k], columns)]
    fig.text(0.0, 1.01, "\n".join(lines), ha="left", va="bottom", fontsize="small", color="0.3")


def panel_title(ax: plt.Axes, label: str) -> None:
    """A panel's title, wrapped to its axes' width."""
    size = FontProperties(size="medium").get_size_in_points()
    columns = max(16, int(ax.get_position().width * ax.figure.get_figwidth() * 72 / (0.5 * size)))
    ax.set_title("\n".join(textwrap.wrap(label, columns)), fontsize="medium")


def _problem_panels(runs: pd.DataFrame) -> list[dict]:
    return [p for task, model in vocabulary.problems(runs) for p in vocabulary.panels(runs, task, model)]


def _legend_below(fig: Figure, styles: dict[str, Style], present: Sequence[str]) -> None:
    fig.legend(handles=legend_handles(styles, present), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(5, len(styles)))


def draw_survival(ax: plt.Axes, events: pd.DataFrame, styles: dict[str, Style], ylabel: str) -> None:
    """Kaplan-Meier curves (``kaplan_meier``) of one panel's events, one step line and band per strategy.

    The band is a cluster bootstrap over seeds: over a panel's grid the runs of
    one seed share its initial weights and data order, so the seeds, not the
    runs, are the independent draws.
    """
    curves = kaplan_meier(events, by=("strategy",), cluster="seed")
    budget = float(events["steps"].max())
    for strategy in styles:
        curve = curves[curves["strategy"] == strategy]
        if curve.empty:
            continue
        style = styles[strategy]
        times = np.concatenate([[0.0], curve["time"].to_numpy(), [budget]])
        survival = np.concatenate([[1.0], curve["survival"].to_numpy(), [curve["survival"].iloc[-1]]])
        ax.step(times, survival, where="post", color=style.colour, linestyle=style.linestyle, linewidth=1.4)
        ax.fill_between(curve["time"], curve["lower"], curve["upper"], step="post", color=style.colour, alpha=0.15,
                        linewidth=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)


def survival_overview(runs: pd.DataFrame, curves: CurveSource, styles: dict[str, Style], kind: str,
                      panels: list[dict] | None = None, columns: int = 3) -> Figure:
    """Survival curves per panel (default: every panel) over the whole grid: ``kind`` is ``divergence`` or
    ``target``."""
    if kind == "target":
        events = steps_to_target(runs, curves, target_levels(runs))
        ylabel = "share not yet at target"
    else:
        events = time_to_divergence(runs)
        ylabel = "share not yet diverged"
    all_panels = _problem_panels(runs) if panels is None else panels
    fig, axes = _grid(len(all_panels), width=PANEL_WIDTH, height=PANEL_HEIGHT, columns=columns)
    for ax, panel in zip(axes, all_panels, strict=False):
        draw_survival(ax, vocabulary.select(events, panel), styles, ylabel)
        panel_title(ax, vocabulary.panel_label(panel, runs))
    _legend_below(fig, styles, runs["strategy"].unique())
    return fig


def draw_sensitivity(ax: plt.Axes, runs: pd.DataFrame, panel: dict, styles: dict[str, Style]) -> None:
    """Mean test metric against learning rate per strategy: its best setting at each lr, 95% bootstrap CI over seeds.

    ``stability.lr_profile``: the setting at each lr is chosen on validation, so a
    point is one setting's seeds, never thresholds pooled; failed runs at chance.
    """
    scored = vocabulary.score_runs(vocabulary.select(runs, panel))
    summary = stability.lr_profile(vocabulary.select(runs, panel))
    for strategy in styles:
        rows = summary[summary["strategy"] == strategy].sort_values("lr")
        if rows.empty:
            continue
        style = styles[strategy]
        ax.plot(rows["lr"], rows["mean"], color=style.colour, linestyle=style.linestyle, marker="o",
                markersize=3, linewidth=1.4)
        ax.fill_between(rows["lr"], rows["low"], rows["high"], color=style.colour, alpha=0.15, linewidth=0)
    chance = float(scored["chance_metric"].iloc[0])
    ax.axhline(chance, color="0.5", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"test {scored['metric'].iloc[0]}")
    panel_title(ax, vocabulary.panel_label(panel, runs))


def sensitivity_figure(runs: pd.DataFrame, panels: list[dict], styles: dict[str, Style], columns: int = 3) -> Figure:
    """Learning-rate sensitivity curves, one axes per panel."""
    fig, axes = _grid(len(panels), width=PANEL_WIDTH, height=PANEL_HEIGHT, columns=columns)
    for ax, panel in zip(axes, panels, strict=False):
        draw_sensitivity(ax, runs, panel, styles)
    _legend_below(fig, styles, runs["strategy"].unique())
    note(fig, "sensitivity")
    return fig


def region_strategies(runs: pd.DataFrame) -> dict[str, str]:
    """Strategies with more than one value of a hyperparameter, and that (primary) hyperparameter."""
    regions = {}
    for strategy in vocabulary.strategy_order(runs):
        subset = runs[runs["strategy"] == strategy]
        for column in vocabulary.hyperparameter_columns(runs):
            if subset[column].nunique() > 1:
                regions[strategy] = column
                break
    return regions


def region_figure(runs: pd.DataFrame, strategy: str, hyperparameter: str, columns: int = 3) -> Figure:
    """Stable-region map of one strategy: divergence rate per learning rate x threshold, one axes per problem."""
    subset = runs[runs["strategy"] == strategy]
    keys = list(dict.fromkeys(subset[["task", "model"]].itertuples(index=False, name=None)))
    fig, axes = _grid(len(keys), width=1.2 + 0.45 * subset["lr"].nunique(),
                      height=0.9 + 0.3 * subset[hyperparameter].nunique(), columns=columns)
    for ax, (task, model) in zip(axes, keys, strict=False):
        rates = summaries.divergence_rates(vocabulary.select(subset, {"task": task, "model": model}),
                                           by=(hyperparameter, "lr"))
        table = rates.pivot(index=hyperparameter, columns="lr", values="rate").sort_index().sort_index(axis=1)
        values = table.to_numpy(dtype=float)
        ax.imshow(values, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest", origin="lower")
        ax.set_xticks(range(values.shape[1]), [f"{lr:g}" for lr in table.columns])
        ax.set_yticks(range(values.shape[0]), [f"{v:g}" for v in table.index])
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize="x-small",
                        color="white" if value > 0.5 else "black", in_layout=False)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(hyperparameter)
        ax.set_title(f"{task} / {model}", fontsize="medium")
    fig.suptitle(strategy, fontsize="medium")
    note(fig, "region")
    return fig


def explosions_figure(runs: pd.DataFrame, curves: CurveSource, styles: dict[str, Style], n: int = 3,
                      before: int = 50, after: int = 10) -> Figure:
    """Gradient norm around the largest spikes (``explosion_traces``): ``none`` and up to two mitigations.

    One axes per strategy, the ``n`` most spiking runs of the sweep each; the
    dashed grey line is the run's running median of the gradient norm.
    """
    shown = [s for s in vocabulary.strategy_order(runs)][:3]
    fig, axes = _grid(len(shown), width=PANEL_WIDTH, height=PANEL_HEIGHT + 0.6)
    for ax, strategy in zip(axes, shown, strict=False):
        traces = explosion_traces(runs, curves, {"strategy": strategy}, n=n, before=before, after=after)
        style = styles[strategy]
        for i, (run_id, trace) in enumerate(traces.groupby("run_id", sort=False)):
            row = runs[runs["run_id"] == run_id].iloc[0]
            norms = trace["grad_norm_pre"].where(np.isfinite(trace["grad_norm_pre"]))
            label = f"{row['task']}/{row['model']} lr={row['lr']:.2g}" + (" (div.)" if row["diverged"] else "")
            ax.plot(trace["offset"], norms, color=style.colour, linestyle=DASHES[i % len(DASHES)], linewidth=1.2,
                    label=label)
            ax.plot(trace["offset"], trace["running_median"], color="0.5", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.axvline(0, color="0.7", linewidth=0.8)
        ax.set_xlabel("steps from largest spike")
        ax.set_ylabel("gradient norm")
        ax.set_title(strategy, fontsize="medium")
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.3))
    note(fig, "traces")
    return fig


def cd_figure(runs: pd.DataFrame, styles: dict[str, Style], summary: pd.DataFrame | None = None) -> Figure | None:
    """Critical-difference diagram of the best-tuned test error over problems (task x model); None where undefined.

    Ranked on ``ranking.error_matrix``: one row per problem, the mean error over
    its panels. Defined with at least 3 strategies on at least 2 problems
    (``layout.cd_defined``).
    """
    summary = ranking.ranking_summary(runs) if summary is None else summary
    errors = ranking.error_matrix(summary)
    if not layout.cd_defined(errors.shape[1], errors.shape[0]):
        return None
    cd = ranking.critical_difference(errors)
    friedman = ranking.friedman_test(errors)
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.12 * errors.shape[1]), layout="constrained")
    sp.critical_difference_diagram(cd.ranks, cd.pvalues, ax=ax,
                                   color_palette={s: styles[s].colour for s in errors.columns})
    ax.set_title(f"mean rank over {errors.shape[0]} problems (task x model); CD = {cd.cd:.2g}; "
                 f"Friedman p = {friedman['pvalue']:.2g}", fontsize="small")
    note(fig, "best", "chance", "profiles")
    return fig


def profiles_figure(runs: pd.DataFrame, styles: dict[str, Style], summary: pd.DataFrame | None = None) -> Figure:
    """Performance profiles of the best-tuned test error over problems (``ranking.performance_profile``, on costs)."""
    summary = ranking.ranking_summary(runs) if summary is None else summary
    profile = ranking.performance_profile(ranking.error_matrix(summary))
    fig, ax = plt.subplots(figsize=(4.8 if len(styles) > 6 else 3.4, 2.4), layout="constrained")
    top = float(profile["tau"].max()) if len(profile) else 1.0
    for strategy in styles:
        rows = profile[profile["strategy"] == strategy].sort_values("tau")
        if rows.empty:
            continue
        style = styles[strategy]
        taus = np.concatenate([[1.0], rows["tau"].to_numpy(), [max(top * 1.1, 1.1)]])
        fractions = np.concatenate([[0.0], rows["fraction"].to_numpy(), [rows["fraction"].iloc[-1]]])
        ax.step(taus, fractions, where="post", color=style.colour, linestyle=style.linestyle, linewidth=1.4,
                label=strategy)
    if top > 10:  # ratios spread over decades: log axis
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau: error within a factor tau of the best")
    ax.set_ylabel("share of problems")
    if len(styles) > 6:
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize="small")
    else:
        ax.legend(loc="lower right", fontsize="small")
    note(fig, "best", "chance", "profiles")
    return fig


def cost_figure(runs: pd.DataFrame, styles: dict[str, Style]) -> Figure:
    """Wall time per run-step of each strategy relative to ``none`` (``ranking.strategy_cost``): one dot per problem."""
    cost = ranking.strategy_cost(runs)
    strategies = [s for s in styles if s in set(cost["strategy"])]
    fig, ax = plt.subplots(figsize=(3.4, 0.8 + 0.25 * len(strategies)), layout="constrained")
    for i, strategy in enumerate(strategies):
        values = cost.loc[cost["strategy"] == strategy, "relative"].dropna()
        if values.empty:
            continue
        colour = styles[strategy].colour
        ax.plot(values, np.full(len(values), i), "o", color=colour, alpha=0.5, markersize=3)
        ax.plot([values.median()], [i], "|", color=colour, markersize=12, markeredgewidth=2)
    ax.axvline(1.0, color="0.5", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(strategies)), strategies)
    ax.invert_yaxis()
    ax.set_xlabel("wall time per run-step relative to none")
    note(fig, "cost")
    return fig


def convergence_figures(runs: pd.DataFrame, curves: CurveSource, out: Path | str) -> list[Path]:
    """The convergence notebook's figures (``layout.notebook_stems("convergence", ...)``) into ``out``."""
    setup()
    out = Path(out)
    curves = indexed(curves)  # every panel reads its runs' curves
    styles = strategy_styles(vocabulary.strategy_order(runs))
    best = tuning.best_tuned_runs(runs)
    paths: list[Path] = []
    for task, model in vocabulary.problems(runs):
        fig = convergence_figure(runs, curves, task, model, styles, best)
        note(fig, "best", "curves")
        paths += save(fig, out / problem_stem("convergence", task, model))
    panels = _problem_panels(runs)
    for stem, chosen in paneled(runs, "convergence", panels):
        fig = convergence_overview(runs, curves, styles, best, chosen)
        note(fig, "best", "curves")
        paths += save(fig, out / stem)
    for stem, chosen in paneled(runs, "time-to-target", panels):
        fig = survival_overview(runs, curves, styles, "target", chosen)
        note(fig, "target")
        paths += save(fig, out / stem)
    return paths


def overview_panels(runs: pd.DataFrame, kind: str) -> list:
    """The panels of a paneled overview kind (``layout.PANELED``), in drawing order: panel dicts, or (task,
    model, optimizer) triples for a kind of ``layout.PER_OPTIMIZER``."""
    return stability_keys(runs) if kind in layout.PER_OPTIMIZER else _problem_panels(runs)


def paneled(runs: pd.DataFrame, kind: str, panels: list) -> list[tuple[str, list]]:
    """A paneled overview's figures (``layout.split_panels``): (stem, its panels), the main figure first.

    ``panels``: dicts with task and model, or (task, model, optimizer) triples.
    """
    family = dict(zip(zip(runs["task"], runs["model"], strict=True), runs["family"].astype(str), strict=True))
    families = [family[(p["task"], p["model"]) if isinstance(p, dict) else tuple(p[:2])] for p in panels]
    split = layout.split_panels(families, layout.PANELED[kind])
    return [(f"{kind}-{suffix}" if suffix else kind, [panels[i] for i in indexes]) for suffix, indexes in split.items()]


def stability_figures(runs: pd.DataFrame, curves: CurveSource, out: Path | str) -> list[Path]:
    """The stability notebook's figures (``layout.notebook_stems("stability", ...)``) into ``out``."""
    setup()
    out = Path(out)
    curves = indexed(curves)  # the explosion traces read some runs' curves
    strategies = vocabulary.strategy_order(runs)
    styles = strategy_styles(strategies)
    paths: list[Path] = []
    for task, model in vocabulary.problems(runs):
        fig = stability_figure(runs, task, model, strategies)
        note(fig, "rate")
        paths += save(fig, out / problem_stem("stability", task, model))
        paths += save(sensitivity_figure(runs, vocabulary.panels(runs, task, model), styles),
                      out / problem_stem("sensitivity", task, model))
    for stem, keys in paneled(runs, "stability", stability_keys(runs)):
        fig = stability_overview(runs, strategies, keys)
        note(fig, "rate")
        paths += save(fig, out / stem)
    panels = _problem_panels(runs)
    for stem, chosen in paneled(runs, "sensitivity", panels):
        paths += save(sensitivity_figure(runs, chosen, styles), out / stem)
    for stem, chosen in paneled(runs, "time-to-divergence", panels):
        fig = survival_overview(runs, None, styles, "divergence", chosen)
        note(fig, "divergence")
        paths += save(fig, out / stem)
    paths += save(explosions_figure(runs, curves, styles), out / "explosions")
    for strategy, hyperparameter in region_strategies(runs).items():
        paths += save(region_figure(runs, strategy, hyperparameter), out / f"region-{strategy}")
    return paths


def ranking_figures(runs: pd.DataFrame, out: Path | str) -> list[Path]:
    """The ranking notebook's figures into ``out``: profiles, cost, and ``cd`` where defined."""
    setup()
    out = Path(out)
    styles = strategy_styles(vocabulary.strategy_order(runs))
    summary = ranking.ranking_summary(runs)
    paths = save(profiles_figure(runs, styles, summary), out / "profiles")
    paths += save(cost_figure(runs, styles), out / "cost")
    fig = cd_figure(runs, styles, summary)
    if fig is not None:
        paths += save(fig, out / "cd")
    return paths
