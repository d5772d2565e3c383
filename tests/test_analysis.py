"""The analysis functions on small synthetic tables that follow the results contract."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import data, layout, numbers, plots

ROOT = Path(__file__).resolve().parents[1]


def synthetic_tables(steps: int = 40, eval_every: int = 10, seeds=(0, 1, 2)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and curves of a fake sweep: two problems, three strategies, lr grid; large lr diverges for none."""
    problems = [("mnist1d", "mlp", "mlp", "accuracy", True, 0.1, math.log(10)),
                ("adding", "rnn", "rnn", "mse", False, 0.167, 0.167)]
    strategies = {"none": [{}], "clip_norm": [{"clip_norm": 0.5}, {"clip_norm": 2.0}],
                  "clip_value": [{"clip_value": 0.1}]}
    lrs = [0.01, 0.1, 1.0]
    runs, curves = [], []
    rng = np.random.default_rng(0)
    for (task, model, family, metric, higher, chance_metric, chance_loss), (strategy, grid) in itertools.product(
            problems, strategies.items()):
        cell = f"{task}-{model}-sgd-{strategy}"
        for hyper, lr, seed in itertools.product(grid, lrs, seeds):
            run_id = f"{cell}-{len(runs)}"
            diverges = strategy == "none" and lr == 1.0 and seed != 0
            diverged_step = 17 if diverges else -1
            quality = lr * (2.0 if strategy != "none" else 1.0) + 0.01 * seed
            loss0 = chance_loss
            last = diverged_step if diverges else steps
            for step in range(last + 1):
                loss = loss0 * math.exp(-quality * step / 10) + 0.01 * rng.random()
                if diverges and step == diverged_step:
                    loss = float("inf")
                evaluated = step % eval_every == 0 or step == steps
                val = (min(1.0, chance_metric + quality) if higher else chance_metric / (1 + quality))
                curves.append({
                    "run_id": run_id, "step": step, "train_loss": loss, "grad_norm_pre": 1.0 + lr,
                    "grad_norm_post": 1.0, "clipped": strategy != "none", "update_ratio": 1e-3,
                    "val_loss": loss if evaluated else np.nan, "val_metric": val if evaluated else np.nan,
                    "test_loss": loss if evaluated else np.nan, "test_metric": val if evaluated else np.nan,
                })
            best_val = min(1.0, chance_metric + quality) if higher else chance_metric / (1 + quality)
            row = {
                "run_id": run_id, "sweep": "synthetic", "cell": cell, "task": task, "model": model,
                "family": family, "optimizer": "sgd", "strategy": strategy, "lr": lr, "seed": seed,
                "metric": metric, "higher_is_better": higher, "chance_metric": chance_metric,
                "chance_loss": chance_loss, "clip_norm": np.nan, "clip_value": np.nan, "init_gain": 1.0,
                "diverged": diverges, "diverged_step": diverged_step, "final_train_loss": loss,
                "best_val_metric": best_val, "test_metric_at_best_val": best_val - 0.01, "steps": steps,
                "wall_time_s": 0.5,
            }
            row.update(hyper)
            runs.append(row)
    return pd.DataFrame(runs), pd.DataFrame(curves)


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


def test_best_settings_prefer_stable_then_best_validation(tables):
    runs, _ = tables
    best = data.best_settings(runs)
    assert len(best) == 2 * 3  # problems x strategies
    none = best[(best["task"] == "mnist1d") & (best["strategy"] == "none")].iloc[0]
    # lr 1.0 has the best validation metric but two diverged seeds: the stable lr 0.1 wins.
    assert none["lr"] == 0.1 and none["diverged_fraction"] == 0
    clip = best[(best["task"] == "adding") & (best["strategy"] == "clip_norm")].iloc[0]
    assert clip["lr"] == 1.0 and clip["seeds"] == 3
    chosen = data.best_runs(runs)
    assert len(chosen) == 2 * 3 * 3  # one setting x three seeds each


def test_divergence_rates_have_wilson_intervals(tables):
    runs, _ = tables
    rates = data.divergence_rates(runs, by=("strategy", "lr")).set_index(["strategy", "lr"])
    row = rates.loc[("none", 1.0)]
    assert row["runs"] == 6 and row["diverged"] == 4
    assert row["low"] < row["rate"] < row["high"]
    assert rates.loc[("clip_norm", 1.0), "rate"] == 0


def test_curve_band_mean_and_bootstrap_interval(tables):
    runs, curves = tables
    members = runs[(runs["strategy"] == "none") & (runs["lr"] == 1.0) & (runs["task"] == "mnist1d")]
    band = data.curve_band(curves, members["run_id"].tolist(), window=1)
    assert band["seeds"].iloc[0] == 3 and band["seeds"].iloc[-1] == 1  # two seeds stopped at step 17
    early = band.iloc[:10]
    assert ((early["low"] <= early["mean"] + 1e-12) & (early["mean"] <= early["high"] + 1e-12)).all()
    assert band["high"].iloc[-1] != band["high"].iloc[-1]  # NaN: no band with one seed


def test_smooth_is_a_trailing_mean():
    assert np.allclose(data.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])


def test_styles_are_fixed_and_distinct():
    names = ["none"] + [f"s{i}" for i in range(15)]
    styles = plots.strategy_styles(names)
    assert styles["none"].colour == "#000000"
    assert len({(s.colour, s.linestyle) for s in styles.values()}) == len(names)
    assert plots.strategy_styles(names)["s3"] == styles["s3"]


def test_figures_are_written(tables, tmp_path):
    runs, curves = tables
    paths = plots.convergence_and_stability(runs, curves, tmp_path)
    stems = layout.figure_stems(data.problems(runs))
    expected = {tmp_path / f"{stem}.{fmt}" for stem in stems for fmt in layout.FIGURE_FORMATS}
    assert set(paths) == expected
    assert all(p.stat().st_size > 1000 for p in paths)


def test_numbers_and_tables(tables, tmp_path):
    runs, _ = tables
    values = numbers.compute(runs)
    assert values["runs"] == str(len(runs))
    assert values["divergence-none"] == "22.2\\%"  # 4 of 18 runs
    assert values["best-strategy"].startswith("\\texttt{clip")
    assert "friedman-p" in values
    paths = numbers.write(runs, tmp_path)
    text = (tmp_path / "numbers.tex").read_text()
    assert "\\benchdef{runs}{" in text
    assert "\\toprule" in (tmp_path / "table-best.tex").read_text()
    assert len(paths) == 4


def test_numbers_cli_reports_missing_results(tmp_path):
    result = subprocess.run([sys.executable, "-m", "analysis.numbers", "--sweep", "absent", "--root", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_tex_escape():
    assert numbers.tex_escape("clip_norm 5%") == "clip\\_norm 5\\%"
