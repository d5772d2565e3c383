"""`python -m bench perf --quick` runs and writes the documented JSON (no thresholds here); the vmap peer
trains the engine's runs."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench import engine, peer, perf, shrink, sweep
from bench.__main__ import main


def test_perf_quick_writes_the_documented_record(tmp_path) -> None:
    out = tmp_path / "perf.json"
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cpu", "--quick", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"device", "torch", "threads", "date", "throughput", "peer", "limit", "strategy_overhead",
            "memory"} <= set(record)
    assert {row["model"] for row in record["throughput"]} == {"mlp", "cnn", "rnn"}
    for row in record["throughput"]:
        assert {"model", "K", "engine_run_steps_per_s", "reference_run_steps_per_s", "speedup"} <= set(row)
        assert row["engine_run_steps_per_s"] > 0 and row["speedup"] > 0
    assert {(row["model"], row["K"], row["strategy"]) for row in record["peer"]} == {
        (model, 8, strategy) for model in ("mlp", "cnn", "rnn") for strategy in ("clip_norm", "none")}
    for row in record["peer"]:
        assert {"model", "cell", "K", "strategy", "engine_run_steps_per_s", "vmap_run_steps_per_s", "ratio"} <= set(row)
        assert row["vmap_run_steps_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["engine_run_steps_per_s"] / row["vmap_run_steps_per_s"])
    assert {"matmul_flops_per_s", "engine_flops_per_s", "fraction", "layer_matmul_flops_per_s"} <= set(record["limit"])
    assert 0 < record["limit"]["fraction"]
    assert record["limit"]["layer_shape"] == [8, 32, 32, 32]  # K = 8 runs of the smoke MLP: width 32, batch 32
    assert record["limit"]["gradients_s"] > 0 and record["limit"]["step_s"] > 0
    ratios = {row["strategy"]: row["ratio_to_none"] for row in record["strategy_overhead"]}
    assert "none" in ratios and "clip_norm" in ratios and all(r > 0 for r in ratios.values())
    assert set(ratios) == set(perf.overhead_strategies()) and "z_loss" in ratios and "qk_norm" not in ratios
    assert record["memory"]["host_rss_mib"] > 0
    rows = {row["model"]: row for row in record["narrowing"]["rows"]}
    assert set(rows) == {"mlp", "cnn", "rnn"}
    for row in rows.values():  # each smoke cell whole: 3 learning rates x 2 seeds, cut to the quick 20 steps
        assert (row["K"], row["steps"], row["rounds"], row["identical"]) == (6, 20, 1, True)
        assert row["full_s"] > 0 and row["ratio"] == pytest.approx(row["narrowed_s"] / row["full_s"])
    assert rows["mlp"]["diverged"] > 0 and rows["mlp"]["ended_share"] > 0  # learning rate 10 diverges: it narrows
    assert "| mlp | `mnist1d-mlp-sgd-none` | 6 | 20 |" in perf.markdown(record)


def test_the_narrowing_measurement_tells_tables_that_differ() -> None:
    """A width of 5 and a batch of 7: the narrowed batch rounds its runs differently (tests/test_shrink.py)."""
    from conftest import make_config, only_cell

    config = make_config(steps=16, eval_every=5, batch_size=7, seeds=[0, 1, 2],
                         models={"mlp": {"family": "mlp", "depth": 3, "width": 5, "activation": "tanh"}},
                         optimizers={"adam": {"kind": "adam", "learning_rates": [3.0, 0.003, 0.3]}},
                         strategies={"clip_norm": {"clip_norm": [0.5, 50.0]}})
    row = perf.narrowed_against_full("mlp", engine.build(only_cell(config)), rounds=2)
    assert (row["K"], row["steps"], row["rounds"]) == (18, 16, 2)
    assert 0 < row["diverged"] < 18 and row["identical"] is False


def test_the_share_of_run_steps_on_ended_runs() -> None:
    """Ten steps of four runs: one never ends, the others end at steps 0, 9 and 4 and then idle 9, 0, 5 steps."""
    assert perf.ended_share(np.array([-1, 0, 9, 4]), steps=10) == 14 / 40


def test_where_the_batch_does_not_narrow_the_record_says_so(monkeypatch) -> None:
    monkeypatch.setattr(shrink, "wanted", lambda built: False)
    lines: list[str] = []
    cells = perf.representative_cells(sweep.load("config/smoke.yaml"))
    narrowing = perf.narrowing(cells.values(), "cpu", 1, 20, 1, lines.append)
    assert narrowing == {"off": f"not measured on {perf.device_name(torch.device('cpu'))}: the batch narrows on a "
                                "CPU only"}
    assert lines == [f"narrowing {narrowing['off']} (bench/shrink.py says why)"]
    assert perf.narrowing_markdown(narrowing) == [
        f"Narrowing the batch to the runs still alive (`bench/shrink.py`): {narrowing['off']}."]


def test_perf_narrowing_measures_the_chosen_cells_alone(tmp_path, capsys) -> None:
    """Narrowing alone, on the smoke MLP's two cells (learning rate 10 diverges without clipping), each reported
    as it finishes; the record prints as its table."""
    out = tmp_path / "narrowing.json"
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cpu", "--threads", "1",
                 "--narrowing", "mnist1d-mlp-*", "--steps", "20", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert set(record) == {"date", "device", "torch", "threads", "python", "narrowing"}
    assert record["narrowing"]["patterns"] == ["mnist1d-mlp-*"]
    rows = record["narrowing"]["rows"]
    assert [row["cell"] for row in rows] == ["mnist1d-mlp-sgd-none", "mnist1d-mlp-sgd-clip_norm"]
    for row in rows:  # the whole grid, 3 learning rates x 2 seeds, to --steps, in the default single round
        assert (row["model"], row["K"], row["steps"], row["rounds"], row["identical"]) == ("mlp", 6, 20, 1, True)
        assert f"tables identical, cell {row['cell']}" in printed
    assert rows[0]["diverged"] > 0 and rows[0]["ended_share"] > 0
    assert main(["perf", "--table", str(out)]) == 0
    table = capsys.readouterr().out
    assert "the cells matching `mnist1d-mlp-*`, each with its whole run grid" in table
    assert all(f"| mlp | `{row['cell']}` | 6 | 20 |" in table for row in rows)
    assert "engine run-steps/s" not in table


@pytest.mark.parametrize(("flags", "message"), [
    (["--narrowing", "nothing-*"], "--narrowing nothing-*: no cell of config/smoke.yaml matches"),
    (["--narrowing", "mnist1d-*", "nothing-*"], "--narrowing nothing-*: no cell of config/smoke.yaml matches"),
    (["--steps", "20"], "--steps and --rounds go with --narrowing"),
    (["--narrowing", "mnist1d-*", "--rounds", "0"], "--rounds 0: allowed: a positive number"),
    (["--narrowing", "mnist1d-*", "--quick"], "--quick shortens the whole measurement, not --narrowing"),
])
def test_perf_narrowing_refuses_what_it_cannot_measure_before_training(flags, message, capsys, monkeypatch) -> None:
    def trains(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(perf, "measure", trains)
    monkeypatch.setattr(perf, "measure_narrowing", trains)
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cpu", *flags]) == 2
    assert f"error: {message}" in capsys.readouterr().err


NO_MLP = """
sweep: no_mlp
device: cpu
steps: 10
eval_every: 10
batch_size: 16
seeds: [0]
tasks:
  digits: {kind: digits, size: 28}
  adding: {kind: adding, length: 10, n_train: 200, n_eval: 100, spike_rate: [0.1]}
models:
  cnn2d: {family: cnn2d, depth: 2, channels: 4, kernel: 3, strided_layers: 1, activation: relu}
  lstm: {family: rnn, cell: lstm, hidden: 8}
problems:
  - {task: digits, models: [cnn2d]}
  - {task: adding, models: [lstm]}
optimizers:
  adamw: {kind: adamw, learning_rates: [0.001]}
strategies:
  none: {}
"""


def test_perf_measures_the_groups_the_config_has_and_times_adamw_against_the_peer(tmp_path) -> None:
    """No MLP cell: no FLOP rate nor strategy overhead, and no error. The CNN cell under AdamW is timed
    against the vmap peer; the RNN cell with bad batches is not (the peer refuses it), in one line."""
    (config := tmp_path / "no-mlp.yaml").write_text(NO_MLP)
    lines: list[str] = []
    record = perf.measure(sweep.load(config), "cpu", quick=True, threads=1, report=lines.append)
    assert {row["model"] for row in record["throughput"]} == {"cnn", "rnn"}
    assert {(row["model"], row["strategy"]) for row in record["peer"]} == {("cnn", "clip_norm"), ("cnn", "none")}
    assert "rnn         not timed against the vmap peer: it does not train warm-up or bad batches" in lines
    assert "limit" not in record and record["strategy_overhead"] == [] and record["memory"]["host_rss_mib"] > 0
    assert "No MLP cell" in perf.markdown(record)
    assert len({line.index(" K=") for line in lines if " K=" in line}) == 1  # the columns align


def test_a_transformer_cell_stands_for_a_group_of_its_own(monkeypatch) -> None:
    cells = [SimpleNamespace(model={"family": family}) for family in ("rnn", "transformer", "cnn2d", "transformer")]
    monkeypatch.setattr(sweep, "cells", lambda config: iter(cells))
    assert perf.representative_cells({}) == {"rnn": cells[0], "transformer": cells[1], "cnn": cells[2]}
    assert perf.GROUP_WIDTH == len("transformer")


def smoke_cell(group: str, rnn_cell: str = "lstm", **optimizer) -> sweep.Cell:
    """The smoke tier's ``group`` cell (MLP, CNN 2-D or RNN of ``rnn_cell``) with clip_norm and four runs of
    different learning rates and thresholds: the first clips every step, the third never, the others where
    their gradient's norm exceeds theirs."""
    cell = perf.with_runs(perf.representative_cells(sweep.load("config/smoke.yaml"))[group], 4, "cpu", 5, 1,
                          ["clip_norm"])
    model = {**cell.model, "cell": rnn_cell} if group == "rnn" else cell.model
    runs = [dataclasses.replace(run, lr=lr, hyperparameters={"clip_norm": threshold})
            for run, lr, threshold in zip(cell.runs, (0.01, 0.1, 0.03, 0.05), (0.05, 0.5, 1e3, 0.2), strict=True)]
    return dataclasses.replace(cell, runs=runs, model=model, optimizer={**cell.optimizer, **optimizer})


@pytest.mark.parametrize(("group", "rnn_cell", "optimizer"), [
    ("mlp", "", {}), ("mlp", "", {"nesterov": True, "weight_decay": 1e-3}), ("cnn", "", {}),
    ("rnn", "tanh", {}), ("rnn", "lstm", {}), ("rnn", "gru", {}),
])
def test_the_vmap_peer_trains_the_engines_runs(group, rnn_cell, optimizer) -> None:
    """Five steps of every run: the same losses, gradient norms before and after clipping, update ratios."""
    assert_peer_matches(smoke_cell(group, rnn_cell, **optimizer), rtol=1e-4)


@pytest.mark.parametrize(("group", "rnn_cell"), [("mlp", ""), ("rnn", "gru")])
def test_the_vmap_peer_trains_a_float64_cell_in_float64(group, rnn_cell) -> None:
    cell = dataclasses.replace(smoke_cell(group, rnn_cell), dtype="float64")
    assert_peer_matches(cell, rtol=1e-12)


ADAM = {"kind": "adam", "learning_rates": [0.01], "weight_decay": 1e-2}
ADAMW = {"kind": "adamw", "learning_rates": [0.01], "weight_decay": 0.1}
ADAMW_DEFAULTS = {"kind": "adamw", "learning_rates": [0.01]}  # torch.optim.AdamW's weight decay 0.01


@pytest.mark.parametrize("optimizer", [ADAM, ADAMW], ids=["adam", "adamw"])
@pytest.mark.parametrize(("group", "rnn_cell"), [("mlp", ""), ("cnn", ""), ("rnn", "lstm")])
def test_the_vmap_peer_trains_the_engines_runs_with_adam(group, rnn_cell, optimizer) -> None:
    """Adam with coupled and AdamW with decoupled weight decay, each run at its own learning rate."""
    assert_peer_matches(dataclasses.replace(smoke_cell(group, rnn_cell), optimizer=optimizer), rtol=1e-4)


@pytest.mark.parametrize("optimizer", [ADAM, ADAMW_DEFAULTS], ids=["adam", "adamw"])
@pytest.mark.parametrize(("group", "rnn_cell"), [("mlp", ""), ("rnn", "gru")])
def test_the_vmap_peer_trains_a_float64_cell_with_adam_in_float64(group, rnn_cell, optimizer) -> None:
    cell = dataclasses.replace(smoke_cell(group, rnn_cell), dtype="float64", optimizer=optimizer)
    assert_peer_matches(cell, rtol=1e-12)


def assert_peer_matches(cell: sweep.Cell, rtol: float) -> None:
    """The peer's logs of the cell's steps are the engine's, to ``rtol``."""
    built = engine.build(cell)
    state = engine.fresh_state(built)
    for t, batch in enumerate(engine.batch_plan(built, range(cell.steps))):
        assert state.step == t
        engine.train_step(built, state, batch)
    assert state.alive.all()  # the peer freezes no run: compare runs that stay stable
    ensemble = peer.VmapEnsemble(cell)
    for t in range(cell.steps):
        ensemble.step(t)
    for name, logged in ensemble.logs.items():
        torch.testing.assert_close(logged, state.logs[name], rtol=rtol, atol=0, msg=name)
    pre, post = ensemble.logs["grad_norm_pre"], ensemble.logs["grad_norm_post"]
    assert (post[:, 0] < pre[:, 0]).all() and (post[:, 2] == pre[:, 2]).all()  # the threshold acts, or not


def test_the_vmap_peer_refuses_what_it_does_not_train() -> None:
    cell = dataclasses.replace(smoke_cell("mlp"), members=["agc"], strategy_name="agc")
    with pytest.raises(ValueError, match="a member other than none, clip_value, clip_norm"):
        peer.VmapEnsemble(cell)


def test_the_vmap_peer_refuses_an_optimizer_it_lacks(monkeypatch) -> None:
    monkeypatch.delitem(peer.OPTIMIZERS, "adamw")
    cell = dataclasses.replace(smoke_cell("mlp"), optimizer=ADAMW)
    with pytest.raises(ValueError, match=r"an optimizer other than sgd, adam$"):
        peer.VmapEnsemble(cell)


class FakeTimer:
    """Seconds per step on a machine whose speed changes every six timed blocks (a slow drift)."""

    def __init__(self, cost: float, clock: list[int]) -> None:
        self.cost, self.clock = cost, clock

    def seconds(self, steps: int) -> float:
        self.clock[0] += 1
        return self.cost * (1 + (self.clock[0] // 6) % 3)


def test_paired_ratios_cancel_a_slow_drift():
    clock = [0]
    timers = {"none": FakeTimer(1.0, clock), "slow": FakeTimer(1.1, clock), "same": FakeTimer(1.0, clock)}
    ratios = perf.paired_ratios(timers, "none", steps=1, rounds=7)
    assert ratios == {"none": 1.0, "slow": pytest.approx(1.1), "same": pytest.approx(1.0)}


def test_fastest_takes_each_block_minimum_over_rounds():
    calls = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}
    blocks = {name: (lambda values=values: next(values)) for name, values in calls.items()}
    assert perf.fastest(blocks, rounds=3) == {"a": 1.0, "b": 4.0}


def test_the_gpu_script_writes_both_records(tmp_path) -> None:
    """scripts/gpu_check.sh, run on a CPU with its overrides: the perf record and the full-sweep estimate;
    the cells it trains are measured cheapest first, dated, and a second run skips those it has."""
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path), "PERF_FLAGS": "--quick",
           "FULL_CONFIG": "config/smoke.yaml", "FULL_CELLS": "mnist1d-*", "TRAIN_CELLS": "mnist1d-mlp-sgd-*",
           "TRAIN_BUDGET": "300", "PREDICT_TIMEOUT": "1200", "PERF_TIMEOUT": "1200", "FULL_TIMEOUT": "1200",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    # the stages' own time limits are the GPU's; on a CPU shared with other work they are lifted
    done = subprocess.run(["scripts/gpu_check.sh", "probe"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    perf_record = json.loads((tmp_path / "probe.json").read_text())
    estimate_record = json.loads((tmp_path / "probe-full.json").read_text())
    assert perf_record["device"] == estimate_record["device"] and perf_record["device"].startswith("cpu")
    assert estimate_record["sweep"] == "smoke" and estimate_record["predicted_job_s"] > 0
    chosen = json.loads((tmp_path / "probe-full-transformer.json").read_text())
    (stratum,) = chosen["strata"]
    predicted = stratum["predicted_cells_s"]
    assert set(predicted) == {"mnist1d-mlp-sgd-none", "mnist1d-mlp-sgd-clip_norm"}
    assert chosen["predicted_job_s"] == pytest.approx(sum(predicted.values()))
    trained = tmp_path / "probe-full-trained.tsv"
    header, *rows = [line.split("\t") for line in trained.read_text().splitlines()]
    assert header == ["date", "cell", "seconds", "predicted_s", "status"]
    assert [row[1] for row in rows] == sorted(predicted, key=predicted.get)
    assert all(row[0] == datetime.datetime.now(datetime.UTC).date().isoformat() for row in rows)
    assert all(row[4] == "trained" and float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    # a second run, training only: every matching cell is measured already, so nothing is added
    subprocess.run(["scripts/gpu_check.sh", "probe"], check=True, env={**env, "STAGES": "train"},
                   capture_output=True)
    assert len(trained.read_text().splitlines()) == 1 + len(rows)


def test_estimate_refuses_cells_that_match_nothing(capsys) -> None:
    assert main(["estimate", "--config", "config/smoke.yaml", "--cells", "nothing-*"]) == 2
    assert "--cells nothing-*: no cell of config/smoke.yaml matches" in capsys.readouterr().err


def test_the_cuda_branches_call_the_cuda_api(monkeypatch) -> None:
    """The lines that only run on a GPU, run here against stand-ins for torch.cuda."""
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    cuda = torch.device("cuda")
    assert perf.device_name(cuda) == "NVIDIA H200"
    perf.synchronize(cuda)
    assert calls == [cuda]
    assert perf.peak_memory(cuda)["gpu_mib"] == 3
    perf.synchronize(torch.device("cpu"))
    assert calls == [cuda]


def test_the_committed_records_print_as_tables_and_the_docs_show_the_cpu_one(capsys) -> None:
    for path in sorted(Path("perf").glob("*.json")):
        if "throughput" not in json.loads(path.read_text()):  # a paper-tier estimate, not a perf record
            continue
        assert main(["perf", "--table", str(path)]) == 0
        printed = capsys.readouterr().out
        assert "| `none` | 1.00 |" in printed
        if path.name == "cpu.json":
            assert printed.strip() in Path("docs/performance.md").read_text()
    record = json.loads(Path("perf/cpu.json").read_text())
    gpu = {**record, "memory": {**record["memory"], "gpu_mib": 1234.0}}
    assert "peak GPU memory: 1234 MiB" in perf.markdown(gpu)
    if "peer" not in record:  # recorded before the vmap peer was timed
        assert "Not measured yet." in perf.markdown(record)
    if "narrowing" not in record:  # recorded before narrowing was timed
        assert "Narrowing the batch to the runs still alive (`bench/shrink.py`): not measured yet." in perf.markdown(
            record)
    row = {"model": "mlp", "cell": "c", "K": 8, "strategy": "clip_norm", "engine_run_steps_per_s": 100.0,
           "vmap_run_steps_per_s": 50.0, "ratio": 2.0}
    assert "| mlp | 8 | `clip_norm` | 100 | 50 | 2.00x |" in perf.markdown({**record, "peer": [row]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_perf_on_a_missing_gpu_stops_in_one_line(capsys) -> None:
    assert main(["perf", "--config", "config/smoke.yaml", "--device", "cuda", "--quick"]) == 2
    assert capsys.readouterr().err.startswith("error: config key 'device': cuda is not available")


@pytest.mark.parametrize("optimizer", [{"kind": "adam"}, {"kind": "adamw", "weight_decay": 0.1}])
def test_the_vmap_peer_trains_a_transformer_batched_without_a_fallback(optimizer, recwarn) -> None:
    """The transformer under Adam/AdamW: the peer's logs are the engine's, and vmap batches its attention (SDPA's
    math backend on a CPU) rather than looping over the runs with a performance warning."""
    from conftest import make_config, only_cell

    config = make_config(problems=[{"task": "chars", "models": ["transformer"]}], steps=5,
                         optimizers={"opt": {**optimizer, "learning_rates": [0.001]}},
                         strategies={"clip_norm": {"clip_norm": [1.0]}})
    cell = only_cell(config)
    runs = [dataclasses.replace(cell.runs[0], seed=seed, lr=lr, hyperparameters={"clip_norm": threshold})
            for seed, lr, threshold in ((0, 0.001, 0.05), (1, 0.003, 0.5), (2, 0.002, 1e3))]
    assert_peer_matches(dataclasses.replace(cell, runs=runs), rtol=1e-4)
    assert not [w for w in recwarn if "performance drop" in str(w.message)]
