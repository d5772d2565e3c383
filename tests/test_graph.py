"""The CUDA-graph step (bench/graph.py), run on a CPU with stand-ins for torch.cuda: it trains
exactly what the eager step trains, for every kind of state and branch a step has."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import probed
import pytest
import torch
from conftest import assert_same_history, make_config, only_cell

from bench import engine, graph


class StandInStream:
    def wait_stream(self, other: object) -> None:
        pass


HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")
"""What reads a tensor's value back on the host: an error while a CUDA graph is captured."""


def forbidden(*args, **kwargs):
    raise AssertionError("the captured step read a tensor on the host")


@pytest.fixture
def captured(monkeypatch) -> dict[str, int]:
    """torch.cuda's streams and graph capture stood in for: a capture records the step without
    running it, a replay runs the recorded step, and fails at any read of a tensor's value on the
    host (a real capture fails there too, and its replay could not repeat a branch taken on one
    step's data). Counts the captures and replays."""
    counts = {"captures": 0, "replays": 0}

    def capture(step):
        counts["captures"] += 1

        def replay():
            counts["replays"] += 1
            with monkeypatch.context() as strict:
                for name in HOST_READS:
                    strict.setattr(torch.Tensor, name, forbidden)
                step()

        return replay

    monkeypatch.setattr(graph, "capture", capture)
    monkeypatch.setattr(graph, "wanted", lambda built: built.cell.cuda_graph)
    monkeypatch.setattr(torch.cuda, "Stream", StandInStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: StandInStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    return counts


def both_ways(config: dict) -> tuple[engine.History, engine.History]:
    """The cell of ``config`` trained eagerly, then with its steps graphed."""
    cell = only_cell(config)
    eager = engine.train(engine.build(cell), progress=False)
    graphed = engine.train(engine.build(dataclasses.replace(cell, cuda_graph=True)), progress=False)
    return eager, graphed




SGD_SCHEDULED = {"sgd": {"kind": "sgd", "momentum": 0.9, "schedule": "cosine", "learning_rates": [0.05, 100.0]}}
SPIKY = {"mnist1d": {"kind": "mnist1d", "n_train": 400, "spike_rate": [0.0, 0.2], "spike_scale": 100.0}}


@pytest.mark.parametrize("strategies", [
    {"clip_norm": {"clip_norm": [0.5], "warmup_steps": [0, 6]}},
    {"mix": {"chain": ["clip_norm_layer", "max_norm"], "clip_norm_layer": [0.5], "max_norm": [1.0]}},
    {"zclip": {"zclip_warmup": [3]}},
    {"spike_skip": {"spike_warmup": [3]}},
    {"update_clip": {}},
], ids=["clip_norm+warmup", "per-tensor+weights", "zclip", "spike_skip", "update_clip"])
def test_the_graphed_step_trains_what_the_eager_step_trains(captured, strategies) -> None:
    """Warm-up on a cosine schedule, bad batches, runs that diverge part-way (lr 100), and state of
    every kind; the replays start after the eager warm-up steps."""
    config = make_config(tasks=SPIKY, optimizers=SGD_SCHEDULED, strategies=strategies, steps=16, eval_every=5)
    eager, graphed = both_ways(config)
    assert (eager.diverged_step >= 0).any() and (eager.diverged_step == -1).any()
    assert_same_history(graphed, eager)
    assert captured == {"captures": 1, "replays": 16 - graph.WARMUP}


def test_a_float64_cell_is_graphed_exactly(captured) -> None:
    """Every tensor the graphed step writes into (logs, state) is of the cell's precision."""
    config = make_config(tasks=SPIKY, optimizers=SGD_SCHEDULED, strategies={"clip_norm": {"clip_norm": [0.5]}},
                         steps=10, dtype="float64")
    eager, graphed = both_ways(config)
    assert eager.step_metrics["train_loss"].dtype == np.float64
    assert all(p.dtype == torch.float64 for p in graphed.final_params)
    assert_same_history(graphed, eager)
    assert captured == {"captures": 1, "replays": 10 - graph.WARMUP}


def test_adam_and_the_optimizer_state_a_strategy_resets_are_graphed_exactly(captured) -> None:
    config = make_config(
        tasks={"adding": {"kind": "adding", "length": 8, "n_train": 200, "n_eval": 64}},
        problems=[{"task": "adding", "models": ["rnn"]}],
        optimizers={"adam": {"kind": "adam", "learning_rates": [0.003, 0.03]}},
        strategies={"spam_clip": {"spam_theta": [50.0], "spam_reset_interval": [6], "spam_warmup": [2]}},
        steps=14)
    assert_same_history(*reversed(both_ways(config)))
    assert captured["captures"] == 1


def test_a_nonfinite_step_is_skipped_in_the_graph_as_eagerly(captured) -> None:
    config = make_config(optimizers={"sgd": {"kind": "sgd", "learning_rates": [0.01, float("inf")]}},
                         strategies={"skip_nonfinite": {"max_consecutive_skips": [4]}}, steps=12)
    eager, graphed = both_ways(config)
    assert (eager.diverged_step >= 0).any()
    assert_same_history(graphed, eager)


def test_a_models_probes_and_a_loss_term_are_graphed_exactly(captured, monkeypatch) -> None:
    """The probes' logs are written in place like the step metrics', from the graphed forward pass."""
    probed.register(monkeypatch)
    config = make_config(models={"probed": probed.MODEL}, problems=[{"task": "mnist1d", "models": ["probed"]}],
                         optimizers=SGD_SCHEDULED, strategies={"z_loss": {"z_loss": [0.01, 0.3]}}, steps=12)
    eager, graphed = both_ways(config)
    assert set(probed.PROBES) <= set(eager.step_metrics)
    assert (eager.diverged_step >= 0).any() and (eager.diverged_step == -1).any()
    assert_same_history(graphed, eager)
    assert captured == {"captures": 1, "replays": 12 - graph.WARMUP}


def test_a_state_that_grows_is_stepped_eagerly(captured) -> None:
    """autoclip's history gains an entry every step: no fixed memory to replay on."""
    config = make_config(strategies={"autoclip": {"autoclip_percentile": [10.0]}}, steps=8)
    assert_same_history(*reversed(both_ways(config)))
    assert captured == {"captures": 0, "replays": 0}


def test_a_resumed_graphed_run_matches_an_uninterrupted_one(captured, tmp_path) -> None:
    config = make_config(optimizers=SGD_SCHEDULED, strategies={"clip_norm": {"clip_norm": [0.5]}}, steps=12,
                         checkpoint_every=4)
    cell = dataclasses.replace(only_cell(config), cuda_graph=True, checkpoint_every=4)
    whole = engine.train(engine.build(cell), progress=False)
    path = tmp_path / "checkpoint.pt"
    engine.train(engine.build(cell), progress=False, checkpoint_path=path,
                 checkpoint_every=4)
    resumed = engine.train(engine.build(cell), progress=False, checkpoint_path=path, checkpoint_every=4)
    assert resumed.resumed_from == 8
    assert_same_history(resumed, whole)


def test_the_switch_is_off_by_default_and_asks_for_a_gpu() -> None:
    built = engine.build(only_cell(make_config(steps=2)))
    assert built.cell.cuda_graph is False
    assert not graph.wanted(dataclasses.replace(built, cell=dataclasses.replace(built.cell, cuda_graph=True)))
