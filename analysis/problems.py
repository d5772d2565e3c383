"""Distinct problems: identical task x model pairs found in the data and merged before any count or interval.

Two problems are the same problem when they train the same data and model on
the same seeds: every run they share (the same optimizer, stress dials,
precision, strategy, setting and seed) gives bit-identical results. A task
that only adds a stress dial (``mnist_spikes`` at ``spike_rate`` 0 is
``mnist``) is such a duplicate. :func:`distinct_problems` finds them from the
runs alone and merges each duplicate into the problem it repeats: its runs
take that problem's task and model, and the runs both have are kept once, so
that no statistic counts one problem as two independent units. The effects
engine (``analysis.effects.Study``) applies it to every question's runs.
The cells of a sweep's ``replication_seeds`` are their problems trained on
other seeds: their runs carry the same task and model, so they are never
another problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from analysis.vocabulary import dial_columns, hyperparameter_columns

RESULT_COLUMNS = ("diverged", "diverged_step", "final_train_loss", "best_val_metric", "test_metric_at_best_val")
"""The per-run results that must be bit-identical for two runs to be the same run."""

MIN_SHARED = 2
"""Runs two problems must share, at least, before identical results make them one problem."""


@dataclass(frozen=True)
class Duplicate:
    """A problem found to repeat another: ``merged`` (task, model) is ``kept``, on ``identical`` shared runs."""

    merged: tuple[str, str]
    kept: tuple[str, str]
    identical: int
    """Shared runs (matching keys), every one with identical results."""

    def describe(self) -> str:
        """One line: ``task/model = task/model (k of k shared runs identical)``."""
        return (f"{'/'.join(self.merged)} = {'/'.join(self.kept)} "
                f"({self.identical} of {self.identical} shared runs identical)")


def _run_keys(runs: pd.DataFrame) -> list[str]:
    """The columns that name a run within its problem: optimizer, dials, precision, strategy, setting, seed."""
    keys = ["optimizer", *dial_columns(runs), *(["dtype"] if "dtype" in runs.columns else []), "strategy",
            "lr", *hyperparameter_columns(runs), "seed"]
    return [k for k in keys if k in runs.columns]


def _hashes(runs: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row of ``columns`` (NaN equal to NaN, floats compared bit for bit)."""
    return pd.util.hash_pandas_object(runs[columns].reset_index(drop=True), index=False).to_numpy()


def find_duplicates(runs: pd.DataFrame) -> list[Duplicate]:
    """The problems of ``runs`` that repeat another problem (see the module docstring).

    A pair of problems sharing at least :data:`MIN_SHARED` runs, all with
    identical :data:`RESULT_COLUMNS`, is one problem; the one with more runs
    is kept (on a tie, the first in the table). A chain (C repeats B repeats
    A) merges into A.
    """
    results = [c for c in RESULT_COLUMNS if c in runs.columns]
    if runs.empty or not results or not {"task", "model"} <= set(runs.columns):
        return []
    keys = _run_keys(runs)
    frame = pd.DataFrame({"task": runs["task"].astype(str).to_numpy(), "model": runs["model"].astype(str).to_numpy(),
                          "key": _hashes(runs, keys), "result": _hashes(runs, results)})
    order = list(dict.fromkeys(zip(frame["task"], frame["model"], strict=True)))
    sizes = frame.groupby(["task", "model"], sort=False).size()
    by_problem = {problem: group.drop_duplicates("key").set_index("key")["result"]
                  for problem, group in frame.groupby(["task", "model"], sort=False)}
    parent: dict[tuple[str, str], tuple[str, str]] = {}
    found = []
    for a, b in combinations(order, 2):
        shared = by_problem[a].index.intersection(by_problem[b].index)
        if len(shared) < MIN_SHARED or not (by_problem[a].loc[shared] == by_problem[b].loc[shared]).all():
            continue
        kept, merged = (a, b) if sizes[a] >= sizes[b] else (b, a)
        found.append(Duplicate(merged, kept, len(shared)))
        parent[merged] = kept
    roots = {}
    for duplicate in found:
        root = duplicate.kept
        while root in parent:
            root = parent[root]
        roots[duplicate.merged] = root
    return [Duplicate(d.merged, roots[d.merged], d.identical) for d in found if roots[d.merged] != d.merged]


def distinct_problems(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Duplicate]]:
    """``runs`` with every duplicate problem merged into the one it repeats (:func:`find_duplicates`), and the
    duplicates: a merged problem's runs take the kept problem's task and model; a run both have is kept once."""
    duplicates = find_duplicates(runs)
    if not duplicates:
        return runs, []
    out = runs.copy()
    for duplicate in duplicates:
        mine = (out["task"].astype(str) == duplicate.merged[0]) & (out["model"].astype(str) == duplicate.merged[1])
        out.loc[mine, "task"], out.loc[mine, "model"] = duplicate.kept
    for column in ("task", "model"):
        if isinstance(runs[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(str)
    keys = ["task", "model", *_run_keys(out)]
    out = out[~pd.Series(_hashes(out, keys), index=out.index).duplicated()]
    return out, duplicates
