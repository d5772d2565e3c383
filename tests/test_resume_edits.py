"""A cell edited after its job was killed trains again from step 0: one fingerprint (bench/fingerprint.py)
decides what a cell's results are, for checkpoints, for Snakemake's reruns and for committed results.

One training job (``python -m bench train``, as the pipeline runs it) is killed after its checkpoint at
step 10 (tests/faults/sitecustomize.py). Each test copies what it left, edits one thing of the config
(an option of the task, the model or the optimizer, the strategy, the budget) and runs the job again:
it trains from step 0 and writes exactly what a fresh job of the edited config writes. Unedited, or with
a default spelled out, the job resumes, and its results are those of an uninterrupted job.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from bench import checkpoint, fingerprint, paths, publish, record, store, sweep

ROOT = Path(__file__).resolve().parent.parent
FAULTS = Path(__file__).resolve().parent / "faults"
CONFIG: dict[str, Any] = {
    "sweep": "edits", "device": "cpu", "steps": 30, "eval_every": 10, "batch_size": 16, "divergence_factor": 10,
    "checkpoint_every": 10, "seeds": [0, 1],
    "tasks": {"mnist1d": {"kind": "mnist1d", "n_train": 400}},
    "models": {"mlp": {"family": "mlp", "depth": 3, "width": 16, "activation": "tanh"}},
    "problems": [{"task": "mnist1d", "models": ["mlp"]}],
    "optimizers": {"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.05, 0.5]}},
    "strategies": {"guard": {"chain": ["clip_norm"], "clip_norm": [1.0]}},
}
CELL = "mnist1d-mlp-sgd-guard"
KILLED_AT = 15
"""The step before which the job is killed: after its checkpoint at step 10."""
EDITS = {
    "task option": ("tasks.mnist1d.n_train", 300),
    "model option": ("models.mlp.activation", "relu"),
    "optimizer option": ("optimizers.sgd.momentum", 0.0),
    "strategy member": ("strategies.guard.chain", ["clip_norm", "update_clip"]),
    "strategy hyperparameter": ("strategies.guard.clip_norm", [0.5]),
    "budget: steps": ("steps", 40),
    "budget: batch size": ("batch_size", 8),
    "divergence rule": ("divergence_factor", 3),
}
UNCHANGED = {
    "nothing edited": ("checkpoint_every", 10),
    "a default spelled out": ("optimizers.sgd.nesterov", False),
    "an unused entry added": ("models.wide", {"family": "mlp", "width": 64}),
}


def edited(dotted: str, value: Any) -> dict[str, Any]:
    """CONFIG with the key ``dotted`` (``models.mlp.activation``) set to ``value``."""
    config = copy.deepcopy(CONFIG)
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(value)
    return config


def train(config: dict[str, Any], out: Path, kill: bool = False) -> subprocess.Popen[str]:
    """Start ``python -m bench train`` of the cell of ``config`` into ``out``; with ``kill``, SIGKILLed
    before step KILLED_AT."""
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    if kill:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS), env.get("PYTHONPATH")]))
        env["BENCH_TEST_KILL"] = f"train:{CELL}@{KILLED_AT}"
        env["BENCH_TEST_KILL_MARKS"] = str(out.parent / f"{out.name}-marks")
    command = [sys.executable, "-m", "bench", "train", "--quiet", "--config", str(out.parent / f"{out.name}.yaml"),
               "--cell", CELL, "--out", str(out)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen[str]) -> str:
    """The output of a training job that ended well."""
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = store.read(out / "runs.parquet", "runs").drop(columns=list(store.TIMING_COLUMNS))
    return runs, store.read(out / "curves.parquet", "curves")


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder a job of CONFIG left when it was killed after its checkpoint at step 10 (tests copy it)."""
    out = tmp_path_factory.mktemp("killed") / "cell"
    process = train(CONFIG, out, kill=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == -9, output[-3000:]
    assert (out / "checkpoint.pt").is_file()
    assert not (out / "runs.parquet").exists()
    return out


def rerun_and_fresh(killed: Path, config: dict[str, Any], tmp_path: Path) -> tuple[str, Path, Path]:
    """The killed job's folder, copied, trained on with ``config``; and a fresh job of ``config`` beside it.

    The copy is given the record of a cell of another definition, as a folder that once held a finished
    cell has: the job replaces it with the record of the cell it trained (bench/record.py)."""
    again = shutil.copytree(killed, tmp_path / "again")
    record.write(again, record.trained("edits", CELL, "0" * 64, 0, 0, "none"))
    jobs = train(config, again), train(config, tmp_path / "fresh")
    output, _ = finished(jobs[0]), finished(jobs[1])
    for folder in (again, tmp_path / "fresh"):
        stored = record.holds(folder, fingerprint.cell_fingerprint(one_cell(config)))
        assert stored is not None and stored["thinning"] is None, folder
        assert (stored["runs"], stored["curve_rows"]) == tuple(len(table) for table in tables(folder))
    return output, again, tmp_path / "fresh"


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_cell_trains_from_step_0(killed: Path, edit: str, tmp_path: Path) -> None:
    config = edited(*EDITS[edit])
    output, again, fresh = rerun_and_fresh(killed, config, tmp_path)
    assert "resumed" not in output and "trained from step 0" in output, output
    for got, expected in zip(tables(again), tables(fresh), strict=True):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert not (again / "checkpoint.pt").exists()


@pytest.mark.parametrize("change", list(UNCHANGED))
def test_a_cell_that_means_the_same_resumes(killed: Path, change: str, tmp_path: Path) -> None:
    """The control: the job resumes where nothing that decides the results changed, and computes what an
    uninterrupted job does."""
    config = edited(*UNCHANGED[change])
    output, again, fresh = rerun_and_fresh(killed, config, tmp_path)
    assert "resumed from the checkpoint at step 10" in output, output
    for got, expected in zip(tables(again), tables(fresh), strict=True):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def one_cell(config: dict[str, Any]) -> sweep.Cell:
    (cell,) = sweep.cells(config)
    return cell


def another(name: str, value: Any) -> Any:
    """Another value of the Cell field ``name`` than ``value``."""
    if name in fingerprint.ENTRIES:
        return {**value, **{"task": {"n_train": 300}, "model": {"depth": 5}, "optimizer": {"momentum": 0.5}}[name]}
    if name == "members":
        return [*value, "update_clip"]
    if name == "runs":
        return [dataclasses.replace(value[0], seed=7), *value[1:]]
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int | float):
        return value * 2 + 1
    raise AssertionError(f"say in another() how the new Cell field {name!r} can change")


def test_every_cell_field_is_classified() -> None:
    """A field added to Cell must be said to decide its results or not; those that do change the fingerprint."""
    names = {field.name for field in dataclasses.fields(sweep.Cell)}
    unclassified = names - fingerprint.DECIDING - set(fingerprint.NOT_DECIDING)
    assert not unclassified, f"classify {sorted(unclassified)} in bench/fingerprint.py (DECIDING or NOT_DECIDING)"
    assert not fingerprint.DECIDING & set(fingerprint.NOT_DECIDING)
    assert fingerprint.DECIDING | set(fingerprint.NOT_DECIDING) == names, "no stale names"
    cell = one_cell(CONFIG)
    other = one_cell(edited("optimizers.sgd.momentum", 0.5))
    base = fingerprint.cell_fingerprint(cell)
    for name in names:
        value = getattr(cell, name)
        changed = dataclasses.replace(cell, **{name: another(name, value)})
        assert (fingerprint.cell_fingerprint(changed) != base) == (name in fingerprint.DECIDING), name
    assert fingerprint.cell_fingerprint(other) != base
    grown = dataclasses.make_dataclass("Grown", [("stage", int, 0)], bases=(sweep.Cell,), frozen=True)
    with pytest.raises(TypeError, match="'stage' is neither in DECIDING nor in NOT_DECIDING"):
        fingerprint.cell_spec(grown(**{field.name: getattr(cell, field.name) for field in dataclasses.fields(cell)}))


def test_a_default_spelled_out_or_written_as_another_number_changes_nothing() -> None:
    base = fingerprint.cell_fingerprint(one_cell(CONFIG))
    for dotted, value in [("optimizers.sgd.nesterov", False), ("optimizers.sgd.weight_decay", 0),
                          ("optimizers.sgd.schedule", "constant"), ("models.mlp.init_gain", [1.0]),
                          ("tasks.mnist1d.spike_rate", [0.0]), ("tasks.mnist1d.data_seed", 42),
                          ("divergence_factor", 10.0), ("device", "cuda"), ("threads", 2), ("cuda_graph", True)]:
        assert fingerprint.cell_fingerprint(one_cell(edited(dotted, value))) == base, dotted
    for dotted, value in [("tasks.mnist1d.data_seed", 1), ("models.mlp.init_gain", [2.0]),
                          ("optimizers.sgd.schedule", "cosine"), ("eval_every", 5)]:
        assert fingerprint.cell_fingerprint(one_cell(edited(dotted, value))) != base, dotted


def test_checkpoints_and_committed_cells_ask_the_one_fingerprint(tmp_path: Path) -> None:
    """The checkpoint's fingerprint and a cell's record (of a trained, restored or committed cell) are
    ``cell_fingerprint`` (Snakemake's param is that function too: tests/test_pipeline.py plans the cells
    an option edit changes)."""
    config = sweep.with_defaults(CONFIG)
    cell = one_cell(config)
    assert checkpoint.fingerprint(cell) == f"{checkpoint.FORMAT}|{fingerprint.cell_fingerprint(cell)}"
    folder = tmp_path / paths.CELLS / cell.id
    folder.mkdir(parents=True)
    for path in paths.tables(folder).values():
        path.write_bytes(b"")
    record.write(folder, record.trained(cell.sweep, cell.id, fingerprint.cell_fingerprint(cell), 4, 40, "2"))
    assert publish.committed(tmp_path, cell.id, fingerprint.cell_fingerprint(cell)) == record.read(folder)
    for edit in EDITS.values():
        assert publish.committed(tmp_path, cell.id, fingerprint.cell_fingerprint(one_cell(edited(*edit)))) is None
    common = (ROOT / "rules" / "common.smk").read_text()
    assert "from bench.fingerprint import cell_fingerprint" in common and "def cell_fingerprint" not in common
