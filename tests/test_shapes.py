"""The generated shapes task: determinism, splits, balance, standardisation, the shapes drawn, refusals, training."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, make_config, mutated, only_cell

from bench import sweep, tasks
from bench.errors import ConfigError
from bench.fingerprint import cell_fingerprint
from bench.tasks import shapes

SMALL = {"n_train": 200, "n_eval": 50, "data_seed": 3}


def make(**options) -> tasks.Task:
    """The shapes task made afresh (no cache)."""
    return tasks.make("shapes", options)


def sha256(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def test_the_default_data_set_is_the_same_on_every_call_and_machine() -> None:
    """Pinned hashes: the first standardised training examples and the first test grey levels."""
    task = make()
    x, y = task.splits["train"]
    assert sha256(x[:20].numpy(), y[:20].numpy()) == "a842a2de690b67eedfd190b7cd0e018e553dd5590306a35b283be2379b2b690a"
    grey, labels = shapes.draw(20, size=16, noise=0.25, data_seed=0, split_index=2)
    assert sha256(grey, labels) == "4d907ad125ff53c3d50205dbdc31c3ccda47f41459f854f7d23639e40d632281"
    again = make()
    assert all(torch.equal(again.splits[s][i], task.splits[s][i]) for s in shapes.SPLITS for i in (0, 1))
    other = make(data_seed=1)
    assert not torch.equal(other.splits["train"][0], x)


def test_splits_shapes_dtypes_and_scoring() -> None:
    task = make()
    assert [tuple(task.splits[s][0].shape) for s in shapes.SPLITS] == [(5000, 1, 16, 16), (1000, 1, 16, 16),
                                                                        (1000, 1, 16, 16)]
    assert all(task.splits[s][0].dtype == torch.float32 and task.splits[s][1].dtype == torch.long
               for s in shapes.SPLITS)
    assert (task.name, task.layout, task.objective, task.metric, task.n_outputs) == (
        "shapes", "image", "classification", "accuracy", 10)
    assert task.higher_is_better and task.chance_metric == 0.1 and math.isclose(task.chance_loss, math.log(10))
    assert task.input_shape("image") == (1, 16, 16) and task.input_shape("vector") == (256,)
    assert task.input_shape("sequence") == (16, 16) and task.input_shape("signal") == (16, 16)
    assert tuple(make(size=24, **SMALL).splits["val"][0].shape) == (50, 1, 24, 24)
    assert len(shapes.CLASSES) == task.n_outputs


def test_every_split_is_class_balanced() -> None:
    task = make()
    for split, each in zip(shapes.SPLITS, (500, 100, 100), strict=True):
        assert task.targets(split).bincount(minlength=10).tolist() == [each] * 10
    counts = make(n_train=25, n_eval=13).targets("train").bincount(minlength=10)  # blocks of 10: 2 or 3 each
    assert counts.sum() == 25 and set(counts.tolist()) == {2, 3}


def test_each_split_draws_from_its_own_generators() -> None:
    """Validation and test do not depend on n_train; a longer split extends a shorter one; no image repeats."""
    small, large = make(**SMALL), make(**{**SMALL, "n_train": 400})
    for split in ("val", "test"):
        assert torch.equal(small.targets(split), large.targets(split))
    draw = {"size": 16, "noise": 0.25, "data_seed": 3}
    grey, labels = shapes.draw(30, split_index=0, **draw)
    first, first_labels = shapes.draw(13, split_index=0, **draw)
    assert np.array_equal(grey[:13], first) and np.array_equal(labels[:13], first_labels)
    images = np.concatenate([shapes.draw(200, split_index=i, **draw)[0] for i in range(3)]).reshape(600, -1)
    assert len(np.unique(images, axis=0)) == 600


def test_pixels_are_standardised_by_the_training_split_alone() -> None:
    task = make(**SMALL)
    grey = [shapes.draw(n, size=16, noise=0.25, data_seed=3, split_index=i)[0].astype(np.float64)
            for i, n in enumerate((200, 50, 50))]
    mean, std = grey[0].mean(), grey[0].std(ddof=1)
    for split, levels in zip(shapes.SPLITS, grey, strict=True):
        np.testing.assert_allclose(task.splits[split][0][:, 0].numpy(), (levels - mean) / std, rtol=0, atol=1e-5)
    x = task.splits["train"][0].double()
    assert abs(x.mean().item()) < 1e-6 and math.isclose(x.std().item(), 1.0, rel_tol=1e-6)
    assert abs(task.splits["val"][0].double().mean().item()) > 1e-4  # not standardised on its own statistics


def test_the_shapes_are_what_their_names_say() -> None:
    """Without noise a shape is brighter than its background; bars and the diagonal lie the way they are named,
    the square, disk, ring, plus and X have no direction, and a shape is rotated by at most 15 degrees."""
    grey, labels = shapes.draw(1000, size=16, noise=0.0, data_seed=0, split_index=0)
    background = grey.min(axis=(1, 2))
    assert all(np.bincount(image.ravel()).argmax() == low for image, low in zip(grey, background, strict=True))
    ink = (grey - background[:, None, None]).astype(np.float64)
    rows, columns = np.mgrid[0:16, 0:16]
    total = ink.sum((1, 2))
    mx, my = (ink * columns).sum((1, 2)) / total, (ink * rows).sum((1, 2)) / total
    dx, dy = columns - mx[:, None, None], rows - my[:, None, None]
    var_x, var_y, cov = ((ink * a * b).sum((1, 2)) / total for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    angle = 0.5 * np.degrees(np.arctan2(-2 * cov, var_x - var_y))  # the main axis, counterclockwise from x
    elongation = (var_x - var_y) ** 2 + 4 * cov**2
    name = {n: labels == i for i, n in enumerate(shapes.CLASSES)}
    assert (np.abs(angle[name["horizontal bar"]]) < 16).all()
    assert (np.abs(np.abs(angle[name["vertical bar"]]) - 90) < 16).all()
    assert (np.abs(angle[name["diagonal"]] - 45) < 16).all()
    for line in ("horizontal bar", "vertical bar", "diagonal"):
        for round_shape in ("square", "disk", "ring", "plus", "X"):
            assert elongation[name[round_shape]].max() < elongation[name[line]].min()


def test_making_the_default_data_set_takes_well_under_two_seconds() -> None:
    start = time.process_time()
    make()
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(("options", "words"), [
    ({"size": 11}, "size = 11 is too small for the 10 shapes; allowed: size at least 12"),
    ({"n_train": 9}, "n_train = 9 is too small for the 10 shapes; allowed: n_train at least 10"),
    ({"n_eval": 5}, "n_eval = 5 is too small for the 10 shapes; allowed: n_eval at least 10"),
    ({"noise": -0.1}, "noise = -0.1 is not a standard deviation; allowed: noise at least 0"),
    ({"noise": math.nan}, "noise = nan is not a standard deviation; allowed: noise at least 0"),
])
def test_bad_options_are_refused_in_one_line(options: dict, words: str) -> None:
    with pytest.raises(ValueError) as refused:
        make(**options)
    assert str(refused.value) == words


@pytest.mark.parametrize(("entry", "key"), [({"kind": "shapes", "size": 10}, "'tasks.shapes'"),
                                            ({"kind": "shapes", "noise": -1.0}, "'tasks.shapes.noise'"),
                                            ({"kind": "digits", "size": 16}, "'tasks.shapes.size'")])
def test_a_config_with_bad_shapes_options_is_refused_before_any_work(entry: dict, key: str) -> None:
    config = mutated({"tasks.shapes": entry, "problems": [{"task": "shapes", "models": ["cnn2d"]}]})
    with pytest.raises(ConfigError) as refused:
        sweep.validate(config)
    message = str(refused.value)
    assert "\n" not in message and key in message and "allowed" in message


def test_every_option_is_in_the_cell_fingerprint_with_its_default() -> None:
    def fingerprint(entry: dict) -> str:
        return cell_fingerprint(only_cell(make_config(tasks={"shapes": entry}, problems=[
            {"task": "shapes", "models": ["cnn2d"]}])))

    plain = fingerprint({"kind": "shapes"})
    assert fingerprint({"kind": "shapes", "size": 16, "n_train": 5000, "n_eval": 1000, "noise": 0.25,
                        "data_seed": 0}) == plain
    changed = [{"size": 20}, {"n_train": 4000}, {"n_eval": 500}, {"noise": 0.3}, {"data_seed": 1}]
    assert len({plain, *(fingerprint({"kind": "shapes", **option}) for option in changed)}) == 6


def test_the_2d_cnn_trains_on_it_through_the_command_line(tmp_path: Path) -> None:
    config = mutated({"steps": 6, "eval_every": 3, "tasks.shapes": {"kind": "shapes", "n_train": 100, "n_eval": 20},
                      "problems": [{"task": "shapes", "models": ["cnn2d"]}]})
    path = tmp_path / "shapes.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "bench", "train", "--quiet", "--config", str(path), "--cell",
                             "shapes-cnn2d-sgd-none", "--out", str(out), "--data-cache", str(tmp_path / "cache")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 4 and (runs["task"] == "shapes").all() and runs["final_train_loss"].notna().all()
    assert runs["test_metric_at_best_val"].between(0, 1).all() and (runs["chance_metric"] == 0.1).all()
    assert len(list((tmp_path / "cache").glob("shapes-*.pt"))) == 1
