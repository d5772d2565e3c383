"""The results vocabulary: every column of the runs and curves tables, defined once.

The engine logs :data:`STEP_METRICS` every step and :data:`EVAL_METRICS` at
evaluation steps, and the probes of a model that has some (``Model.probe_names``,
names matching :data:`PROBE_PATTERN`) every step; bench.store writes and checks
the tables with these columns and types; the analysis reads them by these names. Besides the required run
columns, every strategy hyperparameter and stress dial of a sweep adds a
float64 column to the runs table (named as in the config). A run column added
after tables were committed has its value for those tables in
:data:`RUNS_DEFAULTS`; :func:`with_run_defaults` fills it in where it is absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # pandas is imported where frames are read, never by a training job
    import pandas as pd

STEP_METRICS = ("train_loss", "grad_norm_pre", "grad_norm_post", "clipped", "update_ratio")
"""Logged for every run at every step (NaN after a run diverged)."""
EVAL_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")
"""Logged at evaluation steps (every ``eval_every`` and the last)."""

RUNS_COLUMNS: dict[str, pa.DataType] = {
    "run_id": pa.string(), "sweep": pa.string(), "cell": pa.string(), "task": pa.string(),
    "model": pa.string(), "family": pa.string(), "optimizer": pa.string(), "strategy": pa.string(),
    "dtype": pa.string(), "lr": pa.float64(), "seed": pa.int64(), "seed_set": pa.string(), "metric": pa.string(),
    "higher_is_better": pa.bool_(),
    "chance_metric": pa.float64(), "chance_loss": pa.float64(), "diverged": pa.bool_(),
    "diverged_step": pa.int64(), "final_train_loss": pa.float64(), "best_val_metric": pa.float64(),
    "final_val_metric": pa.float64(), "test_metric_at_best_val": pa.float64(), "steps": pa.int64(),
    "wall_time_s": pa.float64(),
}
"""Required columns of runs.parquet; every strategy hyperparameter and stress dial adds a float64 column."""

DISCOVERY = "discovery"
"""The seed set of the config's ``seeds``: the runs every figure, table and claim reads by default."""
REPLICATION = "replication"
"""The seed set of the config's ``replication_seeds``: the same cells trained again on seeds the claims were
frozen without (the cell's id ends in ``-replication``)."""
SEED_SETS = (DISCOVERY, REPLICATION)
"""The values of the runs table's ``seed_set`` column."""

RUNS_DEFAULTS: dict[str, object] = {"dtype": "float32", "seed_set": DISCOVERY, "final_val_metric": float("nan")}
"""Run columns that tables written before them lack, with the value they have there: every run of a table
without ``dtype`` trained in float32 (the only precision there was), every run of a table without
``seed_set`` on the config's ``seeds`` (there were no others); ``final_val_metric`` (the validation metric
at the last step, NaN for a diverged run) is unknown (NaN) in tables written before it."""


def with_run_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with every column of :data:`RUNS_DEFAULTS` it lacks added in its place of :data:`RUNS_COLUMNS`,
    holding its default; ``runs`` itself where it lacks none."""
    absent = {name: value for name, value in RUNS_DEFAULTS.items() if name not in runs.columns}
    if not absent:
        return runs
    filled = runs.assign(**absent)
    fixed = [name for name in RUNS_COLUMNS if name in filled.columns]
    return filled[[*fixed, *(name for name in filled.columns if name not in RUNS_COLUMNS)]]

CURVES_COLUMNS: dict[str, pa.DataType] = {
    "run_id": pa.string(), "step": pa.int64(),
    **{name: pa.bool_() if name == "clipped" else pa.float64() for name in STEP_METRICS},
    **{name: pa.float64() for name in EVAL_METRICS},
}
"""Columns of curves.parquet: one row per run and step; eval columns are NaN off eval steps."""

ATTENTION_PROBE = "attn_logit_max_{layer}"
"""The probe of one layer's largest attention logit (before any cap), by its layer number."""
ATTENTION_PROBE_PATTERN = r"attn_logit_max_(\d+)"
"""The names of :data:`ATTENTION_PROBE`, the layer number as the group."""
OUTPUT_LOG_Z = "output_log_z"
"""The probe of the mean logsumexp of the output logits."""
PROBE_PATTERN = f"{ATTENTION_PROBE_PATTERN}|{OUTPUT_LOG_Z}"
"""Names of the curve columns of a model's probes (``Model.probe_names``), one float64 column each, logged
every step (NaN after a run diverged, as a step metric): ``attn_logit_max_<l>``, the largest attention logit
of layer l (before any cap), and ``output_log_z``, the mean logsumexp of the output logits. A cell's curves
have them where its model has them; a sweep's aggregated curves have every probe column of its cells, NaN in
the rows of the cells without it."""


def is_probe(name: str) -> bool:
    """Whether ``name`` is the name of a probe's curve column (:data:`PROBE_PATTERN`)."""
    return re.fullmatch(PROBE_PATTERN, name) is not None


def curves_columns(names: Iterable[str] = ()) -> dict[str, pa.DataType]:
    """The columns of a curves table that holds the probe columns among ``names`` (in their order):
    :data:`CURVES_COLUMNS`, then each of those as float64."""
    return {**CURVES_COLUMNS, **{name: pa.float64() for name in names if is_probe(name)}}


TIMING_COLUMNS = ("wall_time_s",)
"""Run columns that measure the machine, not the training: they differ between identical runs."""
