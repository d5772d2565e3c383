"""One figure per question of the study, each showing that question's effect against its baseline
(a question's declaration in analysis.questions names its function here): the estimate with its 95%
interval (a line and a dot) per compared strategy or condition, the value of no effect as a vertical
line, and each task x model pair's own value as a small grey dot behind the summary where the
question has per-pair rows.

The effects are those of ``analysis.questions.answer_all``, the same rows the paper's claims
read, so a figure and the sentence beside it show one number. An effect whose stable range reaches
the top of the learning-rate grid is censored there (``bound``): its dot is a triangle pointing the
way the true value may lie (right: at least this; left: at most this), or a hollow diamond where
both compared ranges are censored and the true value may lie either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import plots
from analysis.questions import QUESTIONS

SUMMARY_COLOUR = "#0072B2"
PAIR_COLOUR = "#9a9a9a"
MARKERS = {"": ("o", True), "lower": (">", True), "upper": ("<", True), "both": ("D", False)}
"""The summary dot per ``bound``: marker and whether it is filled."""
MARKERS_DRAWN = frozenset(marker for marker, _ in MARKERS.values())
OPTIMIZER_NAMES = {"all": "both optimizers", "sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def _bound(row: pd.Series) -> str:
    value = row.get("bound", "")
    return value if isinstance(value, str) and value in MARKERS else ""


def draw_forest(ax: plt.Axes, rows: pd.DataFrame, labels: Sequence[str], zero: float,
                pairs: Sequence[pd.DataFrame] | None = None, value: str = "estimate", low: str = "low",
                high: str = "high", colour: str = SUMMARY_COLOUR, offset: float = 0.0) -> None:
    """Rows from top to bottom, labelled ``labels``: the estimate (column ``value``) and its interval
    (``low`` to ``high``), over the grey per-pair estimates ``pairs[i]`` of row i, and a line at ``zero``;
    in ``colour``, ``offset`` below the row's centre (several series on the same rows)."""
    ax.axvline(zero, color=plots.BASELINE_COLOUR, linewidth=0.9, zorder=1)
    for y, (_, row) in enumerate(rows.iterrows()):
        if pairs is not None and len(pairs[y]):
            ax.scatter(pairs[y][value], np.full(len(pairs[y]), y) + np.linspace(-0.18, 0.18, len(pairs[y])),
                       s=9, color=PAIR_COLOUR, zorder=2, linewidths=0)
        if np.isfinite(row[low]) and np.isfinite(row[high]):
            ax.hlines(y + offset, row[low], row[high], color=colour, linewidth=1.6, zorder=3)
        marker, filled = MARKERS[_bound(row)]
        ax.plot(row[value], y + offset, marker=marker, markersize=5.5, color=colour, zorder=4,
                markerfacecolor=colour if filled else "white")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)


def _legend(fig: Figure, pairs: bool, censored: bool, summary: Sequence[Line2D] = ()) -> None:
    handles = list(summary) or [Line2D([], [], color=SUMMARY_COLOUR, marker="o", linewidth=1.6,
                                       label="estimate, 95% interval")]
    if pairs:
        handles.append(Line2D([], [], color=PAIR_COLOUR, marker="o", linestyle="", markersize=3.5,
                              label="each task x model pair"))
    if censored:
        handles += [Line2D([], [], color=SUMMARY_COLOUR, marker=">", linestyle="", label="at least (censored)"),
                    Line2D([], [], color=SUMMARY_COLOUR, marker="<", linestyle="", label="at most (censored)"),
                    Line2D([], [], color=SUMMARY_COLOUR, marker="D", linestyle="", markerfacecolor="white",
                           label="censored both ways")]
    fig.tight_layout()
    columns = len(handles) if fig.get_figwidth() >= 8 else 2
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=columns, fontsize="small")


def _panels(n: int, height: float, width: float = 3.2) -> tuple[Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), sharey=True, squeeze=False)
    return fig, list(axes[0])


def _pair_rows(table: pd.DataFrame, level: str, **match: str) -> pd.DataFrame:
    mask = table["level"] == level
    for column, wanted in match.items():
        mask &= table[column].astype(str) == str(wanted)
    return table[mask]


def _measure_rows(table: pd.DataFrame, measures: Sequence[tuple[str, str, str]]) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``table`` for each (measure, strategy, label) of ``measures`` that it has, and their labels."""
    found = [(table[(table["measure"] == m) & (table["strategy"] == s)], label) for m, s, label in measures]
    found = [(rows.iloc[0], label) for rows, label in found if len(rows)]
    return pd.DataFrame([row for row, _ in found]).reset_index(drop=True), [label for _, label in found]


def q1_figure(table: pd.DataFrame) -> Figure:
    """Q1: decades of stable learning-rate range each strategy at its pre-stated setting (one per learning rate,
    as ``none``) adds over ``none``, one panel per optimizer (all model families)."""
    stated = table[table["stated"].astype(bool)]
    summary = stated[(stated["level"] == "family") & (stated["family"] == "all")]
    optimizers = list(dict.fromkeys(summary["optimizer"]))
    order = list(summary.groupby("strategy", sort=False)["estimate"].mean().sort_values(ascending=False).index)
    fig, axes = _panels(len(optimizers), 0.24 * len(order) + 1.0, width=2.2)
    panel_rows = stated[stated["level"] == "panel"]
    for ax, optimizer in zip(axes, optimizers, strict=True):
        rows = summary[summary["optimizer"] == optimizer].set_index("strategy").reindex(order).reset_index()
        mine = panel_rows[panel_rows["optimizer"] == optimizer]
        pairs = [mine[mine["strategy"] == s].groupby(["task", "model"])["estimate"].mean().to_frame() for s in order]
        draw_forest(ax, rows, order, 0.0, pairs)
        ax.set_title(OPTIMIZER_NAMES.get(optimizer, optimizer))
        ax.set_xlabel("decades over none")
    _legend(fig, True, True)
    return fig


def q2_figure(table: pd.DataFrame) -> Figure:
    """Q2: each adaptive clipper at its published defaults minus norm clipping tuned on the same budget."""
    rows = table[table["level"] == "all"].reset_index(drop=True)
    pairs = [_pair_rows(table, "problem", strategy=s) for s in rows["strategy"]]
    fig, (ax,) = _panels(1, 0.4 * len(rows) + 1.0, width=4.2)
    draw_forest(ax, rows, [f"{s} (default)" for s in rows["strategy"]], 0.0, pairs)
    ax.set_xlabel("normalised test score minus tuned clip_norm")
    _legend(fig, True, False)
    return fig


COMPARISONS = {"scaled_lr": "at gamma x lr", "same_lr": "at the same lr"}


def q3_figure(table: pd.DataFrame) -> Figure:
    """Q3: share of seed-matched run pairs where grad_scale agrees with none at gamma x lr or at the same lr, per
    precision (agreement: both diverged at the same step, or test scores within the test tolerance)."""
    rows = table[table["gamma"].astype(str) == "all"].reset_index(drop=True)
    dtypes = rows["dtype"].astype(str) if "dtype" in rows.columns else pd.Series("float32", index=rows.index)
    labels = [f"{OPTIMIZER_NAMES.get(o, o)}{'' if dtypes.nunique() < 2 else f' ({d})'}: none {COMPARISONS[c]}"
              for o, c, d in zip(rows["optimizer"], rows["comparison"], dtypes, strict=True)]
    fig, (ax,) = _panels(1, 0.4 * len(rows) + 1.0, width=4.2)
    draw_forest(ax, rows, labels, 1.0)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("share of grad_scale run pairs that agree")
    _legend(fig, False, False)
    return fig


Q4_MEASURES = (("gain", "update_clip", "update_clip - none"), ("gain", "clip_norm", "clip_norm - none"),
               ("range_difference", "update_clip", "update_clip - clip_norm"))


def range_measures_figure(table: pd.DataFrame, measures: Sequence[tuple[str, str, str]]) -> Figure:
    """One panel per optimizer of ``table``: the stable-range contrasts ``measures`` (measure, strategy,
    label), in decades."""
    optimizers = list(dict.fromkeys(table["optimizer"]))
    if len(optimizers) == 2:  # one optimizer: its panel and the "all" panel would be the same
        optimizers = optimizers[1:]
    fig, axes = _panels(len(optimizers), 0.35 * len(measures) + 1.0, width=1.8)
    for ax, optimizer in zip(axes, optimizers, strict=True):
        draw_forest(ax, *_measure_rows(table[table["optimizer"] == optimizer], measures), 0.0)
        ax.set_title(OPTIMIZER_NAMES.get(optimizer, optimizer))
        ax.set_xlabel("decades")
    _legend(fig, False, True)
    return fig


def q4_figure(table: pd.DataFrame) -> Figure:
    """Q4: stable-range gains of update clipping and of gradient norm clipping, per optimizer."""
    return range_measures_figure(table, Q4_MEASURES)


def q5_figure(table: pd.DataFrame) -> Figure:
    """Q5: the seed recipe against norm clipping: steps to target and loss over the budget (ratios,
    1 = equal), test score (difference), per optimizer."""
    measures = [m for m in ("steps_to_target", "loss_auc", "test_difference") if (table["measure"] == m).any()]
    titles = {"steps_to_target": "steps to target\n(ratio)", "loss_auc": "mean training loss\n(ratio)",
              "test_difference": "normalised test score\n(difference)"}
    optimizers = list(dict.fromkeys(table["optimizer"]))
    fig, axes = _panels(len(measures), 0.4 * len(optimizers) + 1.0, width=1.9)
    for ax, measure in zip(axes, measures, strict=True):
        rows = table[table["measure"] == measure].set_index("optimizer").reindex(optimizers).reset_index()
        ratio = measure != "test_difference"
        draw_forest(ax, rows, [OPTIMIZER_NAMES.get(o, o) for o in optimizers], 1.0 if ratio else 0.0)
        ax.set_title(titles[measure])
        ax.set_xlabel("value_then_decay\n/ clip_norm" if ratio else "value_then_decay\n- clip_norm")
    _legend(fig, False, False)
    return fig


def q6_figure(table: pd.DataFrame) -> Figure:
    """Q6: damage done by bad batches, per strategy at one setting: test score and late training loss, spiking
    minus clean; a strategy that never acted is labelled so."""
    rate = table["spike_rate"].max()
    rows = table[(table["level"] == "all") & (table["spike_rate"] == rate)].reset_index(drop=True)
    pairs = [_pair_rows(table, "problem", strategy=s, spike_rate=rate) for s in rows["strategy"]]
    fig, axes = _panels(2, 0.35 * len(rows) + 1.0, width=2.9)
    never = rows["never_acted"].fillna(0).astype(bool) if "never_acted" in rows.columns else [False] * len(rows)
    labels = [f"{s} (never acted)" if n else s for s, n in zip(rows["strategy"], never, strict=True)]
    draw_forest(axes[0], rows, labels, 0.0, pairs)
    axes[0].set_title("normalised test score")
    axes[0].set_xlabel(f"change at bad-batch\nrate {rate:g}")  # two lines: the panels' labels do not meet
    draw_forest(axes[1], rows, labels, 0.0, pairs, value="train_estimate", low="train_low",
                high="train_high")
    axes[1].set_title("late median training loss")
    axes[1].set_xlabel(f"change at bad-batch\nrate {rate:g}")  # two lines: the panels' labels do not meet
    _legend(fig, True, False)
    return fig


Q7_MEASURES = (("gain", "warmup", "warmup - none"), ("gain", "clip_norm", "clip_norm - none"),
               ("gain", "clip_norm_warmup", "both - none"), ("warmup_minus_clipping", "warmup", "warmup - clip_norm"),
               ("interaction", "clip_norm_warmup", "both - each alone"))


def q7_figure(table: pd.DataFrame) -> Figure:
    """Q7: stable-range gains of warm-up, norm clipping and both, and whether they add up, per optimizer."""
    return range_measures_figure(table, Q7_MEASURES)


TASK_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
"""One colour per task where Q8's figure shows several on the same rows (colour-blind safe, Okabe-Ito)."""
Q8_PANELS = (("gain", "chain_minus_best_gain", "gain_interaction", "stable-range gain", "decades over none", 0.5),
             ("sensitivity_change", "chain_minus_best_sensitivity", "sensitivity_interaction",
              "learning-rate sensitivity", "{unit} over none (lower is better)", 0.05))
"""Q8's panels: per mitigation measure, the chain against its best member, the interaction; title, axis label, and
the least half-width of the x axis (effects all near 0, e.g. every range censored, are shown on a readable scale)."""


def q8_figure(table: pd.DataFrame) -> Figure:
    """Q8: on the transformer problems, each mitigation's stable-range gain over ``none`` (left) and its change in
    learning-rate sensitivity (right; below 0: less sensitive), then the chain against its best member and
    against the sum of its members (the interaction, 0 where they add up). One colour per transformer task, its
    interval over that task's seeds (the rows the per-task claims read), and in black the mean over the tasks
    (``task`` ``all``), its interval over them where there are enough; of the study's one optimizer, or pooled
    over its optimizers (``all``) where it has several."""
    optimizers = [o for o in dict.fromkeys(table["optimizer"].astype(str)) if o != "all"]
    table = table[table["optimizer"].astype(str) == (optimizers[0] if len(optimizers) == 1 else "all")]
    tasks = [t for t in dict.fromkeys(table["task"].astype(str)) if t != "all"] if "task" in table else []
    series = [(t, TASK_COLOURS[i % len(TASK_COLOURS)], f"{t}: estimate, 95% interval over its seeds")
              for i, t in enumerate(tasks)]
    series.append(("all", plots.BASELINE_COLOUR, "mean over the tasks (interval where 5 or more)"))
    pooled = table[table["task"].astype(str) == "all"] if "task" in table else table
    panels = [spec for spec in Q8_PANELS if (pooled["measure"] == spec[0]).any()]
    strategies = list(dict.fromkeys(pooled.loc[pooled["measure"] == "gain", "strategy"]))
    chains = list(dict.fromkeys(pooled.loc[pooled["measure"] == "gain_interaction", "strategy"]))
    labels = [*strategies, *(f"{c} - best member" for c in chains), *(f"{c} - sum of members" for c in chains)]
    fig, axes = _panels(len(panels), 0.32 * len(labels) * max(1, len(series) / 2) + 1.2, width=3.4)
    offsets = np.linspace(-0.27, 0.27, len(series)) if len(series) > 1 else [0.0]
    censored = False
    for ax, (single, against, interaction, title, axis, half_width) in zip(axes, panels, strict=True):
        measures = [(single, s) for s in strategies] + [(against, c) for c in chains] + [(interaction, c)
                                                                                       for c in chains]
        for (task, colour, _), offset in zip(series, offsets, strict=True):
            mine = table[table["task"].astype(str) == task] if "task" in table else table
            rows = pd.DataFrame([_one_row(mine, m, s) for m, s in measures]).reset_index(drop=True)
            draw_forest(ax, rows, labels, 0.0, colour=colour, offset=offset)
            censored |= rows["bound"].fillna("").astype(str).ne("").any() if "bound" in rows else False
        best = pooled.loc[pooled["measure"] == against, "versus"]
        units = pooled.loc[pooled["measure"] == single, "loss_unit"] if "loss_unit" in pooled else pd.Series([])
        ax.set_title(title + (f"\nbest member: {', '.join(dict.fromkeys(best.astype(str)))}" if len(best) else ""),
                     fontsize="medium")
        ax.set_xlabel(axis.format(unit=next(iter(units.dropna().astype(str)), "loss")))
        if chains:
            ax.axhline(len(strategies) - 0.5, color=PAIR_COLOUR, linewidth=0.6)
        low, high = ax.get_xlim()
        if high - low < 2 * half_width:
            centre = (low + high) / 2
            ax.set_xlim(centre - half_width, centre + half_width)
        ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    summary = [Line2D([], [], color=colour, marker="o", linewidth=1.6, label=label) for _, colour, label in series]
    _legend(fig, False, censored, summary)
    return fig


def _one_row(table: pd.DataFrame, measure: str, strategy: str) -> pd.Series:
    """The row of ``table`` for ``measure`` and ``strategy``, or a row of NaN (nothing drawn) where it has none."""
    found = table[(table["measure"] == measure) & (table["strategy"] == strategy)]
    if len(found):
        return found.iloc[0]
    return pd.Series({"estimate": np.nan, "low": np.nan, "high": np.nan, "bound": ""})


def answers_figures(tables: dict[str, pd.DataFrame], out: Path | str) -> list[Path]:
    """Each question's figure (its declaration's ``figure``) into ``out``, for the questions with rows."""
    plots.setup()
    paths: list[Path] = []
    for name, question in QUESTIONS.items():
        table = tables.get(name)
        if table is not None and len(table):
            paths += plots.save(question.figure.draw(table), Path(out) / question.figure.stem)
    return paths
