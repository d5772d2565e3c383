"""The mechanism behind a transformer's divergence: attention-logit growth, without and with qk-layernorm.

Wortsman et al. ("Small-scale proxies for large-scale Transformer training instabilities", 2023,
arXiv 2309.14322, section 3.1.1) show that at high learning rates the attention logits of a small
transformer grow until the attention saturates and training fails, and that a LayerNorm on the
queries and keys (qk-layernorm, strategy ``qk_norm``) removes the growth. The transformer logs, every
step, the largest attention logit ``q.k / sqrt(d_head)`` of each run and layer ``l`` over heads, batch
and causal pairs, before any cap, as the curves column ``attn_logit_max_<l>`` (docs/results.md);
:func:`attention_logit_figure` draws the largest over the layers against the step, per learning rate,
one line per run, and under it the run's training loss against the task's chance loss, so that the
growth and what it costs can be read run by run. At the default tier's scale the failure is a collapse
to the chance loss (the unigram model of ``chars``) rather than a loss above ``divergence_factor`` x its
initial value: the engine's divergence rule does not fire on it, the scores and the learning-rate
sensitivity count it (analysis.sensitivity).

A sweep has the figure for each task x model pair that trains every strategy of
``layout.ATTENTION_STRATEGIES`` (``layout.config_attention``): :func:`attention_pairs` finds the same
pairs in the data, and :func:`attention_figures` draws them for the stability notebook.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import vocabulary
from analysis.layout import ATTENTION, ATTENTION_STRATEGIES, problem_stem
from analysis.plots import legend_handles, note, save, setup, strategy_styles
from bench.columns import ATTENTION_PROBE_PATTERN
from bench.thinning import attention_stride

ATTENTION_COLUMN = re.compile(ATTENTION_PROBE_PATTERN)
"""A curves column holding the largest attention logit of one layer (the transformer's probe of that name)."""


def attention_columns(curves: pd.DataFrame) -> list[str]:
    """The ``attn_logit_max_<l>`` columns of a curves table, in layer order."""
    found = [(int(match.group(1)), column) for column in curves.columns
             if (match := ATTENTION_COLUMN.fullmatch(str(column)))]
    return [column for _, column in sorted(found)]


def largest_attention_logit(curves: pd.DataFrame) -> pd.Series:
    """Per curve row: the largest attention logit over the layers (the maximum of the :func:`attention_columns`
    with a value; infinite where a layer's is), NaN where no layer has one (after a divergence, or in a cell
    without the probes)."""
    columns = attention_columns(curves)
    if not columns:
        return pd.Series(np.nan, index=curves.index, dtype=float)
    values = curves[columns].to_numpy(dtype=float)
    logged = ~np.isnan(values)
    largest = np.where(logged, values, -np.inf).max(axis=1)
    return pd.Series(np.where(logged.any(axis=1), largest, np.nan), index=curves.index)


def drawn_steps(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``curves`` the attention-logit figure draws: each run of ``runs`` every
    ``bench.thinning.attention_stride(steps)``-th step (about 100 steps a run) and at its divergence step, which
    the committed curves keep of every run of ``layout.ATTENTION_STRATEGIES`` (``bench.thinning``)."""
    info = runs.set_index("run_id")
    rows = curves[curves["run_id"].isin(runs["run_id"]).to_numpy()]
    budget = rows["run_id"].map(info["steps"]).to_numpy()
    stride = np.array([attention_stride(int(steps)) for steps in budget], dtype=np.int64)
    step = rows["step"].to_numpy()
    return rows[(step % stride == 0) | (step == rows["run_id"].map(info["diverged_step"]).to_numpy())]


def attention_pairs(runs: pd.DataFrame, curves: pd.DataFrame,
                    strategies: Sequence[str] = ATTENTION_STRATEGIES) -> list[tuple[str, str]]:
    """The (task, model) pairs, in the runs' order, that ran every strategy of ``strategies`` and whose curves
    hold an attention logit (:func:`largest_attention_logit`) at a step drawn (:func:`drawn_steps`) for some of
    those runs: the pairs with an attention-logit figure (``layout.config_attention`` lists them from the
    config)."""
    if not attention_columns(curves):
        return []
    shown = drawn_steps(runs[runs["strategy"].isin(list(strategies))], curves)
    logged = shown.loc[largest_attention_logit(shown).notna().to_numpy(), "run_id"].unique()
    pairs = []
    for task, model in vocabulary.problems(runs):
        own = vocabulary.select(runs, {"task": task, "model": model})
        shown = own[own["strategy"].isin(list(strategies))]
        if set(strategies) <= set(own["strategy"]) and shown["run_id"].isin(logged).any():
            pairs.append((task, model))
    return pairs


MAX_COLUMNS = 7
"""The most learning rates an attention-logit figure draws, so that a page holds its panels legibly."""


def shown_learning_rates(lrs: Sequence[float], most: int = MAX_COLUMNS) -> list[float]:
    """The learning rates drawn: all of ``lrs`` where at most ``most``, else every k-th counted down from the
    largest (where the logits grow), k the smallest that keeps ``most``: on a quarter-decade grid of 14, the
    half decades."""
    step = -(-len(lrs) // most)
    return list(lrs[::-1][::step][::-1])


def attention_logit_figure(runs: pd.DataFrame, curves: pd.DataFrame, task: str, model: str,
                           strategies: Sequence[str] = ATTENTION_STRATEGIES) -> Figure:
    """The largest attention logit over layers, and the training loss, against the step for one task x model
    pair, per learning rate.

    Columns: the pair's learning rates, at most :data:`MAX_COLUMNS` (:func:`shown_learning_rates`); two rows
    per panel (optimizer, stress dials; one for most pairs):
    the logits on a shared logarithmic y axis, then the training loss with the task's chance loss dashed.
    One line per run of ``strategies`` (every seed and setting), drawn at about 100 of its steps
    (:func:`drawn_steps`), coloured as the strategy is in every figure of the sweep
    (``plots.strategy_styles``); a diverged run's line ends
    at its divergence step (its curves end there) with an x, at the logit of that step or, where it is not
    finite, at the last finite one. ``curves`` holds the ``attn_logit_max_<l>`` columns; logits at or below
    0 are left out of the log axis.
    """
    setup()
    pair = vocabulary.select(runs, {"task": task, "model": model})
    shown = pair[pair["strategy"].isin(list(strategies))]
    styles = strategy_styles(vocabulary.strategy_order(runs))
    panels = vocabulary.panels(shown, task, model)
    lrs = shown_learning_rates(sorted(shown["lr"].unique()))
    fig, axes = plt.subplots(2 * len(panels), len(lrs), figsize=(0.6 + 1.7 * len(lrs), 0.9 + 3.2 * len(panels)),
                             sharex=True, sharey="row", squeeze=False, layout="constrained")
    chance = float(pair["chance_loss"].iloc[0])
    rows = drawn_steps(shown, curves)
    rows = rows.assign(_logit=largest_attention_logit(rows).to_numpy()).sort_values(["run_id", "step"])
    traces = {run_id: trace for run_id, trace in rows.groupby("run_id", sort=False)}
    for i, panel in enumerate(panels):
        mine = vocabulary.select(shown, panel)
        for j, lr in enumerate(lrs):
            ax, loss_ax = axes[2 * i, j], axes[2 * i + 1, j]
            for run in mine[np.isclose(mine["lr"], lr)].itertuples(index=False):
                trace = traces.get(run.run_id)
                if trace is None:
                    continue
                if run.diverged:
                    trace = trace[trace["step"] <= run.diverged_step]
                drawn = trace[np.isfinite(trace["_logit"]) & (trace["_logit"] > 0)]
                if drawn.empty:
                    continue
                style = styles[run.strategy]
                losses = trace[np.isfinite(trace["train_loss"])]
                loss_ax.plot(losses["step"], losses["train_loss"], color=style.colour, linestyle=style.linestyle,
                             linewidth=0.7, alpha=0.7)
                steps, logits = drawn["step"].tolist(), drawn["_logit"].tolist()
                if run.diverged and steps[-1] != run.diverged_step:  # blew up there: the line reaches that step
                    steps, logits = [*steps, run.diverged_step], [*logits, logits[-1]]
                ax.plot(steps, logits, color=style.colour, linestyle=style.linestyle, linewidth=0.9, alpha=0.8)
                if run.diverged:
                    ax.plot(steps[-1], logits[-1], marker="x", color=style.colour, markersize=6, linestyle="none")
            ax.set_yscale("log")
            loss_ax.axhline(chance, color="0.4", linestyle="--", linewidth=0.8)
            loss_ax.set_ylim(0.6 * chance, 1.5 * chance)  # the first steps' losses, far above, would flatten the rest
            if i == 0:
                ax.set_title(f"lr = {lr:g}", fontsize="medium")
            if i == len(panels) - 1:
                loss_ax.set_xlabel("step")
            if j == 0:
                label = vocabulary.panel_label(panel, runs).partition(", ")[2]
                ax.set_ylabel("largest attention logit" + (f"\n{label}" if label else ""))
                loss_ax.set_ylabel("training loss (nats)")
    fig.suptitle(f"{task} / {model}", fontsize="medium")
    handles = [*legend_handles(styles, list(strategies)),
               Line2D([], [], color="0.3", marker="x", linestyle="none", label="diverged"),
               Line2D([], [], color="0.4", linestyle="--", label="chance loss")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles))
    note(fig, "attention")
    return fig


def attention_figures(runs: pd.DataFrame, curves: pd.DataFrame, out: Path | str,
                      strategies: Sequence[str] = ATTENTION_STRATEGIES) -> list[Path]:
    """The stability notebook's attention-logit figures into ``out``, ``attention-logits-<task>-<model>`` for
    each pair of :func:`attention_pairs` (none without such a pair); return the paths written."""
    paths: list[Path] = []
    for task, model in attention_pairs(runs, curves, strategies):
        paths += save(attention_logit_figure(runs, curves, task, model, strategies),
                      Path(out) / problem_stem(ATTENTION, task, model))
    return paths
