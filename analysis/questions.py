"""The study's seven questions, answered on a sweep's tables: one function per question, each a tidy table of effects.

Every function takes a runs table (and, where a question reads training
curves, the curves) and returns one row per effect with the columns of
:data:`EFFECT_COLUMNS`: ``question``, ``level`` (``panel``, ``problem``,
``family``, ``optimizer`` or ``all``), the keys naming the effect (strategy,
family, optimizer, measure, ...), ``estimate`` with its 95% interval ``low``
to ``high``, ``unit`` (what the interval resamples), ``n`` (how many of them)
and flags such as ``censored``. ``paper/claims.yaml`` reads single rows of
these tables (``analysis.claims``); a question whose inputs the sweep lacks
returns no row for them, never an error.

Conventions shared by the questions (the statistics themselves are
:mod:`analysis.stats`, with its one rule for failed runs):

- *Clean panels.* Only panels without bad-batch spikes (``spike_rate`` absent
  or 0) enter Q1-Q5 and Q7; the spiking panels are Q6's.
- *Stable range.* ``stats.stable_lr_range`` (the best setting at each
  learning rate, chosen on validation, without a diverged seed; the widest
  contiguous span). Its width is ``log10(hi / lo)`` decades; a panel where no
  learning rate is stable counts one grid step (half a decade on a
  half-decade grid) below a single stable learning rate, so that an empty
  range is narrower than a one-point one. A gain is the width of a strategy
  minus that of ``none`` on the same panel. Where a strategy's range reaches
  the top of the grid its width is a lower bound (``censored``); a contrast is
  then a lower bound if that strategy enters with a positive sign, an upper
  bound if with a negative one (``bound``: ``lower``, ``upper``, ``both`` or
  empty).
- *Normalised score.* Test results across problems are compared as
  ``1 - error / chance error`` (:func:`normalised_score`; error = 1 - accuracy
  or the MSE, as in ``stats.metric_error``): 0 at chance, 1 perfect, the
  chance-corrected accuracy for classification and R^2 against the target
  variance for regression, so accuracy and MSE problems share one unit.
  Per-problem rows also give the difference in the metric's own units.
- *Intervals over problems.* An effect is computed per panel, averaged over
  the panels of a task x model pair (its optimizers), and averaged over
  pairs; its interval is a percentile bootstrap over the pairs (the
  independent unit: panels of one pair share data and architecture,
  ``stats.bootstrap_ci``). With a single pair the interval resamples seeds
  instead (the same seeds across the pair's panels and strategies, since a
  seed fixes initial weights and data order) and recomputes the whole effect,
  the best-tuned choices included (:class:`SeedGrid`), with scipy's bootstrap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import data, stats

CONFIDENCE = 0.95
N_RESAMPLES = 1999
"""Bootstrap resamples of the seed-level intervals (the problem-level ones use ``stats.bootstrap_ci``'s default)."""

EFFECT_COLUMNS = ("question", "level", "estimate", "low", "high", "unit", "n", "censored")
"""Columns every question's table has (besides the keys naming its effects)."""

UNIT_PAIRS = "task-model pairs"
UNIT_SEEDS = "seeds"

ADAPTIVE = ("agc", "autoclip", "zclip", "adagc")
"""Q2's adaptive clippers, compared at their registered (published) defaults."""
SPIKE_STRATEGIES = ("none", "clip_norm", "zclip", "adagc", "spike_skip", "skip_nonfinite")
"""Q6's strategies under bad-batch spikes."""
WARMUP_STRATEGIES = ("warmup", "clip_norm", "clip_norm_warmup")
"""Q7's strategies: warm-up alone, norm clipping alone, and both."""

PanelKey = tuple


def _key(values: Sequence[Any]) -> PanelKey:
    """A hashable key of column values in which NaN equals NaN."""
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in values)


def _empty(*keys: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[*EFFECT_COLUMNS[:2], *keys, *EFFECT_COLUMNS[2:]])


def clean_panels(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of panels without bad-batch spikes: ``spike_rate`` absent, NaN or 0."""
    if "spike_rate" not in runs.columns:
        return runs
    rate = runs["spike_rate"]
    return runs[(rate.isna() | (rate == 0)).to_numpy()]


def normalised_score(values: Sequence[float] | np.ndarray, metrics: Sequence[str] | np.ndarray,
                     chance: Sequence[float] | np.ndarray) -> np.ndarray:
    """``1 - error / chance error``: 0 at chance, 1 perfect (error: 1 - accuracy or MSE, ``stats.metric_error``)."""
    errors = stats.metric_error(values, metrics)
    chance_errors = stats.metric_error(np.broadcast_to(np.asarray(chance, dtype=float), errors.shape), metrics)
    return 1.0 - errors / chance_errors


def _normalised_runs(runs: pd.DataFrame, column: str = "test_score") -> np.ndarray:
    return normalised_score(runs[column].to_numpy(dtype=float), runs["metric"].to_numpy(dtype=object),
                            runs["chance_metric"].to_numpy(dtype=float))


def _bound(positive: bool, negative: bool) -> str:
    """Which bound a contrast is when the ranges entering it with a positive / negative sign are censored."""
    return {(False, False): "", (True, False): "lower", (False, True): "upper", (True, True): "both"}[
        (bool(positive), bool(negative))]


def _grid_step(lrs: np.ndarray) -> float:
    """The grid step in decades: the median spacing of the distinct log10 learning rates (0.5 on half-decades)."""
    logs = np.log10(np.unique(np.asarray(lrs, dtype=float)))
    return float(np.median(np.diff(logs))) if logs.size > 1 else 0.5


def widest_span(stable: np.ndarray, lrs: np.ndarray, step: float) -> np.ndarray:
    """Width in decades of the widest contiguous stable span, per row of ``stable`` (resamples x sorted lrs).

    ``log10(hi / lo)``, 0 for a single stable learning rate, ``-step`` where none is stable.
    """
    stable = np.atleast_2d(stable)
    logs = np.log10(np.asarray(lrs, dtype=float))
    best = np.full(stable.shape[0], -float(step))
    cumulative = np.concatenate([np.zeros((stable.shape[0], 1)), np.cumsum(stable, axis=1)], axis=1)
    for i in range(len(logs)):
        for j in range(i, len(logs)):
            whole = (cumulative[:, j + 1] - cumulative[:, i]) == j - i + 1
            width = logs[j] - logs[i]
            best = np.where(whole & (width > best), width, best)
    return best


class SeedGrid:
    """One panel's runs of one strategy as (setting x seed) arrays, to redo the best-tuned choice on seed resamples.

    ``weights`` (resamples x seeds) say how often each seed is drawn; every
    choice follows ``stats.best_tuned``: fewest failed seeds, then the highest
    mean oriented validation metric of the seeds that did not fail, then the
    smallest setting. With unit weights the choices are those of
    ``stats.best_tuned`` and ``stats.stability_points`` (a test checks it).
    ``values`` adds per-run columns (aligned with ``runs``' index) whose mean
    over the chosen setting's seeds :meth:`chosen_mean` returns.
    """

    def __init__(self, runs: pd.DataFrame, seeds: Sequence[int], step: float,
                 values: Mapping[str, pd.Series] | None = None) -> None:
        scored = stats.score_runs(runs)
        columns = stats.setting_columns(runs)
        distinct = scored[columns].drop_duplicates().sort_values(columns, na_position="last", kind="stable")
        index = {_key(row): i for i, row in enumerate(distinct.itertuples(index=False))}
        settings = np.array([index[_key(row)] for row in scored[columns].itertuples(index=False)], dtype=int)
        position = {int(s): i for i, s in enumerate(seeds)}
        seed_index = np.array([position[int(s)] for s in scored["seed"]], dtype=int)
        shape = (len(distinct), len(seeds))

        def table(column: np.ndarray, fill: float = 0.0) -> np.ndarray:
            out = np.full(shape, fill, dtype=float)
            out[settings, seed_index] = column
            return out

        failed = scored["failed"].to_numpy(dtype=bool)
        oriented = scored["best_val_metric"].to_numpy(dtype=float) * np.where(
            scored["higher_is_better"].to_numpy(dtype=bool), 1.0, -1.0)
        self.present = table(np.ones(len(scored))) > 0
        self.failed = table(failed.astype(float))
        self.diverged = table(scored["diverged"].to_numpy(dtype=float))
        self.alive = table((~failed).astype(float))
        self.val = table(np.where(failed, 0.0, oriented))
        self.values = {"test": table(_normalised_runs(scored))}
        for name, column in (values or {}).items():
            self.values[name] = table(column.reindex(runs.index).to_numpy(dtype=float), np.nan)
        self.lr = distinct["lr"].to_numpy(dtype=float)
        self.lrs = np.unique(self.lr)
        self.by_lr = [np.flatnonzero(self.lr == lr) for lr in self.lrs]
        self.step = float(step)

    def _summaries(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        failed = weights @ self.failed.T
        alive = weights @ self.alive.T
        with np.errstate(divide="ignore", invalid="ignore"):
            val = (weights @ self.val.T) / alive
        return failed, np.where(alive > 0, val, -np.inf), weights @ self.diverged.T

    @staticmethod
    def _choose(failed: np.ndarray, val: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        f, v = failed[:, candidates], val[:, candidates]
        fewest = f == f.min(axis=1, keepdims=True)
        masked = np.where(fewest, v, -np.inf)
        best = fewest & (masked == masked.max(axis=1, keepdims=True))
        return candidates[np.argmax(best, axis=1)]

    def best(self, weights: np.ndarray) -> np.ndarray:
        """The best-tuned setting (index) of each resample."""
        failed, val, _ = self._summaries(weights)
        return self._choose(failed, val, np.arange(self.failed.shape[0]))

    def stable(self, weights: np.ndarray) -> np.ndarray:
        """Resamples x learning rates (sorted): whether the best setting at that lr has no diverged seed."""
        failed, val, diverged = self._summaries(weights)
        chosen = np.stack([self._choose(failed, val, group) for group in self.by_lr], axis=1)
        return np.take_along_axis(diverged, chosen, axis=1) == 0

    def width(self, weights: np.ndarray) -> np.ndarray:
        """Width in decades of the stable range of each resample (:func:`widest_span`)."""
        return widest_span(self.stable(weights), self.lrs, self.step)

    def chosen_mean(self, weights: np.ndarray, name: str = "test", chosen: np.ndarray | None = None) -> np.ndarray:
        """Mean of ``values[name]`` over the seeds (as weighted) of the chosen (by default the best-tuned) setting."""
        chosen = self.best(weights) if chosen is None else chosen
        table = self.values[name][chosen]
        present = self.present[chosen] & np.isfinite(table)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (weights * np.where(present, table, 0.0)).sum(axis=1) / (weights * present).sum(axis=1)


def _bootstrap(values: np.ndarray) -> tuple[float, float]:
    """``stats.bootstrap_ci`` of the mean over problems, quiet about nearly constant values (a tight interval)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        return stats.bootstrap_ci(values)


def seed_interval(seed_counts: Sequence[int], statistic: Callable[[list[np.ndarray]], np.ndarray],
                  confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval resampling seeds (``scipy.stats.bootstrap``), one sample per problem.

    ``statistic`` maps a list of weight matrices, one per problem (resamples x
    that problem's seeds, how often each seed is drawn), to the statistic of
    every resample; problems are resampled independently (stratified). Fewer
    than two seeds in a problem: (NaN, NaN).
    """
    if not seed_counts or min(seed_counts) < 2:
        return float("nan"), float("nan")
    samples = tuple(np.arange(count) for count in seed_counts)

    def vectorised(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        single = np.ndim(resampled[0]) == 1
        weights = [(np.atleast_2d(sample)[..., None] == np.arange(count)).sum(axis=-2).astype(float)
                   for sample, count in zip(resampled, seed_counts, strict=True)]
        values = np.asarray(statistic(weights), dtype=float)
        return values[0] if single else values

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sps.bootstrap(samples, vectorised, vectorized=True, paired=False, confidence_level=confidence,
                               n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


class Study:
    """The shared state of the questions on one sweep: clean panels, stable widths, best-tuned scores, seed grids."""

    def __init__(self, runs: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> None:
        self.all_runs = runs
        self.runs = clean_panels(runs)
        self.n_resamples, self.seed = n_resamples, seed
        self.keys = stats.panel_columns(self.runs)
        self.panels: dict[PanelKey, pd.DataFrame] = {
            _key(key if isinstance(key, tuple) else (key,)): group
            for key, group in self.runs.groupby(self.keys, dropna=False, sort=False)} if len(self.runs) else {}
        self.panel_values: dict[PanelKey, dict] = {
            k: dict(zip(self.keys, group[self.keys].iloc[0], strict=True)) for k, group in self.panels.items()}
        self.step = {k: _grid_step(group["lr"].to_numpy()) for k, group in self.panels.items()}
        self.family = {(str(t), str(m)): str(f) for t, m, f in
                       self.runs[["task", "model", "family"]].drop_duplicates().itertuples(index=False)}
        self._widths: dict[tuple[PanelKey, str], dict] | None = None
        self._tests: dict[tuple[PanelKey, str], float] | None = None
        self._grids: dict[tuple[PanelKey, str], SeedGrid] = {}

    # -- per panel -------------------------------------------------------------------------------------------
    def strategies(self, panel: PanelKey) -> set[str]:
        return set(self.panels[panel]["strategy"].astype(str))

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
        """``stats.stable_lr_range`` per (panel, strategy), with ``width`` (decades), ``top`` and ``reaches_top``."""
        if self._widths is None:
            ranges = stats.stable_lr_range(self.runs) if len(self.runs) else pd.DataFrame()
            rows = {}
            for row in ranges.itertuples(index=False):
                record = row._asdict()
                panel = _key([record[k] for k in self.keys])
                group = self.panels[panel]
                top = float(group.loc[group["strategy"] == record["strategy"], "lr"].max())
                empty = record["stable_lrs"] == 0
                rows[(panel, record["strategy"])] = {
                    "lo": record["lo"], "hi": record["hi"], "top": top, "stable_lrs": record["stable_lrs"],
                    "width": -self.step[panel] if empty else math.log10(record["hi"] / record["lo"]),
                    "reaches_top": (not empty) and bool(np.isclose(record["hi"], top, rtol=1e-9)),
                    "empty": bool(empty)}
            self._widths = rows
        return self._widths

    def width(self, panel: PanelKey, strategy: str) -> dict:
        return self.widths[(panel, strategy)]

    def test(self, panel: PanelKey, strategy: str) -> float:
        """Best-tuned mean normalised test score of ``strategy`` on ``panel`` (``stats.best_tuned_runs``)."""
        if self._tests is None:
            best = stats.best_tuned_runs(self.runs) if len(self.runs) else self.runs
            best = best.assign(_norm=_normalised_runs(best)) if len(best) else best.assign(_norm=[])
            self._tests = {(_key(key[:-1]), key[-1]): float(value) for key, value in
                           best.groupby([*self.keys, "strategy"], dropna=False, sort=False)["_norm"].mean().items()}
        return self._tests[(panel, strategy)]

    def seeds(self, panels: Sequence[PanelKey]) -> list[int]:
        return sorted({int(s) for p in panels for s in self.panels[p]["seed"]})

    def grid(self, panel: PanelKey, strategy: str, seeds: Sequence[int]) -> SeedGrid:
        key = (panel, strategy)
        if key not in self._grids:
            runs = self.panels[panel]
            self._grids[key] = SeedGrid(runs[runs["strategy"] == strategy], seeds, self.step[panel])
        return self._grids[key]

    # -- contrasts over problems -----------------------------------------------------------------------------
    def pairs(self, panels: Sequence[PanelKey]) -> dict[tuple[str, str], list[PanelKey]]:
        grouped: dict[tuple[str, str], list[PanelKey]] = {}
        for panel in panels:
            values = self.panel_values[panel]
            grouped.setdefault((str(values["task"]), str(values["model"])), []).append(panel)
        return grouped

    def summarise(self, panel_values: Mapping[PanelKey, float],
                  seed_statistic: Callable[[PanelKey, np.ndarray], np.ndarray] | None) -> dict:
        """Mean over pairs of the mean over each pair's panels, with its interval (over pairs; seeds for one pair)."""
        pairs = self.pairs(list(panel_values))
        per_pair = np.array([np.mean([panel_values[p] for p in panels]) for panels in pairs.values()])
        estimate = float(per_pair.mean()) if per_pair.size else float("nan")
        if len(pairs) >= 2:
            low, high = _bootstrap(per_pair)
            return {"estimate": estimate, "low": low, "high": high, "unit": UNIT_PAIRS, "n": len(pairs)}
        if len(pairs) == 1 and seed_statistic is not None:
            (panels,) = pairs.values()
            seeds = self.seeds(panels)

            def statistic(weights: list[np.ndarray]) -> np.ndarray:
                return np.mean([seed_statistic(p, weights[0]) for p in panels], axis=0)

            low, high = seed_interval([len(seeds)], statistic, n_resamples=self.n_resamples, seed=self.seed)
            return {"estimate": estimate, "low": low, "high": high, "unit": UNIT_SEEDS, "n": len(seeds)}
        return {"estimate": estimate, "low": float("nan"), "high": float("nan"), "unit": "", "n": len(pairs)}

    def range_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x stable-range width`` over strategies, per panel, summarised over problems.

        ``censored`` / ``bound``: a range entering with a positive weight that
        reaches the top of the grid makes the contrast a lower bound, one
        with a negative weight an upper bound.
        """
        values, positive, negative, empty = {}, False, False, False
        for panel in panels:
            total = 0.0
            for strategy, weight in weights.items():
                width = self.width(panel, strategy)
                total += weight * width["width"]
                positive |= weight > 0 and width["reaches_top"]
                negative |= weight < 0 and width["reaches_top"]
                empty |= width["empty"]
            values[panel] = total
        pair_seeds = {pair: self.seeds(ps) for pair, ps in self.pairs(panels).items()}

        def per_seed(panel: PanelKey, w: np.ndarray) -> np.ndarray:
            values_ = self.panel_values[panel]
            seeds = pair_seeds[(str(values_["task"]), str(values_["model"]))]
            return sum(weight * self.grid(panel, s, seeds).width(w) for s, weight in weights.items())

        summary = self.summarise(values, per_seed)
        return {**summary, "censored": positive, "bound": _bound(positive, negative), "any_empty": empty,
                "panels": len(panels)}

    def test_contrast(self, weights: Mapping[str, float], panels: Sequence[PanelKey]) -> dict:
        """Sum of ``weight x best-tuned normalised test score`` per panel, summarised over problems."""
        values = {p: sum(w * self.test(p, s) for s, w in weights.items()) for p in panels}
        pair_seeds = {pair: self.seeds(ps) for pair, ps in self.pairs(panels).items()}

        def per_seed(panel: PanelKey, w: np.ndarray) -> np.ndarray:
            values_ = self.panel_values[panel]
            seeds = pair_seeds[(str(values_["task"]), str(values_["model"]))]
            return sum(weight * self.grid(panel, s, seeds).chosen_mean(w) for s, weight in weights.items())

        return {**self.summarise(values, per_seed), "censored": False, "bound": "", "panels": len(panels)}

    def optimizers(self) -> list[str]:
        return list(dict.fromkeys(str(v["optimizer"]) for v in self.panel_values.values()))


def _study(runs: pd.DataFrame | Study, n_resamples: int, seed: int) -> Study:
    return runs if isinstance(runs, Study) else Study(runs, n_resamples, seed)


# -- Q1 -----------------------------------------------------------------------------------------------------------
def q1_stable_range(runs: pd.DataFrame | Study, baseline: str = "none", n_resamples: int = N_RESAMPLES,
                    seed: int = 0) -> pd.DataFrame:
    """Q1: decades of learning rate each strategy adds to the stable range over ``baseline``, per model family.

    Per clean panel (task x model x optimizer): width of the strategy's stable
    range minus that of ``baseline`` (module docstring). Rows: ``level`` =
    ``panel`` (one per panel, no interval), ``family`` (``family`` a model
    family or ``all``; ``optimizer`` one optimizer or ``all``): the mean over
    the family's task x model pairs of each pair's mean over its panels, with
    a bootstrap interval over pairs, or over seeds (best-tuned choices redone)
    where the family has one pair. ``censored``: the strategy's range reaches
    the top of the grid on some panel, so the gain is a lower bound
    (``bound`` = ``lower``; ``upper`` or ``both`` where ``baseline``'s does).
    """
    study = _study(runs, n_resamples, seed)
    columns = ("family", "optimizer", "strategy", "baseline", "task", "model")
    if not study.panels:
        return _empty(*columns)
    strategies = [s for s in data.strategy_order(study.runs) if s != baseline]
    families = list(dict.fromkeys(study.family.values()))
    rows = []
    for strategy in strategies:
        for panel in study.select([strategy, baseline]):
            values = study.panel_values[panel]
            mine, base = study.width(panel, strategy), study.width(panel, baseline)
            rows.append({"question": "Q1", "level": "panel",
                         "family": study.family[(str(values["task"]), str(values["model"]))],
                         "optimizer": values["optimizer"], "strategy": strategy, "baseline": baseline,
                         "task": values["task"], "model": values["model"],
                         "estimate": mine["width"] - base["width"], "low": np.nan, "high": np.nan, "unit": "",
                         "n": 1, "censored": bool(mine["reaches_top"]),
                         "bound": _bound(mine["reaches_top"], base["reaches_top"]),
                         "lo": mine["lo"], "hi": mine["hi"], "baseline_lo": base["lo"], "baseline_hi": base["hi"]})
        for family in ["all", *families]:
            for optimizer in ["all", *study.optimizers()]:
                panels = study.select([strategy, baseline], optimizer, family)
                if not panels:
                    continue
                effect = study.range_contrast({strategy: 1.0, baseline: -1.0}, panels)
                rows.append({"question": "Q1", "level": "family", "family": family, "optimizer": optimizer,
                             "strategy": strategy, "baseline": baseline, "task": "all", "model": "all", **effect})
    return pd.DataFrame(rows) if rows else _empty(*columns)


# -- Q2 -----------------------------------------------------------------------------------------------------------
def expected_best(test: Sequence[float] | np.ndarray, budget: int) -> float:
    """Expected test score of the setting chosen (on validation) among ``budget`` settings drawn without replacement.

    ``test`` lists the settings' test scores in their validation rank order
    (best first, ``stats.ranked_settings``). The setting ranked r (1-based)
    of N is the choice of a random subset of size n exactly when it is in the
    subset and the r - 1 better ones are not: probability C(N - r, n - 1) /
    C(N, n). This is the expected validation-chosen performance of Dodge et
    al. (2019) at budget n, computed exactly; n >= N gives the best-ranked one.
    """
    test = np.asarray(test, dtype=float)
    total = len(test)
    if total == 0 or budget < 1:
        return float("nan")
    budget = min(int(budget), total)
    denominator = math.comb(total, budget)
    weights = np.array([math.comb(total - r, budget - 1) / denominator for r in range(1, total + 1)])
    return float(weights @ test)


def q2_adaptive_clippers(runs: pd.DataFrame | Study, adaptive: Sequence[str] = ADAPTIVE,
                         reference: str = "clip_norm", n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Q2: each adaptive clipper at its published defaults against ``reference`` tuned on the same budget.

    On each clean panel the adaptive clipper runs at its registered default
    hyperparameters (``stats.default_runs``), tuned over its n settings
    (learning rates, and any tuned optimizer dial); ``reference`` gets the same
    budget n as the expected test score of the setting chosen on validation
    among n of its settings drawn at random (:func:`expected_best`). Effect:
    normalised test score (module docstring) of the adaptive clipper minus
    that of the budget-matched reference, positive when the adaptive one is
    better. Rows: ``problem`` (per task x model pair, the mean over its
    optimizer panels; ``difference_metric`` in the metric's units, oriented
    so that higher is better), ``all`` (mean over pairs) and ``optimizer``
    (one optimizer's panels), each with a bootstrap interval over pairs and a
    two-sided Wilcoxon signed-rank test over pairs, Holm-adjusted over the
    adaptive clippers of the same row kind (``pvalue_holm``).
    """
    study = _study(runs, n_resamples, seed)
    columns = ("strategy", "reference", "optimizer", "task", "model")
    if not study.panels:
        return _empty(*columns)
    defaults = stats.default_runs(study.runs)
    ranked = stats.ranked_settings(study.runs[study.runs["strategy"] == reference])
    per_panel: list[dict] = []
    for strategy in adaptive:
        own = defaults[defaults["strategy"] == strategy]
        if own.empty:
            continue
        for panel in study.select([strategy, reference]):
            runs_here = data.select(own, study.panel_values[panel])
            if runs_here.empty:
                continue
            chosen = stats.ranked_settings(runs_here)
            budget = len(chosen)
            settings = data.select(ranked, study.panel_values[panel])
            first = runs_here.iloc[0]
            metric, chance = np.array([first["metric"]], dtype=object), float(first["chance_metric"])
            sign = 1.0 if bool(first["higher_is_better"]) else -1.0
            mine_raw = float(chosen["test_mean"].iloc[0])
            ref_raw = expected_best(settings["test_mean"].to_numpy(dtype=float), budget)
            mine, ref = (float(normalised_score([v], metric, [chance])[0]) for v in (mine_raw, ref_raw))
            values = study.panel_values[panel]
            per_panel.append({"strategy": strategy, "panel": panel, "optimizer": values["optimizer"],
                              "task": values["task"], "model": values["model"], "value": mine - ref,
                              "difference_metric": sign * (mine_raw - ref_raw), "budget": budget,
                              "reference_settings": len(settings)})
    if not per_panel:
        return _empty(*columns)
    frame = pd.DataFrame(per_panel)
    rows = []
    for (strategy, task, model), group in frame.groupby(["strategy", "task", "model"], sort=False):
        rows.append({"question": "Q2", "level": "problem", "strategy": strategy, "reference": reference,
                     "optimizer": "all", "task": task, "model": model, "estimate": group["value"].mean(),
                     "low": np.nan, "high": np.nan, "unit": "", "n": 1, "censored": False,
                     "difference_metric": group["difference_metric"].mean(), "budget": int(group["budget"].max()),
                     "reference_settings": int(group["reference_settings"].max()), "pvalue": np.nan,
                     "pvalue_holm": np.nan})
    summaries = []
    for optimizer in ["all", *study.optimizers()]:
        block = []
        for strategy in adaptive:
            group = frame[(frame["strategy"] == strategy) & ((frame["optimizer"] == optimizer) | (optimizer == "all"))]
            if group.empty:
                continue
            per_pair = group.groupby(["task", "model"], sort=False)["value"].mean().to_numpy()
            low, high = _bootstrap(per_pair) if per_pair.size >= 2 else (np.nan, np.nan)
            block.append({"question": "Q2", "level": "all" if optimizer == "all" else "optimizer",
                          "strategy": strategy, "reference": reference, "optimizer": optimizer, "task": "all",
                          "model": "all", "estimate": float(per_pair.mean()), "low": low, "high": high,
                          "unit": UNIT_PAIRS if per_pair.size >= 2 else "", "n": int(per_pair.size),
                          "censored": False, "difference_metric": np.nan, "budget": int(group["budget"].max()),
                          "reference_settings": int(group["reference_settings"].max()),
                          "pvalue": _signed_rank(per_pair)})
        adjusted = stats.holm([row["pvalue"] for row in block])
        for row, p in zip(block, adjusted, strict=True):
            row["pvalue_holm"] = p
        summaries += block
    return pd.DataFrame([*summaries, *rows])


def _signed_rank(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value over pairs (``scipy.stats.wilcoxon``); 1 if all are 0, NaN below 2."""
    differences = np.asarray(differences, dtype=float)
    if differences.size < 2:
        return float("nan")
    if np.all(differences == 0):
        return 1.0
    return float(sps.wilcoxon(differences, zero_method="zsplit").pvalue)


# -- Q3 -----------------------------------------------------------------------------------------------------------
def q3_grad_scale(runs: pd.DataFrame, strategy: str = "grad_scale", baseline: str = "none",
                  match_rtol: float = 1e-9, noise_rtol: float = 1e-3, noise_atol: float = 1e-4) -> pd.DataFrame:
    """Q3: gradient decay ``g <- gamma g`` is a learning-rate rescaling under SGD and a no-op under Adam.

    Pairs every run of ``strategy`` (hyperparameter ``gamma``) with the
    ``baseline`` run of the same panel and seed at learning rate ``gamma x lr``
    (``comparison = scaled_lr``) or at the same ``lr`` (``same_lr``),
    learning rates matched with ``np.isclose(..., rtol=match_rtol)``. Under SGD
    (momentum is linear in g) ``scaled_lr`` pairs should agree and ``same_lr``
    ones differ; under Adam (m and sqrt(v) both scale by gamma) ``same_lr``
    pairs should agree. A pair *agrees* (is within float32 rounding noise)
    when both runs diverged or neither did, and their final training losses
    (both non-finite, or ``np.isclose`` with ``noise_rtol``, ``noise_atol``)
    and test scores (failed runs at chance) agree. Rows per ``optimizer``,
    ``comparison`` and ``gamma`` (``all`` pools the values): ``estimate`` =
    share of pairs that agree, interval a cluster bootstrap over task x model
    pairs (``stats.cluster_rate``), ``n`` = run pairs; ``loss_max_abs``,
    ``loss_mean_abs`` (over pairs with both losses finite), ``test_max_abs``,
    ``test_mean_abs`` (absolute differences) and ``fate_mismatch`` (pairs where
    exactly one run diverged).
    """
    columns = ("optimizer", "comparison", "gamma")
    if "gamma" not in runs.columns:
        return _empty(*columns)
    runs = clean_panels(runs)
    keys = stats.panel_columns(runs)
    scored = stats.score_runs(runs)
    scaled = scored[scored["strategy"] == strategy]
    base = scored[scored["strategy"] == baseline]
    if scaled.empty or base.empty:
        return _empty(*columns)
    fields = ["lr", "final_train_loss", "test_score", "diverged"]
    merged = scaled[[*keys, "seed", "gamma", *fields]].merge(base[[*keys, "seed", *fields]], on=[*keys, "seed"],
                                                              suffixes=("", "_base"))
    rows = []
    for comparison in ("scaled_lr", "same_lr"):
        target = merged["lr"] * (merged["gamma"] if comparison == "scaled_lr" else 1.0)
        pairs = merged[np.isclose(merged["lr_base"], target, rtol=match_rtol, atol=0.0)].copy()
        if pairs.empty:
            continue
        a, b = pairs["final_train_loss"].to_numpy(dtype=float), pairs["final_train_loss_base"].to_numpy(dtype=float)
        finite = np.isfinite(a) & np.isfinite(b)
        loss_agree = np.where(finite, np.isclose(a, b, rtol=noise_rtol, atol=noise_atol),
                              ~np.isfinite(a) & ~np.isfinite(b))
        ta, tb = pairs["test_score"].to_numpy(dtype=float), pairs["test_score_base"].to_numpy(dtype=float)
        same_fate = pairs["diverged"].to_numpy(dtype=bool) == pairs["diverged_base"].to_numpy(dtype=bool)
        pairs["agree"] = same_fate & loss_agree & np.isclose(ta, tb, rtol=noise_rtol, atol=noise_atol)
        pairs["_loss"] = np.where(finite, np.abs(a - b), np.nan)
        pairs["_test"] = np.abs(ta - tb)
        pairs["_fate"] = ~same_fate
        for optimizer, by_optimizer in pairs.groupby("optimizer", sort=False):
            for gamma in ["all", *sorted(by_optimizer["gamma"].unique())]:
                group = by_optimizer if gamma == "all" else by_optimizer[by_optimizer["gamma"] == gamma]
                rate = stats.cluster_rate(group.assign(_all="all"), "agree", by=["_all"]).iloc[0]
                losses = group["_loss"].dropna()
                rows.append({"question": "Q3", "level": "optimizer", "optimizer": optimizer,
                             "comparison": comparison, "gamma": gamma if gamma == "all" else float(gamma),
                             "estimate": float(rate["rate"]),
                             "low": float(rate["low"]), "high": float(rate["high"]),
                             "unit": UNIT_PAIRS if rate["clusters"] >= 2 else "", "n": len(group),
                             "censored": False, "agree": int(group["agree"].sum()),
                             "problems": int(rate["clusters"]),
                             "loss_max_abs": float(losses.max()) if len(losses) else np.nan,
                             "loss_mean_abs": float(losses.mean()) if len(losses) else np.nan,
                             "test_max_abs": float(group["_test"].max()), "test_mean_abs": float(group["_test"].mean()),
                             "fate_mismatch": int(group["_fate"].sum())})
    return pd.DataFrame(rows) if rows else _empty(*columns)


# -- Q4 -----------------------------------------------------------------------------------------------------------
def q4_update_clip(runs: pd.DataFrame | Study, strategy: str = "update_clip", reference: str = "clip_norm",
                   baseline: str = "none", n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Q4: does update clipping tame the optimizer (Adam) where gradient clipping does not?

    Per optimizer (and ``all``), on the clean panels where ``strategy``,
    ``reference`` and ``baseline`` ran: ``measure`` = ``gain`` (decades of
    stable range over ``baseline``, for ``strategy`` and for ``reference``),
    ``range_difference`` (decades of ``strategy`` minus ``reference``) and
    ``test_difference`` (best-tuned normalised test score, ``strategy`` minus
    ``reference``); intervals over task x model pairs (seeds with one pair).
    ``censored``/``bound`` as in :func:`q1_stable_range`.
    """
    study = _study(runs, n_resamples, seed)
    columns = ("optimizer", "measure", "strategy", "versus")
    rows = []
    for optimizer in ["all", *study.optimizers()] if study.panels else []:
        panels = study.select([strategy, reference, baseline], optimizer)
        if not panels:
            continue
        for measure, name, versus, weights in (("gain", strategy, baseline, {strategy: 1, baseline: -1}),
                                               ("gain", reference, baseline, {reference: 1, baseline: -1}),
                                               ("range_difference", strategy, reference, {strategy: 1, reference: -1}),
                                               ("test_difference", strategy, reference, {strategy: 1, reference: -1})):
            effect = (study.test_contrast(weights, panels) if measure == "test_difference"
                      else study.range_contrast(weights, panels))
            rows.append({"question": "Q4", "level": "optimizer", "optimizer": optimizer, "measure": measure,
                         "strategy": name, "versus": versus, **effect})
    return pd.DataFrame(rows) if rows else _empty(*columns)


# -- Q5 -----------------------------------------------------------------------------------------------------------
CurveSource = pd.DataFrame | Callable[[Sequence[str]], pd.DataFrame] | None
"""Curves as a table, or a function returning the curve rows of the given run ids (to read only those)."""


def curves_of(curves: CurveSource, run_ids: Sequence[str]) -> pd.DataFrame | None:
    """The curve rows of ``run_ids`` from a :data:`CurveSource`; None without curves."""
    if curves is None:
        return None
    if callable(curves):
        return curves(list(run_ids))
    return curves[curves["run_id"].isin(list(run_ids))]


def _ratio_summary(per_pair_logs: np.ndarray) -> tuple[float, float, float]:
    """Geometric mean of per-pair ratios and its interval: the bootstrap over pairs of the mean log ratio."""
    estimate = float(np.exp(per_pair_logs.mean()))
    if per_pair_logs.size < 2:
        return estimate, float("nan"), float("nan")
    low, high = _bootstrap(per_pair_logs)
    return estimate, float(np.exp(low)), float(np.exp(high))


def q5_seed_recipe(runs: pd.DataFrame, curves: CurveSource = None, recipe: str = "value_then_decay",
                   reference: str = "clip_norm", fraction: float = 0.5, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> pd.DataFrame:
    """Q5: what the seed recipe (clip by value, then decay) costs in convergence against norm clipping.

    Both best-tuned (``stats.best_tuned_runs``) on each clean panel.
    ``measure``: ``steps_to_target`` (ratio recipe / reference of the mean
    steps to reach the task's target, ``plots.target_levels`` at
    ``fraction``, by ``stats.steps_to_target``: a run that never gets there,
    or diverged, counts at its budget, so the mean is the restricted mean time
    to target; ``censored`` = some run never got there), ``loss_auc`` (ratio
    of the mean training loss over the budget, ``data.loss_matrix``: diverged
    seeds at chance loss from their divergence on) and ``test_difference``
    (normalised test score, recipe minus reference). Ratios are summarised as
    the geometric mean over task x model pairs (per pair the geometric mean
    over its optimizer panels), with a bootstrap interval of the mean log ratio
    over pairs; with one pair the interval resamples seeds of the chosen
    settings. Without curves only ``test_difference`` is measured.
    """
    columns = ("optimizer", "measure", "strategy", "versus")
    clean = clean_panels(runs)
    keys = stats.panel_columns(clean)
    pair = clean[clean["strategy"].isin([recipe, reference])]
    if pair.empty:
        return _empty(*columns)
    best = stats.best_tuned_runs(pair)
    present = best.groupby(keys, dropna=False)["strategy"].nunique()
    best = best.merge(present[present == 2].rename("_n").reset_index(), on=keys).drop(columns="_n")
    if best.empty:
        return _empty(*columns)
    best["_test"] = _normalised_runs(best)
    table = curves_of(curves, best["run_id"])
    if table is not None and len(table):
        from analysis import plots  # matplotlib: only where the convergence measures are asked for

        events = stats.steps_to_target(best, table, plots.target_levels(clean, fraction))
        best["_time"] = events["time"].to_numpy(dtype=float)
        best["_reached"] = events["observed"].to_numpy(dtype=bool)
        _, losses = data.loss_matrix(table, best)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            best["_auc"] = np.nanmean(losses, axis=1)
        measures = [("steps_to_target", "_time", True), ("loss_auc", "_auc", True), ("test_difference", "_test", False)]
    else:
        measures = [("test_difference", "_test", False)]
    rows = []
    optimizers = list(dict.fromkeys(best["optimizer"].astype(str)))
    for optimizer in ["all", *optimizers]:
        subset = best if optimizer == "all" else best[best["optimizer"] == optimizer]
        for measure, column, ratio in measures:
            per_panel = subset.groupby([*keys, "strategy"], dropna=False, sort=False)[column].mean().unstack("strategy")
            if ratio:
                values = np.log(per_panel[recipe] / per_panel[reference])
            else:
                values = per_panel[recipe] - per_panel[reference]
            per_pair = values.groupby(level=["task", "model"], sort=False).mean().to_numpy(dtype=float)
            if ratio:
                estimate, low, high = _ratio_summary(per_pair)
            else:
                estimate = float(per_pair.mean())
                low, high = _bootstrap(per_pair) if per_pair.size >= 2 else (np.nan, np.nan)
            unit = UNIT_PAIRS if per_pair.size >= 2 else ""
            n = int(per_pair.size)
            if per_pair.size == 1:
                low, high = _fixed_choice_seed_interval(subset, keys, column, recipe, reference, ratio,
                                                        n_resamples, seed)
                unit, n = UNIT_SEEDS, int(subset["seed"].nunique())
            censored = bool(measure == "steps_to_target" and not subset["_reached"].all())
            rows.append({"question": "Q5", "level": "optimizer", "optimizer": optimizer, "measure": measure,
                         "strategy": recipe, "versus": reference, "estimate": estimate, "low": low, "high": high,
                         "unit": unit, "n": n, "censored": censored, "bound": "",
                         "panels": len(per_panel),
                         "recipe_mean": float(subset.loc[subset["strategy"] == recipe, column].mean()),
                         "reference_mean": float(subset.loc[subset["strategy"] == reference, column].mean())})
    return pd.DataFrame(rows)


def _fixed_choice_seed_interval(best: pd.DataFrame, keys: list[str], column: str, recipe: str, reference: str,
                                ratio: bool, n_resamples: int, seed: int) -> tuple[float, float]:
    """Seed-bootstrap interval of a one-pair Q5 effect, the best-tuned settings held fixed."""
    seeds = sorted(int(s) for s in best["seed"].unique())
    position = {s: i for i, s in enumerate(seeds)}
    blocks = []
    for _, panel in best.groupby(keys, dropna=False, sort=False):
        arrays = {}
        for strategy in (recipe, reference):
            own = panel[panel["strategy"] == strategy]
            values = np.full(len(seeds), np.nan)
            values[[position[int(s)] for s in own["seed"]]] = own[column].to_numpy(dtype=float)
            arrays[strategy] = values
        blocks.append(arrays)

    def statistic(weights: list[np.ndarray]) -> np.ndarray:
        w = weights[0]
        effects = []
        for arrays in blocks:
            means = {}
            for strategy, values in arrays.items():
                ok = np.isfinite(values)
                with np.errstate(divide="ignore", invalid="ignore"):
                    means[strategy] = (w * np.where(ok, values, 0.0)).sum(axis=1) / (w * ok).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                effects.append(np.log(means[recipe] / means[reference]) if ratio else means[recipe] - means[reference])
        return np.mean(effects, axis=0)

    low, high = seed_interval([len(seeds)], statistic, n_resamples=n_resamples, seed=seed)
    return (float(np.exp(low)), float(np.exp(high))) if ratio else (low, high)


# -- Q6 -----------------------------------------------------------------------------------------------------------
def late_median_loss(curves: pd.DataFrame, members: pd.DataFrame, start: float = 0.5) -> pd.Series:
    """Per run of ``members``: the median training loss over the last ``1 - start`` of its budget.

    Diverged runs count at their task's chance loss from the divergence step
    on (``data.loss_matrix``). Under the bad-batch dial every strategy records
    the loss of a corrupted batch (the loss is taken before the update), an
    isolated high value the median passes over; a lasting rise after a bad
    step, or a divergence, moves it. Indexed like ``members``. Committed (thinned) curves keep every
    step of the best-tuned runs and every 10th of the others; ``data.loss_matrix`` carries a kept step
    forward over the gap, so the median is then taken over the kept steps, each counted ten times.
    """
    steps, matrix = data.loss_matrix(curves, members)
    late = matrix[:, steps >= start * steps.size] if steps.size else matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmedian(late, axis=1) if late.size else np.full(len(members), np.nan)
    return pd.Series(values, index=members.index)


def q6_spikes(runs: pd.DataFrame, curves: CurveSource = None, strategies: Sequence[str] = SPIKE_STRATEGIES,
              baseline: str = "none", reference: str = "clip_norm", n_resamples: int = N_RESAMPLES,
              seed: int = 0) -> pd.DataFrame:
    """Q6: under bad-batch spikes, does a strategy prevent the damage, only hide it, or show it?

    On each task x model pair with panels at ``spike_rate`` 0 and above 0:
    *test damage* (``estimate``) = best-tuned normalised test score at the
    spike rate minus at 0 (each panel tuned on its own), the mean over the
    pair's optimizers; *training damage* (``train_*``) = the same difference
    of the best-tuned runs' median training loss over the second half of the
    budget (:func:`late_median_loss`, > 0 when training visibly suffers);
    ``vs_none_*`` / ``vs_reference_*`` = the strategy's test damage minus that
    of ``baseline`` / ``reference`` (> 0: less damage). Intervals: percentile
    bootstrap over seeds within each pair (the best-tuned choices redone on
    every resample; the spiking and clean panels share their seeds), the
    ``all`` row resampling the pairs' seeds independently (stratified).
    ``verdict``: ``prevents`` where the test damage interval reaches 0
    (``high >= 0``); ``hides`` where the test score drops (``high < 0``) but
    the training loss shows no damage (``train_low <= 0``); ``shows`` where
    both do. Without curves the training damage is NaN and the verdict only
    ``prevents`` or ``damaged``.
    """
    columns = ("strategy", "spike_rate", "task", "model")
    if "spike_rate" not in runs.columns:
        return _empty(*columns)
    keys = stats.panel_columns(runs)
    problems = []
    for (task, model), group in runs.groupby(["task", "model"], sort=False):
        rates = sorted(group["spike_rate"].dropna().unique())
        if len(rates) >= 2 and rates[0] == 0:
            problems.append((task, model, group, [r for r in rates if r > 0]))
    if not problems:
        return _empty(*columns)
    table = curves_of(curves, [rid for _, _, group, _ in problems for rid in group["run_id"]])
    trains = {(task, model): late_median_loss(table, group) if table is not None and len(table) else None
              for task, model, group, _ in problems}
    rows = []
    for rate in sorted({r for *_, rates in problems for r in rates}):
        for strategy in strategies:
            parts = []
            for task, model, group, rates in problems:
                if rate not in rates:
                    continue
                part = _spike_problem(group, trains[(task, model)], keys, rate, strategy, baseline, reference)
                if part is not None:
                    parts.append((task, model, part))
            for task, model, part in parts:
                rows.append(_spike_row(task, model, rate, strategy, baseline, reference, [part],
                                       n_resamples, seed))
            if len(parts) >= 2:
                rows.append(_spike_row("all", "all", rate, strategy, baseline, reference,
                                       [part for *_, part in parts], n_resamples, seed))
    return pd.DataFrame(rows) if rows else _empty(*columns)


def _spike_problem(group: pd.DataFrame, train: pd.Series | None, keys: list[str], rate: float, strategy: str,
                   baseline: str, reference: str) -> dict | None:
    """One pair's Q6 pieces: per condition (optimizer, other dials) and spike rate, the compared strategies' grids.

    None where a condition lacks one of the strategies at either spike rate.
    """
    needed = list(dict.fromkeys([strategy, baseline, reference]))
    seeds = sorted(int(s) for s in group["seed"].unique())
    conditions = [k for k in keys if k not in ("task", "model", "spike_rate")]
    grids: dict[tuple, dict[str, SeedGrid]] = {}
    points: dict[tuple, dict[str, tuple[float, float]]] = {}
    for condition, runs in group.groupby(conditions, dropna=False, sort=False):
        condition = _key(condition if isinstance(condition, tuple) else (condition,))
        for value in (0.0, rate):
            panel = runs[np.isclose(runs["spike_rate"].to_numpy(dtype=float), value)]
            if not set(needed) <= set(panel["strategy"]):
                return None
            step = _grid_step(panel["lr"].to_numpy())
            grids[(condition, value)], points[(condition, value)] = {}, {}
            for name in needed:
                own = panel[panel["strategy"] == name]
                grids[(condition, value)][name] = SeedGrid(own, seeds, step,
                                                           {"train": train} if train is not None else None)
                best = stats.best_tuned_runs(own)
                loss = np.nan
                if train is not None:
                    loss = float(train[own.index[own["run_id"].isin(best["run_id"]).to_numpy()]].mean())
                points[(condition, value)][name] = (float(_normalised_runs(best).mean()), loss)
    return {"grids": grids, "points": points, "seeds": seeds, "rate": rate, "has_train": train is not None}


def _damage(part: dict, name: str, field: int) -> float:
    conditions = dict.fromkeys(condition for condition, _ in part["points"])
    return float(np.mean([part["points"][(c, part["rate"])][name][field] - part["points"][(c, 0.0)][name][field]
                          for c in conditions]))


def _damage_resampled(part: dict, name: str, weights: np.ndarray, value: str) -> np.ndarray:
    conditions = dict.fromkeys(condition for condition, _ in part["grids"])
    effects = [part["grids"][(c, part["rate"])][name].chosen_mean(weights, value)
               - part["grids"][(c, 0.0)][name].chosen_mean(weights, value) for c in conditions]
    return np.mean(effects, axis=0)


def _spike_row(task: str, model: str, rate: float, strategy: str, baseline: str, reference: str,
               parts: list[dict], n_resamples: int, seed: int) -> dict:
    counts = [len(part["seeds"]) for part in parts]

    def interval(function: Callable[[dict, np.ndarray], np.ndarray]) -> tuple[float, float]:
        return seed_interval(counts, lambda ws: np.mean([function(p, w) for p, w in zip(parts, ws, strict=True)],
                                                        axis=0), n_resamples=n_resamples, seed=seed)

    test = float(np.mean([_damage(p, strategy, 0) for p in parts]))
    low, high = interval(lambda p, w: _damage_resampled(p, strategy, w, "test"))
    row = {"question": "Q6", "level": "problem" if task != "all" else "all", "strategy": strategy,
           "spike_rate": rate, "task": task, "model": model, "estimate": test, "low": low, "high": high,
           "unit": UNIT_SEEDS, "n": int(min(counts)), "censored": False, "problems": len(parts)}
    for prefix, other in (("vs_none", baseline), ("vs_reference", reference)):
        row[prefix] = float(np.mean([_damage(p, strategy, 0) - _damage(p, other, 0) for p in parts]))
        row[f"{prefix}_low"], row[f"{prefix}_high"] = interval(
            lambda p, w, other=other: _damage_resampled(p, strategy, w, "test")
            - _damage_resampled(p, other, w, "test"))
    if all(part["has_train"] for part in parts):
        row["train_estimate"] = float(np.mean([_damage(p, strategy, 1) for p in parts]))
        row["train_low"], row["train_high"] = interval(lambda p, w: _damage_resampled(p, strategy, w, "train"))
    else:
        row["train_estimate"] = row["train_low"] = row["train_high"] = np.nan
    if not high < 0:
        verdict = "prevents" if np.isfinite(high) else ""
    elif not np.isfinite(row["train_low"]):
        verdict = "damaged"
    else:
        verdict = "hides" if row["train_low"] <= 0 else "shows"
    row["verdict"] = verdict
    row["reference"], row["baseline"] = reference, baseline
    return row


# -- Q7 -----------------------------------------------------------------------------------------------------------
def q7_warmup(runs: pd.DataFrame | Study, warmup: str = "warmup", clipping: str = "clip_norm",
              both: str = "clip_norm_warmup", baseline: str = "none", n_resamples: int = N_RESAMPLES,
              seed: int = 0) -> pd.DataFrame:
    """Q7: does learning-rate warm-up widen the stable range as much as norm clipping, and do the two add up?

    On the clean panels where all four ran, per optimizer (and ``all``):
    ``measure`` = ``gain`` (decades over ``baseline``) of ``warmup``,
    ``clipping`` and ``both``; ``warmup_minus_clipping`` (gain of warm-up
    minus that of clipping) and ``interaction`` (gain(both) - gain(clipping)
    - gain(warmup)): 0 when the two add up, below 0 when they overlap. Each
    strategy is tuned over its settings at each learning rate (``budget``:
    hyperparameter settings per learning rate of each, ``stats.tuning_budget``;
    equal in the study). Intervals over task x model pairs (seeds with one
    pair); ``censored``/``bound`` as in :func:`q1_stable_range`.
    """
    study = _study(runs, n_resamples, seed)
    columns = ("optimizer", "measure", "strategy")
    rows = []
    needed = [warmup, clipping, both, baseline]
    budget = stats.tuning_budget(study.runs) if study.panels else pd.DataFrame()
    for optimizer in ["all", *study.optimizers()] if study.panels else []:
        panels = study.select(needed, optimizer)
        if not panels:
            continue
        spent = budget[budget["strategy"].isin(needed[:3])].groupby("strategy")["hyperparameters"].max()
        text = ", ".join(f"{s} {int(spent.get(s, 0))}" for s in needed[:3])
        contrasts = [("gain", warmup, {warmup: 1, baseline: -1}), ("gain", clipping, {clipping: 1, baseline: -1}),
                     ("gain", both, {both: 1, baseline: -1}),
                     ("warmup_minus_clipping", warmup, {warmup: 1, clipping: -1}),
                     ("interaction", both, {both: 1, clipping: -1, warmup: -1, baseline: 1})]
        for measure, strategy, weights in contrasts:
            rows.append({"question": "Q7", "level": "optimizer", "optimizer": optimizer, "measure": measure,
                         "strategy": strategy, **study.range_contrast(weights, panels), "budget": text})
    return pd.DataFrame(rows) if rows else _empty(*columns)


QUESTIONS: dict[str, Callable[..., pd.DataFrame]] = {
    "q1_stable_range": q1_stable_range,
    "q2_adaptive_clippers": q2_adaptive_clippers,
    "q3_grad_scale": q3_grad_scale,
    "q4_update_clip": q4_update_clip,
    "q5_seed_recipe": q5_seed_recipe,
    "q6_spikes": q6_spikes,
    "q7_warmup": q7_warmup,
}
"""The question functions by name, as ``paper/claims.yaml`` names them."""

NEEDS_CURVES = ("q5_seed_recipe", "q6_spikes")
"""The functions that read training curves (the others read the runs table only)."""


def answer_all(runs: pd.DataFrame, curves: CurveSource = None, names: Sequence[str] | None = None,
               n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every question's table (or those of ``names``), sharing one :class:`Study` of the runs."""
    study = Study(runs, n_resamples, seed)
    tables = {}
    for name in names or QUESTIONS:
        function = QUESTIONS[name]
        if name in NEEDS_CURVES:
            tables[name] = function(runs, curves, n_resamples=n_resamples, seed=seed)
        elif name == "q3_grad_scale":
            tables[name] = function(runs)
        else:
            tables[name] = function(study, n_resamples=n_resamples, seed=seed)
    return tables
