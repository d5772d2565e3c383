"""Results store: schema checks on write and read, atomic writes, aggregation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_config, only_cell

from bench import engine, publish, store
from bench.columns import with_run_defaults

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def history():
    config = make_config(steps=6, eval_every=3, optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.01, 1e4]}},
                         strategies={"clip_value": {"clip_value": [0.5]}})
    cell = only_cell(config)
    built = engine.build(cell)
    return cell, built.task, engine.train(built, progress=False)


@pytest.fixture(scope="module")
def trained(history):
    cell, task, trained_history = history
    return cell, store.tables(cell, task, trained_history)


def frames_with_pandas(cell, task, history) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables built with pandas, run by run: the reference of store.arrow_tables."""
    steps, eval_steps = np.arange(cell.steps), np.asarray(history.eval_steps)
    run_rows, curve_parts = [], []
    for k, (run_id, run) in enumerate(zip(cell.run_ids(), cell.runs, strict=True)):
        last = int(history.diverged_step[k]) if history.diverged_step[k] >= 0 else cell.steps
        evals = eval_steps <= last
        best, best_val = store._best(history.eval_metrics["val_metric"][evals, k], task.higher_is_better)
        train = history.step_metrics["train_loss"][: min(last + 1, cell.steps), k]
        run_rows.append({
            "run_id": run_id, "sweep": cell.sweep, "cell": cell.id, "task": cell.task_name, "model": cell.model_name,
            "family": cell.model["family"], "optimizer": cell.optimizer_name, "strategy": cell.strategy_name,
            "dtype": cell.dtype, "lr": run.lr, "seed": run.seed, "seed_set": cell.seed_set, "metric": task.metric,
            "higher_is_better": task.higher_is_better,
            "chance_metric": task.chance_metric, "chance_loss": task.chance_loss,
            "diverged": bool(history.diverged_step[k] >= 0), "diverged_step": int(history.diverged_step[k]),
            "final_train_loss": float(train[-1]) if len(train) else float("nan"),
            "best_val_metric": best_val,
            "final_val_metric": history.eval_metrics["val_metric"][-1, k] if last == cell.steps else np.nan,
            "test_metric_at_best_val": float(history.eval_metrics["test_metric"][evals, k][best])
            if best >= 0 else float("nan"),
            "steps": cell.steps, "wall_time_s": history.wall_time_s, **run.hyperparameters, **run.dials,
        })
        rows = steps <= last
        curve = pd.DataFrame({"run_id": run_id, "step": steps[rows]})
        for name in ("train_loss", "grad_norm_pre", "grad_norm_post", "update_ratio"):
            curve[name] = history.step_metrics[name][rows, k].astype(np.float64)
        curve["clipped"] = history.step_metrics["clipped"][rows, k] > 0.5
        evaluated = pd.DataFrame({"run_id": run_id, "step": eval_steps[evals]})
        for name, values in history.eval_metrics.items():
            evaluated[name] = values[evals, k].astype(np.float64)
        curve_parts.append(curve.merge(evaluated, on=["run_id", "step"], how="outer"))
    curves = pd.concat(curve_parts, ignore_index=True)
    curves["clipped"] = curves["clipped"].fillna(False).astype(bool)
    return pd.DataFrame(run_rows), curves[list(store.CURVES_COLUMNS)].sort_values(["run_id", "step"], ignore_index=True)


def test_the_arrow_tables_are_those_pandas_builds_and_are_written_the_same(history, tmp_path) -> None:
    cell, task, trained_history = history
    assert {bool(step >= 0) for step in trained_history.diverged_step} == {True, False}  # both kinds of run
    store.write_cell(*store.arrow_tables(cell, task, trained_history), tmp_path / "arrow")
    store.write_cell(*frames_with_pandas(cell, task, trained_history), tmp_path / "pandas")
    for kind in ("runs", "curves"):
        arrow, pandas = (pq.read_table(tmp_path / way / f"{kind}.parquet").replace_schema_metadata(None)
                         for way in ("arrow", "pandas"))
        assert arrow.equals(pandas), kind
        pd.testing.assert_frame_equal(store.read(tmp_path / "arrow" / f"{kind}.parquet", kind),
                                      store.read(tmp_path / "pandas" / f"{kind}.parquet", kind))
    assert pq.read_table(tmp_path / "arrow" / "curves.parquet")["val_loss"].null_count > 0  # NaN is null, as before


def test_tables_follow_the_schema(trained, tmp_path) -> None:
    _, (runs, curves) = trained
    store.write_cell(runs, curves, tmp_path)
    read_runs = store.read(tmp_path / "runs.parquet", "runs")
    assert list(read_runs.columns[: len(store.RUNS_COLUMNS)]) == list(store.RUNS_COLUMNS)
    assert {"clip_value"} <= set(read_runs.columns)
    read_curves = store.read(tmp_path / "curves.parquet", "curves")
    assert list(read_curves.columns) == list(store.CURVES_COLUMNS)
    evals = read_curves.dropna(subset=["val_metric"])
    assert set(evals["step"]) <= {0, 3, 6}
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_column_is_refused_on_write(trained, tmp_path) -> None:
    _, (runs, _) = trained
    with pytest.raises(store.StoreError, match="seed"):
        store.write(runs.drop(columns=["seed"]), tmp_path / "runs.parquet", "runs")
    assert not (tmp_path / "runs.parquet").exists()


def test_truncated_and_foreign_files_fail_with_their_name(trained, tmp_path) -> None:
    _, (runs, curves) = trained
    store.write_cell(runs, curves, tmp_path)
    path = tmp_path / "curves.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(store.StoreError, match=r"curves\.parquet"):
        store.read(path, "curves")
    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(foreign)
    with pytest.raises(store.StoreError, match=r"foreign\.parquet"):
        store.read(foreign, "runs")
    with pytest.raises(store.StoreError, match=r"runs\.parquet"):
        store.read(tmp_path / "runs.parquet", "curves")


def test_aggregate_concatenates_and_refuses_duplicates(trained, tmp_path) -> None:
    _, (runs, curves) = trained
    store.write_cell(runs.iloc[:2], curves[curves["run_id"].isin(runs["run_id"].iloc[:2])], tmp_path / "a")
    store.write_cell(runs.iloc[2:], curves[curves["run_id"].isin(runs["run_id"].iloc[2:])], tmp_path / "b")
    assert store.aggregate([tmp_path / "a", tmp_path / "b"], tmp_path / "all") == (len(runs), len(curves))
    store.write_cell(runs.iloc[:1], curves.iloc[:1], tmp_path / "c")
    with pytest.raises(store.StoreError, match="more than one cell"):
        store.aggregate([tmp_path / "a", tmp_path / "c"], tmp_path / "all2")


def test_a_runs_table_written_before_the_dtype_column_reads_as_float32(trained, tmp_path) -> None:
    """Every run of a table without ``dtype`` trained in float32: the reader fills it in, in its place."""
    _, (runs, curves) = trained
    store.write_cell(runs, curves, tmp_path)
    old = pq.read_table(tmp_path / "runs.parquet").drop_columns(["dtype"])
    pq.write_table(old, tmp_path / "old.parquet")
    read = store.read(tmp_path / "old.parquet", "runs")
    pd.testing.assert_frame_equal(read, store.read(tmp_path / "runs.parquet", "runs"))
    assert set(read["dtype"]) == {"float32"}
    assert with_run_defaults(read) is read


def test_a_cell_committed_before_the_dtype_column_restores_as_float32(tmp_path) -> None:
    """Cells committed before precision was a column (the study's first edition, in the git history) read with
    float32 filled in: a committed smoke cell, its runs table without the column."""
    source = ROOT / "study" / "smoke" / "cells" / "mnist1d-mlp-sgd-none"
    cell = tmp_path / source.name
    shutil.copytree(source, cell)
    table = pq.read_table(cell / "runs.parquet")
    if "dtype" in table.column_names:
        pq.write_table(table.drop_columns(["dtype"]), cell / "runs.parquet")
    assert "dtype" not in pq.read_schema(cell / "runs.parquet").names
    runs, _ = publish.read_cell(cell)
    assert set(runs["dtype"]) == {"float32"} and len(runs) == pq.read_metadata(cell / "runs.parquet").num_rows
    expected, _ = publish.read_cell(source)
    pd.testing.assert_frame_equal(runs, expected)
