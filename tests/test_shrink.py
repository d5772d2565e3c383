"""The lockstep batch narrowed to the runs still alive (bench/shrink.py): a cell trained with narrowing writes
the tables it writes without, for every kind of cell; the batch does narrow; a job killed after a narrowing
resumes to the same results; the results are the same run after run."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from conftest import assert_same_history, make_config, only_cell
from test_equivalence import TOLERANCES

from bench import checkpoint, columns, engine, shrink, store

SPIKY = {"mnist1d": {"kind": "mnist1d", "n_train": 400, "spike_rate": [0.0, 0.2], "spike_scale": 100.0}}
ADDING = {"task": "adding", "models": ["lstm"]}
CASES = {
    "mlp, sgd on a cosine schedule with warm-up, clip_norm, bad batches": dict(
        tasks=SPIKY, optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "schedule": "cosine",
                                         "learning_rates": [0.05, 10.0, 100.0]}},
        strategies={"clip_norm": {"clip_norm": [0.5, 50.0], "warmup_steps": [0, 4]}}),
    "cnn1d, sgd, autoclip (a history that grows)": dict(
        problems=[{"task": "mnist1d", "models": ["cnn1d"]}],
        optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 30.0, 100.0]}},
        strategies={"autoclip": {"autoclip_percentile": [10.0, 100.0]}}),
    "cnn2d, sgd, spam (its own second moment, momentum resets)": dict(
        problems=[{"task": "digits", "models": ["cnn2d"]}],
        optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 30.0, 100.0]}},
        strategies={"spam_clip": {"spam_theta": [50.0], "spam_reset_interval": [0, 3], "spam_warmup": [1]}}),
    "rnn, adam, spam (adam's moments reset)": dict(
        problems=[{"task": "adding", "models": ["rnn"]}],
        optimizers={"adam": {"kind": "adam", "learning_rates": [0.003, 0.3, 1.0]}},
        strategies={"spam_clip": {"spam_theta": [5.0], "spam_reset_interval": [4], "spam_warmup": [2]}}),
    "lstm, sgd, skip_nonfinite (consecutive skips)": dict(
        problems=[ADDING], optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.1, 1.0, math.inf]}},
        strategies={"skip_nonfinite": {"max_consecutive_skips": [0, 3]}}),
    "gru, adamw, spike_skip (windows of several lengths)": dict(
        problems=[{"task": "copy", "models": ["gru"]}],
        optimizers={"adamw": {"kind": "adamw", "weight_decay": 0.05, "learning_rates": [0.003, 10.0, 30.0]}},
        strategies={"spike_skip": {"spike_window": [3, 6], "spike_warmup": [2]}}),
    "mlp, sgd, zclip (warm-ups of several lengths)": dict(
        optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.05, 10.0, 30.0]}},
        strategies={"zclip": {"zclip_warmup": [2, 6], "zclip_z": [1.5]}}),
    "mlp, adam, adagc then agc": dict(
        optimizers={"adam": {"kind": "adam", "learning_rates": [0.003, 3.0, 10.0]}},
        strategies={"pair": {"chain": ["adagc", "agc"], "adagc_warmup": [0, 3], "agc_clipping": [0.05]}}),
    "float64 mlp, sgd, update_clip then max_norm": dict(
        dtype="float64", optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.05, 10.0, 30.0]}},
        strategies={"pair": {"chain": ["update_clip", "max_norm"], "update_clip": [0.5], "max_norm": [2.0, 50.0]}}),
    "transformer, adam, per-run soft caps, probes": dict(
        problems=[{"task": "chars", "models": ["transformer"]}], divergence_factor=1.2,
        optimizers={"adam": {"kind": "adam", "learning_rates": [0.01, 0.3, 3.0]}},
        strategies={"softcap": {"softcap_attention": [2.0, 50.0], "softcap_output": [5.0]}}),
    "transformer, sgd, qk_norm + z_loss + mixed_clip": dict(
        problems=[{"task": "modular", "models": ["transformer"]}], divergence_factor=1.2,
        optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.1, 100.0]}},
        strategies={"trio": {"chain": ["qk_norm", "z_loss", "mixed_clip"], "z_loss": [0.01, 0.3],
                             "mixed_clip_gamma": [1.0]}}),
}
"""Cells in which runs diverge at several steps while others live on: every model family, every kind of
strategy state, every optimizer, schedules and warm-up, bad batches, per-run model options, float64."""


def trained(cell, narrows: bool, monkeypatch=None, **options) -> tuple[engine.History, list[int]]:
    """The history of ``cell`` trained with or without narrowing, and the number of runs of every step's
    forward pass."""
    batches: list[int] = []
    forward_backward = engine.forward_backward

    def counted(built, params, xb, yb):
        batches.append(xb.shape[0])
        return forward_backward(built, params, xb, yb)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "forward_backward", counted)
        history = engine.train(engine.build(cell), progress=False, narrows=narrows, **options)
    return history, batches


def tables(cell, history: engine.History) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table (without its timing columns) and the curves table of ``history``."""
    runs, curves = store.tables(cell, engine.load_task(cell), history)
    return runs.drop(columns=list(columns.TIMING_COLUMNS)), curves



@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_a_narrowed_cell_writes_the_tables_of_a_full_one(overrides) -> None:
    cell = only_cell(make_config(steps=16, eval_every=5, **overrides))
    full, full_batches = trained(cell, narrows=False)
    narrowed, batches = trained(cell, narrows=True)
    ended = full.diverged_step[full.diverged_step >= 0]
    assert len(set(ended.tolist())) >= 2 and (full.diverged_step == -1).any(), "runs must end at several steps"
    assert full_batches == [len(cell.runs)] * cell.steps
    assert batches[0] == len(cell.runs) and batches[-1] < len(cell.runs)
    assert batches == sorted(batches, reverse=True) and len(set(batches)) >= 3, "the batch narrows at each ending"
    for mine, theirs in zip(tables(cell, narrowed), tables(cell, full), strict=True):
        pd.testing.assert_frame_equal(mine, theirs)
    assert_same_history(narrowed, full)


def test_the_batch_narrows_to_the_runs_alive_at_each_step() -> None:
    """Before each step, the batch holds exactly the runs alive (never fewer than shrink.FEWEST)."""
    cell = only_cell(make_config(steps=16, **CASES["mlp, sgd, zclip (warm-ups of several lengths)"]))
    history, batches = trained(cell, narrows=True)
    ended = history.diverged_step
    for t, size in enumerate(batches):
        alive = int(((ended == -1) | (ended >= t)).sum())
        assert size == max(alive, min(shrink.FEWEST, len(cell.runs)))


def test_the_last_run_alive_keeps_an_ended_run_beside_it_and_training_stops_when_none_is_left() -> None:
    config = make_config(optimizers={"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.5, 20.0, 60.0]}},
                         seeds=[0], steps=20, divergence_factor=3)
    cell = only_cell(config)
    full, _ = trained(cell, narrows=False)
    history, batches = trained(cell, narrows=True)
    assert sorted(full.diverged_step.tolist())[0] == -1 and (full.diverged_step >= 0).sum() == 2
    assert batches[-1] == shrink.FEWEST
    assert_same_history(history, full)
    doomed = dataclasses.replace(cell, runs=cell.runs[1:])  # both runs end: nothing is trained after the last ends
    full, _ = trained(doomed, narrows=False)
    history, batches = trained(doomed, narrows=True)
    assert len(batches) == full.diverged_step.max() + 1 < doomed.steps
    assert_same_history(history, full)


def test_kept_runs_are_the_alive_ones_and_at_least_two() -> None:
    assert shrink.kept(torch.tensor([True, False, True, True])).tolist() == [0, 2, 3]
    assert shrink.kept(torch.tensor([False, False, True, False])).tolist() == [0, 2]
    assert shrink.kept(torch.tensor([False, False])).tolist() == []
    assert shrink.kept(torch.tensor([True])).tolist() == [0]


class Killed(Exception):
    """The job's end after a checkpoint: a kill."""


@pytest.mark.parametrize("killed_at", [4, 8])
def test_a_job_killed_after_a_narrowing_resumes_to_the_results_of_an_uninterrupted_one(tmp_path,
                                                                                        killed_at) -> None:
    """Runs end before and after each kill; the checkpoint holds all K runs whatever the batch held."""
    cell = only_cell(make_config(steps=16, eval_every=5, checkpoint_every=4,
                                 **CASES["cnn1d, sgd, autoclip (a history that grows)"]))
    uninterrupted, _ = trained(cell, narrows=True)
    full, _ = trained(cell, narrows=False)
    ended = uninterrupted.diverged_step
    assert (ended[ended >= 0] < killed_at).any() and (ended >= killed_at).any()
    path, save = tmp_path / "checkpoint.pt", checkpoint.save

    def killing(fields, saved_cell, saved_path):
        save(fields, saved_cell, saved_path)
        assert fields["params"].shape[0] == len(cell.runs) and fields["logs"]["train_loss"].shape[1] == len(cell.runs)
        if fields["step"] == killed_at:
            raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "save", killing)
        with pytest.raises(Killed):
            trained(cell, narrows=True, checkpoint_path=path, checkpoint_every=4)
    resumed, batches = trained(cell, narrows=True, checkpoint_path=path, checkpoint_every=4)
    assert resumed.resumed_from == killed_at and len(batches) == cell.steps - killed_at
    assert batches[0] < len(cell.runs)  # the resumed job narrows at once
    assert_same_history(resumed, uninterrupted)
    assert_same_history(resumed, full)


def test_a_narrowed_cell_trains_the_same_numbers_run_after_run() -> None:
    cell = only_cell(make_config(steps=16, **CASES["rnn, adam, spam (adam's moments reset)"]))
    first, second = trained(cell, narrows=True)[0], trained(cell, narrows=True)[0]
    assert_same_history(second, first)


def test_with_sizes_that_are_no_multiple_of_the_vector_width_the_tables_agree_to_rounding() -> None:
    """A width of 5 and a batch of 7: the vectorised kernels treat a run's values by their place in memory
    (alignment, a loop's scalar tail), which the narrowing moves. The runs end at the same steps, and the
    runs that train stably agree as the engine agrees with its oracle, not bit for bit (an unstable run
    amplifies a difference in rounding, as it amplifies any)."""
    config = make_config(steps=16, eval_every=5, batch_size=7, seeds=[0, 1, 2],
                         models={"mlp": {"family": "mlp", "depth": 3, "width": 5, "activation": "tanh"}},
                         optimizers={"adam": {"kind": "adam", "learning_rates": [3.0, 0.003, 0.3]}},
                         strategies={"clip_norm": {"clip_norm": [0.5, 50.0]}})
    cell = only_cell(config)  # the runs that end come first: the narrowing moves the others
    (runs, curves), (full_runs, full_curves) = (tables(cell, trained(cell, narrows)[0]) for narrows in (True, False))
    assert full_runs["diverged"].any() and not full_runs["diverged"].all()
    pd.testing.assert_frame_equal(runs[["run_id", "diverged", "diverged_step"]],
                                  full_runs[["run_id", "diverged", "diverged_step"]])
    pd.testing.assert_frame_equal(curves[["run_id", "step"]], full_curves[["run_id", "step"]])
    assert not curves.equals(full_curves), "the narrowing must move runs in this cell"
    stable = curves["run_id"].isin(full_runs.loc[full_runs["lr"] == 0.003, "run_id"])
    pd.testing.assert_frame_equal(curves[stable], full_curves[stable], check_exact=False, **TOLERANCES["float32"])
