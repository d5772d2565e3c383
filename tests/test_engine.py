"""Lockstep engine: independence of runs, divergence as data, determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from conftest import assert_same_history, make_config, only_cell

from bench import checkpoint, columns, engine, store, sweep, tasks


def train(config):
    cell = only_cell(config)
    built = engine.build(cell)
    history = engine.train(built, progress=False)
    return cell, built, history


def test_a_run_driven_to_nan_leaves_the_others_bit_identical() -> None:
    calm = make_config(optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.02, 0.03]}},
                       strategies={"clip_norm": {"clip_norm": [1.0]}}, divergence_factor=1e30)
    wild = make_config(optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, math.inf, 0.03]}},
                       strategies={"clip_norm": {"clip_norm": [1.0]}}, divergence_factor=1e30)
    _, _, reference = train(calm)
    _, _, history = train(wild)
    blown = [2, 3]  # lr=inf, both seeds: NaN parameters after the first step
    assert (history.diverged_step[blown] == 1).all()
    assert not torch.isfinite(history.final_params[0][blown]).all()
    for k in (0, 1, 4, 5):
        for mine, theirs in zip(history.final_params, reference.final_params, strict=True):
            assert torch.equal(mine[k], theirs[k])
        for name in engine.STEP_METRICS:
            np.testing.assert_array_equal(history.step_metrics[name][:, k], reference.step_metrics[name][:, k])




def test_diverging_runs_are_recorded_not_raised() -> None:
    config = make_config(optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 50.0]}},
                         steps=30)
    cell, built, history = train(config)
    runs, curves = store.tables(cell, built.task, history)
    high = runs[runs["lr"] == 50.0]
    low = runs[runs["lr"] == 0.01]
    assert high["diverged"].all() and (high["diverged_step"] >= 0).all()
    assert not low["diverged"].any() and (low["diverged_step"] == -1).all()
    for _, row in high.iterrows():
        rows = curves[curves["run_id"] == row["run_id"]]
        assert rows["step"].max() == row["diverged_step"]
    assert len(curves[curves["run_id"].isin(low["run_id"])]) == 2 * (cell.steps + 1)


def test_nan_at_step_one_is_recorded() -> None:
    config = make_config(optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.01, math.inf]}}, steps=5)
    cell, built, history = train(config)
    runs, _ = store.tables(cell, built.task, history)
    infinite = runs[runs["lr"] == math.inf]
    assert infinite["diverged"].all()
    assert (infinite["diverged_step"] == 1).all()


def test_divergence_factor_freezes_a_run_and_its_state() -> None:
    config = make_config(optimizers={"adam": {"kind": "adam", "learning_rates": [0.001, 10.0]}}, steps=25,
                         divergence_factor=1.5)
    _, _, history = train(config)
    stopped = history.diverged_step >= 0
    assert stopped.any()
    for k in np.flatnonzero(stopped):
        after = history.step_metrics["train_loss"][history.diverged_step[k] + 1 :, k]
        assert np.isnan(after).all()


def test_training_a_cell_twice_gives_identical_tables(tmp_path) -> None:
    config = make_config(problems=[{"task": "adding", "models": ["lstm"]}],
                         optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.1, 30.0]}},
                         strategies={"clip_value": {"clip_value": [0.5, 5.0]}})
    tables = []
    for attempt in range(2):
        cell, built, history = train(config)
        runs, curves = store.tables(cell, built.task, history)
        store.write_cell(runs, curves, tmp_path / str(attempt))
        tables.append((store.read(tmp_path / str(attempt) / "runs.parquet", "runs"),
                       store.read(tmp_path / str(attempt) / "curves.parquet", "curves")))
    (runs_a, curves_a), (runs_b, curves_b) = tables
    pd.testing.assert_frame_equal(runs_a.drop(columns=list(columns.TIMING_COLUMNS)),
                                  runs_b.drop(columns=list(columns.TIMING_COLUMNS)))
    pd.testing.assert_frame_equal(curves_a, curves_b)


def test_training_from_the_data_cache_is_bit_identical_to_training_on_freshly_made_data(tmp_path,
                                                                                       monkeypatch) -> None:
    config = make_config(problems=[{"task": "mnist1d", "models": ["cnn1d"]}], steps=12, eval_every=4,
                         strategies={"clip_norm": {"clip_norm": [0.5]}})
    cell = only_cell(config)
    histories = []
    for source in ("made", "written", "read"):
        tasks._load.cache_clear()
        if source == "made":  # no cache at all: the maker's own tensors
            with monkeypatch.context() as patch:
                patch.setattr(engine, "load_task", lambda cell, data_cache=None: tasks.make(
                    cell.task["kind"], sweep.factory_options("tasks", cell.task)))
                built = engine.build(cell)
        else:
            with monkeypatch.context() as patch:
                if source == "read":  # from the disk, made by nobody
                    patch.setattr(tasks, "make", None)
                built = engine.build(cell, data_cache=tmp_path)
        assert len(list(tmp_path.glob("mnist1d-*.pt"))) == (source != "made")
        histories.append(engine.train(built, progress=False))
    made, written, read = histories
    for history in (written, read):
        assert_same_history(history, made)


def test_clipped_flag_reports_strategy_activity() -> None:
    config = make_config(strategies={"clip_norm": {"clip_norm": [1e-4, 1e6]}})
    cell, _, history = train(config)
    tight = [k for k, run in enumerate(cell.runs) if run.hyperparameters["clip_norm"] == 1e-4]
    loose = [k for k, run in enumerate(cell.runs) if run.hyperparameters["clip_norm"] == 1e6]
    assert (history.step_metrics["clipped"][:, tight] == 1).all()
    assert (history.step_metrics["clipped"][:, loose] == 0).all()
    post = history.step_metrics["grad_norm_post"][:, tight]
    assert np.allclose(post, 1e-4, rtol=1e-3)


def test_resuming_from_any_checkpoint_gives_identical_results(tmp_path) -> None:
    config = make_config(problems=[{"task": "adding", "models": ["gru"]}], steps=24, eval_every=5,
                         optimizers={"adam": {"kind": "adam", "learning_rates": [0.003, 3.0]}},
                         strategies={"clip_norm": {"clip_norm": [0.5]}}, checkpoint_every=4)
    cell, built, uninterrupted = train(config)
    path = tmp_path / "checkpoint.pt"
    for stop_after in (1, 4, 9, 13, 23):
        interrupted = engine.fresh_state(built)
        indices = engine.batch_plan(built, range(cell.steps))
        rows = {step: row for row, step in enumerate(engine.eval_steps(cell))}
        while interrupted.step < stop_after:  # a job that gets killed after `stop_after` steps
            if interrupted.step in rows:
                engine.record_evaluation(built, interrupted, rows[interrupted.step])
            engine.train_step(built, interrupted, indices[interrupted.step])
        checkpoint.save(dict(interrupted.__dict__), cell, path)
        resumed = engine.train(built, progress=False, checkpoint_path=path, checkpoint_every=4)
        assert_same_history(resumed, uninterrupted)


def test_a_checkpoint_of_another_cell_is_not_resumed(tmp_path) -> None:
    config = make_config(steps=8, checkpoint_every=2)
    cell, built, history = train(config)
    other = make_config(steps=9, checkpoint_every=2)
    other_built = engine.build(only_cell(other))
    checkpoint.save(dict(engine.fresh_state(other_built).__dict__), other_built.cell, tmp_path / "c.pt")
    assert checkpoint.load(tmp_path / "c.pt", built.cell, built.device) is None
    (tmp_path / "torn.pt").write_bytes(b"not a checkpoint")
    assert checkpoint.load(tmp_path / "torn.pt", built.cell, built.device) is None
    assert cell.checkpoint_every == 2 and history.step_metrics["train_loss"].shape == (8, 4)


def test_the_batch_plan_is_drawn_per_seed_and_in_blocks_without_changing_results(monkeypatch) -> None:
    config = make_config(steps=12, eval_every=5)
    cell, built, whole = train(config)
    plan = engine.batch_plan(built, range(cell.steps))
    for k, run in enumerate(cell.runs):  # each run's batches are its seed's, as the per-run oracle draws them
        expected = engine.tasks.batch_indices(run.seed, len(built.inputs["train"]), cell.batch_size, range(cell.steps))
        assert torch.equal(plan[:, k], expected)
    assert torch.equal(engine.batch_plan(built, range(4, 9)), plan[4:9])
    monkeypatch.setattr(engine, "PLAN_BLOCK", 5)  # three blocks, the last one short
    blocked = engine.train(built, progress=False)
    for name in engine.STEP_METRICS:
        np.testing.assert_array_equal(blocked.step_metrics[name], whole.step_metrics[name])


def poisoned_training(strategies: dict, poison_all: bool = False, steps: int = 12):
    """Train with one training example (or all) made NaN: the batch that holds it gives a NaN loss and gradient."""
    config = make_config(steps=steps, strategies=strategies, seeds=[0])
    cell = only_cell(config)
    built = engine.build(cell)
    plan = engine.batch_plan(built, range(cell.steps))
    example = int(plan[5, 0, 0])  # in step 5's batch of seed 0, and in no other of these steps (one epoch)
    assert (plan[:, 0] == example).sum() == 1
    built.inputs["train"] = built.inputs["train"].clone()  # the task's own tensors are shared (cached)
    built.inputs["train"][slice(None) if poison_all else example] = float("nan")
    return engine.train(built, progress=False)


def test_a_nonfinite_batch_is_skipped_with_skip_nonfinite_and_ends_the_run_without() -> None:
    without = poisoned_training({"none": {}})
    assert (without.diverged_step == 5).all()
    survived = poisoned_training({"skip_nonfinite": {}})
    assert (survived.diverged_step == -1).all()
    assert survived.step_metrics["clipped"][5].all() and not survived.step_metrics["clipped"][[4, 6]].any()
    assert np.isfinite(survived.step_metrics["train_loss"][6:]).all()
    assert all(torch.isfinite(p).all() for p in survived.final_params)


def test_skip_nonfinite_ends_a_run_after_max_consecutive_skips() -> None:
    history = poisoned_training({"skip_nonfinite": {"max_consecutive_skips": [0, 3]}}, poison_all=True)
    # every step is non-finite: 0 skips allowed ends at step 0, 3 skips (steps 0-2) end at step 3
    assert history.diverged_step.tolist() == [0, 3, 0, 3]  # runs: lr x max_consecutive_skips


def test_with_the_spike_dial_on_none_shows_gradient_norm_spikes_at_exactly_the_corrupted_steps() -> None:
    tasks = {"mnist1d": {"kind": "mnist1d", "n_train": 400, "spike_rate": [0.0, 0.25], "spike_scale": 100.0}}
    models = {"mlp": {"family": "mlp", "depth": 3, "width": 16, "activation": "relu"}}  # tanh would saturate
    config = make_config(tasks=tasks, models=models, steps=40, seeds=[3], divergence_factor=1e9,
                         optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.001]}})
    cell, _, history = train(config)
    rates = [run.dials["spike_rate"] for run in cell.runs]
    draws, _ = engine.tasks.spike_draws(3, cell.batch_size, range(cell.steps))
    corrupted = (draws < 0.25).numpy()
    assert 3 <= corrupted.sum() <= 20
    norms = history.step_metrics["grad_norm_pre"]
    clean, spiky = norms[:, rates.index(0.0)], norms[:, rates.index(0.25)]
    assert (spiky[corrupted] > 10 * np.median(clean)).all()  # a spike at every corrupted step
    assert (spiky[~corrupted] < 3 * np.median(clean)).all()  # and nowhere else
