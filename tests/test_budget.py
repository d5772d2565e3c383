"""The budget check (bench/budget.py): one training answers both budgets, and its scoring follows the tuning rule."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench import budget, engine, sweep
from bench.__main__ import main


@pytest.fixture(scope="module")
def smoke_cell() -> sweep.Cell:
    config = sweep.load("config/smoke.yaml")
    return sweep.find(config, "mnist1d-mlp-sgd-none")


def test_the_first_steps_of_the_longer_training_are_the_shorter_run(smoke_cell: sweep.Cell) -> None:
    """What the check rests on: under a constant learning rate the budget's run is the longer run's prefix, so
    its validation metrics at evaluation steps up to the budget are the same numbers."""
    long = budget.check_cell(smoke_cell, 4)
    assert long.steps == 4 * smoke_cell.steps and {run.seed for run in long.runs} == {0}
    assert [run.lr for run in long.runs] == [0.01, 0.1, 10.0]
    short = dataclasses.replace(long, steps=smoke_cell.steps)
    history_long = engine.train(engine.build(long), progress=False)
    history_short = engine.train(engine.build(short), progress=False)
    rows = len(history_short.eval_steps)
    assert history_long.eval_steps[:rows] == history_short.eval_steps
    np.testing.assert_array_equal(history_long.eval_metrics["val_metric"][:rows],
                                  history_short.eval_metrics["val_metric"])


def test_a_run_diverged_by_the_horizon_scores_nothing() -> None:
    values = np.array([[0.1, 0.1], [0.5, 0.9], [0.6, np.nan]])
    steps = [0, 10, 20]
    best = budget.best_up_to(values, steps, np.array([-1, 15]), 10, higher_is_better=True)
    np.testing.assert_array_equal(best, [0.5, 0.9])  # at step 10 the second run is still alive
    best = budget.best_up_to(values, steps, np.array([-1, 15]), 20, higher_is_better=True)
    assert best[0] == 0.6 and math.isnan(best[1])
    lower = budget.best_up_to(values, steps, np.array([-1, -1]), 20, higher_is_better=False)
    np.testing.assert_array_equal(lower, [0.1, 0.1])


def test_the_fraction_and_the_verdict() -> None:
    check = budget.Check(task="t", model="m", optimizer="o", steps=400, eval_every=20, factor=4, metric="accuracy",
                         initial=0.1, best_lr=0.1, best=0.55, best_lr_long=0.1, best_long=0.6, diverged=0, runs=3,
                         seconds=1.0)
    assert check.fraction == pytest.approx(0.9) and check.passes
    assert not dataclasses.replace(check, best=0.5).passes
    assert not dataclasses.replace(check, eval_every=40).passes  # evaluated every 10% of the budget
    lower = dataclasses.replace(check, metric="mse", initial=1.0, best=0.2, best_long=0.1)
    assert lower.fraction == pytest.approx(0.8 / 0.9)


def test_a_budget_that_is_no_evaluation_step_is_refused(smoke_cell: sweep.Cell) -> None:
    with pytest.raises(ValueError, match="not a multiple of eval_every"):
        budget.check_cell(dataclasses.replace(smoke_cell, steps=25), 4)


def test_the_command_writes_one_row_per_budget(tmp_path, capsys) -> None:
    out = tmp_path / "budget.csv"
    assert main(["budget", "--config", "config/smoke.yaml", "--cells", "mnist1d-*", "--shorter", "20",
                 "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == list(budget.COLUMNS)
    assert sorted(table["steps"]) == [20, 30] and set(table["task"]) == {"mnist1d"}
    assert "mnist1d-mlp-sgd: 30 steps reach" in capsys.readouterr().out
    assert main(["budget", "--config", "config/smoke.yaml", "--cells", "nothing*"]) == 2
    capsys.readouterr()
    assert main(["budget", "--config", "config/smoke.yaml", "--out", str(out), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 2 and lines[2].startswith("| mnist1d / mlp / sgd | 20 | 10 | accuracy: ")
    assert main(["budget", "--config", "config/smoke.yaml", "--out", str(tmp_path / "none.csv"), "--markdown"]) == 2
