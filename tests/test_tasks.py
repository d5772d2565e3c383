"""Tasks: offline data, isolated generators, chance levels, per-run data order."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import tasks
from bench.tasks import copy_memory


def make(kind: str, **options):
    """Make task ``kind`` afresh (no cache) through its registered factory."""
    return tasks.REGISTRY.make(kind, **options)


def test_mnist1d_leaves_global_generators_alone() -> None:
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    make("mnist1d", n_train=64, data_seed=5)
    assert (np.random.rand(), random.random()) == expected


def test_mnist1d_splits_and_layouts() -> None:
    task = tasks.load("mnist1d", {"n_train": 400})
    assert [len(task.targets(s)) for s in ("train", "val", "test")] == [400, 500, 1000]
    assert task.inputs("train", "vector").shape == (400, 40)
    assert task.inputs("train", "signal").shape == (400, 1, 40)
    assert task.inputs("train", "sequence").shape == (400, 40, 1)
    assert torch.equal(task.inputs("train", "sequence")[:, :, 0], task.inputs("train", "vector"))


def test_digits_upsampled_to_28() -> None:
    task = tasks.load("digits", {"size": 28})
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
    assert x.shape == (4000, length + 20) and x.dtype == torch.long and y.shape == (4000, length + 20)
    assert task.layout == "tokens" and task.vocab == 10 and task.per_step
    assert torch.equal(y[:, -10:], x[:, :10]) and (x[:, length + 9] == copy_memory.MARKER).all()
    one_hot = task.inputs("train", "sequence")  # what a recurrent network reads
    assert one_hot.shape == (4000, length + 20, 10) and torch.equal(one_hot.argmax(-1), x)
    # The memoryless baseline: blank with certainty until the marker, then uniform over the 8 symbols.
    logits = torch.full((1, 4000, length + 20, 10), -1e4)
    logits[..., : length + 10, copy_memory.BLANK] = 0.0
    logits[..., length + 10 :, 1:9] = 0.0
    loss, _ = task.loss_and_metric(logits, y.unsqueeze(0))
    assert math.isclose(loss.item(), 10 * math.log(8) / (length + 20), rel_tol=1e-4)
    assert math.isclose(task.chance_loss, 10 * math.log(8) / (length + 20))


def test_a_maker_whose_task_differs_from_its_registration_is_refused(monkeypatch) -> None:
    """A config is checked on a task kind's registered layout and objective: making a Task of another is an error."""
    entry = tasks.REGISTRY.lookup("adding")
    for what, wrong in (("layout", "tokens"), ("objective", "sequence")):
        monkeypatch.setitem(tasks.REGISTRY.entries, "adding", dataclasses.replace(entry,
                                                                                 meta={**entry.meta, what: wrong}))
        with pytest.raises(ValueError, match=f"registration says {wrong!r}"):
            tasks.make("adding", ADDING)
    monkeypatch.setitem(tasks.REGISTRY.entries, "adding", entry)
    assert tasks.make("adding", ADDING).objective == tasks.objective("adding") == "regression"


def test_batch_order_is_a_function_of_seed_and_step() -> None:
    whole = tasks.batch_indices(3, 100, 32, range(10))
    assert whole.shape == (10, 32)
    assert torch.equal(tasks.batch_indices(3, 100, 32, range(4, 7)), whole[4:7])
    assert not torch.equal(tasks.batch_indices(4, 100, 32, range(10)), whole)
    epoch = whole[:3].flatten()
    assert len(set(epoch.tolist())) == 96


ADDING = {"length": 5, "n_train": 32, "n_eval": 16, "data_seed": 2}


def test_same_data_whatever_the_cache(tmp_path) -> None:
    made = make("adding", **ADDING)
    tasks._load.cache_clear()
    first = tasks.load("adding", ADDING, tmp_path)  # made and written
    tasks._load.cache_clear()
    cached = tasks.load("adding", ADDING, tmp_path)  # read from the disk
    assert [p.name for p in tmp_path.iterdir()] == [f"{tasks.cache_key('adding', ADDING)}.pt"]
    for task in (first, cached):
        assert dataclasses.replace(task, splits={}) == dataclasses.replace(made, splits={})
        for split, (x, y) in made.splits.items():
            assert torch.equal(task.splits[split][0], x) and torch.equal(task.splits[split][1], y)
            assert task.splits[split][0].dtype == x.dtype and task.splits[split][1].dtype == y.dtype


def test_the_cache_key_is_every_option_of_the_data_set_and_nothing_else() -> None:
    key = tasks.cache_key("adding", ADDING)
    assert key.startswith("adding-") and len(key) == len("adding-") + 64
    assert tasks.cache_key("adding", {}) == tasks.cache_key("adding", tasks.REGISTRY.lookup("adding").options)
    for option, value in {"length": 6, "n_train": 33, "n_eval": 17, "data_seed": 3}.items():
        assert tasks.cache_key("adding", {**ADDING, option: value}) != key, option
    assert tasks.cache_key("smnist", {"permuted": True}) != tasks.cache_key("smnist", {"permuted": False})
    assert tasks.cache_key("mnist", {}) != tasks.cache_key("smnist", {})
    with pytest.raises(TypeError, match="spike_rate"):  # a run's bad batches are not the data set's
        tasks.cache_key("adding", {"spike_rate": 0.1})


def test_a_damaged_entry_is_remade_and_a_write_killed_midway_leaves_none(tmp_path, monkeypatch) -> None:
    path = tmp_path / f"{tasks.cache_key('adding', ADDING)}.pt"
    path.write_bytes(b"not a data set")
    tasks._load.cache_clear()
    remade = tasks.load("adding", ADDING, tmp_path)
    assert torch.equal(remade.splits["val"][0], make("adding", **ADDING).splits["val"][0])
    assert torch.load(path, weights_only=True)["name"] == "adding"

    def killed(obj, target):  # the process dies with half the file written
        Path(target).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    other = tmp_path / "other"
    tasks._load.cache_clear()
    with pytest.raises(KeyboardInterrupt):
        tasks.load("adding", ADDING, other)
    assert list(other.iterdir()) == []


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


def test_chars_is_the_pinned_text_in_windows_with_targets_shifted_by_one() -> None:
    from collections import Counter

    from bench.tasks import chars

    text = chars.text()
    assert chars.text_hash(text) == chars.PYTHON_311_TEXT_SHA256  # this machine's Python 3.11 text
    task = make("chars", context=16)
    vocabulary = sorted(set(text))
    assert task.vocab == task.n_outputs == len(vocabulary) and task.layout == "tokens" and task.objective == "language"
    (x, y), (xv, _), (xt, _) = (task.splits[s] for s in ("train", "val", "test"))
    assert x.dtype == y.dtype == torch.long and x.shape[1:] == y.shape[1:] == (16,)
    assert "".join(vocabulary[i] for i in x[0]) + vocabulary[y[0, -1]] == text[:17]
    assert "".join(vocabulary[i] for i in x[1]) == text[17:33]  # non-overlapping windows of context + 1
    assert torch.equal(y[:, :-1], x[:, 1:])
    train_end, val_end = int(len(text) * 0.9), int(len(text) * 0.9) + int(len(text) * 0.05)
    assert (len(x), len(xv), len(xt)) == (train_end // 17, (val_end - train_end) // 17, (len(text) - val_end) // 17)
    assert "".join(vocabulary[i] for i in xv[0]) == text[train_end : train_end + 16]
    counts = Counter(text[:train_end])
    entropy = -sum(n / train_end * math.log(n / train_end) for n in counts.values())
    assert math.isclose(task.chance_loss, entropy, rel_tol=1e-12)
    assert math.isclose(task.chance_metric, entropy / math.log(2), rel_tol=1e-12)


def test_chars_feeds_ids_their_one_hot_sequence_and_their_flat_one_hot() -> None:
    task = make("chars", context=8)
    ids = task.inputs("val", "tokens")
    one_hot = task.inputs("val", "sequence")
    assert one_hot.shape == (len(ids), 8, task.vocab) and torch.equal(one_hot.argmax(-1), ids)
    assert torch.equal(task.inputs("val", "vector"), one_hot.flatten(1))
    assert task.input_shape("tokens") == task.input_shape("sequence") == (8, task.vocab)
    assert task.input_shape("vector") == (8 * task.vocab,)
    with pytest.raises(ValueError, match="cannot feed inputs of form 'image'"):
        task.input_shape("image")


def test_language_scores_bits_per_character_over_every_position() -> None:
    task = make("chars", context=4)
    _, y = task.splits["val"]
    uniform = torch.zeros(2, len(y), 4, task.vocab)
    loss, metric = task.loss_and_metric(uniform, y.expand(2, *y.shape))
    assert torch.allclose(loss, torch.full((2,), math.log(task.vocab)))
    assert torch.allclose(metric, torch.full((2,), math.log2(task.vocab)))
    assert task.metric == "bits_per_char" and not task.higher_is_better


def test_a_text_that_is_not_the_pinned_one_is_refused_naming_both_hashes() -> None:
    from bench.tasks import chars

    pinned = "0" * 64
    with pytest.raises(ValueError) as refused:
        make("chars", text_sha256=pinned)
    message = str(refused.value)
    assert "\n" not in message and pinned in message and chars.PYTHON_311_TEXT_SHA256 in message
    assert f"text_sha256: {chars.PYTHON_311_TEXT_SHA256}" in message and "another data set" in message
    assert tasks.cache_key("chars", {"text_sha256": pinned}) != tasks.cache_key("chars", {})


def test_modular_holds_every_pair_once_split_train_then_half_validation_half_test() -> None:
    task = make("modular", p=11, train_fraction=0.5, data_seed=3)
    sizes = [len(task.targets(s)) for s in ("train", "val", "test")]
    assert sizes == [60, 30, 31]
    x = torch.cat([task.splits[s][0] for s in ("train", "val", "test")])
    y = torch.cat([task.targets(s) for s in ("train", "val", "test")])
    assert x.dtype == torch.long and x.shape == (121, 3) and (x[:, 2] == 11).all()
    assert sorted(map(tuple, x[:, :2].tolist())) == [(a, b) for a in range(11) for b in range(11)]
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 11)
    assert task.vocab == 12 and task.n_outputs == 11 and task.objective == "classification"
    assert math.isclose(task.chance_loss, math.log(11)) and math.isclose(task.chance_metric, 1 / 11)
    assert task.inputs("train", "vector").shape == (60, 36) and task.input_shape("tokens") == (3, 12)
    assert not torch.equal(make("modular", p=11, data_seed=4).splits["train"][0], task.splits["train"][0])
    assert [len(make("modular", p=97).targets(s)) for s in ("train", "val", "test")] == [4704, 2352, 2353]
    with pytest.raises(ValueError, match="leaves a split without a pair"):
        make("modular", p=2, train_fraction=0.9)
