"""Results store: schema checks on write and read, atomic writes, aggregation."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_config, only_cell

from bench import engine, store


@pytest.fixture(scope="module")
def trained():
    config = make_config(steps=6, eval_every=3, optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.01, 1e4]}},
                         strategies={"clip_value": {"clip_value": [0.5]}})
    cell = only_cell(config)
    built = engine.build(cell)
    return cell, store.tables(cell, built.task, engine.train(built, progress=False))


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
