"""Tests of the analysis statistics (vocabulary, tuning, inference, summaries, stability, survival, curves,
ranking) on small tables with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats as sps

from analysis import inference, layout, ranking, stability, summaries, survival, tuning, vocabulary
from analysis.curves import explosion_traces, spikes_and_clips

TASKS = {  # metric, higher_is_better, chance_metric
    "mnist1d": ("accuracy", True, 0.1),
    "adding": ("mse", False, 1 / 6),
}


def make_runs(rows: list[dict]) -> pd.DataFrame:
    """A runs table: each row's given fields over defaults (mnist1d/mlp/sgd, strategy none, lr 0.1, seed 0)."""
    records = []
    for i, row in enumerate(rows):
        task = row.get("task", "mnist1d")
        metric, higher, chance = TASKS[task]
        record = {
            "run_id": f"run{i}", "sweep": "test", "task": task, "model": "mlp", "family": "mlp",
            "optimizer": "sgd", "strategy": "none", "lr": 0.1, "seed": 0, "metric": metric,
            "higher_is_better": higher, "chance_metric": chance, "chance_loss": 2.3, "diverged": False,
            "diverged_step": -1, "final_train_loss": 1.0, "best_val_metric": 0.5, "test_metric_at_best_val": 0.5,
            "steps": 100, "wall_time_s": 10.0, "clip_norm": np.nan, "init_gain": 1.0, **row,
        }
        if record["diverged"] and "diverged_step" not in row:
            record["diverged_step"] = 50
        record["cell"] = "-".join(record[k] for k in ("task", "model", "optimizer", "strategy"))
        records.append(record)
    return pd.DataFrame(records)


def seeds(values: list[float], **fields) -> list[dict]:
    """One row per seed with best_val_metric = test_metric_at_best_val = value; NaN marks a diverged seed."""
    return [{**fields, "seed": s, "best_val_metric": v, "test_metric_at_best_val": v, "diverged": bool(np.isnan(v))}
            for s, v in enumerate(values)]


NAN = float("nan")


@pytest.fixture
def tuning_runs() -> pd.DataFrame:
    return make_runs([
        *seeds([0.5, 0.6, 0.7], strategy="none", lr=0.1),
        *seeds([0.9, 0.9, NAN], strategy="none", lr=1.0),  # better mean, but a diverged seed
        *seeds([0.8, 0.8, 0.8], strategy="clip_norm", lr=1.0, clip_norm=1.0),
        *seeds([0.8, 0.8, 0.8], strategy="clip_norm", lr=1.0, clip_norm=0.5),  # tie: the smaller clip_norm wins
        *seeds([NAN, NAN, NAN], strategy="clip_norm", lr=10.0, clip_norm=0.5),
        *seeds([NAN, NAN, NAN], strategy="agc", lr=1.0),  # every seed of every setting diverged
        *seeds([NAN, NAN, NAN], strategy="agc", lr=0.1),
        *seeds([0.2, 0.2, 0.2], strategy="none", task="adding", lr=0.1),
        *seeds([0.1, 0.1, 0.3], strategy="none", task="adding", lr=1.0),  # lower MSE wins
    ])


def test_columns_match_the_results_schema():
    from bench.columns import RUNS_COLUMNS
    from bench.sweep import stress_dials

    assert vocabulary.RUN_COLUMNS == tuple(RUNS_COLUMNS)
    assert vocabulary.STRESS_DIALS == tuple(stress_dials())
    assert {"init_gain", "recurrent_radius", "spike_rate"} <= set(vocabulary.STRESS_DIALS)
    assert "warmup_steps" not in vocabulary.STRESS_DIALS  # tuned like the learning rate: a setting column


def test_problem_and_setting_columns(tuning_runs):
    assert vocabulary.panel_columns(tuning_runs) == ["task", "model", "optimizer", "init_gain"]
    assert vocabulary.setting_columns(tuning_runs) == ["lr", "clip_norm"]
    assert vocabulary.setting_columns(vocabulary.score_runs(tuning_runs)) == ["lr", "clip_norm"]


def test_score_runs_counts_failures_as_worst_and_at_chance():
    runs = make_runs([
        {"best_val_metric": 0.7, "test_metric_at_best_val": 0.6},
        {"diverged": True, "best_val_metric": 0.9, "test_metric_at_best_val": 0.9},  # diverged after a good eval
        {"best_val_metric": NAN, "test_metric_at_best_val": NAN},
        {"task": "adding", "best_val_metric": 0.2, "test_metric_at_best_val": 0.3},
        {"task": "adding", "diverged": True, "best_val_metric": NAN, "test_metric_at_best_val": NAN},
    ])
    scored = vocabulary.score_runs(runs)
    assert scored["failed"].tolist() == [False, True, True, False, True]
    np.testing.assert_allclose(scored["val_score"], [0.7, -np.inf, -np.inf, -0.2, -np.inf])
    np.testing.assert_allclose(scored["test_score"], [0.6, 0.1, 0.1, 0.3, 1 / 6])
    assert "failed" not in runs.columns


def test_best_tuned_prefers_fewer_failures_then_mean_then_smaller_setting(tuning_runs):
    best = tuning.best_tuned(tuning_runs).set_index(["task", "strategy"])
    assert best.loc[("mnist1d", "none"), "lr"] == 0.1
    assert best.loc[("mnist1d", "none"), "val_mean"] == pytest.approx(0.6)
    assert best.loc[("mnist1d", "clip_norm"), ["lr", "clip_norm"]].tolist() == [1.0, 0.5]
    agc = best.loc[("mnist1d", "agc")]
    assert (agc["lr"], agc["failed"], agc["seeds"]) == (0.1, 3, 3)
    assert math.isnan(agc["val_mean"])
    assert best.loc[("adding", "none"), "lr"] == 1.0
    assert best.loc[("adding", "none"), "val_mean"] == pytest.approx(0.5 / 3)
    assert len(best) == 4


def test_best_tuned_within_lr_chooses_per_learning_rate(tuning_runs):
    at_lr = tuning.best_tuned(tuning_runs, within=["lr"]).set_index(["task", "strategy", "lr"])
    clip = at_lr.loc[("mnist1d", "clip_norm", 1.0)]
    assert (clip["clip_norm"], clip["candidates"], clip["seeds"]) == (0.5, 2, 3)
    assert at_lr.loc[("mnist1d", "clip_norm", 10.0), ["diverged", "candidates"]].tolist() == [3, 1]
    assert at_lr.loc[("mnist1d", "none", 1.0), ["failed", "diverged"]].tolist() == [1, 1]
    assert len(at_lr) == 8  # one row per panel, strategy and lr
    runs = tuning.best_tuned_runs(tuning_runs, within=["lr"])
    assert (runs.groupby(["task", "strategy", "lr"])["seed"].size() == 3).all()


def test_tuning_budget_counts_settings_per_panel(tuning_runs):
    budget = tuning.tuning_budget(tuning_runs).set_index(["task", "strategy"])
    columns = ["lrs", "hyperparameters", "settings", "seeds"]
    assert budget.loc[("mnist1d", "clip_norm"), columns].tolist() == [2, 2, 3, 3]
    assert budget.loc[("mnist1d", "none"), columns].tolist() == [2, 1, 2, 3]


def test_default_settings_and_runs_use_the_registered_defaults():
    from bench import strategies

    assert strategies.lookup("clip_norm").options["clip_norm"] == 1.0
    assert strategies.lookup("agc").options["agc_clipping"] == 0.01
    runs = make_runs([
        *seeds([0.5, 0.5], strategy="none", lr=0.1), *seeds([0.6, 0.6], strategy="none", lr=1.0),
        *seeds([0.7, 0.7], strategy="clip_norm", lr=0.1, clip_norm=0.5),
        *seeds([0.6, 0.6], strategy="clip_norm", lr=0.1, clip_norm=1.0),  # the default: not the best
        *seeds([0.8, 0.8], strategy="clip_norm", lr=1.0, clip_norm=0.5),
        *seeds([0.7, 0.7], strategy="agc", lr=0.1, agc_clipping=0.04),  # default 0.01 not trained
    ])
    settings = tuning.default_settings(runs).set_index("strategy")
    assert settings.loc["clip_norm", "default"] == {"clip_norm": 1.0} and settings.loc["clip_norm", "in_grid"]
    assert settings.loc["none", "default"] == {} and settings.loc["none", "in_grid"]
    assert not settings.loc["none", "tuned"] and settings.loc["agc", "tuned"]
    assert not settings.loc["agc", "in_grid"]
    fixed = tuning.default_runs(runs)
    assert set(fixed["strategy"]) == {"none", "clip_norm"}
    assert (fixed.loc[fixed["strategy"] == "clip_norm", "clip_norm"] == 1.0).all()
    assert (fixed["strategy"] == "none").sum() == 4
    best = tuning.best_tuned(fixed).set_index("strategy")
    assert best.loc["clip_norm", "val_mean"] == pytest.approx(0.6)  # tuned: 0.8 at clip_norm 0.5
    custom = tuning.default_settings(runs, defaults={"agc": {"agc_clipping": 0.04}}).set_index("strategy")
    assert custom.loc["agc", "in_grid"] and not custom.loc["clip_norm", "in_grid"]
    warm = pd.concat([runs.assign(warmup_steps=0.0), runs.assign(warmup_steps=10.0)], ignore_index=True)
    warm_settings = tuning.default_settings(warm).set_index("strategy")  # warm-up is tuned like the lr
    assert not warm_settings.loc["none", "tuned"] and warm_settings.loc["none", "in_grid"]
    assert warm_settings.loc["clip_norm", "default"] == {"clip_norm": 1.0}
    assert len(tuning.default_runs(warm)) == 2 * len(fixed)


def test_best_tuned_keeps_stress_dials_apart():
    runs = make_runs([*seeds([0.5, 0.5], lr=0.1, init_gain=1.0), *seeds([0.9, 0.9], lr=1.0, init_gain=1.0),
                      *seeds([0.6, 0.6], lr=0.1, init_gain=2.0), *seeds([NAN, 0.9], lr=1.0, init_gain=2.0)])
    best = tuning.best_tuned(runs).set_index("init_gain")["lr"]
    assert best.to_dict() == {1.0: 1.0, 2.0: 0.1}


def test_best_tuned_runs_are_the_chosen_settings_seeds(tuning_runs):
    best = tuning.best_tuned_runs(tuning_runs)
    chosen = best.groupby(["task", "strategy"])[["lr", "clip_norm"]].nunique(dropna=False)
    assert (chosen == 1).all().all()
    assert len(best) == 12
    agc = best[best["strategy"] == "agc"]
    assert agc["test_score"].tolist() == [0.1, 0.1, 0.1]


def test_iqm_is_the_trimmed_mean():
    assert inference.iqm(np.array([1, 2, 3, 4, 5, 6, 7, 100.0])) == pytest.approx(4.5)
    assert inference.iqm(np.array([1.0, 2.0, 30.0, 4.0])) == pytest.approx(3.0)


def test_bootstrap_ci_edge_cases_and_agreement_with_scipy():
    low, high = inference.bootstrap_ci([0.7])
    assert math.isnan(low) and math.isnan(high)
    assert inference.bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    values = np.array([0.1, 0.4, 0.35, 0.8, 0.5])
    low, high = inference.bootstrap_ci(values, n_resamples=999, seed=3)
    direct = sps.bootstrap((values,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(3))
    assert (low, high) == (direct.confidence_interval.low, direct.confidence_interval.high)
    assert low < values.mean() < high
    assert inference.bootstrap_ci(values, n_resamples=999, seed=3) == (low, high)
    iqm_low, iqm_high = inference.bootstrap_ci(values, statistic=inference.iqm, n_resamples=999)
    assert iqm_low <= inference.iqm(values) <= iqm_high


def test_weighted_bootstrap_resamples_units_as_scipy_does():
    counts, sizes = np.array([3.0, 0, 5, 1, 4]), np.array([10.0, 8, 10, 9, 10])
    share = inference.cluster_share(counts, sizes, n_resamples=999, seed=2)
    direct = sps.bootstrap((counts, sizes), lambda k, n, axis=-1: k.sum(axis=axis) / n.sum(axis=axis), paired=True,
                           vectorized=True, n_resamples=999, method="percentile", rng=np.random.default_rng(2))
    assert share == (direct.confidence_interval.low, direct.confidence_interval.high)  # the same resamples
    values = np.array([0.2, 0.9, 0.4, 0.5, 0.1, 0.7])
    low, high = inference.weighted_bootstrap([values.size], lambda w: w[0] @ values / w[0].sum(axis=1),
                                             n_resamples=999, seed=1)
    assert (low, high) == pytest.approx(inference.bootstrap_ci(values, n_resamples=999, seed=1))
    both = inference.weighted_bootstrap([6, 3], lambda w: np.stack([w[0] @ values, w[1] @ values[:3]], axis=1))
    assert both[0].shape == (2,) and np.all(both[0] <= both[1])  # two statistics at once, strata apart
    assert all(math.isnan(bound) for bound in inference.weighted_bootstrap([6, 1], lambda w: w[0].sum(axis=1)))


def test_weighted_bootstrap_gives_a_second_interval_from_the_same_resamples():
    values = np.array([0.2, 0.9, 0.4, 0.5, 0.1, 0.7])
    calls = []

    def mean(weights: list[np.ndarray]) -> np.ndarray:
        calls.append(weights[0].shape[0])
        return weights[0] @ values / weights[0].sum(axis=1)

    low, high, p, low90, high90 = inference.weighted_bootstrap([6], mean, n_resamples=999, seed=1, null=0.5,
                                                               also=0.90)
    assert sum(calls) == 999  # the statistic is not computed again for the second interval
    assert (low, high, p) == inference.weighted_bootstrap([6], mean, n_resamples=999, seed=1, null=0.5)
    assert (low90, high90) == inference.weighted_bootstrap([6], mean, confidence=0.90, n_resamples=999, seed=1)
    assert low < low90 < high90 < high
    assert all(math.isnan(v) for v in inference.weighted_bootstrap([1], mean, null=0.0, also=0.90))
    assert len(inference.weighted_bootstrap([1], mean, null=0.0, also=0.90)) == 5


def test_smallest_pvalue_is_where_a_test_cannot_reject():
    differences = np.array([0.3, 0.1, 0.4, 0.2, 0.5])  # every sign alike, no ties: the exact extreme
    assert inference.smallest_pvalue("wilcoxon", 5) == sps.wilcoxon(differences).pvalue == 2 / 2**5
    assert inference.smallest_pvalue("wilcoxon", 5, alternative="greater") == sps.wilcoxon(
        differences, alternative="greater").pvalue
    assert inference.smallest_pvalue("wilcoxon", 4) > 0.05  # four pairs can never reach 5%
    apart = sps.mannwhitneyu([1.0, 2, 3], [4.0, 5, 6], method="exact").pvalue
    assert inference.smallest_pvalue("mannwhitneyu", 3, 3) == pytest.approx(apart) == 0.1
    with pytest.raises(ValueError, match="allowed"):
        inference.smallest_pvalue("ttest", 5)


def test_equivalence_within_a_margin():
    rng = np.random.default_rng(0)
    near = rng.normal(0.0, 0.01, 12)
    assert inference.equivalence_test(near, margin=0.05) < 0.01  # both one-sided tests reject
    assert inference.equivalence_test(near + 0.05, margin=0.05) > 0.4  # at the margin: not shown within it
    assert inference.within_margin(-0.01, 0.02, 0.05) and not inference.within_margin(-0.01, 0.06, 0.05)
    with pytest.raises(ValueError, match="above 0"):
        inference.equivalence_test(near, margin=0.0)


def test_seed_summary_of_best_tuned_runs(tuning_runs):
    summary = summaries.seed_summary(tuning.best_tuned_runs(tuning_runs)).set_index(["task", "strategy"])
    none = summary.loc[("mnist1d", "none")]
    assert (none["seeds"], none["failed"], none["lr"]) == (3, 0, 0.1)
    assert none["mean"] == pytest.approx(0.6)
    assert none["iqm"] == pytest.approx(0.6)
    assert none["low"] < 0.6 < none["high"]
    agc = summary.loc[("mnist1d", "agc")]
    assert agc["failed"] == 3
    assert (agc["mean"], agc["low"], agc["high"]) == pytest.approx((0.1, 0.1, 0.1))
    assert not summary.loc[("adding", "none"), "higher_is_better"]
    single = summaries.seed_summary(vocabulary.score_runs(make_runs([{"test_metric_at_best_val": 0.4}])))
    assert single["mean"].iloc[0] == 0.4
    assert single[["low", "high"]].isna().all(axis=None)


def test_divergence_rates_with_wilson_interval(tuning_runs):
    rates = summaries.divergence_rates(tuning_runs).set_index(["task", "strategy", "lr", "clip_norm"])
    row = rates.loc[("mnist1d", "none", 1.0, NAN)]
    assert (row["runs"], row["diverged"]) == (3, 1)
    z, n, k = sps.norm.ppf(0.975), 3, 1
    centre = (k + z**2 / 2) / (n + z**2)
    half = z / (n + z**2) * math.sqrt(k * (n - k) / n + z**2 / 4)
    assert (row["low"], row["high"]) == pytest.approx((centre - half, centre + half))
    everything = rates.loc[("mnist1d", "agc", 1.0, NAN)]
    assert (everything["rate"], everything["high"]) == (1.0, pytest.approx(1.0))
    assert len(rates) == 9


def clustered_runs() -> pd.DataFrame:
    """Six problems of 20 runs: on three every run diverges, on three none does (pooled rate 0.5)."""
    return make_runs([{"task": "mnist1d" if i < 3 else "adding", "model": f"m{i}", "seed": s, "diverged": i < 3}
                      for i in range(6) for s in range(20)])


def test_cluster_bootstrap_interval_is_wider_than_pooled_wilson_on_clustered_data():
    runs = clustered_runs()
    clustered = summaries.cluster_rate(runs, "diverged", by=["strategy"]).iloc[0]
    assert (clustered["clusters"], clustered["rows"], clustered["count"]) == (6, 120, 60)
    assert clustered["rate"] == 0.5
    pooled = summaries.divergence_rates(runs, by=["strategy"]).iloc[0]
    assert pooled["rate"] == 0.5
    assert pooled["high"] - pooled["low"] < 0.2  # 120 runs taken as independent
    assert clustered["high"] - clustered["low"] > 2 * (pooled["high"] - pooled["low"])  # 6 problems are
    direct = sps.bootstrap((np.array([20.0, 20, 20, 0, 0, 0]), np.full(6, 20.0)),
                           lambda k, n, axis=-1: k.sum(axis=axis) / n.sum(axis=axis), paired=True, vectorized=True,
                           n_resamples=9999, method="percentile", rng=np.random.default_rng(0))
    assert (clustered["low"], clustered["high"]) == pytest.approx(
        (direct.confidence_interval.low, direct.confidence_interval.high))
    even = summaries.cluster_rate(runs.assign(diverged=runs["seed"] < 5), "diverged").iloc[0]
    assert (even["rate"], even["low"], even["high"]) == (0.25, 0.25, 0.25)  # every cluster alike
    one = summaries.cluster_rate(runs[runs["model"] == "m0"], "diverged").iloc[0]
    assert one["rate"] == 1.0 and math.isnan(one["low"]) and math.isnan(one["high"])


def grid_runs(rates: list[float], **fields) -> list[dict]:
    """Two seeds per learning rate 1e-3 ... 10, with the given divergence rate (0, 0.5 or 1)."""
    rows = []
    for lr, rate in zip([0.001, 0.01, 0.1, 1.0, 10.0], rates, strict=True):
        rows += [{**fields, "lr": lr, "seed": s, "diverged": s < 2 * rate} for s in range(2)]
    return rows


def test_stable_lr_range():
    runs = make_runs([
        *grid_runs([0, 0, 1, 0, 0], strategy="none"),  # two spans of ratio 10: the lower one
        *grid_runs([0, 0, 0, 0.5, 1], strategy="clip_norm", clip_norm=1.0),
        *grid_runs([1, 1, 1, 1, 1], strategy="agc"),
    ])
    ranges = stability.stable_lr_range(runs).set_index("strategy")
    assert ranges.loc["none", ["lo", "hi", "ratio", "stable_lrs", "grid_lrs"]].tolist() == [0.001, 0.01, 10, 2, 5]
    assert ranges.loc["clip_norm", ["lo", "hi", "stable_lrs"]].tolist() == [0.001, 0.1, 3]
    assert ranges.loc["clip_norm", "ratio"] == pytest.approx(100)
    assert ranges.loc["agc", "stable_lrs"] == 0
    assert ranges.loc["agc", ["lo", "hi", "ratio"]].isna().all()
    lenient = stability.stable_lr_range(runs, max_rate=0.5).set_index("strategy")
    assert lenient.loc["clip_norm", ["lo", "hi", "stable_lrs"]].tolist() == [0.001, 1.0, 4]
    single = stability.stable_lr_range(make_runs([{"lr": 0.3}]))
    assert single[["lo", "hi", "ratio", "stable_lrs"]].iloc[0].tolist() == [0.3, 0.3, 1.0, 1]


def test_stability_is_judged_per_setting_with_equal_runs_per_point():
    """At every lr, a strategy's best setting there: its two seeds, whether it has one threshold or three."""
    runs = make_runs([
        *grid_runs([0, 0, 0.5, 1, 1], strategy="none"),
        *grid_runs([0, 0, 0, 0, 0.5], strategy="clip_norm", clip_norm=1.0),
        *grid_runs([0, 0.5, 0.5, 0.5, 1], strategy="clip_norm", clip_norm=4.0),  # a bad threshold
        *grid_runs([1, 1, 1, 1, 1], strategy="clip_norm", clip_norm=16.0),  # a hopeless one
    ])
    points = stability.stability_points(runs).set_index(["strategy", "lr"])
    assert (points["seeds"] == 2).all()  # the same number of runs per point for every strategy
    assert points.xs("clip_norm")["candidates"].tolist() == [3] * 5
    assert points.xs("clip_norm")["clip_norm"].tolist() == [1.0] * 5
    assert points.xs("clip_norm")["stable"].tolist() == [True, True, True, True, False]
    assert points.xs("none")["stable"].tolist() == [True, True, False, False, False]
    pooled = summaries.divergence_rates(runs, by=["strategy", "lr"]).set_index(["strategy", "lr"])
    assert (pooled.xs("clip_norm")["runs"] == 6).all() and (pooled.xs("none")["runs"] == 2).all()
    assert not (pooled.xs("clip_norm")["diverged"] == 0).any()  # pooled, clip_norm would have no stable lr
    ranges = stability.stable_lr_range(runs).set_index("strategy")
    assert ranges.loc["clip_norm", ["lo", "hi", "stable_lrs"]].tolist() == [0.001, 1.0, 4]
    per_threshold = stability.stable_lr_range(runs, within=["clip_norm"]).set_index(["strategy", "clip_norm"])
    assert per_threshold.loc[("clip_norm", 4.0), ["lo", "hi", "stable_lrs"]].tolist() == [0.001, 0.001, 1]
    assert per_threshold.loc[("clip_norm", 16.0), "stable_lrs"] == 0


def test_lr_profile_takes_the_best_setting_at_each_lr_not_the_pooled_thresholds():
    runs = make_runs([
        *seeds([0.8, 0.8], strategy="clip_norm", lr=0.1, clip_norm=1.0),
        *seeds([0.2, 0.2], strategy="clip_norm", lr=0.1, clip_norm=4.0),
        *seeds([0.6, NAN], strategy="clip_norm", lr=1.0, clip_norm=1.0),
        *seeds([0.3, 0.3], strategy="clip_norm", lr=1.0, clip_norm=4.0),  # no failed seed: chosen
    ])
    profile = stability.lr_profile(runs).set_index("lr")
    assert profile["clip_norm"].tolist() == [1.0, 4.0]
    assert profile["mean"].tolist() == pytest.approx([0.8, 0.3])  # pooled thresholds: 0.5 and 0.3
    assert profile["seeds"].tolist() == [2, 2]


def test_lr_sensitivity_counts_diverged_at_chance_and_normalises_the_gap():
    runs = make_runs([
        *seeds([0.8, 0.8], lr=0.1), *seeds([0.5, 0.7], lr=1.0), *seeds([NAN, NAN], lr=10.0),
        *seeds([0.2, 0.2], task="adding", lr=0.1), *seeds([0.5, 0.5], task="adding", lr=1.0),
    ])
    result = stability.lr_sensitivity(runs).set_index("task")
    assert result.loc["mnist1d", ["grid_lrs", "best_lr"]].tolist() == [3, 0.1]
    assert result.loc["mnist1d", "best_mean"] == pytest.approx(0.8)
    assert result.loc["mnist1d", "sensitivity"] == pytest.approx((0 + 0.2 + 0.7) / 3)  # accuracy points
    assert result.loc["mnist1d", "normalised"] == pytest.approx((0 + 0.2 + 0.7) / 3 / (0.8 - 0.1))
    assert result.loc["adding", "best_lr"] == 0.1
    assert result.loc["adding", "best_mean"] == pytest.approx(0.2)
    assert result.loc["adding", "sensitivity"] == pytest.approx(0.15)  # MSE units
    assert result.loc["adding", "normalised"] == pytest.approx(0.15 / abs(0.2 - 1 / 6))
    flat = stability.lr_sensitivity(make_runs(seeds([0.4, 0.4], lr=0.1) + seeds([0.4, 0.4], lr=1.0)))
    assert flat["sensitivity"].iloc[0] == 0 and flat["normalised"].iloc[0] == 0


def test_time_to_divergence_and_kaplan_meier():
    runs = make_runs([
        {"strategy": "none", "diverged": True, "diverged_step": 3},
        {"strategy": "none", "diverged": True, "diverged_step": 5},
        {"strategy": "none", "steps": 6},
        {"strategy": "none", "steps": 10},
        {"strategy": "agc", "diverged": True, "diverged_step": 2, "seed": 0},
        {"strategy": "agc", "diverged": True, "diverged_step": 4, "seed": 1},
        {"strategy": "clip_norm", "steps": 10},
    ])
    events = survival.time_to_divergence(runs)
    assert events["time"].tolist() == [3, 5, 6, 10, 2, 4, 10]
    assert events["observed"].tolist() == [True, True, False, False, True, True, False]
    curves = survival.kaplan_meier(events)
    assert curves.columns.tolist() == ["strategy", "time", "survival", "lower", "upper"]
    none = curves[curves["strategy"] == "none"]
    assert none["time"].tolist() == [3, 5, 6, 10]
    np.testing.assert_allclose(none["survival"], [0.75, 0.5, 0.5, 0.5])
    se = 0.75 * math.sqrt(1 / (4 * 3))  # Greenwood
    z = sps.norm.ppf(0.975)
    assert none["lower"].iloc[0] == pytest.approx(0.75 - z * se)
    assert none["upper"].iloc[0] == pytest.approx(min(1.0, 0.75 + z * se))
    agc = curves[curves["strategy"] == "agc"]  # every run diverged
    np.testing.assert_allclose(agc["survival"], [0.5, 0.0])
    assert math.isnan(agc["upper"].iloc[-1])
    never = curves[curves["strategy"] == "clip_norm"]  # one run, censored
    assert never[["time", "survival", "lower", "upper"]].iloc[0].tolist() == [10, 1, 1, 1]


def test_steps_to_target_censors_at_the_budget():
    runs = make_runs([
        {"run_id": "fast"}, {"run_id": "never"}, {"run_id": "blown", "diverged": True, "diverged_step": 15},
        {"run_id": "mse", "task": "adding"}, {"run_id": "no_curve"},
        {"run_id": "late_blow", "diverged": True, "diverged_step": 25},  # at target at step 10, then diverged
    ])
    evals = {"fast": [0.1, 0.6, 0.9], "never": [0.1, 0.2, 0.3], "blown": [0.1, 0.4], "mse": [1.0, 0.5, 0.05],
             "late_blow": [0.1, 0.7, 0.8]}
    curves = pd.DataFrame([{"run_id": r, "step": 10 * i, "val_metric": v}
                           for r, values in evals.items() for i, v in enumerate(values)])
    events = survival.steps_to_target(runs, curves, {"mnist1d": 0.5, "adding": 0.1}).set_index("run_id")
    assert events["time"].to_dict() == {"fast": 10, "never": 100, "blown": 100, "mse": 20, "no_curve": 100,
                                        "late_blow": 100}
    assert events["observed"].to_dict() == {"fast": True, "never": False, "blown": False, "mse": True,
                                            "no_curve": False, "late_blow": False}
    with pytest.raises(ValueError, match="adding"):
        survival.steps_to_target(runs, curves, {"mnist1d": 0.5})
    one_target = survival.steps_to_target(runs, curves, 0.95)  # out of reach for accuracy, easy for MSE
    assert one_target["observed"].tolist() == [False, False, False, True, False, False]
    assert one_target["time"].tolist() == [100, 100, 100, 10, 100, 100]


def test_weighted_survival_with_unit_weights_is_scipys_kaplan_meier():
    rng = np.random.default_rng(1)
    times = rng.integers(1, 20, 30).astype(float)
    observed = rng.random(30) < 0.6
    grid = np.arange(0.0, 21.0)
    sf = sps.ecdf(sps.CensoredData(uncensored=times[observed], right=times[~observed])).sf
    ours = survival._weighted_survival(times, observed, np.ones((2, 30)), grid)
    np.testing.assert_allclose(ours, np.tile(sf.evaluate(grid), (2, 1)))
    doubled = np.ones(30)
    doubled[:5] = 2  # counting a run twice is the same as listing it twice
    listed = np.concatenate([times, times[:5]]), np.concatenate([observed, observed[:5]])
    sf = sps.ecdf(sps.CensoredData(uncensored=listed[0][listed[1]], right=listed[0][~listed[1]])).sf
    weighted = survival._weighted_survival(times, observed, doubled[None, :], grid)[0]
    np.testing.assert_allclose(weighted, sf.evaluate(grid))


def test_kaplan_meier_cluster_band_resamples_seeds():
    """Seed 0's four runs all diverge at step 5, seed 1's never: the curve depends on which seeds are drawn."""
    runs = make_runs([{"seed": s, "lr": lr, "diverged": s == 0, "diverged_step": 5 if s == 0 else -1, "steps": 10}
                      for s in (0, 1) for lr in (0.01, 0.1, 1.0, 10.0)])
    events = survival.time_to_divergence(runs)
    greenwood = survival.kaplan_meier(events).set_index("time")
    clustered = survival.kaplan_meier(events, cluster="seed").set_index("time")
    assert clustered["survival"].to_dict() == greenwood["survival"].to_dict() == {5.0: 0.5, 10.0: 0.5}
    # resamples {0, 0}, {0, 1}, {1, 1}: survival 0, 0.5, 1 at step 5, drawn 1/4, 1/2, 1/4 of the time
    assert (clustered.loc[5.0, "lower"], clustered.loc[5.0, "upper"]) == (0.0, 1.0)
    assert clustered.loc[5.0, "upper"] - clustered.loc[5.0, "lower"] > greenwood.loc[5.0, "upper"] - greenwood.loc[
        5.0, "lower"]
    single = survival.kaplan_meier(events[events["seed"] == 1], cluster="seed")
    assert single[["lower", "upper"]].isna().all(axis=None)  # one cluster: no interval


def spiky_curves() -> pd.DataFrame:
    """Run ``a``: flat norms, a 10x spike at step 12, a NaN loss and norm at step 16; ``b``: a 3x bump; ``c``: short.

    ``b`` and ``c`` end with the eval-only row at step == steps.
    """
    a = [1.0] * 12 + [10.0, 1.0, 1.0, 1.0]
    b = [1.0, 100.0] + [1.0] * 8 + [3.0] + [1.0] * 5  # the early 100 falls in warmup
    frames = [pd.DataFrame({"run_id": r, "step": np.arange(len(v)), "train_loss": 1.0, "grad_norm_pre": v,
                            "clipped": np.arange(len(v)) % 4 == 0, "update_ratio": 0.01})
              for r, v in (("a", a), ("b", b), ("c", [1.0, 2.0]))]
    ends = pd.DataFrame({"run_id": ["a", "b", "c"], "step": [16, 16, 2], "train_loss": NAN, "grad_norm_pre": NAN,
                         "clipped": False, "update_ratio": [0.0, NAN, NAN]})  # a diverges; b, c: eval-only rows
    return pd.concat([*frames, ends], ignore_index=True).sample(frac=1.0, random_state=0)  # any order


def test_spikes_and_clips():
    result = spikes_and_clips(spiky_curves(), factor=6.0, window=5, warmup=3).set_index("run_id")
    assert result.loc["a", ["steps", "spikes", "peak_step"]].tolist() == [17, 2, 16]
    assert result.loc["a", "max_ratio"] == np.inf
    assert result.loc["a", "clip_rate"] == pytest.approx(4 / 17)
    assert result.loc["b", ["steps", "spikes", "peak_step"]].tolist() == [16, 0, 10]
    assert result.loc["b", "clip_rate"] == pytest.approx(4 / 16)
    assert result.loc["b", "max_ratio"] == pytest.approx(3.0)
    assert result.loc["c", ["spikes", "peak_step"]].tolist() == [0, -1]
    assert math.isnan(result.loc["c", "max_ratio"])


def test_explosion_traces_window_the_largest_spikes():
    runs = make_runs([{"run_id": "a", "diverged": True, "diverged_step": 16}, {"run_id": "b", "seed": 1},
                      {"run_id": "c", "seed": 2}, {"run_id": "x", "strategy": "agc"}])
    traces = explosion_traces(runs, spiky_curves(), {"strategy": "none", "clip_norm": NAN}, n=1,
                                    before=3, after=2, window=5, warmup=3)
    assert set(traces["run_id"]) == {"a"}
    assert traces["step"].tolist() == [13, 14, 15, 16]
    assert traces["offset"].tolist() == [-3, -2, -1, 0]
    assert {"running_median", "spike_ratio", "strategy", "lr", "seed", "diverged"} <= set(traces.columns)
    both = explosion_traces(runs, spiky_curves(), n=5, before=1, after=1, window=5, warmup=3)
    assert both.groupby("run_id")["step"].agg(list).to_dict() == {"a": [15, 16], "b": [9, 10, 11]}


def test_holm_by_hand():
    adjusted = inference.holm([0.01, 0.04, NAN, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, NAN, 0.06, 0.02])
    np.testing.assert_allclose(inference.holm([0.5, 0.9]), [1.0, 1.0])
    assert inference.holm([]).size == 0


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    np.testing.assert_allclose(inference.holm(p), multitest.multipletests(p, method="holm")[1])


@pytest.fixture
def test_runs() -> pd.DataFrame:
    base = [0.50, 0.52, 0.48, 0.55, 0.45]
    return make_runs([
        *seeds(base, strategy="none"),
        *seeds([b + d for b, d in zip(base, [0.01, 0.02, 0.03, 0.04, 0.05], strict=True)], strategy="clip_norm"),
        *seeds([NAN] * 5, strategy="agc"),
        *seeds(base, strategy="same"),
        *seeds([b + d for b, d in zip(base, [0, 0, 0.02, 0, 0], strict=True)], strategy="partly"),
        *seeds([0.6, 0.3, 0.5], strategy="short"),
        *seeds([0.3], task="adding", strategy="none"), *seeds([0.2], task="adding", strategy="clip_norm"),
    ])


def test_paired_tests(test_runs):
    tests = summaries.paired_tests(tuning.best_tuned_runs(test_runs)).set_index(["task", "strategy"])
    clip = tests.loc[("mnist1d", "clip_norm")]
    assert (clip["test"], clip["seeds"], clip["baseline_seeds"]) == ("wilcoxon", 5, 5)
    assert clip["pvalue"] == pytest.approx(2 / 32)  # exact: all five differences positive
    assert (clip["effect"], clip["difference"]) == (1.0, pytest.approx(0.03))
    agc = tests.loc[("mnist1d", "agc")]
    assert agc["effect"] == -1.0
    assert agc["difference"] == pytest.approx(0.1 - 0.50)
    same = tests.loc[("mnist1d", "same")]
    assert (same["pvalue"], same["effect"], same["difference"]) == (1.0, 0.0, 0.0)
    partly = tests.loc[("mnist1d", "partly")]  # zeros' ranks (2.5 each) split: (5 + 5 - 5) / 15
    assert partly["effect"] == pytest.approx(1 / 3)
    direct = sps.wilcoxon([0, 0, 0.02, 0, 0], zero_method="zsplit")
    assert (partly["statistic"], partly["pvalue"]) == (pytest.approx(direct.statistic), pytest.approx(direct.pvalue))
    short = tests.loc[("mnist1d", "short")]
    assert short["test"] == "mannwhitneyu"
    direct = sps.mannwhitneyu([0.6, 0.3, 0.5], [0.50, 0.52, 0.48, 0.55, 0.45])
    assert (short["statistic"], short["pvalue"]) == (direct.statistic, direct.pvalue)
    greater = sum(x > y for x in [0.6, 0.3, 0.5] for y in [0.50, 0.52, 0.48, 0.55, 0.45])
    less = sum(x < y for x in [0.6, 0.3, 0.5] for y in [0.50, 0.52, 0.48, 0.55, 0.45])
    assert short["effect"] == pytest.approx((greater - less) / 15)  # Cliff's delta
    single = tests.loc[("adding", "clip_norm")]  # one seed, lower MSE: better
    assert (single["test"], single["pvalue"], single["effect"]) == ("wilcoxon", 1.0, 1.0)
    assert single["difference"] == pytest.approx(0.1)
    assert single["pvalue_holm"] == 1.0


def test_holm_family_is_every_test_reported_unless_stated():
    """Two panels: by default Holm adjusts over all six (panel, strategy) tests, as numbers.tex reports them."""
    base = [0.50, 0.52, 0.48, 0.55, 0.45, 0.51]
    better = [b + 0.01 * (i + 1) for i, b in enumerate(base)]  # all six differences positive: p = 2 / 64
    rows = []
    for gain in (1.0, 2.0):
        rows += [*seeds(base, strategy="none", init_gain=gain), *seeds(better, strategy="clip_norm", init_gain=gain),
                 *seeds(base, strategy="same", init_gain=gain), *seeds(better, strategy="agc", init_gain=gain)]
    tests = summaries.paired_tests(tuning.best_tuned_runs(make_runs(rows)))
    assert len(tests) == 6
    p = 2 / 64
    assert sorted(tests["pvalue"]) == pytest.approx([p] * 4 + [1.0] * 2)
    assert sorted(tests["pvalue_holm"]) == pytest.approx([6 * p] * 4 + [1.0] * 2)  # family of 6: 4 smallest x6
    per_panel = summaries.paired_tests(tuning.best_tuned_runs(make_runs(rows)), family=["init_gain"])
    assert sorted(per_panel["pvalue_holm"]) == pytest.approx([3 * p] * 4 + [1.0] * 2)  # family of 3


def summary_table() -> pd.DataFrame:
    """Mean test metric of strategies a, b, c on four problems (one MSE); d only on one."""
    values = {
        ("mnist1d", "mlp"): {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1},
        ("mnist1d", "cnn"): {"a": 0.8, "b": 0.8, "c": 0.4},
        ("digits", "cnn"): {"a": 0.6, "b": 0.9, "c": 0.3},
        ("adding", "lstm"): {"a": 0.1, "b": 0.2, "c": 0.4},
    }
    return pd.DataFrame([
        {"task": t, "model": m, "optimizer": "sgd", "init_gain": 1.0, "strategy": s, "mean": v,
         "metric": "mse" if t == "adding" else "accuracy", "higher_is_better": t != "adding"}
        for (t, m), row in values.items() for s, v in row.items()
    ])


def test_error_and_rank_matrices():
    errors = ranking.error_matrix(summary_table())
    assert errors.columns.tolist() == ["a", "b", "c"]
    assert errors.index.tolist() == ["adding/lstm", "digits/cnn", "mnist1d/cnn", "mnist1d/mlp"]
    assert errors.loc["adding/lstm"].tolist() == pytest.approx([0.1, 0.2, 0.4])  # MSE is a cost already
    assert errors.loc["digits/cnn"].tolist() == pytest.approx([0.4, 0.1, 0.7])  # 1 - accuracy
    ranks = ranking.rank_matrix(errors)
    assert ranks.loc["mnist1d/cnn"].tolist() == [1.5, 1.5, 3.0]
    assert ranks.loc["digits/cnn"].tolist() == [2.0, 1.0, 3.0]
    assert ranks.mean().tolist() == [1.375, 1.625, 3.0]
    with pytest.raises(ValueError, match="perplexity"):
        ranking.error_matrix(summary_table().assign(metric="perplexity"))


def dependent_panels() -> pd.DataFrame:
    """Three problems, each with four panels (two optimizers x two init gains), three strategies."""
    rng = np.random.default_rng(0)
    rows = []
    for task, model, offset in (("mnist1d", "mlp", 0.0), ("digits", "cnn", 0.1), ("mnist1d", "cnn", 0.2)):
        for optimizer, gain in itertools.product(("sgd", "adam"), (1.0, 2.0)):
            for strategy, quality in (("a", 0.9), ("b", 0.8), ("c", 0.7)):
                rows.append({"task": task, "model": model, "optimizer": optimizer, "init_gain": gain,
                             "strategy": strategy, "metric": "accuracy", "higher_is_better": True,
                             "mean": quality - offset - 0.05 * gain + 0.01 * rng.random()})
    return pd.DataFrame(rows)


def test_ranking_unit_is_the_problem_not_the_panel():
    summary = dependent_panels()
    errors = ranking.error_matrix(summary)
    assert errors.shape == (3, 3)  # N = 3 problems, not 12 panels
    one = summary[(summary["task"] == "digits") & (summary["strategy"] == "b")]
    assert errors.loc["digits/cnn", "b"] == pytest.approx((1 - one["mean"]).mean())  # mean over its 4 panels
    friedman = ranking.friedman_test(errors)
    assert friedman["problems"] == 3
    direct = sps.friedmanchisquare(*(errors[c] for c in errors.columns))
    assert friedman["statistic"] == pytest.approx(direct.statistic) == pytest.approx(6.0)  # a < b < c everywhere
    cd = ranking.critical_difference(errors)
    q = sps.studentized_range.ppf(0.95, 3, np.inf) / math.sqrt(2)
    assert cd.cd == pytest.approx(q * math.sqrt(3 * 4 / (6 * 3)))  # N = 3
    assert cd.cd == pytest.approx(2 * q * math.sqrt(3 * 4 / (6 * 12)))  # twice what 12 panels would give
    assert cd.ranks.to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    incomplete = summary.drop(summary.index[(summary["strategy"] == "c") & (summary["optimizer"] == "adam")][:1])
    ranked = ranking.error_matrix(incomplete)  # c lacks a panel of mnist1d/mlp: that problem leaves the ranking
    assert ranked.columns.tolist() == ["a", "b", "c"] and ranked.index.tolist() == ["digits/cnn", "mnist1d/cnn"]
    fallback = ranking.error_matrix(incomplete, min_problems=3)  # fewer full problems than asked: drop c instead
    assert fallback.columns.tolist() == ["a", "b"] and len(fallback) == 3


def test_error_matrix_ranks_every_strategy_on_the_problems_that_ran_the_full_set():
    """A study runs some strategies on a subset of its problems: they are ranked, on the problems with every one."""
    summary = summary_table()
    extra = summary[(summary["task"] == "mnist1d") & (summary["strategy"] == "a")].assign(strategy="d", mean=0.05)
    summary = pd.concat([summary[summary["strategy"] != "d"], extra], ignore_index=True)
    errors = ranking.error_matrix(summary)
    assert errors.columns.tolist() == ["a", "b", "c", "d"]
    assert errors.index.tolist() == ["mnist1d/cnn", "mnist1d/mlp"]
    assert errors.loc["mnist1d/mlp"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.95])
    assert ranking.error_matrix(summary_table()).columns.tolist() == ["a", "b", "c"]  # d on one problem: dropped


def test_a_nested_design_ranks_its_largest_block_and_the_config_agrees():
    """The paper's shape: every strategy on a few core problems, a compared subset on more, the transformer's own
    mitigations on others; no problem trains them all, so the ranking takes the block with the most
    (strategy, problem) cells: the compared subset on every problem that trained it."""
    design = {"core": ("digits", ["mlp", "cnn"], "abcde"), "other": ("mnist1d", ["mlp", "cnn", "rnn"], "abc"),
              "transformer": ("chars", ["tf1", "tf2"], "axy")}
    rows = [{"task": task, "model": model, "optimizer": "sgd", "init_gain": 1.0, "strategy": s, "mean": 0.5,
             "metric": "accuracy", "higher_is_better": True}
            for task, models, strategies in design.values() for model in models for s in strategies]
    errors = ranking.error_matrix(pd.DataFrame(rows))
    assert errors.columns.tolist() == ["a", "b", "c"]  # 3 x 5 cells, against 5 x 2 (core) and 3 x 2 (transformer)
    assert errors.index.tolist() == ["digits/cnn", "digits/mlp", "mnist1d/cnn", "mnist1d/mlp", "mnist1d/rnn"]
    trained = {f"{task}/{model}": set(strategies) for task, models, strategies in design.values() for model in models}
    assert layout.ranked_block(trained) == (list(trained)[:5], {"a", "b", "c"})
    assert layout.ranked_block({"p": {"a", "b"}, "q": {"a", "c"}}) == (["p", "q"], {"a"})  # their common set
    assert layout.ranked_block({"p": {"a", "b"}}) == (["p"], {"a", "b"})  # one problem: below the minimum, as is
    config = {"strategies": {s: {} for s in "abcdexy"},
              "problems": [{"task": task, "models": models, "strategies": list(strategies)}
                           for task, models, strategies in design.values()]}
    assert layout.config_cd(config)  # 3 strategies on 5 problems: a diagram, as the notebook draws
    apart = [{"task": "t1", "models": ["m"], "strategies": ["a", "b", "c"]},
             {"task": "t2", "models": ["m"], "strategies": ["a", "x", "y"]}]
    assert not layout.config_cd({**config, "problems": apart})  # in common only a: no diagram


def test_friedman_and_critical_difference():
    errors = ranking.error_matrix(summary_table())
    result = ranking.friedman_test(errors)
    direct = sps.friedmanchisquare(*(errors[c] for c in errors.columns))
    assert (result["statistic"], result["pvalue"]) == (pytest.approx(direct.statistic), pytest.approx(direct.pvalue))
    assert (result["problems"], result["strategies"]) == (4, 3)
    assert ranking.friedman_test(errors[["a", "b"]])[["statistic", "pvalue"]].isna().all()
    tied = pd.DataFrame(np.ones((3, 3)), columns=list("xyz"))
    assert math.isnan(ranking.friedman_test(tied)["pvalue"])
    cd = ranking.critical_difference(errors)
    assert cd.ranks.to_dict() == {"a": 1.375, "b": 1.625, "c": 3.0}
    pd.testing.assert_frame_equal(cd.pvalues, sp.posthoc_nemenyi_friedman(errors))
    assert cd.cd == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)  # Demšar (2006), table 5


def profile_summary(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """A per-panel summary of strategies on tasks (``adding`` in MSE, the others in accuracy)."""
    return pd.DataFrame([{"task": t, "model": "m", "optimizer": "sgd", "strategy": s, "mean": v,
                          "metric": "mse" if t == "adding" else "accuracy", "higher_is_better": t != "adding"}
                         for t, s, v in rows])


def test_performance_profile_is_on_costs():
    summary = profile_summary([("mnist1d", "a", 0.8), ("mnist1d", "b", 0.4), ("adding", "a", 0.2),
                               ("adding", "b", 0.1), ("digits", "a", 0.5), ("digits", "b", 0.5)])
    profile = ranking.performance_profile(ranking.error_matrix(summary))
    # errors: mnist1d 0.2 vs 0.6 (ratio 3; a ratio of accuracies would say 2), adding 0.2 vs 0.1 (ratio 2)
    assert profile["tau"].tolist() == pytest.approx([1, 1, 2, 2, 3, 3])
    assert profile["strategy"].tolist() == ["a", "b"] * 3
    assert profile["fraction"].tolist() == pytest.approx([2 / 3, 2 / 3, 1, 2 / 3, 1, 1])
    on_grid = ranking.performance_profile(ranking.error_matrix(summary), taus=[2.5]).set_index("strategy")["fraction"]
    assert on_grid.to_dict() == {"a": 1.0, "b": 2 / 3}
    perfect = profile_summary([("mnist1d", "a", 1.0), ("mnist1d", "b", 0.9), ("adding", "a", 0.0),
                               ("adding", "b", 0.0)])  # a perfect accuracy and two perfect MSEs
    profile = ranking.performance_profile(ranking.error_matrix(perfect), taus=[1.0, 1e9])
    assert profile.set_index(["strategy", "tau"])["fraction"].to_dict() == {
        ("a", 1.0): 1.0, ("b", 1.0): 0.5, ("a", 1e9): 1.0, ("b", 1e9): 0.5}


def test_strategy_cost_per_run_step_relative_to_none():
    runs = make_runs([
        *({"strategy": "none", "seed": s, "wall_time_s": 40.0} for s in range(4)),
        *({"strategy": "clip_norm", "seed": s, "wall_time_s": 30.0, "diverged": s == 0} for s in range(2)),
        {"task": "adding", "strategy": "clip_norm", "wall_time_s": 5.0},
    ])
    cost = ranking.strategy_cost(runs).set_index(["task", "strategy"])
    assert cost.loc[("mnist1d", "none"), "time_per_run_step"] == pytest.approx(0.1)
    assert cost.loc[("mnist1d", "clip_norm"), "time_per_run_step"] == pytest.approx(0.15)
    assert cost.loc[("mnist1d", "clip_norm"), ["cells", "runs"]].tolist() == [1, 2]
    assert cost.loc[("mnist1d", "clip_norm"), "relative"] == pytest.approx(1.5)
    assert cost.loc[("mnist1d", "none"), "relative"] == 1.0
    assert math.isnan(cost.loc[("adding", "clip_norm"), "relative"])
