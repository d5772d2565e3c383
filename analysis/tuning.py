"""The best-tuned choice of a setting, its tuning budget, and the fixed-default comparison beside it.

Per strategy and panel, the setting (learning rate and hyperparameters) with
the best mean validation metric over its seeds is chosen, a failed seed
counting as the worst possible value (the one rule of
:mod:`analysis.vocabulary`): fewest failed seeds first, then the highest mean
oriented validation metric of the other seeds, then the smallest lr and
hyperparameters (:func:`ranked_settings`, :func:`best_tuned`). Hyperparameters
are chosen on validation; results are reported on test. :func:`tuning_budget`
states how many settings each choice was made among; :func:`default_runs`
holds a strategy at its registered defaults, tuned over the learning rate only;
:func:`settings` lists a strategy's settings with the pre-stated one marked, :func:`at_setting` fixes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.memo import memoised
from analysis.vocabulary import groups, hyperparameter_columns, panel_columns, score_runs, setting_columns, sign


@memoised
def ranked_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Every setting of every strategy on every panel, one row each, in the order the best-tuned rule ranks them.

    The rule of :func:`best_tuned`: fewest failed seeds first (a failed seed is
    the worst possible value), then the highest mean oriented validation
    metric of the other seeds, then the smallest lr and hyperparameters.
    Columns: panel, strategy, setting, ``metric``, ``higher_is_better``,
    ``seeds``, ``failed``, ``diverged``, ``val_mean`` (as in :func:`best_tuned`),
    ``val_oriented`` (``val_mean`` negated for MSE) and ``test_mean`` (mean
    ``test_score`` over the seeds, failed runs at chance). Sorted over the
    whole table: the rows of one panel and strategy are in rank order.
    """
    scored = score_runs(runs)
    scored["_alive"] = np.where(scored["failed"], np.nan, scored["best_val_metric"])
    scored["_oriented"] = scored["_alive"] * sign(scored["higher_is_better"])
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    summary = groups(scored, keys).agg(
        metric=("metric", "first"), higher_is_better=("higher_is_better", "first"), seeds=("seed", "size"),
        failed=("failed", "sum"), diverged=("diverged", "sum"), val_mean=("_alive", "mean"),
        val_oriented=("_oriented", "mean"), test_mean=("test_score", "mean"),
    ).reset_index()
    settings = setting_columns(runs)
    return summary.sort_values(["failed", "val_oriented", *settings],
                               ascending=[True, False, *[True] * len(settings)], na_position="last",
                               kind="stable", ignore_index=True)


@memoised
def best_tuned(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """The best-tuned setting of every strategy on every panel (and value of ``within``), one row each.

    Chosen on validation: fewest failed seeds first (a failed seed is the worst
    possible value), then the highest mean oriented validation metric of the
    other seeds, then the smallest lr and hyperparameters (:func:`ranked_settings`).
    ``within`` names setting columns held fixed instead of tuned: ``["lr"]`` gives the best
    setting at each learning rate. Columns: panel, strategy, setting,
    ``metric``, ``higher_is_better``, ``seeds``, ``failed`` (failed seeds),
    ``diverged`` (diverged seeds), ``val_mean`` (mean validation metric of the
    seeds that did not fail, in metric units; NaN if all failed) and
    ``candidates`` (settings the choice was made among).
    """
    summary = ranked_settings(runs).drop(columns=["val_oriented", "test_mean"])
    held = [*panel_columns(runs), "strategy", *within]
    summary["candidates"] = groups(summary, held)["seeds"].transform("size")
    best = groups(summary, held).head(1)
    return best.reset_index(drop=True)


@memoised
def best_tuned_runs(runs: pd.DataFrame, within: Sequence[str] = ()) -> pd.DataFrame:
    """Every seed's run of each best-tuned setting (:func:`best_tuned`, ``within``), scored by ``score_runs``."""
    keys = [*panel_columns(runs), "strategy", *setting_columns(runs)]
    return score_runs(runs).merge(best_tuned(runs, within)[keys], on=keys, how="inner")


@memoised
def tuning_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuning budget of every strategy on every panel: how many settings its best-tuned choice was made among.

    Columns: panel, ``strategy``, ``lrs`` (learning rates), ``hyperparameters``
    (distinct hyperparameter settings, 1 for a strategy without any),
    ``settings`` (distinct (lr, hyperparameters) settings tried) and ``seeds``
    (runs per setting, at most).
    """
    keys = [*panel_columns(runs), "strategy"]
    hyper = hyperparameter_columns(runs)
    count = {name: groups(runs.drop_duplicates([*keys, *columns]), keys).size()
             for name, columns in (("lrs", ["lr"]), ("hyperparameters", hyper), ("settings", ["lr", *hyper]))}
    budget = pd.DataFrame(count)
    budget["seeds"] = groups(runs, [*keys, *setting_columns(runs)]).size().groupby(level=keys, dropna=False).max()
    return budget.reset_index()


def registered_defaults(strategy: str) -> dict[str, float]:
    """The registered default of each numeric hyperparameter of ``strategy`` (``bench.strategies.lookup``).

    A chain is a config entry, not a registered strategy: its hyperparameters
    take their members' defaults, found by name (hyperparameter names are
    unique across the registry).
    """
    from bench import strategies

    defaults = strategies.lookup(strategy).options if strategy in strategies.REGISTRY else strategies.REGISTRY.options()
    return {key: float(value) for key, value in defaults.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def strategy_hyperparameter_columns(runs: pd.DataFrame) -> list[str]:
    """The hyperparameter columns that are strategy hyperparameters (named in ``bench.strategies``' registry).

    The other setting columns (an optimizer's tuned dials such as
    ``warmup_steps``) are tuned like the learning rate for every strategy.
    """
    from bench import strategies

    names = strategies.REGISTRY.options()
    return [c for c in hyperparameter_columns(runs) if c in names]


@memoised
def default_settings(runs: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """Per strategy: its default hyperparameters and whether the sweep's grid contains them.

    The hyperparameters of a strategy are the strategy-hyperparameter columns
    (:func:`strategy_hyperparameter_columns`) its runs set (not NaN); their
    defaults come from ``defaults`` (strategy -> column -> value) or, by
    default, :func:`registered_defaults`. Columns: ``strategy``, ``default``
    (column -> default value; empty for a strategy without hyperparameters),
    ``in_grid`` (some run has every hyperparameter at its default, within
    floating-point tolerance; a hyperparameter without a registered default is
    never in the grid) and ``tuned`` (the strategy has hyperparameters, so its
    default differs from its tuned choice).
    """
    rows = []
    for strategy, own in groups(runs, ["strategy"]):
        columns = [c for c in strategy_hyperparameter_columns(runs) if own[c].notna().any()]
        known = registered_defaults(strategy[0]) if defaults is None else dict(defaults.get(strategy[0], {}))
        default = {c: known[c] for c in columns if c in known}
        rows.append({"strategy": strategy[0], "default": default, "tuned": bool(columns),
                     "in_grid": len(default) == len(columns) and bool(_at_default(own, default).any())})
    return pd.DataFrame(rows, columns=["strategy", "default", "in_grid", "tuned"])


def _at_default(runs: pd.DataFrame, default: Mapping[str, float]) -> np.ndarray:
    """Rows of ``runs`` whose every column of ``default`` equals its value (``np.isclose``)."""
    mask = np.ones(len(runs), dtype=bool)
    for column, value in default.items():
        mask &= np.isclose(runs[column].to_numpy(dtype=float), value)
    return mask


@memoised
def default_runs(runs: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """The runs of each strategy at its default hyperparameters (:func:`default_settings`), every lr and seed.

    The fixed-default comparison: tuned over the learning rate (and any tuned
    optimizer dial) only, e.g. :func:`best_tuned` of these runs. A strategy without hyperparameters keeps
    all its runs; one whose default is not in the grid has none.
    """
    settings = default_settings(runs, defaults).set_index("strategy")
    keep = np.zeros(len(runs), dtype=bool)
    for strategy, row in settings[settings["in_grid"]].iterrows():
        own = (runs["strategy"] == strategy).to_numpy()
        keep[own] = _at_default(runs[own], row["default"])
    return runs[keep]


def settings(runs: pd.DataFrame, strategy: str, stated: Mapping[str, float]) -> list[tuple[dict[str, float], bool]]:
    """The settings of ``strategy`` in ``runs`` (hyperparameter column -> value), each with whether it is the
    pre-stated one: every hyperparameter at ``stated`` (the question's thresholds) or else at its registered
    default; a strategy with a single setting in the grid has it stated.

    The hyperparameters are the strategy's own (:func:`strategy_hyperparameter_columns`) and any other
    setting column with more than one value among its runs (a warm-up length tuned for ``warmup`` alone).
    """
    own = runs[runs["strategy"] == strategy]
    mine = strategy_hyperparameter_columns(runs)
    columns = [c for c in hyperparameter_columns(runs)
               if (c in mine and own[c].notna().any()) or own[c].dropna().nunique() > 1]
    if not columns:
        return [({}, True)]
    combos = own[columns].drop_duplicates().sort_values(columns)
    defaults = {**registered_defaults(strategy), **{k: float(v) for k, v in stated.items()}}
    found = []
    for values in combos.itertuples(index=False):
        setting = {c: float(v) for c, v in zip(columns, values, strict=True)}
        found.append((setting, len(combos) == 1 or all(c in defaults and np.isclose(v, defaults[c])
                                                       for c, v in setting.items())))
    return found


def setting_label(strategy: str, setting: Mapping[str, float]) -> str:
    """``strategy`` with its setting, e.g. ``clip_norm(clip_norm=1)``; its name alone without hyperparameters."""
    return f"{strategy}({', '.join(f'{c}={v:g}' for c, v in setting.items())})" if setting else strategy


def at_setting(runs: pd.DataFrame, strategy: str, setting: Mapping[str, float]) -> pd.DataFrame:
    """``runs`` with the runs of ``strategy`` cut to ``setting`` (hyperparameter column -> value), the others kept."""
    keep = (runs["strategy"] != strategy).to_numpy()
    mask = (runs["strategy"] == strategy).to_numpy().copy()
    for column, value in setting.items():
        mask &= np.isclose(runs[column].to_numpy(dtype=float), value)
    return runs[keep | mask]
