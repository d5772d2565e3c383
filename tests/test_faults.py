"""Fault injection: SIGKILL of jobs at several points of the smoke sweep, each followed by the
same command again, gives aggregated results identical to an uninterrupted run, no run lost or
duplicated. Kill points are injected by tests/faults/sitecustomize.py."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow import SMOKE, copy_repository, snakemake

from bench import store

FAULTS = Path(__file__).resolve().parent / "faults"
CELLS = ["mnist1d-mlp-sgd-none", "digits-cnn2d-sgd-clip_norm", "adding-lstm-sgd-none", "adding-lstm-sgd-clip_norm"]
KILL_POINTS = [
    f"train:{CELLS[0]}@1",     # before the first checkpoint
    f"train:{CELLS[1]}@12",    # after the checkpoint at step 10
    f"train:{CELLS[2]}@29",    # at the last step, after the checkpoint at step 25
    f"train:{CELLS[3]}@5",     # right at a checkpoint
    f"write:{CELLS[2]}",       # between writing a cell's curves and its runs table
    "aggregate",               # between writing the sweep's runs and curves tables
]
TARGET = ["results", "--cores", "1", "--configfile", SMOKE, "--config", "checkpoint_every=5"]


def sweep_tables(work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    sweep = yaml.safe_load((work / SMOKE).read_text())["sweep"]
    runs = store.read(work / "results" / sweep / "runs.parquet", "runs")
    curves = store.read(work / "results" / sweep / "curves.parquet", "curves")
    return runs.drop(columns=list(store.TIMING_COLUMNS)), curves


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    work = copy_repository(tmp_path_factory.mktemp("clean") / "repo")
    result = snakemake(work, *TARGET)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_tables(work)


def test_killed_jobs_resume_to_identical_results(uninterrupted, tmp_path: Path, monkeypatch) -> None:
    work = copy_repository(tmp_path / "repo")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BENCH_TEST_KILL", ";".join(KILL_POINTS))
    monkeypatch.setenv("BENCH_TEST_KILL_MARKS", str(tmp_path / "marks"))
    failures = 0
    for _ in range(len(KILL_POINTS) + 1):
        result = snakemake(work, *TARGET)
        if result.returncode == 0:
            break
        failures += 1
        assert "Error in rule" in result.stdout + result.stderr, result.stderr[-3000:]
    assert failures == len(KILL_POINTS), "every kill point fired exactly once, then the sweep completed"
    assert len(list((tmp_path / "marks").iterdir())) == len(KILL_POINTS)
    logs = {cell: (work / "logs" / "smoke" / "train" / f"{cell}.log").read_text() for cell in CELLS[1:4]}
    assert "resumed from the checkpoint at step 10" in logs[CELLS[1]]
    assert "resumed from the checkpoint at step 25" in logs[CELLS[2]]
    assert "resumed from the checkpoint at step 5" in logs[CELLS[3]]

    runs, curves = sweep_tables(work)
    expected_runs, expected_curves = uninterrupted
    assert runs["run_id"].is_unique and len(runs) == len(expected_runs)
    pd.testing.assert_frame_equal(runs, expected_runs)
    pd.testing.assert_frame_equal(curves, expected_curves)
    assert not list((work / "results").rglob("checkpoint.pt"))
