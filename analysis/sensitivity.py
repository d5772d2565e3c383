"""Learning-rate sensitivity in the task's loss (Wortsman et al. 2023), per seed and over seeds.

Wortsman et al. ("Small-scale proxies for large-scale Transformer training instabilities", 2023,
arXiv 2309.14322, section 3.1) measure how much a training recipe depends on its learning rate as

    LR sensitivity = mean over the lr grid of min(L(lr), L0)  -  min over the grid of L(lr),

``L(lr)`` the final loss of the run at that learning rate, ``L0`` its initial loss; a diverged run's
final loss is infinite, so it contributes ``L0``. Here, per panel (task, model, optimizer, stress dials,
precision: ``vocabulary.panel_columns``), strategy and seed (:func:`seed_sensitivities`): ``L`` is the
validation loss at the run's last evaluation step (``step == steps``), ``L0`` the validation loss at
step 0, before any update (:func:`endpoint_losses`), in the task's loss unit (nats, or MSE for a
regression task: ``vocabulary.loss_unit``); 0 means every learning rate of the grid ends as well as the
best one. At each learning rate the strategy's runs are those of its best setting there, chosen on
validation by the best-tuned rule (``tuning.best_tuned`` with ``within=["lr"]``), the setting the stable
range judges (``stability.stability_points``), so a strategy with a threshold grid is judged on one
setting's seeds per point, as ``none`` is.

Over seeds (:func:`loss_sensitivity`): the mean of the seeds' values, its interval as the stable range's
on one task x model pair (``effects.Study.over_pairs``): a percentile bootstrap over the seeds that redoes
the best-setting choice at every learning rate on each resample (``seed_grid.SeedGrid``,
``inference.weighted_bootstrap``), and none with fewer than ``effects.MIN_UNITS`` seeds.

This is the loss-based sensitivity of Wortsman et al.; ``stability.lr_sensitivity`` is the other one,
the mean gap of the best-tuned test metric to its best learning rate, normalised by the gain over
chance so that it averages across problems (the ``sensitivity`` figures and macros).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.curves import CurveSource, curves_of
from analysis.effects import MIN_UNITS, N_RESAMPLES
from analysis.inference import CONFIDENCE, weighted_bootstrap
from analysis.seed_grid import SeedGrid
from analysis.stability import grid_step, stable_lr_range
from analysis.vocabulary import groups, loss_unit, panel_columns

SEED_COLUMNS = ("sensitivity", "mean_capped", "best_final", "lrs")
"""What :func:`seed_sensitivities` gives per seed besides its keys."""


def endpoint_losses(runs: pd.DataFrame, curves: CurveSource) -> pd.DataFrame:
    """Per run of ``runs``: its initial and final validation loss from the curves table, and their minimum.

    ``initial_loss``: ``val_loss`` at step 0 (evaluated before any update). ``final_loss``: ``val_loss`` at
    the run's last evaluation step (``step == steps``), infinite where the run diverged or that loss is not
    finite. ``capped_loss``: ``min(final_loss, initial_loss)``, so a diverged run counts at its initial
    loss. The thinning of committed curves keeps both of every run (``bench.thinning``); a curves table
    that lacks the step-0 loss of a run, or the last one of a run that did not diverge, is a ValueError
    naming the first such run. Columns: ``run_id``, ``initial_loss``, ``final_loss``, ``capped_loss``
    (indexed like ``runs``).
    """
    if curves is None:
        raise ValueError("learning-rate sensitivity needs the curves table (val_loss at step 0 and at the last step)")
    rows = curves_of(curves, runs["run_id"])
    if "val_loss" not in rows.columns:
        raise ValueError("curves table lacks column val_loss")
    rows = rows.loc[rows["val_loss"].notna(), ["run_id", "step", "val_loss"]]
    initial = rows[rows["step"] == 0].drop_duplicates("run_id").set_index("run_id")["val_loss"]
    last = rows.merge(runs[["run_id", "steps"]], on="run_id")
    final = last[last["step"] == last["steps"]].drop_duplicates("run_id").set_index("run_id")["val_loss"]
    frame = pd.DataFrame({"run_id": runs["run_id"].to_numpy(),
                          "initial_loss": runs["run_id"].map(initial).to_numpy(dtype=float),
                          "final_loss": runs["run_id"].map(final).to_numpy(dtype=float)}, index=runs.index)
    diverged = runs["diverged"].to_numpy(dtype=bool)
    for what, missing in (("the validation loss at step 0", frame["initial_loss"].isna().to_numpy()),
                          ("the validation loss at its last step", frame["final_loss"].isna().to_numpy() & ~diverged)):
        if missing.any():
            raise ValueError(f"curves table lacks {what} of {int(missing.sum())} run(s), e.g. "
                             f"{frame['run_id'].to_numpy()[missing][0]}")
    final_values = frame["final_loss"].to_numpy(dtype=float)
    frame["final_loss"] = np.where(diverged | ~np.isfinite(final_values), np.inf, final_values)
    frame["capped_loss"] = np.minimum(frame["final_loss"], frame["initial_loss"])
    return frame


def sensitivity_grid(runs: pd.DataFrame, losses: pd.DataFrame, seeds: Sequence[int] | None = None,
                     step: float | None = None) -> SeedGrid:
    """One panel's runs of one strategy as a :class:`SeedGrid` over ``seeds`` (default: the runs' own) with the
    ``capped`` and ``final`` losses of each (setting, seed) (``losses``: :func:`endpoint_losses` of at least
    these runs, indexed like them); ``step``: the panel's grid step in decades (default: from the runs' lrs)."""
    seeds = sorted(int(s) for s in runs["seed"].unique()) if seeds is None else list(seeds)
    values = {"capped": losses.loc[runs.index, "capped_loss"], "final": losses.loc[runs.index, "final_loss"]}
    return SeedGrid(runs, seeds, grid_step(runs["lr"].to_numpy()) if step is None else step, values)


def _grid(runs: pd.DataFrame, losses: pd.DataFrame) -> tuple[SeedGrid, list[int]]:
    """One group's runs as a :func:`sensitivity_grid` over their own seeds, and those seeds."""
    seeds = sorted(int(s) for s in runs["seed"].unique())
    return sensitivity_grid(runs, losses, seeds), seeds


def _per_seed(grid: SeedGrid, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Resamples x seeds: the sensitivity, the mean capped loss, the best final loss and the learning rates
    with a run, at the best setting of each lr chosen on ``weights``; NaN for a seed absent from the grid,
    and a sensitivity of NaN where every lr of the seed diverged (its best final loss is infinite)."""
    chosen = grid.lr_choices(weights)  # resamples x lrs
    capped, final = grid.values["capped"][chosen], grid.values["final"][chosen]  # resamples x lrs x seeds
    present = np.isfinite(capped)
    count = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_capped = np.where(present, capped, 0.0).sum(axis=1) / count
        best_final = np.where(count > 0, np.where(np.isnan(final), np.inf, final).min(axis=1), np.nan)
        sensitivity = np.where(np.isfinite(best_final), mean_capped - best_final, np.nan)
    return sensitivity, mean_capped, best_final, count


def grid_sensitivity(grid: SeedGrid, weights: np.ndarray) -> np.ndarray:
    """Per resample (a row of ``weights``, resamples x the grid's seeds: how often each seed is drawn): the
    weighted mean over seeds of the seeds' sensitivities (those defined), the best setting at each learning
    rate chosen on that resample; NaN where no drawn seed has one. ``grid``: a :func:`sensitivity_grid`."""
    sensitivity = _per_seed(grid, weights)[0]
    defined = np.isfinite(sensitivity)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * np.where(defined, sensitivity, 0.0)).sum(axis=1) / (weights * defined).sum(axis=1)


def seed_sensitivities(runs: pd.DataFrame, curves: CurveSource, within: Sequence[str] = ()) -> pd.DataFrame:
    """Wortsman's learning-rate sensitivity per panel, strategy (and value of ``within``) and seed.

    Over the grid's learning rates, each at the strategy's best setting there (chosen on validation over
    all the seeds, ``tuning.best_tuned`` with ``within=["lr"]``): ``sensitivity`` = ``mean_capped`` (the
    mean over the lrs of ``min(final, initial)`` validation loss, :func:`endpoint_losses`) minus
    ``best_final`` (the lowest final validation loss over the lrs, infinite where every lr diverged, and
    then the sensitivity is NaN: it is undefined). ``lrs``: learning rates with a run of that seed;
    ``loss_unit``: the unit of all three (``vocabulary.loss_unit``). ``within``: hyperparameter columns
    held fixed (a row per value) instead of chosen, as in ``stability.stable_lr_range``.
    """
    losses = endpoint_losses(runs, curves)
    keys = [*panel_columns(runs), "strategy", *within]
    rows = []
    for key, group in groups(runs, keys):
        grid, seeds = _grid(group, losses)
        values = _per_seed(grid, np.ones((1, len(seeds))))
        for i, seed in enumerate(seeds):
            rows.append({**dict(zip(keys, key, strict=True)), "seed": seed,
                         **{name: float(v[0, i]) for name, v in zip(SEED_COLUMNS, values, strict=True)},
                         "loss_unit": loss_unit(group["metric"].iloc[0])})
    frame = pd.DataFrame(rows, columns=[*keys, "seed", *SEED_COLUMNS, "loss_unit"])
    return frame.astype({"lrs": int})


def loss_sensitivity(runs: pd.DataFrame, curves: CurveSource, within: Sequence[str] = (),
                     confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Wortsman's learning-rate sensitivity per panel and strategy (and value of ``within``), over seeds.

    ``sensitivity``: the mean over seeds of :func:`seed_sensitivities` (the seeds where it is defined),
    in ``loss_unit``; ``low``, ``high``: its ``confidence`` interval, a percentile bootstrap over the
    seeds that redoes the best-setting choice at every learning rate on each resample (as the stable
    range's interval on one task x model pair), NaN with fewer than ``effects.MIN_UNITS`` seeds.
    ``seeds``: the seeds with a defined value; ``undefined``: those whose every learning rate diverged;
    ``grid_lrs``: the learning rates of the grid.
    """
    losses = endpoint_losses(runs, curves)
    keys = [*panel_columns(runs), "strategy", *within]
    rows = []
    for key, group in groups(runs, keys):
        grid, seeds = _grid(group, losses)
        values = _per_seed(grid, np.ones((1, len(seeds))))[0][0]
        defined = np.isfinite(values)
        low = high = float("nan")
        if len(seeds) >= MIN_UNITS:
            low, high = weighted_bootstrap([len(seeds)], lambda weights, grid=grid: grid_sensitivity(grid, weights[0]),
                                           confidence, n_resamples, seed)
        rows.append({**dict(zip(keys, key, strict=True)),
                     "sensitivity": float(values[defined].mean()) if defined.any() else float("nan"),
                     "low": low, "high": high, "loss_unit": loss_unit(group["metric"].iloc[0]),
                     "seeds": int(defined.sum()), "undefined": int((~defined).sum()), "grid_lrs": len(grid.lrs)})
    return pd.DataFrame(rows, columns=[*keys, "sensitivity", "low", "high", "loss_unit", "seeds", "undefined",
                                       "grid_lrs"])


def stable_range_and_sensitivity(runs: pd.DataFrame, curves: CurveSource) -> pd.DataFrame:
    """The stable learning-rate range of every strategy on every panel (``stability.stable_lr_range``) with its
    learning-rate sensitivity beside it (:func:`loss_sensitivity`): the range's columns, then
    ``sensitivity``, ``sensitivity_low``, ``sensitivity_high``, ``loss_unit`` and ``sensitivity_seeds``."""
    keys = [*panel_columns(runs), "strategy"]
    sensitivity = loss_sensitivity(runs, curves).rename(columns={
        "low": "sensitivity_low", "high": "sensitivity_high", "seeds": "sensitivity_seeds"})
    shown = [*keys, "sensitivity", "sensitivity_low", "sensitivity_high", "loss_unit", "sensitivity_seeds"]
    return stable_lr_range(runs).merge(sensitivity[shown], on=keys, how="left")
