"""Fault injection: SIGKILL of jobs at several points of the smoke sweep, or of Snakemake itself with
all its jobs, each followed by the same command again, gives aggregated results identical to an
uninterrupted run, no run lost or duplicated. Kill points inside jobs are injected by
tests/faults/sitecustomize.py; the workflow profile (profiles/default) is what lets the plain
command go on after Snakemake itself was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow import SMOKE, copy_repository, environment, snakemake

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


def kill_snakemake_when(work: Path, moment: Callable[[Path], bool], log: Path, timeout: float = 300) -> None:
    """Start the sweep's command in ``work``; once ``moment(work)`` holds, SIGKILL Snakemake and every job.

    Snakemake runs in a session of its own, and its jobs (shell commands and their Python processes)
    stay in its process group, so one ``killpg`` kills all of them at once, as a crash or power loss would.
    """
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "snakemake", *TARGET], cwd=work, env=environment(),
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.monotonic()
    while process.poll() is None and not moment(work):
        assert time.monotonic() - started < timeout, "the kill moment never came"
        time.sleep(0.02)
    assert process.poll() is None, f"snakemake ended before the kill:\n{log.read_text()[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    while True:  # until no process of the group is left
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)


# In turn, each in the run the previous kill interrupted; the paths are the smoke tier's.
SNAKEMAKE_KILL_MOMENTS = {
    "as the first cell starts": lambda work: any((work / "logs" / "smoke" / "train").glob("*.log")),
    "while a cell trains, after a checkpoint": lambda work: any((work / "results" / "smoke" / "cells").glob(
        "*/checkpoint*")),
    "while it aggregates": lambda work: (work / "logs" / "smoke" / "aggregate.log").exists(),
}


def test_killed_snakemake_finishes_with_the_same_command(uninterrupted, tmp_path: Path) -> None:
    """SIGKILL of Snakemake and all its jobs at each moment in turn; then the same command, no flag
    added, finishes the sweep with tables identical to the uninterrupted run's."""
    work = copy_repository(tmp_path / "repo")
    for n, moment in enumerate(SNAKEMAKE_KILL_MOMENTS.values()):
        kill_snakemake_when(work, moment, tmp_path / f"killed-{n}.log")  # each run picks up what the last left
    assert list((work / ".snakemake" / "incomplete").iterdir()), "the last kill interrupted a job"
    logs = [path.read_text() for path in (work / "logs" / "smoke" / "train").glob("*.log")]
    assert any("resumed from the checkpoint" in log for log in logs), "a cell killed after a checkpoint resumed"
    result = snakemake(work, *TARGET)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs, curves = sweep_tables(work)
    expected_runs, expected_curves = uninterrupted
    pd.testing.assert_frame_equal(runs, expected_runs)
    pd.testing.assert_frame_equal(curves, expected_curves)
    assert not list((work / "results").rglob("checkpoint.pt"))
