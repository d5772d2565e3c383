"""`python -m bench estimate`: one timed cell per (task, model, optimizer), predictions for all cells."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import make_config, only_cell

from bench import estimate, sweep
from bench.__main__ import main


def test_a_prediction_scales_training_with_runs_and_steps_and_adds_the_fixed_costs() -> None:
    cell = only_cell(make_config(steps=20, eval_every=10))  # 3 evaluations: steps 0, 10, 20
    timing = estimate.CellTiming(cell, setup_s=0.5, step_s=0.01, evaluation_s=0.1)
    assert timing.predict(cell, job_start_s=2.0) == pytest.approx(2.0 + 0.5 + 20 * 0.01 + 3 * 0.1)
    bigger = dataclasses.replace(cell, runs=cell.runs * 3, steps=40, eval_every=10)  # 5 evaluations
    assert timing.predict(bigger, job_start_s=2.0) == pytest.approx(2.0 + 0.5 + 3 * (40 * 0.01 + 5 * 0.1))


def test_estimate_times_one_cell_per_stratum_and_covers_every_cell(tmp_path) -> None:
    out = tmp_path / "estimate.json"
    assert main(["estimate", "--config", "config/smoke.yaml", "--device", "cpu", "--steps", "2",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    cells = sweep.cells(sweep.load("config/smoke.yaml"))
    assert {(row["task"], row["model"], row["optimizer"]) for row in record["strata"]} == {
        estimate.stratum(cell) for cell in cells}
    assert sum(row["cells"] for row in record["strata"]) == record["cells"] == len(cells)
    assert record["runs"] == sum(len(cell.runs) for cell in cells)
    for row in record["strata"]:
        assert row["step_s"] > 0 and row["evaluation_s"] > 0
        assert row["predicted_s"] > row["cells"] * record["job_start_s"]
    assert record["predicted_job_s"] == pytest.approx(sum(row["predicted_s"] for row in record["strata"]))


def test_estimate_refuses_a_bad_config_in_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: x\nsteps: -1\n")
    assert main(["estimate", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
