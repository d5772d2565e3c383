"""`python -m bench estimate`: one timed cell per (task, model, optimizer), predictions for all cells."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from conftest import make_config, only_cell

from bench import estimate, record, sweep
from bench.__main__ import main
from bench.fingerprint import cell_fingerprint


def test_cost_lines_split_fixed_and_per_run_costs_and_never_go_negative() -> None:
    line = estimate.Linear.through({32: 1.0 + 32 * 0.01, 128: 1.0 + 128 * 0.01})
    assert line.fixed == pytest.approx(1.0) and line.per_run == pytest.approx(0.01)
    assert line(720) == pytest.approx(1.0 + 7.2)
    assert estimate.Linear.through({18: 0.36}) == estimate.Linear(0.0, 0.02)  # one size: proportional
    assert estimate.Linear.through({32: 2.0, 128: 1.5}) == estimate.Linear(1.5, 0.0)  # noise: no negative slope
    steep = estimate.Linear.through({32: 0.1, 128: 1.0})  # a line below the origin: proportional instead
    assert steep.fixed == 0.0 and steep(128) == pytest.approx(1.0)


def test_a_prediction_adds_job_start_setup_steps_and_evaluations_at_the_cell_size() -> None:
    cell = only_cell(make_config(steps=20, eval_every=10))  # 3 evaluations: steps 0, 10, 20
    timing = estimate.StratumTiming(cell, setup=estimate.Linear(0.5, 0.0), step=estimate.Linear(0.002, 0.001),
                                    evaluation=estimate.Linear(0.0, 0.01))
    runs = len(cell.runs)
    assert timing.predict(cell, job_start_s=2.0) == pytest.approx(
        2.0 + 0.5 + 20 * (0.002 + 0.001 * runs) + 3 * 0.01 * runs)
    bigger = dataclasses.replace(cell, runs=cell.runs * 3, steps=40, eval_every=10)  # 5 evaluations
    assert timing.predict(bigger, job_start_s=2.0) == pytest.approx(
        2.0 + 0.5 + 40 * (0.002 + 0.003 * runs) + 5 * 0.03 * runs)


def test_estimate_times_one_cell_per_stratum_and_covers_every_cell(tmp_path) -> None:
    out = tmp_path / "estimate.json"
    assert main(["estimate", "--config", "config/smoke.yaml", "--device", "cpu", "--steps", "2", "--sizes", "2", "4",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    cells = sweep.cells(sweep.load("config/smoke.yaml"))
    assert {(row["task"], row["model"], row["optimizer"], row["dtype"]) for row in record["strata"]} == {
        estimate.stratum(cell) for cell in cells}
    assert sum(row["cells"] for row in record["strata"]) == record["cells"] == len(cells)
    assert record["runs"] == sum(len(cell.runs) for cell in cells)
    for row in record["strata"]:
        assert row["step_s"]["fixed"] >= 0 and row["step_s"]["per_run"] >= 0
        assert row["step_s"]["fixed"] + row["step_s"]["per_run"] > 0
        assert row["predicted_s"] > row["cells"] * record["job_start_s"]
    assert record["predicted_job_s"] == pytest.approx(sum(row["predicted_s"] for row in record["strata"]))


def test_estimate_refuses_a_bad_config_in_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: x\nsteps: -1\n")
    assert main(["estimate", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_estimate_on_a_missing_gpu_stops_in_one_line_before_any_timing(capsys) -> None:
    started = time.perf_counter()
    assert main(["estimate", "--config", "config/smoke.yaml", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: config key 'device': cuda is not available")
    assert time.perf_counter() - started < 2  # no job start (a fresh interpreter) was timed


def test_a_stored_prediction_is_compared_with_the_jobs_trained_for_the_current_definition(tmp_path) -> None:
    config = make_config(steps=20, eval_every=10)
    cells = sweep.cells(config)
    (cell,) = cells
    line = {"fixed": 0.5, "per_run": 0.01}
    stored = {"date": "2026-12-04", "device": "cpu", "cells": 1, "job_start_s": 2.0,
              "strata": [{"task": cell.task_name, "model": cell.model_name, "optimizer": cell.optimizer_name,
                          "dtype": cell.dtype, "setup_s": line, "step_s": line, "evaluation_s": line}]}
    predicted = estimate.repredict(stored, cells)[cell.id]
    runs = len(cell.runs)
    assert predicted == pytest.approx(2.0 + (1 + 20 + 3) * (0.5 + 0.01 * runs))
    benchmarks, trained = tmp_path / "benchmarks", tmp_path / "cells"
    benchmarks.mkdir()
    (benchmarks / f"{cell.id}.tsv").write_text("s\th:m:s\n99.0\t0:01:39\n40.0\t0:00:40\n")
    (trained / cell.id).mkdir(parents=True)
    for table in ("runs", "curves"):
        (trained / cell.id / f"{table}.parquet").touch()
    stale = {"format": record.FORMAT, "fingerprint": "0" * 64}
    (trained / cell.id / "cell.json").write_text(json.dumps(stale))
    assert estimate.measured_seconds(benchmarks, cells, trained) == {}  # trained for another definition
    (trained / cell.id / "cell.json").write_text(json.dumps({"format": record.FORMAT,
                                                             "fingerprint": cell_fingerprint(cell)}))
    assert estimate.measured_seconds(benchmarks, cells, trained) == {cell.id: 40.0}  # the last row
    table = estimate.against(stored, cells, benchmarks, trained)
    assert f"| all | | | | 1 | {predicted:,.0f} | 40 | {40 / predicted:.2f} |" in table
    assert "Still to train: 0 cells" in table


def test_against_without_a_stored_record_is_one_line(capsys) -> None:
    assert main(["estimate", "--config", "config/smoke.yaml", "--against", "benchmarks/smoke/train",
                 "--record", "no-such.json"]) == 2
    assert "--against needs --record" in capsys.readouterr().err
