"""The effects engine: panels -> independent units -> estimate, interval and test, for every question.

A question computes a value per panel (task x model x optimizer x stress dials:
a stable-range width, a best-tuned test score, a contrast of them). The panels
of one task x model pair share its data and architecture, so they are not
independent: a value is averaged over the panels of each pair, and the pairs
are the units (:meth:`Study.over_pairs`):

- estimate: the mean over pairs of each pair's mean over its panels;
- interval: a percentile bootstrap over the pairs (``inference.bootstrap_ci``);
  with a single pair, a bootstrap over its seeds instead (the same seeds across
  the pair's panels and strategies, since a seed fixes initial weights and data
  order) that recomputes the whole effect, the best-tuned choices included
  (:class:`Resampling`, ``inference.weighted_bootstrap``, ``seed_grid.SeedGrid``);
- test: a two-sided Wilcoxon signed-rank test over the pairs (``inference.signed_rank``);
- censoring: where a stable range reaches the top of the learning-rate grid
  its width is a lower bound, and a contrast is a lower bound if that range
  enters with a positive sign, an upper bound with a negative one (``bound``:
  ``lower``, ``upper``, ``both`` or empty; :meth:`Study.range_contrast`).

Effects that rest on seeds by design (Q6: the damage of bad batches within
each pair) use :meth:`Study.over_seeds`, the pairs' seeds resampled
independently (stratified); shares over pairs use :meth:`Study.share`.

:class:`Study` holds what the questions share on one sweep: its runs (the clean
panels, without bad-batch spikes, and all of them), the optional curves, the
bootstrap settings and the caches (stable widths, best-tuned scores, seed grids).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.curves import CurveSource, curves_of
from analysis.inference import bootstrap_ci, signed_rank, weighted_bootstrap
from analysis.seed_grid import SeedGrid
from analysis.stability import grid_step, stable_lr_range
from analysis.summaries import cluster_rate
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import clean_panels, normalised_runs, panel_columns, row_key

N_RESAMPLES = 1999
"""Bootstrap resamples of the seed-level intervals (the pair-level ones use ``inference.bootstrap_ci``'s default)."""

EFFECT_COLUMNS = ("question", "level", "estimate", "low", "high", "unit", "n", "censored")
"""Columns every question's table has (besides the keys naming its effects)."""

UNIT_PAIRS = "task-model pairs"
UNIT_SEEDS = "seeds"

PanelKey = tuple
"""A panel's values (``vocabulary.row_key``), in the order of ``vocabulary.panel_columns``."""


def empty(*keys: str) -> pd.DataFrame:
    """A question's table without rows: the effect columns and the ``keys`` naming its effects."""
    return pd.DataFrame(columns=[*EFFECT_COLUMNS[:2], *keys, *EFFECT_COLUMNS[2:]])


def bound(positive: bool, negative: bool) -> str:
    """Which bound a contrast is when the ranges entering it with a positive / negative sign are censored."""
    return {(False, False): "", (True, False): "lower", (False, True): "upper", (True, True): "both"}[
        (bool(positive), bool(negative))]


class Effect(NamedTuple):
    """An effect summarised over its independent units."""

    estimate: float
    low: float
    high: float
    unit: str
    """What the interval resamples: :data:`UNIT_PAIRS`, :data:`UNIT_SEEDS`, or empty where there is no interval."""
    n: int
    """How many units."""
    pvalue: float = float("nan")
    """The two-sided signed-rank test over the units, where asked for."""

    def columns(self) -> dict[str, Any]:
        """``estimate``, ``low``, ``high``, ``unit`` and ``n``, the effect columns of a question's row."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "unit": self.unit, "n": self.n}


@dataclass(frozen=True)
class Resampling:
    """How to redo an effect on seed resamples: per stratum (task x model pair) its number of seeds, and the
    statistic of the weights (one matrix per stratum: resamples x seeds) of every resample."""

    counts: Sequence[int]
    statistic: Callable[[list[np.ndarray]], np.ndarray]


def _over_units(values: np.ndarray) -> tuple[float, float]:
    """``inference.bootstrap_ci`` of the mean over units, quiet about nearly constant values (a tight interval)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        return bootstrap_ci(values)


class Study:
    """The questions' shared state on one sweep, and the engine that turns per-panel values into effects."""

    def __init__(self, runs: pd.DataFrame, curves: CurveSource = None, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> None:
        self.all_runs = runs
        self.runs = clean_panels(runs)
        self.curves = curves
        self.n_resamples, self.seed = n_resamples, seed
        self.keys = panel_columns(self.runs)
        self.panels: dict[PanelKey, pd.DataFrame] = {
            row_key(key if isinstance(key, tuple) else (key,)): group
            for key, group in self.runs.groupby(self.keys, dropna=False, sort=False)} if len(self.runs) else {}
        self.panel_values: dict[PanelKey, dict] = {
            k: dict(zip(self.keys, group[self.keys].iloc[0], strict=True)) for k, group in self.panels.items()}
        self.step = {k: grid_step(group["lr"].to_numpy()) for k, group in self.panels.items()}
        self.family = {(str(t), str(m)): str(f) for t, m, f in
                       self.runs[["task", "model", "family"]].drop_duplicates().itertuples(index=False)}
        self._widths: dict[tuple[PanelKey, str], dict] | None = None
        self._tests: dict[tuple[PanelKey, str], float] | None = None
        self._grids: dict[tuple[PanelKey, str], SeedGrid] = {}

    def curves_of(self, run_ids: Sequence[str]) -> pd.DataFrame | None:
        """The curve rows of ``run_ids`` (``curves.curves_of``); None where the study has no curves."""
        return curves_of(self.curves, run_ids)

    # -- per panel -------------------------------------------------------------------------------------------
    def strategies(self, panel: PanelKey) -> set[str]:
        """The strategies that ran on ``panel``."""
        return set(self.panels[panel]["strategy"].astype(str))

    def optimizers(self) -> list[str]:
        """The optimizers of the clean panels, in order of first appearance."""
        return list(dict.fromkeys(str(v["optimizer"]) for v in self.panel_values.values()))

    def select(self, needed: Sequence[str], optimizer: str = "all", family: str = "all") -> list[PanelKey]:
        """The panels where every strategy of ``needed`` ran, of one optimizer and model family (or all)."""
        chosen = []
        for panel, values in self.panel_values.items():
            if optimizer != "all" and values["optimizer"] != optimizer:
                continue
            if family != "all" and self.family[(str(values["task"]), str(values["model"]))] != family:
                continue
            if set(needed) <= self.strategies(panel):
                chosen.append(panel)
        return chosen

    @property
    def widths(self) -> dict[tuple[PanelKey, str], dict]:
        """``stability.stable_lr_range`` per (panel, strategy), with ``width`` (decades), ``top`` and ``reaches_top``.

        A panel where no learning rate is stable has width minus one grid step.
        """
        if self._widths is None:
            ranges = stable_lr_range(self.runs) if len(self.runs) else pd.DataFrame()
            rows = {}
            for row in ranges.itertuples(index=False):
                record = row._asdict()
                panel = row_key([record[k] for k in self.keys])
                group = self.panels[panel]
                top = float(group.loc[group["strategy"] == record["strategy"], "lr"].max())
                nothing = record["stable_lrs"] == 0
                rows[(panel, record["strategy"])] = {
                    "lo": record["lo"], "hi": record["hi"], "top": top, "stable_lrs": record["stable_lrs"],
                    "width": -self.step[panel] if nothing else math.log10(record["hi"] / record["lo"]),
                    "reaches_top": (not nothing) and bool(np.isclose(record["hi"], top, rtol=1e-9)),
                    "empty": bool(nothing)}
            self._widths = rows
        return self._widths

    def width(self, panel: PanelKey, strategy: str) -> dict:
        """The stable range of ``strategy`` on ``panel`` (:attr:`widths`)."""
        return self.widths[(panel, strategy)]

    def test(self, panel: PanelKey, strategy: str) -> float:
        """Best-tuned mean normalised test score of ``strategy`` on ``panel`` (``tuning.best_tuned_runs``)."""
        if self._tests is None:
            best = best_tuned_runs(self.runs) if len(self.runs) else self.runs
            best = best.assign(_norm=normalised_runs(best)) if len(best) else best.assign(_norm=[])
            self._tests = {(row_key(key[:-1]), key[-1]): float(value) for key, value in
                           best.groupby([*self.keys, "strategy"], dropna=False, sort=False)["_norm"].mean().items()}
        return self._tests[(panel, strategy)]

    def seeds(self, panels: Sequence[PanelKey]) -> list[int]:
        """The seeds of the runs of ``panels``, sorted."""
        return sorted({int(s) for p in panels for s in self.panels[p]["seed"]})

    def grid(self, panel: PanelKey, strategy: str, seeds: Sequence[int]) -> SeedGrid:
        """The :class:`~analysis.seed_grid.SeedGrid` of ``strategy`` on ``panel`` over ``seeds`` (cached)."""
        key = (panel, strategy)
        if key not in self._grids:
            runs = self.panels[panel]
            self._grids[key] = SeedGrid(runs[runs["strategy"] == strategy], seeds, self.step[panel])
        return self._grids[key]

    # -- panels -> units -> effect ---------------------------------------------------------------------------
    def pairs(self, panels: Sequence[PanelKey]) -> dict[tuple[str, str], list[PanelKey]]:
        """``panels`` grouped by task x model pair, the independent unit, in order of first appearance."""
        grouped: dict[tuple[str, str], list[PanelKey]] = {}
        for panel in panels:
            values = self.panel_values[panel]
            grouped.setdefault((str(values["task"]), str(values["model"])), []).append(panel)
        return grouped

    def seed_interval(self, resampling: Resampling) -> tuple[float, float]:
        """The percentile interval of ``resampling`` over seed resamples (``inference.weighted_bootstrap``)."""
        return weighted_bootstrap(resampling.counts, resampling.statistic, n_resamples=self.n_resamples,
                                  seed=self.seed)

    def over_pairs(self, panel_values: Mapping[PanelKey, float],
                   seeds: Callable[[list[PanelKey]], Resampling] | None = None, log: bool = False,
                   test: bool = False) -> Effect:
        """The effect of per-panel values: the mean over pairs of each pair's mean over its panels (NaN values
        left out), its interval over pairs, or over seeds where there is one pair (``seeds`` gives the pair's
        :class:`Resampling` from its panels; none: no interval), and with ``test`` the signed-rank test over
        pairs (two or more).

        ``log``: the values are log ratios, and the effect their geometric mean (estimate and interval bounds
        exponentiated).
        """
        pairs = self.pairs(list(panel_values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a pair without any value: NaN
            per_pair = np.array([np.nanmean([panel_values[p] for p in panels]) for panels in pairs.values()])
        estimate = float(per_pair.mean()) if per_pair.size else float("nan")
        if len(pairs) >= 2:
            (low, high), unit, n = _over_units(per_pair), UNIT_PAIRS, len(pairs)
        elif len(pairs) == 1 and seeds is not None:
            resampling = seeds(next(iter(pairs.values())))
            (low, high), unit, n = self.seed_interval(resampling), UNIT_SEEDS, int(resampling.counts[0])
        else:
            low, high, unit, n = float("nan"), float("nan"), "", len(pairs)
        pvalue = signed_rank(per_pair)[1] if test and per_pair.size >= 2 else float("nan")
        if log:
            estimate, low, high = float(np.exp(estimate)), float(np.exp(low)), float(np.exp(high))
        return Effect(estimate, low, high, unit, n, pvalue)

    def over_seeds(self, estimate: float, resampling: Resampling) -> Effect:
        """An effect whose interval resamples the seeds of each pair independently (stratified)."""
        low, high = self.seed_interval(resampling)
        return Effect(estimate, low, high, UNIT_SEEDS, int(min(resampling.counts)))

    def share(self, frame: pd.DataFrame, value: str) -> Effect:
        """The share of rows of ``frame`` where ``value`` holds, its interval a cluster bootstrap over the pairs
        (``summaries.cluster_rate``); ``n``: the pairs."""
        rate = cluster_rate(frame.assign(_all="all"), value, by=["_all"]).iloc[0]
        clusters = int(rate["clusters"])
        return Effect(float(rate["rate"]), float(rate["low"]), float(rate["high"]),
                      UNIT_PAIRS if clusters >= 2 else "", clusters)

    def _resampling(self, panels: Sequence[PanelKey],
                    per_seed: Callable[[PanelKey, list[int], np.ndarray], np.ndarray]) -> Resampling:
        """One pair's seed resampling: the mean over its ``panels`` of ``per_seed(panel, seeds, weights)``."""
        seeds = self.seeds(panels)
        return Resampling([len(seeds)], lambda weights: np.mean([per_seed(p, seeds, weights[0]) for p in panels],
                                                                axis=0))

    def range_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x stable-range width`` over strategies, per panel, as an effect over pairs.

        ``censored`` / ``bound``: a range entering with a positive weight that
        reaches the top of the grid makes the contrast a lower bound, one
        with a negative weight an upper bound.
        """
        values, positive, negative, nothing = {}, False, False, False
        for panel in panels:
            total = 0.0
            for strategy, weight in weights.items():
                width = self.width(panel, strategy)
                total += weight * width["width"]
                positive |= weight > 0 and width["reaches_top"]
                negative |= weight < 0 and width["reaches_top"]
                nothing |= width["empty"]
            values[panel] = total

        def per_seed(panel: PanelKey, seeds: list[int], w: np.ndarray) -> np.ndarray:
            return sum(weight * self.grid(panel, s, seeds).width(w) for s, weight in weights.items())

        effect = self.over_pairs(values, lambda ps: self._resampling(ps, per_seed))
        return {**effect.columns(), "censored": positive, "bound": bound(positive, negative), "any_empty": nothing,
                "panels": len(panels)}

    def test_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x best-tuned normalised test score`` per panel, as an effect over pairs."""
        values = {p: sum(w * self.test(p, s) for s, w in weights.items()) for p in panels}

        def per_seed(panel: PanelKey, seeds: list[int], w: np.ndarray) -> np.ndarray:
            return sum(weight * self.grid(panel, s, seeds).chosen_mean(w) for s, weight in weights.items())

        effect = self.over_pairs(values, lambda ps: self._resampling(ps, per_seed))
        return {**effect.columns(), "censored": False, "bound": "", "panels": len(panels)}
