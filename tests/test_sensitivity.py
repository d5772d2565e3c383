"""Wortsman's learning-rate sensitivity in the validation loss (analysis.sensitivity) on a hand-made sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import sensitivity, stability, tables
from analysis.effects import MIN_UNITS

LRS = (0.01, 0.1, 1.0)
SEEDS = range(5)
STEPS = 10


def initial(seed: int) -> float:
    return 2.3 + 0.01 * seed


def final(strategy: str, clip: float, lr: float, seed: int) -> float:
    """The final validation loss of a run that did not diverge; ``none`` at lr 1 ends above its initial loss."""
    if strategy == "none":
        return {0.01: 1.5, 0.1: 1.0, 1.0: 3.0}[lr] + 0.05 * seed
    return {0.5: 1.2, 2.0: 0.5}[clip] + 0.1 * lr + 0.02 * seed


def diverges(strategy: str, clip: float, lr: float, seed: int) -> bool:
    """``none`` diverges at lr 1 but for seed 0; clip_norm 2 (the better loss) diverges at lr 1 for seed 4."""
    return (strategy == "none" and lr == 1.0 and seed != 0) or (strategy == "clip_norm" and clip == 2.0
                                                                and lr == 1.0 and seed == 4)


def sweep(seeds=SEEDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One panel (mnist1d / mlp / sgd): ``none`` and ``clip_norm`` (thresholds 0.5 and 2), three lrs, eval at 0
    and at the last step; the validation metric picks clip_norm 2 wherever it did not diverge."""
    runs, curves = [], []
    for strategy, clips in (("none", [np.nan]), ("clip_norm", [0.5, 2.0])):
        for clip in clips:
            for lr in LRS:
                for seed in seeds:
                    run_id = f"{strategy}-{clip}-{lr}-{seed}"
                    diverged = diverges(strategy, clip, lr, seed)
                    runs.append({
                        "run_id": run_id, "sweep": "test", "cell": f"mnist1d-mlp-sgd-{strategy}", "task": "mnist1d",
                        "model": "mlp", "family": "mlp", "optimizer": "sgd", "strategy": strategy, "lr": lr,
                        "seed": seed, "metric": "accuracy", "higher_is_better": True, "chance_metric": 0.1,
                        "chance_loss": 2.3, "diverged": diverged, "diverged_step": 5 if diverged else -1,
                        "final_train_loss": 1.0, "best_val_metric": 0.5 + (0.2 if clip == 2.0 else 0.0),
                        "test_metric_at_best_val": 0.5, "steps": STEPS, "wall_time_s": 1.0, "clip_norm": clip,
                    })
                    curves.append({"run_id": run_id, "step": 0, "val_loss": initial(seed)})
                    curves.append({"run_id": run_id, "step": 5, "val_loss": np.inf if diverged else 1.9})
                    if not diverged:
                        curves.append({"run_id": run_id, "step": STEPS, "val_loss": final(strategy, clip, lr, seed)})
    curves = pd.DataFrame(curves)
    curves["val_metric"] = 0.5
    return pd.DataFrame(runs), curves


def by_hand(strategy: str, seed: int) -> float:
    """The sensitivity of one seed, the best setting at each lr as the validation metric chooses it."""
    capped, finals = [], []
    for lr in LRS:
        if strategy == "none":
            clip = np.nan
        else:  # clip_norm 2 has the better metric, unless a seed of it diverged at that lr (fewest failures first)
            clip = 0.5 if lr == 1.0 else 2.0
        end = np.inf if diverges(strategy, clip, lr, seed) else final(strategy, clip, lr, seed)
        capped.append(min(end, initial(seed)))
        finals.append(end)
    return float(np.mean(capped) - min(finals))


def test_seed_sensitivity_is_wortsmans_definition():
    runs, curves = sweep()
    per_seed = sensitivity.seed_sensitivities(runs, curves).set_index(["strategy", "seed"])
    for strategy in ("none", "clip_norm"):
        for seed in SEEDS:
            row = per_seed.loc[(strategy, seed)]
            assert row["sensitivity"] == pytest.approx(by_hand(strategy, seed))
            assert row["lrs"] == 3 and row["loss_unit"] == "nats"
    # none: a diverged run and one that ends above its start both count at the initial loss
    none = per_seed.loc[("none", 1)]
    assert none["mean_capped"] == pytest.approx((1.55 + 1.05 + initial(1)) / 3)
    assert none["best_final"] == pytest.approx(1.05)


def test_sensitivity_over_seeds_has_the_seed_interval_only_from_five_seeds():
    runs, curves = sweep()
    summary = sensitivity.loss_sensitivity(runs, curves).set_index("strategy")
    for strategy in ("none", "clip_norm"):
        row = summary.loc[strategy]
        assert row["sensitivity"] == pytest.approx(np.mean([by_hand(strategy, s) for s in SEEDS]))
        assert row["low"] <= row["sensitivity"] <= row["high"] and row["low"] < row["high"]
        assert row["seeds"] == 5 and row["undefined"] == 0 and row["grid_lrs"] == 3
    few = sensitivity.loss_sensitivity(*sweep(range(MIN_UNITS - 1)))
    assert few["low"].isna().all() and few["high"].isna().all() and few["sensitivity"].notna().all()


def test_thresholds_held_fixed_give_one_row_each():
    runs, curves = sweep()
    held = sensitivity.loss_sensitivity(runs, curves, within=["clip_norm"], n_resamples=99)
    clip = held[held["strategy"] == "clip_norm"].set_index("clip_norm")
    assert sorted(clip.index) == [0.5, 2.0]
    # clip_norm 0.5 never diverges: per seed, the mean of its finals minus the one at lr 0.01
    expected = np.mean([np.mean([final("clip_norm", 0.5, lr, 0) for lr in LRS]) - final("clip_norm", 0.5, 0.01, 0)])
    assert clip.loc[0.5, "sensitivity"] == pytest.approx(expected)


def test_a_seed_whose_every_lr_diverged_is_undefined():
    runs, curves = sweep()
    hit = ((runs["strategy"] == "none") & (runs["seed"] == 3)).to_numpy()
    runs.loc[hit, "diverged"], runs.loc[hit, "diverged_step"] = True, 5
    curves = curves[~(curves["run_id"].isin(runs.loc[hit, "run_id"]) & (curves["step"] == STEPS))]
    per_seed = sensitivity.seed_sensitivities(runs, curves).set_index(["strategy", "seed"])
    assert np.isnan(per_seed.loc[("none", 3), "sensitivity"]) and per_seed.loc[("none", 3), "best_final"] == np.inf
    row = sensitivity.loss_sensitivity(runs, curves, n_resamples=99).set_index("strategy").loc["none"]
    assert row["seeds"] == 4 and row["undefined"] == 1
    assert row["sensitivity"] == pytest.approx(np.mean([by_hand("none", s) for s in SEEDS if s != 3]))


def test_missing_endpoints_are_an_error():
    runs, curves = sweep()
    alive = runs.loc[~runs["diverged"], "run_id"].iloc[0]
    with pytest.raises(ValueError, match="last step of 1 run"):
        sensitivity.endpoint_losses(runs, curves[~((curves["run_id"] == alive) & (curves["step"] == STEPS))])
    with pytest.raises(ValueError, match="step 0 of 1 run"):
        sensitivity.endpoint_losses(runs, curves[~((curves["run_id"] == alive) & (curves["step"] == 0))])
    with pytest.raises(ValueError, match="needs the curves"):
        sensitivity.endpoint_losses(runs, None)


def test_a_curve_reader_serves_as_well_as_a_table():
    runs, curves = sweep()

    def reader(run_ids):
        return curves[curves["run_id"].isin(run_ids)]

    assert sensitivity.endpoint_losses(runs, reader).equals(sensitivity.endpoint_losses(runs, curves))


def test_regression_losses_are_in_mse():
    runs, curves = sweep()
    runs = runs.assign(task="adding", metric="mse", higher_is_better=False)
    assert set(sensitivity.loss_sensitivity(runs, curves, n_resamples=99)["loss_unit"]) == {"MSE"}


def test_the_stable_range_table_shows_the_sensitivity_beside_each_range():
    runs, curves = sweep()
    both = sensitivity.stable_range_and_sensitivity(runs, curves).set_index("strategy")
    ranges = stability.stable_lr_range(runs).set_index("strategy")
    assert both[ranges.columns].equals(ranges)
    assert both.loc["none", "sensitivity"] == pytest.approx(np.mean([by_hand("none", s) for s in SEEDS]))
    tex = tables.table_lr_range(runs, curves=curves)
    assert r"\scriptsize LR sensitivity in & & \scriptsize nats \\" in tex
    none = both.loc["none"]
    assert (f"\\makecell{{0.01--0.1\\\\ \\scriptsize {none['sensitivity']:.2g} [{none['sensitivity_low']:.2g}, "
            f"{none['sensitivity_high']:.2g}]}}") in tex
    plain = tables.table_lr_range(runs)
    assert "LR sensitivity" not in plain and r"& 0.01--0.1 \\" in plain
