"""Per-problem learning-rate grids (a problems entry's ``learning_rates``) and the replication seed set (the
top-level ``replication_seeds``): the cells and runs they give, their ids and fingerprints, the runs table's
``seed_set`` column, and an analysis that reads the discovery seeds unless asked for the replication."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_config
from test_replication import synthetic_runs

from analysis import claims, data, numbers, problems, vocabulary
from analysis.effects import Study
from bench import engine, fingerprint, paths, publish, store, sweep
from bench.__main__ import main
from bench.columns import DISCOVERY, REPLICATION, RUNS_COLUMNS, with_run_defaults

ROOT = Path(__file__).resolve().parent.parent
TWO_OPTIMIZERS = {"sgd": {"kind": "sgd", "momentum": 0.9, "learning_rates": [0.01, 0.05]},
                  "adam": {"kind": "adam", "learning_rates": [0.001, 0.01]}}
TWO_PROBLEMS = [{"task": "mnist1d", "models": ["mlp"]}, {"task": "digits8", "models": ["mlp"]}]


def by_id(config: dict) -> dict[str, sweep.Cell]:
    return {cell.id: cell for cell in sweep.cells(config)}


def lrs(cell: sweep.Cell) -> list[float]:
    return sorted({run.lr for run in cell.runs})


# -- per-problem learning rates ------------------------------------------------------------------------------
def test_a_problem_grid_replaces_its_optimizers_grid_for_its_cells_only() -> None:
    own = [{**TWO_PROBLEMS[0], "learning_rates": {"sgd": [0.1, 1.0, 10.0]}}, TWO_PROBLEMS[1]]
    cells = by_id(make_config(optimizers=TWO_OPTIMIZERS, problems=own))
    assert lrs(cells["mnist1d-mlp-sgd-none"]) == [0.1, 1.0, 10.0]
    assert len(cells["mnist1d-mlp-sgd-none"].runs) == 3 * 2  # learning rates x seeds
    assert lrs(cells["mnist1d-mlp-adam-none"]) == [0.001, 0.01]  # the other optimizer keeps its entry's grid
    assert lrs(cells["digits8-mlp-sgd-none"]) == [0.01, 0.05]  # the other problem too
    assert cells["mnist1d-mlp-sgd-none"].optimizer["learning_rates"] == [0.1, 1.0, 10.0]


def test_a_pair_may_train_under_each_optimizer_in_its_own_entry_with_its_own_budget() -> None:
    split = [{**TWO_PROBLEMS[0], "optimizers": ["sgd"], "steps": 60},
             {**TWO_PROBLEMS[0], "optimizers": ["adam"], "steps": 40}, TWO_PROBLEMS[1]]
    sweep.check(make_config(optimizers=TWO_OPTIMIZERS, problems=split))  # accepted
    cells = by_id(make_config(optimizers=TWO_OPTIMIZERS, problems=split))
    assert cells["mnist1d-mlp-sgd-none"].steps == 60 and cells["mnist1d-mlp-adam-none"].steps == 40
    assert len(cells) == 4  # mnist1d under each optimizer once, digits8 under both
    twice = [{**TWO_PROBLEMS[0], "optimizers": ["sgd"]}, TWO_PROBLEMS[0]]  # mnist1d x mlp under SGD twice
    with pytest.raises(sweep.ConfigError, match=r"problems\.1\.models.*mnist1d x mlp under sgd.*already problem 0"):
        sweep.check(make_config(optimizers=TWO_OPTIMIZERS, problems=twice))


def test_a_problem_narrows_a_strategy_grid_for_its_cells_only() -> None:
    strategies = {"none": {}, "clip_norm": {"clip_norm": [0.25, 1.0, 4.0]},
                  "clip_norm_warmup": {"chain": ["clip_norm"], "clip_norm": [0.25, 1.0], "warmup_steps": [5, 10]}}
    own = [{**TWO_PROBLEMS[0], "hyperparameters": {"clip_norm": [1.0], "warmup_steps": [10]}}, TWO_PROBLEMS[1]]
    cells = by_id(make_config(optimizers=TWO_OPTIMIZERS, problems=own, strategies=strategies))
    narrowed = cells["mnist1d-mlp-sgd-clip_norm_warmup"]
    assert {(run.hyperparameters["clip_norm"], run.dials["warmup_steps"]) for run in narrowed.runs} == {(1.0, 10)}
    assert {run.hyperparameters["clip_norm"] for run in cells["mnist1d-mlp-sgd-clip_norm"].runs} == {1.0}
    assert {run.hyperparameters["clip_norm"] for run in cells["digits8-mlp-sgd-clip_norm"].runs} == {0.25, 1.0, 4.0}
    plain = by_id(make_config(optimizers=TWO_OPTIMIZERS, problems=TWO_PROBLEMS, strategies=strategies))
    changed = [name for name, cell in cells.items()
               if fingerprint.cell_fingerprint(cell) != fingerprint.cell_fingerprint(plain[name])]
    assert sorted(changed) == ["mnist1d-mlp-adam-clip_norm", "mnist1d-mlp-adam-clip_norm_warmup",
                               "mnist1d-mlp-sgd-clip_norm", "mnist1d-mlp-sgd-clip_norm_warmup"]
    with pytest.raises(sweep.ConfigError, match=r"problems\.0\.hyperparameters\.gamma': no strategy"):
        make_config(optimizers=TWO_OPTIMIZERS, strategies=strategies,
                    problems=[{**TWO_PROBLEMS[0], "hyperparameters": {"gamma": [0.5]}}])


def test_the_fingerprint_changes_exactly_when_the_learning_rates_a_cell_trains_change() -> None:
    plain = by_id(make_config(optimizers=TWO_OPTIMIZERS, problems=TWO_PROBLEMS))
    prints = {name: fingerprint.cell_fingerprint(cell) for name, cell in plain.items()}

    def fingerprints(problem_grid: dict, sgd_grid: list[float] | None = None) -> dict[str, str]:
        optimizers = {**TWO_OPTIMIZERS, "sgd": {**TWO_OPTIMIZERS["sgd"], "learning_rates": sgd_grid or [0.01, 0.05]}}
        config = make_config(optimizers=optimizers, problems=[{**TWO_PROBLEMS[0], "learning_rates": problem_grid},
                                                              TWO_PROBLEMS[1]])
        return {name: fingerprint.cell_fingerprint(cell) for name, cell in by_id(config).items()}

    assert fingerprints({"sgd": [0.01, 0.05]}) == prints  # the grid it trains anyway: nothing changes
    wider = fingerprints({"sgd": [0.01, 0.05, 0.2]})
    assert [name for name in prints if wider[name] != prints[name]] == ["mnist1d-mlp-sgd-none"]
    # the optimizer entry's grid no longer decides the cells whose problem gives their own
    edited = fingerprints({"sgd": [0.01, 0.05, 0.2]}, sgd_grid=[0.02, 0.05])
    assert edited["mnist1d-mlp-sgd-none"] == wider["mnist1d-mlp-sgd-none"]
    assert edited["digits8-mlp-sgd-none"] != prints["digits8-mlp-sgd-none"]
    assert edited["mnist1d-mlp-adam-none"] == prints["mnist1d-mlp-adam-none"]


def test_the_cells_command_and_the_estimate_see_the_problem_grids_and_the_twins(tmp_path: Path, capsys) -> None:
    config = make_config(steps=4, eval_every=2, replication_seeds=[7],
                         problems=[{**TWO_PROBLEMS[0], "learning_rates": {"sgd": [0.1, 0.2, 0.4]}}])
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    assert main(["cells", "--config", str(path), "--runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["mnist1d-mlp-sgd-none\t6", "mnist1d-mlp-sgd-none-replication\t3"]
    out = tmp_path / "estimate.json"
    assert main(["estimate", "--config", str(path), "--device", "cpu", "--steps", "1", "--sizes", "1", "2",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert (record["cells"], record["runs"], len(record["strata"])) == (2, 9, 1)  # a twin is its cell's stratum


# -- the replication seed set: ids and fingerprints -------------------------------------------------------------
def test_every_cell_gets_a_twin_on_the_replication_seeds_after_the_cells_of_seeds() -> None:
    config = make_config(optimizers=TWO_OPTIMIZERS, problems=[TWO_PROBLEMS[0], {**TWO_PROBLEMS[1], "dtype": "float64"}])
    twinned = make_config(optimizers=TWO_OPTIMIZERS, problems=config["problems"], replication_seeds=[5, 6, 9])
    first, second = sweep.cells(config), sweep.cells(twinned)
    assert second[:len(first)] == first  # the cells of seeds: the same, in the same order
    twins = second[len(first):]
    assert [twin.id for twin in twins] == [f"{cell.id}-replication" for cell in first]
    assert "digits8-mlp-adam-none-float64-replication" in [twin.id for twin in twins]  # after the dtype suffix
    for cell, twin in zip(first, twins, strict=True):
        assert twin.seed_set == REPLICATION and cell.seed_set == DISCOVERY
        assert {run.seed for run in twin.runs} == {5, 6, 9} and {run.seed for run in cell.runs} == {0, 1}
        assert {run.label().rsplit("|", 1)[0] for run in twin.runs} == {run.label().rsplit("|", 1)[0]
                                                                         for run in cell.runs}  # the same grid
        assert (twin.task, twin.model, twin.optimizer, twin.dtype, twin.steps) == (
            cell.task, cell.model, cell.optimizer, cell.dtype, cell.steps)
        assert fingerprint.cell_fingerprint(twin) != fingerprint.cell_fingerprint(cell)
        assert fingerprint.cell_spec(twin)["seed_set"] == REPLICATION and "seed_set" not in fingerprint.cell_spec(cell)
    assert sweep.find(twinned, "mnist1d-mlp-sgd-none-replication") == twins[0]


def test_replication_seeds_add_twins_and_leave_the_committed_cells_as_they_were() -> None:
    """A committed study's discovery cells are the cells its config has without ``replication_seeds`` (their ids
    and fingerprints as before the key existed), each committed for its definition; a study with replication
    seeds has every discovery cell's twin committed too, and one without gains exactly one twin per cell."""
    for name in ("smoke", "paper"):
        config = sweep.load(ROOT / "config" / f"{name}.yaml")
        alone = sweep.cells({key: value for key, value in config.items() if key != "replication_seeds"})
        assert all(cell.seed_set == DISCOVERY and not cell.id.endswith("-replication") for cell in alone)
        cells = sweep.cells(config)
        assert cells[:len(alone)] == alone
        twins = cells[len(alone):]
        if "replication_seeds" in config:
            assert [twin.id for twin in twins] == [f"{cell.id}-replication" for cell in alone]
        else:
            assert not twins
            extra = sweep.cells({**config, "replication_seeds": [max(config["seeds"]) + 1]})
            assert extra[:len(alone)] == alone and len(extra) == 2 * len(alone)
        study = ROOT / "study" / name
        assert all(publish.committed(study, cell.id, fingerprint.cell_fingerprint(cell)) is not None for cell in cells)


# -- the runs table's seed_set column ---------------------------------------------------------------------------
def trained_tables(cell: sweep.Cell) -> tuple[pd.DataFrame, pd.DataFrame]:
    built = engine.build(cell)
    return store.tables(cell, built.task, engine.train(built, progress=False))


@pytest.fixture(scope="module")
def twin_sweep() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """The tables of a tiny sweep with replication seeds, by cell id, and those of its twin's seeds trained as
    the discovery seeds of another config (``alone``)."""
    config = make_config(steps=4, eval_every=2, seeds=[0, 1], replication_seeds=[2])
    tables = {cell.id: trained_tables(cell) for cell in sweep.cells(config)}
    tables["alone"] = trained_tables(sweep.cells(make_config(steps=4, eval_every=2, seeds=[2]))[0])
    return tables


def test_a_twin_trains_its_seeds_as_a_config_of_those_seeds_does(twin_sweep) -> None:
    runs, curves = twin_sweep["mnist1d-mlp-sgd-none-replication"]
    alone, alone_curves = twin_sweep["alone"]
    assert set(runs["seed_set"]) == {REPLICATION} and set(alone["seed_set"]) == {DISCOVERY}
    assert set(runs["cell"]) == {"mnist1d-mlp-sgd-none-replication"} and set(runs["seed"]) == {2}
    results = ["lr", "seed", "diverged", "final_train_loss", "best_val_metric", "test_metric_at_best_val"]
    pd.testing.assert_frame_equal(runs[results], alone[results])
    metrics = [name for name in curves.columns if name != "run_id"]
    pd.testing.assert_frame_equal(curves[metrics], alone_curves[metrics])


def test_the_seed_set_column_follows_the_seed_and_a_table_without_it_reads_as_discovery(twin_sweep,
                                                                                        tmp_path: Path) -> None:
    runs, curves = twin_sweep["mnist1d-mlp-sgd-none"]
    assert list(runs.columns[:len(RUNS_COLUMNS)]) == list(RUNS_COLUMNS)
    assert set(runs["seed_set"]) == {DISCOVERY}
    store.write_cell(runs, curves, tmp_path)
    old = pq.read_table(tmp_path / "runs.parquet").drop_columns(["seed_set"])
    pq.write_table(old, tmp_path / "old.parquet")
    read = store.read(tmp_path / "old.parquet", "runs")
    pd.testing.assert_frame_equal(read, store.read(tmp_path / "runs.parquet", "runs"))
    assert with_run_defaults(read) is read
    committed = tmp_path / "committed"  # a cell committed before the column existed
    publish.write_cell(committed, runs.drop(columns=["seed_set"]), curves, {"format": 1})
    assert "seed_set" not in pq.read_schema(committed / "runs.parquet").names
    assert set(publish.read_cell(committed)[0]["seed_set"]) == {DISCOVERY}


# -- the analysis reads the discovery seeds unless asked ------------------------------------------------------
def test_the_analysis_loads_the_discovery_seeds_by_default(twin_sweep, tmp_path: Path) -> None:
    folders = []
    for cell in ("mnist1d-mlp-sgd-none", "mnist1d-mlp-sgd-none-replication"):
        folders.append(tmp_path / "cells" / cell)
        store.write_cell(*twin_sweep[cell], folders[-1])
    store.aggregate(folders, paths.results_dir("test", tmp_path))
    runs, curves = data.load("test", tmp_path)
    assert set(runs["seed_set"]) == {DISCOVERY} and set(runs["seed"]) == {0, 1}
    assert set(curves["run_id"]) == set(runs["run_id"])
    assert data.load_runs("test", tmp_path).equals(runs)
    again, again_curves = data.load("test", tmp_path, seed_set=REPLICATION)
    assert set(again["seed"]) == {2} and set(again_curves["run_id"]) == set(again["run_id"])
    both = data.load_runs("test", tmp_path, every_precision=True, seed_set=vocabulary.BOTH_SEED_SETS)
    assert len(both) == len(runs) + len(again)
    # a twin is its cell's problem trained on other seeds: never a duplicate problem, nor a panel of its own
    assert problems.find_duplicates(both) == []
    assert len(both.groupby(vocabulary.panel_columns(both))) == 1
    assert Study(both, seed_set=DISCOVERY).runs["run_id"].tolist() == runs["run_id"].tolist()
    assert set(Study(both, seed_set=REPLICATION).runs["seed"]) == {2} and len(Study(both).runs) == len(both)
    with pytest.raises(ValueError, match="seed set 'other' is not allowed"):
        vocabulary.of_seed_set(both, "other")


def test_the_claims_are_evaluated_on_either_seed_set_and_the_flips_named(tmp_path: Path, capsys) -> None:
    """The discovery seeds find clipping widening the stable range; replication seeds on which it does not (a
    synthetic outcome) flip that claim, and leave a claim of no difference as it was."""
    runs = synthetic_runs()
    discovery = runs[runs["seed_set"] == DISCOVERY]
    folder = paths.results_dir("synthetic", tmp_path)
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    first, _ = numbers.claim_outcomes("synthetic", tmp_path)
    again, _ = numbers.claim_outcomes("synthetic", tmp_path, REPLICATION)
    flips = {a.claim.id: (a.status, b.status) for a, b in claims.seed_set_flips(first, again)}
    assert flips["Q1-clip-norm"] == ("holds", "fails")
    assert all(a.status == b.status for a, b in zip(first, again, strict=True) if a.claim.id not in flips)
    discovery.to_parquet(folder / "runs.parquet")  # a table of the discovery runs alone: the same outcomes
    assert [o.status for o in numbers.claim_outcomes("synthetic", tmp_path)[0]] == [o.status for o in first]
    assert [o.values.get("estimate") for o in numbers.claim_outcomes("synthetic", tmp_path)[0]] == [
        o.values.get("estimate") for o in first]
    with pytest.raises(ValueError, match="not evaluated on the replication seeds"):
        claims.seed_set_flips(first, again[1:])
    runs.to_parquet(folder / "runs.parquet")
    assert numbers.main(["--sweep", "synthetic", "--root", str(tmp_path), "--findings", "--all-claims",
                         "--seed-set", REPLICATION]) == 0
    assert "Q1" in capsys.readouterr().out
