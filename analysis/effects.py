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
- test: a two-sided Wilcoxon signed-rank test over the pairs (``inference.signed_rank``),
  ``pvalue``; ``min_p`` the smallest p-value the test can reach at its number
  of pairs after the correction its family applies (:func:`holm_family`), and
  ``underpowered`` where that is above :data:`ALPHA`: the test cannot reject
  whatever the data, and is never read as evidence;
- equivalence: the 90% interval over pairs (``low90``, ``high90``; over seeds
  where there is one pair, from the same resamples as the 95% one), inside
  +-margin for an equivalence at level 5% (``inference.within_margin``; the
  margin is the claims file's, ``analysis.claims``);
- too few units: with fewer than :data:`MIN_UNITS` independent units there is
  no interval (NaN) and ``values`` lists the unit values instead;
- censoring: where a stable range reaches the top of the learning-rate grid
  its width is a lower bound, and a contrast is a lower bound if that range
  enters with a positive sign, an upper bound with a negative one, judged per
  panel and per pair (``bound``: ``lower`` where every censored pair is a
  lower bound, ``upper`` likewise, ``both`` where a pair is censored both
  ways or pairs disagree, else empty; ``lower_pairs``, ``upper_pairs``,
  ``both_pairs``; ``all_censored`` where every panel is; :meth:`Study.range_contrast`);
- pooling: a row over all optimizers whose per-optimizer rows have estimates
  of opposite signs is flagged ``opposite_signs`` (:func:`finish`): it is not
  a pooled effect, and a claim on it is stated per optimizer.

Duplicated problems (the same data, model and seeds under two task names) are
merged before anything is counted (``analysis.problems.distinct_problems``);
:attr:`Study.duplicates` lists them.

Effects that rest on seeds by design (Q6: the damage of bad batches within
each pair) use :meth:`Study.over_seeds`, the pairs' seeds resampled
independently (stratified); shares over pairs use :meth:`Study.share`.

:class:`Study` holds what the questions share on one sweep: its runs (the clean
panels, without bad-batch spikes, and all of them), the optional curves, the
bootstrap settings and the caches (stable widths, best-tuned scores, seed
grids, the endpoint losses that learning-rate sensitivities read:
:meth:`Study.sensitivity_contrast`). Its runs are those it is given
(``analysis.data.load_runs`` reads the config's ``seeds``, the discovery set,
unless asked for another), or those of the seed set ``seed_set`` among them:
every claim can be evaluated on the discovery seeds or on the replication
seeds (``analysis.numbers.claim_outcomes``).
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
from analysis.inference import (
    CONFIDENCE,
    bootstrap_ci,
    bootstrap_pvalue,
    holm,
    signed_rank,
    smallest_pvalue,
    weighted_bootstrap,
)
from analysis.latex import number
from analysis.problems import Duplicate, distinct_problems
from analysis.seed_grid import SeedGrid
from analysis.stability import decades, grid_step, stable_lr_range
from analysis.summaries import cluster_rate
from analysis.tuning import best_tuned_runs
from analysis.vocabulary import (
    clean_panels,
    default_precision,
    loss_unit,
    normalised_runs,
    of_seed_set,
    panel_columns,
    row_key,
)

N_RESAMPLES = 1999
"""Bootstrap resamples of the seed-level intervals (the pair-level ones use ``inference.bootstrap_ci``'s default)."""

EFFECT_COLUMNS = ("question", "level", "estimate", "low", "high", "unit", "n", "censored")
"""Columns every question's table has (besides the keys naming its effects)."""

ALPHA = 0.05
"""The level of every test: a p-value that cannot go below it is underpowered."""
EQUIVALENCE_CONFIDENCE = 0.90
"""The interval of an equivalence test at level :data:`ALPHA` (two one-sided tests): 1 - 2 alpha."""
MIN_UNITS = 5
"""Independent units an interval needs; with fewer the unit values are listed instead."""

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
    """The two-sided signed-rank test over the units (two or more pairs)."""
    low90: float = float("nan")
    high90: float = float("nan")
    """The 90% interval over units (pairs or seeds), read by an equivalence test (:data:`EQUIVALENCE_CONFIDENCE`)."""
    values: str = ""
    """With fewer than :data:`MIN_UNITS` units (no interval): the unit values, ``value (task/model)``, listed."""
    pvalue_interval: float = float("nan")
    """The test that matches the interval over pairs: the p-value the bootstrap implies
    (``inference.bootstrap_pvalue``)."""

    @property
    def min_p(self) -> float:
        """The smallest p-value the signed-rank test can give over :attr:`n` pairs (uncorrected); NaN without a test."""
        return smallest_pvalue("wilcoxon", self.n) if math.isfinite(self.pvalue) else float("nan")

    def columns(self) -> dict[str, Any]:
        """The effect columns of a question's row: ``estimate``, ``low``, ``high``, ``unit``, ``n``, the test
        (``pvalue``, ``min_p``, ``underpowered``), ``low90``, ``high90``, ``values`` and ``pvalue_interval``."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "unit": self.unit, "n": self.n,
                "pvalue": self.pvalue, "min_p": self.min_p, "underpowered": underpowered(self.min_p),
                "low90": self.low90, "high90": self.high90, "values": self.values,
                "pvalue_interval": self.pvalue_interval}


def underpowered(min_p: float) -> bool:
    """Whether a test whose smallest reachable p-value is ``min_p`` cannot reject at :data:`ALPHA`."""
    return bool(math.isfinite(min_p) and min_p > ALPHA)


def holm_family(rows: Sequence[dict]) -> list[dict]:
    """``rows`` (each with ``pvalue`` and ``n``) corrected together by Holm: ``pvalue_holm``, and ``min_p`` /
    ``underpowered`` after the correction (the smallest adjusted p-value the family can reach: its size times
    the smallest p-value of the row's test, capped at 1)."""
    tested = [row for row in rows if math.isfinite(float(row["pvalue"]))]
    adjusted = holm([row["pvalue"] for row in rows])
    out = []
    for row, p in zip(rows, adjusted, strict=True):
        floor = (min(1.0, len(tested) * smallest_pvalue("wilcoxon", int(row["n"])))
                 if math.isfinite(float(row["pvalue"])) else float("nan"))
        out.append({**row, "pvalue_holm": p, "min_p": floor, "underpowered": underpowered(floor)})
    return out


VALUE_TEXTS = ("bound", "budget", "signs", "verdict")
"""Text columns that describe an effect's value, not which effect it is (:func:`finish` matches rows without them)."""


def finish(table: pd.DataFrame, over: str = "optimizer", pooled: str = "all") -> pd.DataFrame:
    """A question's table with ``opposite_signs`` on its pooled rows (``over`` == ``pooled``): True where the rows
    of the same effect (every other key alike, ``level`` aside) per value of ``over`` have estimates of opposite
    signs (some above 0, some below), so that the pooled mean hides them; ``signs``: those rows' estimates,
    ``over=estimate`` joined by commas."""
    if table.empty or over not in table.columns or "estimate" not in table.columns:
        return table
    effect = {*EFFECT_COLUMNS, *Effect._fields, "min_p", "underpowered", "pvalue_holm"}
    keys = [c for c in table.columns if c not in effect and c not in (over, "level", *VALUE_TEXTS)
            and table[c].map(lambda v: isinstance(v, str)).all()]
    table = table.assign(opposite_signs=False, signs="")
    pooled_rows = table.index[table[over].astype(str) == pooled]
    for index in pooled_rows:
        same = np.ones(len(table), dtype=bool)
        for key in keys:
            same &= (table[key].astype(str) == str(table.at[index, key])).to_numpy()
        parts = table[same & (table[over].astype(str) != pooled).to_numpy()]
        estimates = pd.to_numeric(parts["estimate"], errors="coerce").to_numpy(dtype=float)
        if (estimates > 0).any() and (estimates < 0).any():
            table.at[index, "opposite_signs"] = True
        table.at[index, "signs"] = ", ".join(f"{o}={e:.2g}" for o, e in zip(parts[over], estimates, strict=True))
    return table


@dataclass(frozen=True)
class Resampling:
    """How to redo an effect on seed resamples: per stratum (task x model pair) its number of seeds, and the
    statistic of the weights (one matrix per stratum: resamples x seeds) of every resample."""

    counts: Sequence[int]
    statistic: Callable[[list[np.ndarray]], np.ndarray]


def _over_units(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``inference.bootstrap_ci`` of the mean over units, quiet about nearly constant values (a tight interval)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        return bootstrap_ci(values, confidence=confidence)


class Study:
    """The questions' shared state on one sweep, and the engine that turns per-panel values into effects."""

    def __init__(self, runs: pd.DataFrame, curves: CurveSource = None, n_resamples: int = N_RESAMPLES,
                 seed: int = 0, seed_set: str | None = None) -> None:
        if seed_set is not None:  # else the runs as given: ``analysis.data.load_runs`` chose their seed set
            runs = of_seed_set(runs, seed_set)
        every_precision, self.duplicates = distinct_problems(runs)
        self.duplicates: list[Duplicate]
        """The problems merged into another before anything was counted (``problems.distinct_problems``)."""
        self.every_precision = every_precision
        """Every run, float64 replicas included: what Q3 reads (its identity is exact only in float64)."""
        self.all_runs = default_precision(every_precision)
        """The study's runs at its default precision, bad-batch panels included (Q6 reads them)."""
        self.runs = clean_panels(self.all_runs)
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
        self._sensitivity_grids: dict[tuple[PanelKey, str, tuple[int, ...]], SeedGrid] = {}
        self._losses = pd.DataFrame()

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
            # per strategy: each range reads its own panel's and strategy's runs only, and a study made of one
            # strategy and the baseline (Q1, at each setting) finds the baseline's ranges computed already
            ranges = [stable_lr_range(own) for _, own in self.runs.groupby("strategy", sort=False)]
            tops: dict[PanelKey, dict[str, float]] = {}
            rows = {}
            for row in (row for frame in ranges for row in frame.itertuples(index=False)):
                record = row._asdict()
                panel = row_key([record[k] for k in self.keys])
                if panel not in tops:
                    highest = self.panels[panel].groupby("strategy")["lr"].max()
                    tops[panel] = {str(k): float(v) for k, v in highest.items()}
                top = tops[panel][str(record["strategy"])]
                nothing = record["stable_lrs"] == 0
                rows[(panel, record["strategy"])] = {
                    "lo": record["lo"], "hi": record["hi"], "top": top, "stable_lrs": record["stable_lrs"],
                    "width": -self.step[panel] if nothing else decades(record["hi"], record["lo"]),
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

    def seed_test(self, resampling: Resampling) -> tuple[float, float, float, float, float]:
        """The 95% percentile interval of ``resampling`` over seed resamples, the p-value its resamples imply for 0
        (the test that matches the interval, ``inference.implied_pvalue``) and the 90% interval of the same
        resamples (an equivalence test's, :data:`EQUIVALENCE_CONFIDENCE`): (low, high, p, low90, high90)."""
        return weighted_bootstrap(resampling.counts, resampling.statistic, n_resamples=self.n_resamples,
                                  seed=self.seed, null=0.0, also=EQUIVALENCE_CONFIDENCE)

    def over_pairs(self, panel_values: Mapping[PanelKey, float],
                   seeds: Callable[[list[PanelKey]], Resampling] | None = None, log: bool = False) -> Effect:
        """The effect of per-panel values: the mean over pairs of each pair's mean over its panels (NaN values
        left out), its interval (and the 90% one) over pairs, or over seeds where there is one pair (``seeds``
        gives the pair's :class:`Resampling` from its panels; none: no interval), the signed-rank test over
        pairs (two or more) and the p-value the interval implies.

        An interval needs :data:`MIN_UNITS` units: over 2 to 4 pairs (or a single pair with fewer seeds) the
        interval is NaN and ``values`` lists each pair's value.

        ``log``: the values are log ratios, and the effect their geometric mean (estimate, interval bounds and
        listed values exponentiated).
        """
        pairs = self.pairs(list(panel_values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a pair without any value: NaN
            per_pair = np.array([np.nanmean([panel_values[p] for p in panels]) for panels in pairs.values()])
        estimate = float(per_pair.mean()) if per_pair.size else float("nan")
        nan = float("nan")
        low = high = low90 = high90 = implied = nan
        unit, n = (UNIT_PAIRS if len(pairs) >= 2 else ""), len(pairs)
        if len(pairs) >= MIN_UNITS:
            (low, high), (low90, high90) = _over_units(per_pair), _over_units(per_pair, EQUIVALENCE_CONFIDENCE)
            implied = bootstrap_pvalue(per_pair)
        elif len(pairs) == 1 and seeds is not None:
            resampling = seeds(next(iter(pairs.values())))
            unit, n = UNIT_SEEDS, int(resampling.counts[0])
            if n >= MIN_UNITS:
                low, high, implied, low90, high90 = self.seed_test(resampling)
        pvalue = signed_rank(per_pair)[1] if per_pair.size >= 2 else nan
        shown = np.exp(per_pair) if log else per_pair
        values = ("" if len(pairs) >= MIN_UNITS or unit == UNIT_SEEDS else
                  ", ".join(f"{number(v, 2)} ({'/'.join(p)})" for v, p in zip(shown, pairs, strict=True)))
        if log:
            estimate, low, high, low90, high90 = (float(np.exp(v)) for v in (estimate, low, high, low90, high90))
        return Effect(estimate, low, high, unit, n, pvalue, low90, high90, values, implied)

    def over_seeds(self, estimate: float, resampling: Resampling) -> Effect:
        """An effect whose interval resamples the seeds of each pair independently (stratified)."""
        n = int(min(resampling.counts))
        low, high, implied, low90, high90 = self.seed_test(resampling) if n >= MIN_UNITS else (float("nan"),) * 5
        return Effect(estimate, low, high, UNIT_SEEDS, n, low90=low90, high90=high90, pvalue_interval=implied)

    def share(self, frame: pd.DataFrame, value: str) -> Effect:
        """The share of rows of ``frame`` where ``value`` holds, its interval a cluster bootstrap over the pairs
        (``summaries.cluster_rate``); ``n``: the pairs."""
        rate = cluster_rate(frame.assign(_all="all"), value, by=["_all"]).iloc[0]
        clusters = int(rate["clusters"])
        if clusters < MIN_UNITS:
            shares = frame.groupby(["task", "model"], sort=False)[value].mean()
            listed = ", ".join(f"{number(v, 2)} ({t}/{m})" for (t, m), v in shares.items())
            return Effect(float(rate["rate"]), float("nan"), float("nan"), UNIT_PAIRS if clusters >= 2 else "",
                          clusters, values=listed)
        return Effect(float(rate["rate"]), float(rate["low"]), float(rate["high"]), UNIT_PAIRS, clusters)

    def _resampling(self, panels: Sequence[PanelKey],
                    per_seed: Callable[[PanelKey, list[int], np.ndarray], np.ndarray]) -> Resampling:
        """One pair's seed resampling: the mean over its ``panels`` of ``per_seed(panel, seeds, weights)``."""
        seeds = self.seeds(panels)
        return Resampling([len(seeds)], lambda weights: np.mean([per_seed(p, seeds, weights[0]) for p in panels],
                                                                axis=0))

    def range_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x stable-range width`` over strategies, per panel, as an effect over pairs.

        Censoring, per panel: a range entering with a positive weight that
        reaches the top of the grid makes the panel's contrast a lower bound,
        one with a negative weight an upper bound; a pair's mean is a lower
        (upper) bound where its censored panels all are, else both. The row:
        ``bound`` (see the module docstring; :func:`censoring`), the pairs of
        each kind, ``censored`` (any panel censored) and ``all_censored``
        (every panel: the effect rests on bounds only).
        """
        values, nothing, kinds = {}, False, {}
        for panel in panels:
            total, positive, negative = 0.0, False, False
            for strategy, weight in weights.items():
                width = self.width(panel, strategy)
                total += weight * width["width"]
                positive |= weight > 0 and width["reaches_top"]
                negative |= weight < 0 and width["reaches_top"]
                nothing |= width["empty"]
            values[panel], kinds[panel] = total, bound(positive, negative)

        def per_seed(panel: PanelKey, seeds: list[int], w: np.ndarray) -> np.ndarray:
            return sum(weight * self.grid(panel, s, seeds).width(w) for s, weight in weights.items())

        effect = self.over_pairs(values, lambda ps: self._resampling(ps, per_seed))
        return {**effect.columns(), **self.censoring(kinds), "any_empty": nothing, "panels": len(panels),
                **self.point_part(values, kinds)}

    def point_part(self, values: Mapping[PanelKey, float], kinds: Mapping[PanelKey, str]) -> dict[str, Any]:
        """The part of an effect that rests on points: ``point_estimate``, the mean over pairs of each pair's mean
        over its uncensored panels (NaN where every panel is censored), and ``point_panels``, how many."""
        points = {p: v for p, v in values.items() if not kinds[p]}
        per_pair = [float(np.mean([points[p] for p in ps])) for ps in self.pairs(list(points)).values()]
        return {"point_estimate": float(np.mean(per_pair)) if per_pair else float("nan"),
                "point_panels": len(points)}

    def censoring(self, kinds: Mapping[PanelKey, str]) -> dict[str, Any]:
        """Censoring of an effect from its panels' bounds (``bound``'s values per panel), judged per pair.

        A pair is a lower (upper) bound where its censored panels all are, and
        censored both ways where one of them is or they disagree. ``bound``:
        ``lower`` / ``upper`` where every censored pair is that, ``both``
        where some pair is censored both ways or pairs disagree, empty where
        nothing is censored; ``lower_pairs``, ``upper_pairs``, ``both_pairs``,
        ``censored_pairs`` count the pairs (``pairs``: every pair, censored or
        not), ``censored`` whether any panel is, ``all_censored`` whether every
        panel is.
        """
        per_pair = {}
        for pair, panels in self.pairs(list(kinds)).items():
            found = {kinds[p] for p in panels} - {""}
            per_pair[pair] = "" if not found else found.pop() if len(found) == 1 else "both"
        counts = {kind: sum(v == kind for v in per_pair.values()) for kind in ("lower", "upper", "both")}
        present = {v for v in per_pair.values() if v}
        overall = "" if not present else present.pop() if len(present) == 1 else "both"
        return {"censored": any(kinds.values()), "bound": overall, "lower_pairs": counts["lower"],
                "upper_pairs": counts["upper"], "both_pairs": counts["both"],
                "censored_pairs": sum(bool(v) for v in per_pair.values()), "pairs": len(per_pair),
                "all_censored": bool(kinds) and all(kinds.values())}

    def sensitivity_grid(self, panel: PanelKey, strategy: str, seeds: Sequence[int]) -> SeedGrid:
        """``strategy``'s runs on ``panel`` over ``seeds`` with their endpoint validation losses
        (``sensitivity.sensitivity_grid``; cached): what its learning-rate sensitivity is computed from."""
        from analysis.sensitivity import sensitivity_grid  # it reads this module's constants

        key = (panel, strategy, tuple(seeds))
        if key not in self._sensitivity_grids:
            runs = self.panels[panel]
            runs = runs[runs["strategy"] == strategy]
            self._sensitivity_grids[key] = sensitivity_grid(runs, self._losses.loc[runs.index], seeds,
                                                            self.step[panel])
        return self._sensitivity_grids[key]

    def _load_losses(self, strategies: Sequence[str], panels: Sequence[PanelKey]) -> None:
        """Read the endpoint validation losses (``sensitivity.endpoint_losses``) of the runs of ``strategies`` on
        ``panels`` not read yet, in one pass over the curves."""
        from analysis.sensitivity import endpoint_losses

        runs = pd.concat([self.panels[p] for p in panels]) if panels else self.runs.iloc[:0]
        runs = runs[runs["strategy"].isin(list(strategies)).to_numpy() & ~runs.index.isin(self._losses.index)]
        if len(runs):
            self._losses = pd.concat([self._losses, endpoint_losses(runs, self.curves)])

    def sensitivity_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x learning-rate sensitivity`` over strategies, per panel, as an effect over pairs.

        The sensitivity is that of Wortsman et al. (``analysis.sensitivity``):
        per seed, the mean over the grid's learning rates of the lesser of the
        final and the initial validation loss minus the best final loss, each
        learning rate at the strategy's best setting there; a panel's value is
        the mean over its seeds (those where it is defined). With one pair the
        interval resamples its seeds and redoes every choice of setting. Lower
        is better: below 0 for ``{strategy: 1, baseline: -1}`` the strategy
        depends less on its learning rate. Needs the curves (a ValueError
        without them). ``loss_unit``: the losses' unit (``vocabulary.loss_unit``),
        the units joined where the panels' differ; ``undefined_panels``: panels
        where some strategy's every learning rate diverged (no value).
        """
        from analysis.sensitivity import grid_sensitivity

        self._load_losses(list(weights), panels)
        values = {}
        for panel, seeds in ((p, self.seeds([p])) for p in panels):
            ones = np.ones((1, len(seeds)))
            values[panel] = float(sum(w * grid_sensitivity(self.sensitivity_grid(panel, s, seeds), ones)[0]
                                      for s, w in weights.items()))

        def per_seed(panel: PanelKey, seeds: list[int], w: np.ndarray) -> np.ndarray:
            return sum(weight * grid_sensitivity(self.sensitivity_grid(panel, s, seeds), w)
                       for s, weight in weights.items())

        effect = self.over_pairs(values, lambda ps: self._resampling(ps, per_seed))
        units = dict.fromkeys(loss_unit(str(self.panels[p]["metric"].iloc[0])) for p in panels)
        undefined = sum(not math.isfinite(v) for v in values.values())
        return {**effect.columns(), **self.censoring({p: "" for p in panels}), "panels": len(panels),
                "loss_unit": " and ".join(units), "undefined_panels": undefined}

    def test_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x best-tuned normalised test score`` per panel, as an effect over pairs."""
        values = {p: sum(w * self.test(p, s) for s, w in weights.items()) for p in panels}

        def per_seed(panel: PanelKey, seeds: list[int], w: np.ndarray) -> np.ndarray:
            return sum(weight * self.grid(panel, s, seeds).chosen_mean(w) for s, weight in weights.items())

        effect = self.over_pairs(values, lambda ps: self._resampling(ps, per_seed))
        return {**effect.columns(), **self.censoring({p: "" for p in panels}), "panels": len(panels)}
