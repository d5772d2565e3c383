"""The leaderboard (analysis/leaderboard.py): the profile score, the standings, the marks, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_questions import limit_outcome, make_sweep

from analysis import leaderboard, numbers, questions
from analysis.effects import Study
from analysis.ranking import performance_profile


def test_the_score_is_the_normalised_area_under_the_performance_profile() -> None:
    errors = pd.DataFrame({"a": [0.1, 0.3, 0.0, 0.2], "b": [0.2, 0.3, 0.0, 0.9], "c": [0.5, 0.9, 0.4, 0.1]},
                          index=["p1", "p2", "p3", "p4"])
    taus = np.linspace(1.0, leaderboard.TAU_MAX, 300001)
    profile = performance_profile(errors, taus).pivot(index="tau", columns="strategy", values="fraction")
    area = pd.Series({s: np.trapezoid(profile[s], taus) / (leaderboard.TAU_MAX - 1) for s in errors.columns})
    score = leaderboard.profile_score(errors)
    assert np.allclose(score, area, atol=1e-4)
    assert score["a"] == pytest.approx((1 + 1 + 1 + (4 - 2) / 3) / 4)  # 0/0 is the best; 0.2 is twice 0.1
    assert score["c"] == pytest.approx(((4 - 3) / 3 + 0 + 0 + 1) / 4)  # 0.4 / 0 is infinitely far


def test_the_leaderboard_places_every_strategy_and_marks_the_compared_ones(tmp_path, capsys) -> None:
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0}))
    answers = questions.answer_all(Study(runs))
    board = leaderboard.leaderboard(runs, answers, marked=["clip_value"])
    assert sorted(board["strategy"]) == ["clip_norm", "clip_value", "none"]
    assert list(board["score"]) == sorted(board["score"], reverse=True)
    assert board.set_index("strategy")["new"].to_dict() == {"clip_norm": False, "clip_value": True, "none": False}
    q1 = board.set_index("strategy")["q1_stable_range__sgd"]  # Q1 is stated per optimizer
    assert np.isnan(q1["none"]) and np.isfinite(q1["clip_norm"])  # Q1: every strategy against none
    text = leaderboard.markdown(board, answers)
    assert "| clip_value * |" in text and "| clip_norm |" in text and "| Q1 sgd |" in text.splitlines()[0]
    assert "\\textbf{\\texttt{clip\\_value}}$^\\dagger$" in leaderboard.table_leaderboard(board, answers)

    folder = tmp_path / "results" / "synthetic"
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    (folder / "config.yaml").write_text("sweep: synthetic\ncompare: [clip_value]\n")
    assert numbers.main(["--sweep", "synthetic", "--root", str(tmp_path), "--leaderboard"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("| rank | strategy | score (profile area, tau <= 4) |")
    assert "| clip_value * |" in printed
