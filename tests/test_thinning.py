"""The thinning of committed curves (bench/thinning.py) keeps, cell by cell, what the analysis reads.

The rule reads one cell alone and imports nothing of the analysis; these tests hold it to the analysis:
its best-tuned runs are ``analysis.tuning.best_tuned_runs``, its spike ratios
``analysis.curves.spikes_and_clips``, its constants those of the figures and questions it keeps values
for, the runs the explosions figure picks over all cells of a strategy are among the runs each cell keeps
whole, and what the analysis draws from thinned curves (time to target, explosion traces, the attention
logits) is what it draws from the full ones. The questions that read curves are compared on thinned and
full curves in tests/test_questions.py, the figures of a trained sweep in tests/test_study.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image

from analysis import curves as curve_analysis
from analysis import layout, mechanisms, plots, questions, survival, tuning, vocabulary
from bench import failure, paths, publish, record, thinning
from bench.columns import CURVES_COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def committed(sweep: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """The committed cells of ``sweep`` concatenated (runs, curves in the results schema) and their records."""
    folders = sorted((ROOT / paths.study_cells_dir(sweep)).iterdir())
    tables = [publish.read_cell(folder) for folder in folders]
    records = {folder.name: record.read(folder) for folder in folders}
    return (pd.concat([runs for runs, _ in tables], ignore_index=True),
            pd.concat([curves for _, curves in tables], ignore_index=True), records)


@pytest.fixture(scope="module")
def paper() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    return committed("paper")


@pytest.fixture(scope="module")
def smoke() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    return committed("smoke")


def cell(strategy: str, steps: int, seeds: int = 3, **columns: float) -> pd.DataFrame:
    """A runs table of one synthetic cell (mnist1d / mlp / sgd, accuracy) of ``strategy``: every lr and seed."""
    rows = []
    for lr in (0.01, 0.1, 1.0):
        for seed in range(seeds):
            rows.append({"run_id": f"mnist1d-mlp-sgd-{strategy}|lr={lr:g}|seed={seed}", "sweep": "synthetic",
                         "cell": f"mnist1d-mlp-sgd-{strategy}", "task": "mnist1d", "model": "mlp", "family": "mlp",
                         "optimizer": "sgd", "strategy": strategy, "dtype": "float32", "lr": lr, "seed": seed,
                         "seed_set": "discovery", "metric": "accuracy", "higher_is_better": True,
                         "chance_metric": 0.1, "chance_loss": 2.3, "diverged": False, "diverged_step": -1,
                         "final_train_loss": 1.0, "best_val_metric": 0.5 + 0.1 * lr + 0.01 * seed,
                         "final_val_metric": 0.5, "test_metric_at_best_val": 0.5, "steps": steps,
                         "wall_time_s": 1.0, **columns})
    return pd.DataFrame(rows)


def curves_of(runs: pd.DataFrame, eval_every: int, probes: tuple[str, ...] = (), seed: int = 0) -> pd.DataFrame:
    """Random curves of ``runs`` in the results schema (with the probe columns ``probes``): every step up to a
    run's last (its divergence step, else its budget), evaluations every ``eval_every`` and at the budget."""
    generator = np.random.default_rng(seed)
    parts = []
    for run in runs.itertuples(index=False):
        steps = np.arange(run.diverged_step + 1 if run.diverged else run.steps + 1)
        training = steps < run.steps
        evaluated = (steps % eval_every == 0) | (steps == run.steps)
        part = {"run_id": run.run_id, "step": steps, "clipped": generator.random(len(steps)) < 0.1}
        for name in ("train_loss", "grad_norm_pre", "grad_norm_post", "update_ratio", *probes):
            part[name] = np.where(training, generator.lognormal(0.0, 0.3, len(steps)), np.nan)
        for name in ("val_loss", "val_metric", "test_loss", "test_metric"):
            part[name] = np.where(evaluated, generator.random(len(steps)), np.nan)
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)[[*CURVES_COLUMNS, *probes]]


def test_the_constants_are_those_of_the_figures_and_questions() -> None:
    figure = inspect.signature(plots.explosions_figure).parameters
    traces = inspect.signature(curve_analysis.explosion_traces).parameters
    assert figure["n"].default <= thinning.SPIKING
    assert (traces["window"].default, traces["warmup"].default) == (thinning.WINDOW, thinning.WARMUP)
    spikes = inspect.signature(curve_analysis.spikes_and_clips).parameters
    assert (spikes["window"].default, spikes["warmup"].default) == (thinning.WINDOW, thinning.WARMUP)
    assert inspect.signature(survival.target_levels).parameters["fraction"].default == thinning.TARGET_FRACTION
    assert thinning.ATTENTION_STRATEGIES == layout.ATTENTION_STRATEGIES
    q3, q5 = questions.QUESTIONS["q3_grad_scale"], questions.QUESTIONS["q5_seed_recipe"]
    assert set(thinning.PAIRED) == {q3.baseline, *q3.compares}
    assert set(thinning.LOSS_COMPARED) == {q5.baseline, *q5.compares}
    assert {metric: failure.metric_error([value], [metric])[0] for metric, value in failure.PERFECT.items()} == {
        metric: 0.0 for metric in failure.METRIC_ERRORS}


def test_the_steps_read_a_quarter_octave_apart_and_the_attention_steps() -> None:
    assert thinning.onset_steps(100).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, 38,
                                                  45, 54, 64, 76, 91, 99]
    assert thinning.onset_steps(1).tolist() == [0] and thinning.onset_steps(0).tolist() == []
    assert [thinning.attention_stride(steps) for steps in (40, 100, 250, 750)] == [1, 1, 2, 7]


def test_best_tuned_runs_are_the_analysis_best_tuned_runs(paper, smoke) -> None:
    """On every cell of both committed studies (every strategy, hyperparameter grid and dial of the paper), per
    seed set (the analysis tunes the discovery and the replication seeds each on its own)."""
    for study, _, _ in (paper, smoke):
        for _, runs in study.groupby("seed_set"):
            expected = set(tuning.best_tuned_runs(runs)["run_id"])
            assert thinning.best_tuned_runs(runs) == expected
            per_cell = set().union(*(thinning.best_tuned_runs(own) for _, own in runs.groupby("cell")))
            assert per_cell == expected


def test_each_settings_best_lr_is_kept_where_a_cell_varies_a_dial(paper) -> None:
    """Q6 tunes each strategy over the learning rate only, at one setting: where a cell varies a stress dial (the
    spike rate), every setting's best learning rate at each dial value is kept at every step; elsewhere no more."""
    runs, _, _ = paper
    dials = vocabulary.dial_columns(runs)
    larger = 0
    for _, own in runs.groupby("cell"):
        if any(own[dial].nunique() > 1 for dial in dials):
            expected = set(tuning.best_tuned_runs(own, within=vocabulary.hyperparameter_columns(own))["run_id"])
            assert thinning.setting_best_runs(own) == expected >= thinning.best_tuned_runs(own)
            larger += len(expected) > len(thinning.best_tuned_runs(own))
        else:
            assert thinning.setting_best_runs(own) == set()
    assert larger > 0


def test_peak_ratios_are_the_analysis_max_ratios(paper) -> None:
    runs, curves, _ = paper
    cells = runs.loc[runs["strategy"] == "none", "cell"].unique()  # every problem, with norms that blew up
    some = curves[curves["run_id"].isin(runs.loc[runs["cell"].isin(cells), "run_id"])]
    expected = curve_analysis.spikes_and_clips(some).set_index("run_id")["max_ratio"]
    got = thinning.peak_ratios(some).reindex(expected.index)
    assert np.array_equal(got.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert np.isinf(got).any() and got.notna().sum() > 100


def test_the_figure_picks_runs_each_cell_keeps_whole(paper) -> None:
    """The explosions figure's most spiking runs of a strategy, over all its cells, are among each cell's
    own most spiking runs (a run among the first n of a union is among the first n of its part)."""
    runs, curves, _ = paper
    for strategy in vocabulary.strategy_order(runs)[:3]:
        own = runs[runs["strategy"] == strategy]
        part = curves[curves["run_id"].isin(own["run_id"])]
        picked = set(curve_analysis.explosion_traces(runs, part, {"strategy": strategy})["run_id"])
        kept = set().union(*(thinning.most_spiking(part[part["run_id"].isin(cell["run_id"])])
                             for _, cell in own.groupby("cell")))
        assert len(picked) == 3 and picked <= kept, strategy


def test_a_run_that_would_outrank_once_thinned_is_kept_whole() -> None:
    """A run of ``none`` whose gradient norms stay small at the steps Q3 reads and grow between them spikes far
    more on those steps than on all of them: it is kept at every step, and the traces drawn are the full ones."""
    runs = cell("none", 200, seeds=2)
    curves = curves_of(runs, 10)
    steps = curves["step"].to_numpy()
    for run_id, at in zip(runs["run_id"].iloc[:3], (60, 90, 120), strict=True):  # the three most spiking
        curves.loc[(curves["run_id"] == run_id).to_numpy() & (steps == at), "grad_norm_pre"] = 100.0
    odd = runs["run_id"].iloc[-1]
    mine = (curves["run_id"] == odd).to_numpy() & (steps < 200)
    growing = 0.01 * 100.0 ** (steps[mine] / 200)
    curves.loc[mine, "grad_norm_pre"] = np.where(np.isin(steps[mine], thinning.onset_steps(200)), 0.01, growing)
    curves.loc[mine & (steps == 181), "grad_norm_pre"] = 5.0  # a step Q3 reads: 500x its thinned median
    thinned, whole = thinning.thin(runs, curves)
    assert odd in whole and odd not in thinning.most_spiking(curves)
    drawn = ["run_id", "step", "grad_norm_pre", "running_median", "spike_ratio", "peak_step", "offset"]
    full = curve_analysis.explosion_traces(runs, curves)[drawn]
    assert set(full["run_id"]) == set(runs["run_id"].iloc[:3])
    pd.testing.assert_frame_equal(full, curve_analysis.explosion_traces(runs, thinned)[drawn])


@pytest.mark.parametrize("higher", [True, False])
def test_time_to_target_is_read_from_the_records_kept(higher: bool) -> None:
    """For every target a task can set (from this cell's best run that did not fail to the metric's perfect
    value), the first evaluation step reaching it is the one of the full curves."""
    runs = cell("clip_norm", 200, seeds=4, clip_norm=1.0)
    runs.loc[runs.index[::5], ["diverged", "diverged_step"]] = [True, 150]
    curves = curves_of(runs, 10)
    evaluated = curves["val_metric"].notna()
    noise = np.random.default_rng(1).normal(0, 0.05, len(curves))
    curves.loc[evaluated, "val_metric"] = np.minimum(0.1 + curves["step"] / 250 + noise, 1.0)[evaluated]
    if not higher:  # an MSE task: chance 1/6, perfect 0
        curves.loc[evaluated, "val_metric"] = (1.0 - curves.loc[evaluated, "val_metric"]) / 6
        runs = runs.assign(metric="mse", higher_is_better=False, chance_metric=1 / 6,
                           best_val_metric=(1.0 - runs["best_val_metric"]) / 6, final_val_metric=0.02)
    thinned, _ = thinning.thin(runs, curves)
    assert 0 < thinned["val_metric"].notna().sum() < 0.5 * evaluated.sum()
    alive = runs.loc[~failure.failed(runs), "best_val_metric"]
    chance = float(runs["chance_metric"].iloc[0])
    perfect = failure.PERFECT[str(runs["metric"].iloc[0])]
    reached = 0
    for best in np.linspace(alive.max() if higher else alive.min(), perfect, 41):
        target = chance + thinning.TARGET_FRACTION * (best - chance)
        full = survival.steps_to_target(runs, curves, target)[["run_id", "time", "observed"]]
        assert full.equals(survival.steps_to_target(runs, thinned, target)[full.columns]), best
        reached += full["observed"].sum()
    assert reached > 0


def test_the_attention_figure_draws_the_thinned_curves_as_the_full_ones(tmp_path) -> None:
    """The figure draws about 100 steps of each run of none and qk_norm, and its divergence step: those of the
    thinned curves, pixel for pixel; the logits of another strategy are not kept."""
    runs = pd.concat([cell(strategy, 250, seeds=2) for strategy in ("none", "qk_norm", "z_loss")],
                     ignore_index=True).assign(task="chars", model="transformer", family="transformer",
                                               chance_loss=1.0, chance_metric=4.0, metric="bits_per_char",
                                               higher_is_better=False, best_val_metric=2.0, final_val_metric=2.0)
    runs.loc[runs["lr"] == 1.0, ["diverged", "diverged_step"]] = [True, 123]
    curves = curves_of(runs, 25, probes=("attn_logit_max_0", "attn_logit_max_1"))
    thinned, _ = thinning.thin(runs, curves)
    z_loss = thinned["run_id"].str.contains("z_loss").to_numpy()
    assert thinned.loc[z_loss, "attn_logit_max_0"].isna().all()
    assert thinned.loc[~z_loss, "attn_logit_max_0"].notna().sum() == 8 * 125 + 4 * 63  # 4 runs end at step 123
    shown = ["run_id", "step", "train_loss", "attn_logit_max_0", "attn_logit_max_1"]
    drawn = runs[runs["strategy"] != "z_loss"]
    pd.testing.assert_frame_equal(mechanisms.drawn_steps(drawn, curves)[shown].reset_index(drop=True),
                                  mechanisms.drawn_steps(drawn, thinned)[shown].reset_index(drop=True))
    assert mechanisms.attention_pairs(runs, thinned) == mechanisms.attention_pairs(runs, curves) == [
        ("chars", "transformer")]
    images = []
    for name, table in (("full", curves), ("thinned", thinned)):
        written = plots.save(mechanisms.attention_logit_figure(runs, table, "chars", "transformer"), tmp_path / name)
        images.append(image.imread(next(path for path in written if path.suffix == ".png")))
    assert np.array_equal(*images)


def test_rows_keep_only_what_is_read_and_thinning_again_keeps_them() -> None:
    """A cell of the replication seeds keeps the endpoint validation losses and, for Q5's strategies only, its
    best-tuned losses, no gradient norm; every value kept is the trained one, and the thinned cell thinned
    again is itself."""
    for strategy in ("clip_norm", "zclip"):
        runs = cell(strategy, 120, seeds=3, **{strategy: 1.0})
        curves = curves_of(runs, 12)
        best = thinning.best_tuned_runs(runs)
        for seed_set, figures in (("discovery", True), ("replication", False)):
            own = runs.assign(seed_set=seed_set)
            thinned, whole = thinning.thin(own, curves)
            losses = set(thinned.loc[thinned["train_loss"].notna(), "run_id"])
            if figures:
                assert whole > best and losses == whole
            else:
                assert whole == losses == (best if strategy in thinning.LOSS_COMPARED else set())
            assert thinned["grad_norm_pre"].notna().any() == figures
            assert thinned["grad_norm_post"].isna().all() and thinned["test_metric"].isna().all()
            ends = thinned[thinned["val_loss"].notna()].groupby("run_id")["step"].agg(["min", "max"])
            assert len(ends) == len(own) and (ends["min"] == 0).all() and (ends["max"] == 120).all()
            merged = thinned.merge(curves, on=["run_id", "step"], suffixes=("", "_full"), validate="one_to_one")
            for column in curves.columns.drop(["run_id", "step"]):
                kept = merged[column].notna() if column != "clipped" else slice(None)
                assert (merged.loc[kept, column] == merged.loc[kept, f"{column}_full"]).all(), column
            pd.testing.assert_frame_equal(thinning.thin(own, thinned)[0], thinned)


def test_thinning_thinned_cells_keeps_them(smoke) -> None:
    """Thinned again, the committed cells of the current rule are unchanged (a restored cell published again)."""
    runs, curves, records = smoke
    assert {stored["thinning"]["rule"] for stored in records.values()} == {thinning.RULE}
    thinned, keep = thinning.thin(runs, curves)
    pd.testing.assert_frame_equal(thinned, curves)
    assert keep >= thinning.best_tuned_runs(runs)
    assert sum(stored["thinning"]["every_step_runs"] for stored in records.values()) == len(keep)


def test_thinning_reads_each_cell_alone(paper) -> None:
    """A sweep's cells thinned together are its cells thinned one by one, in any order: the committed runs of
    the adding problem's cells of ``none`` and ``clip_norm`` (two seeds), with full random curves (the committed
    curves are thinned already, and thinning them again keeps them)."""
    runs, _, _ = paper
    runs = runs[(runs["task"] == "adding") & runs["strategy"].isin(["none", "clip_norm"]) & (runs["seed"] % 5 < 2)]
    curves = curves_of(runs, 25)
    cells = list(runs["cell"].unique())[::-1]
    parts = [thinning.thin(runs[runs["cell"] == cell], curves[curves["run_id"].str.startswith(f"{cell}|")])[0]
             for cell in cells]
    together, _ = thinning.thin(runs, curves)
    alone = pd.concat(parts).sort_values(["run_id", "step"], ignore_index=True)
    pd.testing.assert_frame_equal(together.sort_values(["run_id", "step"], ignore_index=True), alone)
    assert len(cells) >= 4 and len(together) < len(curves)
