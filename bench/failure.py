"""The one rule for failed runs, and the score it reads: shared by the analysis and the thinning of committed curves.

A run *fails* when it diverged (the engine's rule: a non-finite loss, or one above ``divergence_factor`` x its
initial loss), or its best validation metric is not finite, or it ended no better than chance: its validation
metric at the last step (``final_val_metric``) scores below :data:`FAILED_SCORE` on the normalised scale
(:func:`normalised_score`: 0 at chance, 1 perfect). A run that never learns, or that learns and then collapses to
chance without its loss blowing up (a saturated network; a transformer whose attention logits grew until it
predicts the unigram distribution), fails as a diverged one does. Tables written before the runs table had
``final_val_metric`` lack the last rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where frames are read, never by a training job
    import pandas as pd

METRIC_ERRORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": lambda values: 1.0 - values,
    "mse": lambda values: values,
    "bits_per_char": lambda values: values,
}
"""How a metric becomes an error, a cost (lower is better, 0 is perfect): 1 - accuracy; MSE and a language
model's bits per character are one already (the score against chance then compares with the unigram model)."""


PERFECT: dict[str, float] = {"accuracy": 1.0, "mse": 0.0, "bits_per_char": 0.0}
"""Each metric's perfect value, its error 0 (:data:`METRIC_ERRORS`): no run can score beyond it."""


def metric_error(values: Sequence[float] | np.ndarray, metrics: Sequence[str] | np.ndarray) -> np.ndarray:
    """The error (:data:`METRIC_ERRORS`) of each value given its metric's name; an unknown metric is a ValueError."""
    values, metrics = np.asarray(values, dtype=float), np.asarray(metrics, dtype=object)
    unknown = sorted(set(metrics) - set(METRIC_ERRORS))
    if unknown:
        raise ValueError(f"no error defined for metric(s) {', '.join(map(str, unknown))}; known: "
                         f"{', '.join(METRIC_ERRORS)}")
    errors = np.empty_like(values)
    for metric, to_error in METRIC_ERRORS.items():
        errors[metrics == metric] = to_error(values[metrics == metric])
    return errors


def normalised_score(values: Sequence[float] | np.ndarray, metrics: Sequence[str] | np.ndarray,
                     chance: Sequence[float] | np.ndarray) -> np.ndarray:
    """``1 - error / chance error``: 0 at chance, 1 perfect (error: 1 - accuracy or MSE, :func:`metric_error`).

    The chance-corrected accuracy for classification and R^2 against the target
    variance for regression, so accuracy and MSE problems share one unit.
    """
    errors = metric_error(values, metrics)
    chance_errors = metric_error(np.broadcast_to(np.asarray(chance, dtype=float), errors.shape), metrics)
    return 1.0 - errors / chance_errors


FAILED_SCORE = 0.1
"""A run whose validation metric at the last step is less than this share of the way from chance to perfect
(:func:`normalised_score` below it) ended at chance: it failed. Stated before the study's results."""


def ended_at_chance(runs: pd.DataFrame) -> np.ndarray:
    """Whether each run ended no better than chance: its ``final_val_metric`` (NaN for a diverged run, absent
    from tables written before it) scores below :data:`FAILED_SCORE`."""
    if "final_val_metric" not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    final = runs["final_val_metric"].to_numpy(dtype=float)
    known = np.isfinite(final)
    scores = normalised_score(np.where(known, final, runs["chance_metric"].to_numpy(dtype=float)),
                              runs["metric"].to_numpy(dtype=object), runs["chance_metric"].to_numpy(dtype=float))
    return known & (scores < FAILED_SCORE)


def failed(runs: pd.DataFrame) -> np.ndarray:
    """Whether each run failed: diverged, or its best validation metric is not finite, or it ended no better
    than chance (:func:`ended_at_chance`)."""
    return (runs["diverged"].to_numpy(dtype=bool) | ~np.isfinite(runs["best_val_metric"].to_numpy(dtype=float))
            | ended_at_chance(runs))
