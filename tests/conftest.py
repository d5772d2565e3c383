"""Shared fixtures: small configs and cells for fast tests."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from workflow import TEX, TEX_TOOLS

from bench import engine, sweep

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BENCH_DATA_CACHE", str(ROOT / ".pytest_cache" / "data"))
torch.set_num_threads(1)

BASE: dict[str, Any] = {
    "sweep": "test",
    "device": "cpu",
    "steps": 20,
    "eval_every": 10,
    "batch_size": 16,
    "divergence_factor": 10,
    "seeds": [0, 1],
    "tasks": {
        "mnist1d": {"kind": "mnist1d", "n_train": 400},
        "digits": {"kind": "digits", "size": 28},
        "digits8": {"kind": "digits", "size": 8},
        "adding": {"kind": "adding", "length": 8, "n_train": 200, "n_eval": 64},
        "copy": {"kind": "copy", "length": 4, "n_train": 200, "n_eval": 64},
        "mnist": {"kind": "mnist"},
        "smnist": {"kind": "smnist", "permuted": True, "n_val": 16, "n_test": 16},
        "chars": {"kind": "chars", "context": 16},
        "modular": {"kind": "modular", "p": 11},
    },
    "models": {
        "mlp": {"family": "mlp", "depth": 3, "width": 16, "activation": "tanh"},
        "cnn1d": {"family": "cnn1d", "depth": 2, "channels": 4, "kernel": 3, "activation": "relu"},
        "cnn2d": {"family": "cnn2d", "depth": 2, "channels": 4, "kernel": 3, "activation": "relu"},
        "rnn": {"family": "rnn", "cell": "tanh", "hidden": 8},
        "lstm": {"family": "rnn", "cell": "lstm", "hidden": 8},
        "gru": {"family": "rnn", "cell": "gru", "hidden": 8},
        "transformer": {"family": "transformer", "d_model": 16, "layers": 2, "heads": 2},
    },
    "problems": [{"task": "mnist1d", "models": ["mlp"]}],
    "optimizers": {"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.05]}},
    "strategies": {"none": {}},
}


def make_config(**overrides: Any) -> dict[str, Any]:
    """A validated copy of BASE with top-level keys replaced."""
    config = copy.deepcopy(BASE)
    config.update(copy.deepcopy(overrides))
    sweep.validate(config)
    return sweep.with_defaults(config)


DELETE = object()
"""A value for ``mutated``: remove the key."""


def mutated(changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of BASE (unvalidated) with dotted keys (``models.mlp.width``, ``problems.0.task``) set or deleted."""
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)
    return config


def only_cell(config: dict[str, Any]) -> sweep.Cell:
    """The single cell of a one-cell config."""
    (cell,) = sweep.cells(config)
    return cell


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``tex`` where the TeX tools are not on PATH (.ci/run runs them with TeX: -m tex)."""
    if item.get_closest_marker("tex") and not TEX:
        pytest.skip(f"needs TeX: {', '.join(TEX_TOOLS)} (the paper build)")


@pytest.fixture
def config_factory():
    return make_config


def assert_same_history(history: engine.History, expected: engine.History) -> None:
    """Every step metric and probe, evaluation, divergence step and final parameter of ``history`` equals
    ``expected``'s, bit for bit (NaN equal to NaN)."""
    assert history.step_metrics.keys() == expected.step_metrics.keys()
    for name, values in expected.step_metrics.items():
        np.testing.assert_array_equal(history.step_metrics[name], values, err_msg=name)
    for name, values in expected.eval_metrics.items():
        np.testing.assert_array_equal(history.eval_metrics[name], values, err_msg=name)
    np.testing.assert_array_equal(history.diverged_step, expected.diverged_step)
    for mine, theirs in zip(history.final_params, expected.final_params, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
