"""Tasks: offline data, isolated generators, chance levels, per-run data order."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from bench import tasks
from bench.tasks import copy_memory


def make(kind: str, **options):
    """Make task ``kind`` afresh (no cache) through its registered factory."""
    return tasks.REGISTRY.lookup(kind).factory(**options)


def test_mnist1d_leaves_global_generators_alone() -> None:
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    make("mnist1d", n_train=64, data_seed=5)
    assert (np.random.rand(), random.random()) == expected


def test_mnist1d_splits_and_layouts() -> None:
    task = tasks.load("mnist1d", n_train=400)
    assert [len(task.targets(s)) for s in ("train", "val", "test")] == [400, 500, 1000]
    assert task.inputs("train", "vector").shape == (400, 40)
    assert task.inputs("train", "signal").shape == (400, 1, 40)
    assert task.inputs("train", "sequence").shape == (400, 40, 1)
    assert torch.equal(task.inputs("train", "sequence")[:, :, 0], task.inputs("train", "vector"))


def test_digits_upsampled_to_28() -> None:
    task = tasks.load("digits", size=28)
    assert task.inputs("train", "image").shape[1:] == (1, 28, 28)
    assert task.inputs("val", "sequence").shape[1:] == (28, 28)
    signal = task.inputs("val", "signal")  # rows along the length, a row's pixels as channels
    assert signal.shape[1:] == (28, 28)
    assert torch.equal(signal.transpose(1, 2), task.inputs("val", "sequence"))
    total = sum(len(task.targets(s)) for s in ("train", "val", "test"))
    assert total == 1797


def test_adding_chance_is_one_sixth() -> None:
    task = make("adding", length=20, n_train=20000, n_eval=16)
    x, y = task.splits["train"]
    assert x.shape == (20000, 20, 2)
    assert (x[..., 1].sum(1) == 2).all()
    predict_one = torch.ones(1, len(y), 1)
    mse, _ = task.loss_and_metric(predict_one, y.unsqueeze(0))
    assert abs(mse.item() - 1 / 6) < 0.01 and task.chance_loss == 1 / 6


def test_copy_chance_cross_entropy() -> None:
    length = 15
    task = make("copy", length=length, n_train=4000, n_eval=16)
    x, y = task.splits["train"]
    assert x.shape == (4000, length + 20, 10) and y.shape == (4000, length + 20)
    assert torch.equal(y[:, -10:], x[:, :10].argmax(-1))
    # The memoryless baseline: blank with certainty until the marker, then uniform over the 8 symbols.
    logits = torch.full((1, 4000, length + 20, 10), -1e4)
    logits[..., : length + 10, copy_memory.BLANK] = 0.0
    logits[..., length + 10 :, 1:9] = 0.0
    loss, _ = task.loss_and_metric(logits, y.unsqueeze(0))
    assert math.isclose(loss.item(), 10 * math.log(8) / (length + 20), rel_tol=1e-4)
    assert math.isclose(task.chance_loss, 10 * math.log(8) / (length + 20))


def test_batch_order_is_a_function_of_seed_and_step() -> None:
    whole = tasks.batch_indices(3, 100, 32, range(10))
    assert whole.shape == (10, 32)
    assert torch.equal(tasks.batch_indices(3, 100, 32, range(4, 7)), whole[4:7])
    assert not torch.equal(tasks.batch_indices(4, 100, 32, range(10)), whole)
    epoch = whole[:3].flatten()
    assert len(set(epoch.tolist())) == 96


def test_same_data_whatever_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_DATA_CACHE", str(tmp_path))
    made = make("adding", length=5, n_train=32, n_eval=16, data_seed=2)
    tasks._load.cache_clear()
    first = tasks.load("adding", length=5, n_train=32, n_eval=16, data_seed=2)
    tasks._load.cache_clear()
    cached = tasks.load("adding", length=5, n_train=32, n_eval=16, data_seed=2)
    assert list(tmp_path.glob("*.pt"))
    for task in (first, cached):
        for split, (x, y) in made.splits.items():
            assert torch.equal(task.splits[split][0], x) and torch.equal(task.splits[split][1], y)


def test_mnist_is_real_digits_split_by_a_fixed_seed_and_standardised_on_training_data() -> None:
    task = make("mnist", n_val=500, n_test=1000, data_seed=0)
    (x, y), (xv, _), (xt, yt) = (task.splits[s] for s in ("train", "val", "test"))
    assert (len(y), len(xv), len(yt)) == (3500, 500, 1000) and x.shape[1:] == (1, 28, 28)
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-5  # training statistics only
    assert abs(xt.mean().item()) > 1e-4  # the test split is standardised with the training statistics
    assert set(yt.tolist()) == set(range(10)) and torch.equal(make("mnist", data_seed=0).splits["test"][1], yt)
    assert not torch.equal(make("mnist", data_seed=1).splits["test"][1], yt)
    assert task.inputs("train", "vector").shape == (3500, 784)
    assert task.inputs("train", "sequence").shape == (3500, 28, 28)  # rows as a sequence


def test_sequential_mnist_reads_the_same_digits_pixel_by_pixel_in_one_fixed_order() -> None:
    images = make("mnist", data_seed=3).splits["train"][0]
    plain = make("smnist", data_seed=3).splits["train"][0]
    permuted = make("smnist", permuted=True, data_seed=3).splits["train"][0]
    assert plain.shape == permuted.shape == (3500, 784, 1)
    assert torch.equal(plain[:, :, 0], images.flatten(1))
    assert not torch.equal(permuted, plain)
    order = torch.sort(permuted[0, :, 0]).values  # one permutation of each image's own pixels
    assert torch.equal(order, torch.sort(plain[0, :, 0]).values)
    again = make("smnist", permuted=True, data_seed=3).splits["train"][0]
    assert torch.equal(again, permuted)
