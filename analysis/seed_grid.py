"""One panel's runs of one strategy as (setting x seed) arrays: the best-tuned choice redone on seed resamples.

Over a panel's grid the runs of one seed share its initial weights and data
order, so where an effect rests on one task x model pair its interval resamples
seeds, and every best-tuned choice and stability judgement is redone on each
resample (:class:`SeedGrid`, weights from ``inference.weighted_bootstrap``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.stability import widest_span
from analysis.vocabulary import at_chance, failed, normalised_score, setting_columns


def setting_index(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each run's setting (its values of ``vocabulary.setting_columns``) as an index into the distinct settings
    sorted by those columns in order (NaN last, as ``DataFrame.sort_values``), and each distinct setting's
    learning rate."""
    columns = setting_columns(runs)
    combined = np.zeros(len(runs), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(runs[column], sort=True, use_na_sentinel=False)
        combined = np.unique(combined * len(uniques) + codes, return_inverse=True)[1].reshape(-1)
    distinct, settings = np.unique(combined, return_inverse=True)
    lr = np.empty(len(distinct), dtype=float)
    lr[settings] = runs["lr"].to_numpy(dtype=float)
    return settings.reshape(-1), lr


class SeedGrid:
    """One panel's runs of one strategy as (setting x seed) arrays, to redo the best-tuned choice on seed resamples.

    ``weights`` (resamples x seeds) say how often each seed is drawn; every
    choice follows ``tuning.best_tuned``: fewest failed seeds, then the highest
    mean oriented validation metric of the seeds that did not fail, then the
    smallest setting. With unit weights the choices are those of
    ``tuning.best_tuned`` and ``stability.stability_points`` (a test checks it).
    ``values`` adds per-run columns (aligned with ``runs``' index) whose mean
    over the chosen setting's seeds :meth:`chosen_mean` returns.
    """

    def __init__(self, runs: pd.DataFrame, seeds: Sequence[int], step: float,
                 values: Mapping[str, pd.Series] | None = None) -> None:
        settings, self.lr = setting_index(runs)
        seed_index = pd.Index([int(s) for s in seeds]).get_indexer(runs["seed"].to_numpy(dtype=np.int64))
        if (seed_index < 0).any():
            raise KeyError(f"seed {int(runs['seed'].to_numpy()[seed_index < 0][0])} is not among {list(seeds)}")
        shape = (len(self.lr), len(seeds))

        def table(column: np.ndarray, fill: float = 0.0) -> np.ndarray:
            out = np.full(shape, fill, dtype=float)
            out[settings, seed_index] = column
            return out

        failures = failed(runs)
        oriented = runs["best_val_metric"].to_numpy(dtype=float) * np.where(
            runs["higher_is_better"].to_numpy(dtype=bool), 1.0, -1.0)
        self.present = table(np.ones(len(runs))) > 0
        self.failed = table(failures.astype(float))
        self.diverged = table(runs["diverged"].to_numpy(dtype=float))
        self.alive = table((~failures).astype(float))
        self.val = table(np.where(failures, 0.0, oriented))
        self.values = {"test": table(normalised_score(at_chance(runs, "test_metric_at_best_val"),
                                                      runs["metric"].to_numpy(dtype=object),
                                                      runs["chance_metric"].to_numpy(dtype=float)))}
        for name, column in (values or {}).items():
            self.values[name] = table(column.reindex(runs.index).to_numpy(dtype=float), np.nan)
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

    def lr_choices(self, weights: np.ndarray) -> np.ndarray:
        """Resamples x learning rates (sorted, :attr:`lrs`): the best setting (index) at each lr of each resample."""
        failed, val, _ = self._summaries(weights)
        return np.stack([self._choose(failed, val, group) for group in self.by_lr], axis=1)

    def stable(self, weights: np.ndarray) -> np.ndarray:
        """Resamples x learning rates (sorted): whether the best setting at that lr has no failed seed (the stability
        rule of ``stability.stability_points``: diverged, or ended no better than chance)."""
        failed, _, _ = self._summaries(weights)
        return np.take_along_axis(failed, self.lr_choices(weights), axis=1) == 0

    def width(self, weights: np.ndarray) -> np.ndarray:
        """Width in decades of the stable range of each resample (``stability.widest_span``)."""
        return widest_span(self.stable(weights), self.lrs, self.step)

    def chosen_mean(self, weights: np.ndarray, name: str = "test", chosen: np.ndarray | None = None) -> np.ndarray:
        """Mean of ``values[name]`` over the seeds (as weighted) of the chosen (by default the best-tuned) setting."""
        chosen = self.best(weights) if chosen is None else chosen
        table = self.values[name][chosen]
        present = self.present[chosen] & np.isfinite(table)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (weights * np.where(present, table, 0.0)).sum(axis=1) / (weights * present).sum(axis=1)
