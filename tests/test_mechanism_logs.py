"""Mitigations that are not gradient transforms, and the mechanism logs.

A strategy of stage ``model`` sets options of the cell's model (``engine.build_model``, so the oracle
trains the same network); one of stage ``loss`` adds a term to each run's loss before the backward
pass; a config that cannot take a strategy's model options is refused before any work. A model's
probes are logged every step like a step metric (NaN after a run diverged) and reach the curves
table, its thinning, its committed copy and a resumed job's logs unchanged. The model family with
probes and options here is the tests' own (tests/probed.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import probed
import pyarrow as pa
import pytest
import torch
from conftest import make_config, mutated, only_cell
from test_equivalence import OPTIMIZERS, assert_matches_oracle

from bench import checkpoint, columns, engine, publish, record, store, sweep, thinning
from bench.errors import StoreError
from bench.sweep import ConfigError

PROBED = {"models": {"probed": probed.MODEL}, "problems": [{"task": "mnist1d", "models": ["probed"]}]}
"""Config keys that train the tests' model family with probes (after ``probed.register``)."""
DIVERGING = {"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 50.0]}}
"""Learning rates of which the second diverges part-way on the tests' MLPs."""


def trained(config: dict) -> tuple[sweep.Cell, engine.BuiltCell, engine.History]:
    cell = only_cell(config)
    built = engine.build(cell)
    return cell, built, engine.train(built, progress=False)


# ---------------------------------------------------------------- z-loss: a loss term


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_z_loss_matches_the_oracle_run_by_run(optimizer: str) -> None:
    config = make_config(optimizers={optimizer: OPTIMIZERS[optimizer]}, strategies={"z_loss": {"z_loss": [0.01, 0.3]}})
    assert_matches_oracle(only_cell(config))


def test_z_loss_adds_to_the_gradient_not_to_the_logged_loss() -> None:
    histories = {}
    for name, entry in (("none", {}), ("z_loss", {"z_loss": [0.3]})):
        config = make_config(optimizers={"momentum": OPTIMIZERS["momentum"]}, strategies={name: entry}, steps=5)
        histories[name] = trained(config)[2]
    plain, with_term = histories["none"], histories["z_loss"]
    # step 0: the same weights and batch, so the same task loss; the gradient has the term's besides
    np.testing.assert_array_equal(with_term.step_metrics["train_loss"][0], plain.step_metrics["train_loss"][0])
    ratio = with_term.step_metrics["grad_norm_pre"][0] / plain.step_metrics["grad_norm_pre"][0]
    assert (np.abs(ratio - 1) > 1e-3).all()
    assert not torch.allclose(with_term.final_params[-2], plain.final_params[-2], rtol=1e-3, atol=0)


# ---------------------------------------------------------------- model options: qk_norm, softcap


def test_build_model_gives_the_model_the_options_of_the_cells_strategies(monkeypatch) -> None:
    probed.register(monkeypatch)
    strategies = {"both": {"chain": ["qk_norm", "softcap"], "softcap_attention": [10.0, 20.0], "softcap_output": [5.0]}}
    for dtype in ("float32", "float64"):
        cell = only_cell(make_config(**PROBED, strategies=strategies, dtype=dtype, seeds=[0]))
        task = engine.load_task(cell)
        model = engine.build_model(cell, task)
        assert model.qk_norm is True and model.output_softcap == 5.0
        expected = torch.tensor([run.hyperparameters["softcap_attention"] for run in cell.runs],
                                dtype=engine.DTYPES[dtype])
        assert torch.equal(model.softcap, expected)
        alone = engine.build_model(dataclasses.replace(cell, runs=[cell.runs[-1]]), task)  # the oracle's cell
        assert alone.softcap == 20.0 and alone.qk_norm is True
    plain = engine.build_model(only_cell(make_config(**PROBED)), task)
    assert (plain.qk_norm, plain.softcap, plain.output_softcap) == (False, 0.0, None)


def test_a_per_run_model_option_trains_each_run_as_the_oracle_builds_it(monkeypatch) -> None:
    """The engine's model holds each run's cap in a (K,) tensor, the oracle's one run's as a float."""
    probed.register(monkeypatch)
    config = make_config(**PROBED, optimizers={"momentum": OPTIMIZERS["momentum"]},
                         strategies={"softcap": {"softcap_output": [0.5, 2.0]}})
    cell = only_cell(config)
    assert isinstance(engine.build(cell).model.output_softcap, torch.Tensor)
    assert_matches_oracle(cell)
    capped = trained(config)[2]  # and the caps act: the loss of a cap of 0.5 stays near chance
    cap = np.array([run.hyperparameters["softcap_output"] for run in cell.runs])
    assert (capped.step_metrics["train_loss"][-1, cap == 0.5] > 0.9 * math.log(10)).all()


def test_a_strategy_setting_a_model_option_the_family_lacks_is_refused_in_one_line() -> None:
    config = mutated({"strategies": {"none": {}, "qk_norm": {}}})
    with pytest.raises(ConfigError) as error:
        sweep.validate(config)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("config key 'strategies.qk_norm': qk_norm sets the model option 'qk_norm', which "
                              "model 'mlp' (mlp, problems.0) does not have; allowed: models of a family with")


def test_a_model_entry_setting_an_option_a_strategy_sets_is_refused_in_one_line(monkeypatch) -> None:
    probed.register(monkeypatch)
    config = mutated({**PROBED, "models": {"probed": {**probed.MODEL, "softcap": 10.0}},
                      "strategies": {"softcap": {"softcap_output": [5.0]}}})
    with pytest.raises(ConfigError, match=r"^config key 'models\.probed\.softcap': set by the model entry and by "
                                          r"strategy 'softcap' \(softcap\) in problems\.0; allowed: [^\n]*$"):
        sweep.validate(config)
    twice = mutated({**PROBED, "strategies": {"twice": {"chain": ["softcap", "softcap"]}}})
    with pytest.raises(ConfigError, match=r"^config key 'strategies\.twice\.chain': softcap and softcap both set the "
                                          r"model option 'softcap'; allowed: one member per model option$"):
        sweep.validate(twice)


def test_a_strategy_setting_model_options_trains_the_problems_that_name_it(monkeypatch) -> None:
    probed.register(monkeypatch)
    config = make_config(models={"mlp": probed.MODEL | {"family": "mlp"}, "probed": probed.MODEL},
                         problems=[{"task": "mnist1d", "models": ["mlp"], "strategies": ["none"]},
                                   {"task": "digits8", "models": ["probed"]}],
                         strategies={"none": {}, "qk_norm": {}})
    assert [cell.id for cell in sweep.cells(config)] == [
        "mnist1d-mlp-sgd-none", "digits8-probed-sgd-none", "digits8-probed-sgd-qk_norm"]


def test_the_engine_refuses_a_cell_whose_model_entry_sets_its_strategys_option(monkeypatch) -> None:
    probed.register(monkeypatch)
    cell = only_cell(make_config(**PROBED, strategies={"qk_norm": {}}))
    with pytest.raises(ConfigError, match=r"^config key 'models\.probed\.qk_norm'"):
        engine.build_model(dataclasses.replace(cell, model={**cell.model, "qk_norm": True}), engine.load_task(cell))


# ---------------------------------------------------------------- probes: the engine's logs


@pytest.fixture
def probed_training(monkeypatch) -> tuple[sweep.Cell, engine.BuiltCell, engine.History]:
    """A cell of the tests' family with probes, trained 30 steps with z-loss; its lr-50 runs diverge."""
    probed.register(monkeypatch)
    return trained(make_config(**PROBED, optimizers=DIVERGING, steps=30, strategies={"z_loss": {"z_loss": [0.01]}}))


def test_the_engine_logs_every_probe_every_step_and_nan_after_a_run_diverged(probed_training) -> None:
    cell, built, history = probed_training
    assert list(history.step_metrics) == [*columns.STEP_METRICS, *probed.PROBES]
    diverged = history.diverged_step
    assert (diverged[[0, 1]] == -1).all() and (diverged[[2, 3]] >= 0).all()
    for name in probed.PROBES:
        values = history.step_metrics[name]
        assert values.shape == (cell.steps, len(cell.runs)) and values.dtype == np.float32
        for k, last in enumerate(diverged):
            logged = slice(None) if last < 0 else slice(0, last + 1)
            assert np.isfinite(values[logged, k]).all(), (name, k)
            np.testing.assert_array_equal(np.isnan(values[:, k]), np.isnan(history.step_metrics["train_loss"][:, k]))
            if last >= 0:
                assert np.isnan(values[last + 1 :, k]).all()
    # step 0's probes are the model's on the initial weights and the step's batch
    xb, _ = engine.gather_batch(built, engine.batch_plan(built, range(1))[0])
    expected = probed.probes(built.initial_params, xb)
    for name in probed.PROBES:
        torch.testing.assert_close(torch.from_numpy(history.step_metrics[name][0]), expected[name], rtol=1e-5,
                                   atol=1e-6)


def test_a_model_without_probes_logs_the_step_metrics_only() -> None:
    cell, built, history = trained(make_config(steps=3))
    assert built.probes == () and list(history.step_metrics) == list(columns.STEP_METRICS)
    _, curves = store.arrow_tables(cell, built.task, history)
    assert curves.column_names == list(columns.CURVES_COLUMNS)


def test_a_probe_that_is_no_probe_column_is_refused_before_training(monkeypatch) -> None:
    probed.register(monkeypatch)
    monkeypatch.setattr(probed.ProbedMLP, "probe_names", lambda self: ("largest_logit",))
    with pytest.raises(ValueError, match=r"names a probe 'largest_logit' that is no probe column.*allowed: names"):
        engine.build(only_cell(make_config(**PROBED)))


def test_a_resumed_job_logs_the_probes_an_uninterrupted_one_logs(monkeypatch, tmp_path) -> None:
    probed.register(monkeypatch)
    cell, built, whole = trained(make_config(**PROBED, optimizers=DIVERGING, steps=24, eval_every=5))
    path = tmp_path / "checkpoint.pt"
    interrupted = engine.fresh_state(built)
    plan = engine.batch_plan(built, range(cell.steps))
    rows = {step: row for row, step in enumerate(engine.eval_steps(cell))}
    while interrupted.step < 13:  # a job killed after 13 steps, once a run has diverged
        if interrupted.step in rows:
            engine.record_evaluation(built, interrupted, rows[interrupted.step])
        engine.train_step(built, interrupted, plan[interrupted.step])
    assert (interrupted.diverged_step >= 0).any()
    checkpoint.save(dict(interrupted.__dict__), cell, path)
    resumed = engine.train(built, progress=False, checkpoint_path=path, checkpoint_every=4)
    assert resumed.resumed_from == 13
    assert list(resumed.step_metrics) == list(whole.step_metrics)
    for name, values in whole.step_metrics.items():
        np.testing.assert_array_equal(resumed.step_metrics[name], values, err_msg=name)


# ---------------------------------------------------------------- probes: the curves table


def test_probes_reach_the_curves_table_as_float64_columns_named_as_the_probes(probed_training, tmp_path) -> None:
    cell, built, history = probed_training
    runs, curves = store.tables(cell, built.task, history)
    assert list(curves.columns) == [*columns.CURVES_COLUMNS, *probed.PROBES]
    for run_id, k in zip(cell.run_ids(), range(len(cell.runs)), strict=True):
        rows = curves[curves["run_id"] == run_id]
        logged = rows[rows["step"] < cell.steps]
        for name in probed.PROBES:
            np.testing.assert_array_equal(logged[name].to_numpy(), history.step_metrics[name][logged["step"], k])
            assert rows[rows["step"] == cell.steps][name].isna().all()  # the final evaluation row
    store.write_cell(runs, curves, tmp_path / "cell")
    read = store.read(tmp_path / "cell" / "curves.parquet", "curves")
    assert pa.Table.from_pandas(read).schema.field("output_log_z").type == pa.float64()
    pd.testing.assert_frame_equal(read, curves)


def test_a_sweeps_curves_hold_the_probe_columns_of_any_of_its_cells(probed_training, tmp_path) -> None:
    cell, built, history = probed_training
    store.write_cell(*store.tables(cell, built.task, history), tmp_path / "probed")
    plain_cell, plain_built, plain_history = trained(make_config(steps=4, seeds=[0]))
    store.write_cell(*store.tables(plain_cell, plain_built.task, plain_history), tmp_path / "plain")
    store.aggregate([tmp_path / "plain", tmp_path / "probed"], tmp_path / "sweep")
    curves = store.read(tmp_path / "sweep" / "curves.parquet", "curves")
    assert set(probed.PROBES) <= set(curves.columns)
    plain = curves["run_id"].isin(plain_cell.run_ids())
    assert curves.loc[plain, list(probed.PROBES)].isna().all().all()
    assert curves.loc[~plain & (curves["step"] == 0), list(probed.PROBES)].notna().all().all()


def test_a_curves_table_refuses_a_column_that_is_no_probe(probed_training, tmp_path) -> None:
    cell, built, history = probed_training
    _, curves = store.tables(cell, built.task, history)
    for name in ("attn_logit_max", "output_log_z_0", "train_loss_max"):
        with pytest.raises(StoreError, match="unexpected columns"):
            store.write(curves.assign(**{name: 1.0}), tmp_path / "curves.parquet", "curves")


def test_probes_survive_thinning_and_the_committed_copy(probed_training, tmp_path) -> None:
    """The thinning keeps the attention logits the attention-logit figure draws (the runs of ``none`` and
    ``qk_norm``: here the cell's runs taken as ``none``'s), as trained; the committed copy holds them."""
    cell, built, history = probed_training
    runs, curves = store.tables(cell, built.task, history)
    runs = runs.assign(strategy="none")
    thinned, _ = thinning.thin(runs, curves)
    assert list(thinned.columns) == list(curves.columns)
    kept = curves.merge(thinned[["run_id", "step"]], on=["run_id", "step"])
    logged = kept["attn_logit_max_0"].notna() & (kept["step"] < cell.steps)
    assert logged.sum() == (curves["attn_logit_max_0"].notna() & (curves["step"] < cell.steps)).sum() > 0
    assert thinned["output_log_z"].isna().all()  # no figure draws it: not kept
    values = thinned.reset_index(drop=True).notna().to_numpy()
    assert (thinned.reset_index(drop=True).to_numpy()[values] == kept.to_numpy()[values]).all()
    stored = record.trained(cell.sweep, cell.id, "0" * 64, len(runs), len(thinned), torch.__version__)
    publish.write_cell(tmp_path / "committed", runs, thinned, stored)
    _, committed = publish.read_cell(tmp_path / "committed")
    pd.testing.assert_frame_equal(committed, thinned.reset_index(drop=True))
    restored = tmp_path / "restored"
    store.write_cell(runs, committed, restored)
    pd.testing.assert_frame_equal(store.read(restored / "curves.parquet", "curves"), committed)
