"""Committed results, cell by cell: study/<sweep>/cells/<cell>/ (``python -m bench publish``) and the workflow
that restores them.

study/smoke/ is committed, published from the smoke tier. When one of its cells goes stale (its record's
fingerprint no longer that of the cell in config/smoke.yaml) the first test fails; regenerate it with

    BENCH_RETRAIN=1 snakemake results --cores 2 --configfile config/smoke.yaml
    python -m bench publish --sweep smoke --config config/smoke.yaml

The smoke tier is trained once here from scratch, in a copy without study/; its cells are published
into a temporary folder, part after part, and the figures drawn from the thinned curves are compared
with those drawn from the full ones. A second copy holds the published cells but two: it restores the
others and trains those two, and its sweep is the one trained from scratch. A third copy, with the
committed study/, builds figures, numbers (and, with TeX, the paper) without a train job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import image
from workflow import ROOT, SMOKE, TEX, copy_repository, environment, job_counts, snakemake

from analysis import curves as curve_analysis
from analysis import layout, plots, sensitivity, survival, tuning
from bench import paths, publish, record, store, sweep, thinning
from bench.fingerprint import cell_fingerprint

SWEEP = "smoke"
REGENERATE = ("regenerate it: BENCH_RETRAIN=1 snakemake results --cores 2 --configfile config/smoke.yaml && "
              "python -m bench publish --sweep smoke --config config/smoke.yaml")
LEFT_OUT = 2
"""Cells of the smoke tier the assembled sweep trains; it restores the others."""


def smoke_config() -> dict:
    return sweep.load(ROOT / SMOKE)


def quiet_environment() -> dict[str, str]:
    """The tests' environment without BENCH_RETRAIN, whatever the shell that runs them has set."""
    env = environment()
    env.pop("BENCH_RETRAIN", None)
    return env


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGS`` in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          env=quiet_environment())


def sweep_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep's tables in ``folder`` (results/<sweep>/), as read by the analysis."""
    return store.read(folder / "runs.parquet", "runs"), store.read(folder / "curves.parquet", "curves")


TRACED = ["run_id", "step", "grad_norm_pre", "running_median", "spike_ratio", "peak_step", "offset", "strategy",
          "seed", "diverged"]
"""The columns of the explosion traces the explosions figure reads."""


def figure_differences(runs: pd.DataFrame, full: pd.DataFrame, thinned: pd.DataFrame) -> list[str]:
    """What the figures, tables and notebooks would draw differently from ``thinned`` than from ``full`` curves;
    empty if nothing.

    Compares what each computes from the curves: the best-tuned runs' train-loss matrices (convergence), the
    events of the time-to-target curves, the explosion traces of every strategy, the spike counts and clip
    rates of the best-tuned runs (the stability notebook), and the stable ranges with their learning-rate
    sensitivity (the lr-range table).
    """
    found = []
    best = tuning.best_tuned_runs(runs)
    window = curve_analysis.smoothing_window(runs)
    _, expected = curve_analysis.loss_matrix(full, best, window)
    _, got = curve_analysis.loss_matrix(thinned, best, window)
    if not np.array_equal(expected, got, equal_nan=True):
        found.append("convergence curves")
    targets = survival.target_levels(runs)
    columns = ["run_id", "time", "observed"]
    if not survival.steps_to_target(runs, full, targets)[columns].equals(
            survival.steps_to_target(runs, thinned, targets)[columns]):
        found.append("time-to-target events")
    pairs = [(f"explosion traces of {strategy}", lambda curves, strategy=strategy: curve_analysis.explosion_traces(
        runs, curves, {"strategy": strategy})[TRACED]) for strategy in runs["strategy"].unique()]
    pairs += [("spikes and clip rates of the best-tuned runs", lambda curves: curve_analysis.spikes_and_clips(
                  curves[curves["run_id"].isin(best["run_id"])])),
              ("stable ranges and sensitivities",
               lambda curves: sensitivity.stable_range_and_sensitivity(runs, curves))]
    for name, drawn in pairs:
        try:
            pd.testing.assert_frame_equal(drawn(full), drawn(thinned))
        except AssertionError:
            found.append(name)
    return found


def test_committed_smoke_study_matches_its_config() -> None:
    cells = sweep.cells(smoke_config())
    folder = ROOT / paths.study_dir(SWEEP)
    stale = [cell.id for cell in cells if publish.committed(folder, cell.id, cell_fingerprint(cell)) is None]
    assert not stale, f"study/smoke/cells/{stale[0]} is stale; {REGENERATE}"
    assert sorted(p.name for p in (folder / paths.CELLS).iterdir()) == sorted(cell.id for cell in cells)
    for cell in cells:
        runs, _ = publish.read_cell(folder / paths.CELLS / cell.id)
        assert sorted(runs["run_id"]) == sorted(cell.run_ids())
        assert record.read(folder / paths.CELLS / cell.id)["thinning"]["rule"] == thinning.RULE


def test_committed_paper_study_matches_its_config() -> None:
    """Every cell of config/paper.yaml is committed for its definition: the paper rebuilds without training."""
    config = sweep.load(ROOT / "config" / "paper.yaml")
    folder = ROOT / paths.study_dir("paper")
    cells = sweep.cells(config)
    stale = [cell.id for cell in cells if publish.committed(folder, cell.id, cell_fingerprint(cell)) is None]
    assert not stale, f"{len(stale)} cells of study/paper are stale, e.g. {stale[0]}"
    assert len(list((folder / paths.CELLS).iterdir())) == len(cells)
    assert sum(p.stat().st_size for p in (ROOT / paths.STUDY).rglob("*") if p.is_file()) < 30e6


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy without study/ in which the smoke tier has trained from scratch (target ``results``)."""
    work = copy_repository(tmp_path_factory.mktemp("trained") / "repo")
    result = snakemake(work, "results", "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = len(sweep.cells(smoke_config()))
    line = f"note: results of sweep smoke: {cells} cells, 0 restored from study/smoke, {cells} to train, 0 up to date"
    assert line in result.stderr.splitlines(), result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr).get("train") == cells
    return work


@pytest.fixture(scope="module")
def published(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained smoke tier published (the command line): first its first cells only, as after a first
    sitting, then all of them; and restored into results cells again."""
    out = tmp_path_factory.mktemp("study")
    cells = [cell.id for cell in sweep.cells(smoke_config())]
    sitting = tmp_path_factory.mktemp("sitting") / "results"
    for cell in cells[:2]:
        shutil.copytree(paths.cell_dir(SWEEP, cell, trained), paths.cell_dir(SWEEP, cell, sitting.parent))
    publish_args = ["publish", "--sweep", SWEEP, "--config", SMOKE, "--out", str(out)]
    first = bench(*publish_args, "--results", str(sitting), cwd=trained)
    assert first.returncode == 0, first.stderr
    second = bench(*publish_args, cwd=trained)
    assert second.returncode == 0, second.stderr
    restored = paths.results_dir(SWEEP, out)
    again = bench("restore", "--config", SMOKE, "--study", str(out / SWEEP), "--out", str(restored), cwd=trained)
    assert again.returncode == 0, again.stderr
    back = bench(*publish_args, "--results", str(restored.parent), cwd=trained)  # restored cells: never written
    assert back.returncode == 0, back.stderr
    return {"folder": out / SWEEP, "restored": restored, "first": first.stdout, "second": second.stdout,
            "restore": again.stdout, "back": back.stdout, "source": paths.results_dir(SWEEP, trained),
            "cells": cells}


def test_publish_adds_the_cells_as_they_finish(published: dict) -> None:
    folder, cells = published["folder"], published["cells"]
    (first,) = published["first"].splitlines()
    assert first.startswith(f"published {folder}: 2 added, 0 replaced, 0 kept, 0 dropped (")
    assert first.endswith(f" MB); 4 neither trained nor committed ({', '.join(cells[2:])})")
    assert published["second"].startswith(f"published {folder}: 4 added, 0 replaced, 2 kept, 0 dropped (")
    assert published["restore"].startswith(f"restored 6 cells from {folder} -> {published['restored']}/cells")
    assert published["back"].startswith(f"published {folder}: 0 added, 0 replaced, 6 kept, 0 dropped (")
    assert sorted(p.name for p in (folder / paths.CELLS).iterdir()) == sorted(cells)
    for cell in cells:
        assert sorted(p.name for p in (folder / paths.CELLS / cell).iterdir()) == [
            "cell.json", "curves.parquet", "runs.parquet"]


def test_publish_keeps_the_runs_and_what_the_figures_draw(published: dict) -> None:
    source, folder = published["source"], published["folder"]
    full_runs, full = sweep_tables(source)
    parts = [publish.read_cell(published["restored"] / paths.CELLS / cell) for cell in published["cells"]]
    runs = pd.concat([part[0] for part in parts], ignore_index=True)
    curves = pd.concat([part[1] for part in parts], ignore_index=True)
    pd.testing.assert_frame_equal(runs, full_runs)  # the runs table in full, exactly
    # every value kept exactly as trained (float32 is exact: the engine logs in float32); fewer rows, fewer values
    merged = curves.merge(full, on=["run_id", "step"], suffixes=("", "_full"), validate="one_to_one")
    assert len(merged) == len(curves) < len(full)
    assert curves.notna().to_numpy().sum() < full.notna().to_numpy().sum()
    for column in curves.columns.drop(["run_id", "step"]):
        kept = merged[column].notna() if column != "clipped" else slice(None)
        assert np.array_equal(merged.loc[kept, column], merged.loc[kept, f"{column}_full"]), column
    pd.testing.assert_frame_equal(curves, thinning.thin(full_runs, full)[0])
    assert figure_differences(runs, full, curves) == []
    ends = curves[curves["val_loss"].notna()].groupby("run_id")["step"].agg(["min", "max"])
    assert (ends["min"] == 0).all() and ends.index.equals(pd.Index(sorted(runs["run_id"])))
    for cell in sweep.cells(smoke_config()):
        stored = json.loads(paths.cell_record(folder / paths.CELLS / cell.id).read_text())
        trained = json.loads(paths.cell_record(source / paths.CELLS / cell.id).read_text())
        assert stored["fingerprint"] == trained["fingerprint"] == cell_fingerprint(cell)
        assert stored["thinning"]["rule"] == thinning.RULE and "every" not in stored["thinning"]
        assert stored["thinning"]["curve_rows_trained"] == trained["curve_rows"] >= stored["curve_rows"]
        assert {key: stored[key] for key in ("trained", "torch")} == {key: trained[key] for key in ("trained", "torch")}


def test_figures_from_the_thinned_curves_are_those_from_the_full_curves(published: dict, trained: Path,
                                                                       tmp_path: Path) -> None:
    restored = tmp_path / "restored"
    result = bench("aggregate", "--config", SMOKE, "--cells-dir", str(published["restored"] / paths.CELLS),
                   "--out", str(restored), cwd=trained)
    assert result.returncode == 0, result.stderr
    drawn = {}
    for name, folder in (("full", published["source"]), ("thinned", restored)):
        runs, curves = sweep_tables(folder)
        figures = plots.convergence_figures(runs, curves, tmp_path / name)
        figures += plots.stability_figures(runs, curves, tmp_path / name)
        drawn[name] = sorted(p.name for p in figures if p.suffix == ".png")
    assert drawn["full"] == drawn["thinned"]
    assert {"convergence.png", "time-to-target.png", "explosions.png"} <= set(drawn["full"])
    for name in drawn["full"]:
        assert np.array_equal(image.imread(tmp_path / "full" / name), image.imread(tmp_path / "thinned" / name)), name


def test_publish_replaces_retrained_cells_and_drops_removed_ones(published: dict, trained: Path,
                                                                tmp_path: Path) -> None:
    """A cell trained again replaces its committed one; a cell the config no longer has is dropped, named."""
    study = tmp_path / "study"
    shutil.copytree(published["folder"], study / SWEEP)
    results = tmp_path / "results"
    shutil.copytree(published["source"], results / SWEEP)
    retrained = paths.cell_dir(SWEEP, published["cells"][0], tmp_path)
    runs = store.read(retrained / "runs.parquet", "runs")
    store.write(runs.assign(wall_time_s=runs["wall_time_s"] + 1.0), retrained / "runs.parquet", "runs")
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    config["strategies"].pop("clip_norm")
    (tmp_path / "smaller.yaml").write_text(yaml.safe_dump(config))
    result = bench("publish", "--sweep", SWEEP, "--config", str(tmp_path / "smaller.yaml"), "--results", str(results),
                   "--out", str(study), cwd=trained)
    assert result.returncode == 0, result.stderr
    gone = sorted(cell for cell in published["cells"] if cell.endswith("-clip_norm"))
    first, second = result.stdout.splitlines()
    assert first == f"dropped 3 committed cells that {tmp_path / 'smaller.yaml'} no longer has: {', '.join(gone)}"
    assert second.startswith(f"published {study / SWEEP}: 0 added, 1 replaced, 2 kept, 3 dropped (")
    assert sorted(p.name for p in (study / SWEEP / paths.CELLS).iterdir()) == sorted(
        cell for cell in published["cells"] if cell not in gone)
    committed, _ = publish.read_cell(study / SWEEP / paths.CELLS / published["cells"][0])
    assert np.array_equal(committed["wall_time_s"], runs["wall_time_s"] + 1.0)


def test_publish_refuses_a_cell_whose_runs_are_not_its_own(published: dict, trained: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(published["source"], results / SWEEP)
    first, second = (paths.cell_dir(SWEEP, cell, tmp_path) for cell in published["cells"][:2])
    shutil.copy(second / "runs.parquet", first / "runs.parquet")
    result = bench("publish", "--sweep", SWEEP, "--config", SMOKE, "--results", str(results),
                   "--out", str(tmp_path / "study"), cwd=trained)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {first / 'runs.parquet'}: not the runs of cell {first.name} ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "study").exists()


@pytest.fixture(scope="module")
def assembled(published: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy whose study/ holds the published cells but the last LEFT_OUT: the workflow restores the
    others and trains those (target ``results``)."""
    work = copy_repository(tmp_path_factory.mktemp("assembled") / "repo")
    shutil.copytree(published["folder"], work / paths.study_dir(SWEEP))
    for cell in published["cells"][-LEFT_OUT:]:
        shutil.rmtree(paths.study_cell_dir(SWEEP, cell, work))
    run = snakemake(work, "results", "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"work": work, "run": run}


def test_a_sweep_of_restored_and_trained_cells_is_the_sweep_trained_from_scratch(assembled: dict, trained: Path,
                                                                                  published: dict) -> None:
    run, work = assembled["run"], assembled["work"]
    cells = len(published["cells"])
    counts = job_counts(run.stdout + run.stderr)
    assert (counts.get("restore"), counts.get("train")) == (cells - LEFT_OUT, LEFT_OUT), counts
    line = (f"note: results of sweep smoke: {cells} cells, {cells - LEFT_OUT} restored from study/smoke, "
            f"{LEFT_OUT} to train, 0 up to date")
    assert line in run.stderr.splitlines(), run.stderr[-3000:]
    runs, curves = sweep_tables(paths.results_dir(SWEEP, work))
    scratch_runs, scratch_curves = sweep_tables(paths.results_dir(SWEEP, trained))
    timing = list(store.TIMING_COLUMNS)
    pd.testing.assert_frame_equal(runs.drop(columns=timing), scratch_runs.drop(columns=timing), check_exact=True)
    restored = ~runs["cell"].isin(published["cells"][-LEFT_OUT:])
    pd.testing.assert_frame_equal(runs[restored], scratch_runs[restored], check_exact=True)  # timing included
    pd.testing.assert_frame_equal(thinning.thin(runs, curves)[0], thinning.thin(scratch_runs, scratch_curves)[0],
                                  check_exact=True)
    again = snakemake(work, "results", "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy with study/: a dry run of ``paper`` (``all`` without TeX), then the default target for real."""
    work = copy_repository(tmp_path_factory.mktemp("committed") / "repo", study=True)
    target = "paper" if TEX else "all"
    dry = snakemake(work, target, "--dry-run", "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    run = snakemake(work, "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"work": work, "dry": dry, "run": run}


def test_dry_run_from_committed_results_plans_no_training(committed: dict) -> None:
    dry = committed["dry"]
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts.get("restore") == len(sweep.cells(smoke_config())) and "train" not in counts, counts
    assert counts.get("aggregate") == 1 and counts.get("numbers") == 1, counts
    assert counts.get("paper") == (1 if TEX else None), counts


def test_run_from_committed_results_builds_everything_without_training(committed: dict) -> None:
    work, run = committed["work"], committed["run"]
    cells = sweep.cells(smoke_config())
    counts = job_counts(run.stdout + run.stderr)
    assert "train" not in counts and counts.get("restore") == len(cells), counts
    line = (f"note: results of sweep smoke: {len(cells)} cells, {len(cells)} restored from study/smoke, 0 to train, "
            "0 up to date")
    assert line in run.stderr.splitlines(), run.stderr[-3000:]
    assert not (work / "benchmarks").exists()
    for stem in layout.config_stems(smoke_config()):
        for fmt in layout.FIGURE_FORMATS:
            assert (work / "figures" / SWEEP / f"{stem}.{fmt}").stat().st_size > 1000, stem
    for name in paths.GENERATED:
        assert (work / "paper" / "generated" / SWEEP / name).is_file()
    for cell in cells:
        assert (work / "logs" / SWEEP / "restore" / f"{cell.id}.log").read_text().startswith(f"restored {cell.id}: ")
        stored = record.read(paths.cell_dir(SWEEP, cell.id, work))
        assert stored["restored_from"] == str(paths.study_cell_dir(SWEEP, cell.id))
    assert (work / "paper" / "build" / SWEEP / "main.pdf").is_file() == TEX
    runs = store.read(work / "results" / SWEEP / "runs.parquet", "runs")
    committed_runs = [publish.read_cell(paths.study_cell_dir(SWEEP, cell.id, ROOT))[0] for cell in cells]
    pd.testing.assert_frame_equal(runs, pd.concat(committed_runs, ignore_index=True))
    again = snakemake(work, "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]


@pytest.mark.tex
def test_paper_from_committed_results(committed: dict) -> None:
    """With TeX, the paper is built from the committed results, its numbers and references resolved."""
    counts = job_counts(committed["dry"].stdout + committed["dry"].stderr)
    assert counts.get("paper") == 1 and "train" not in counts, counts
    work = committed["work"]
    assert (work / "paper" / "build" / SWEEP / "main.pdf").read_bytes().startswith(b"%PDF")
    log = (work / "logs" / SWEEP / "paper.log").read_text()
    assert "undefined" not in log.split("Run number")[-1].lower(), "unresolved numbers or references"


def dry_run(work: Path, config: dict, tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    """The jobs a dry run of target ``results`` plans in ``work`` for ``config``."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(work, "results", "--dry-run", "--cores", "1", "--configfile", str(path),
                       env=env or quiet_environment())
    assert result.returncode == 0, result.stderr[-3000:]
    return job_counts(result.stdout + result.stderr)


def test_a_strategy_added_trains_its_cells_only(tmp_path: Path) -> None:
    """On a fresh copy with study/: one strategy more plans its cells' train jobs and restores the rest."""
    work = copy_repository(tmp_path / "repo", study=True)
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    config["strategies"]["clip_norm4"] = {"chain": ["clip_norm"], "clip_norm": [4.0]}
    committed = len(sweep.cells(smoke_config()))
    added = len(sweep.cells(sweep.with_defaults(config))) - committed
    assert added == len(layout.config_problems(config)) > 0
    counts = dry_run(work, config, tmp_path)
    assert (counts.get("train"), counts.get("restore")) == (added, committed), counts


def test_a_changed_cell_trains_and_a_deleted_one_is_restored(committed: dict, tmp_path: Path) -> None:
    """Where the committed cells were restored: a cell whose definition changed trains (its fingerprint
    param), a deleted restored cell is restored again, and BENCH_RETRAIN=1 trains every cell."""
    work = committed["work"]
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    cells = sweep.cells(smoke_config())
    assert dry_run(work, config, tmp_path) == {}
    changed = yaml.safe_load((ROOT / SMOKE).read_text())
    changed["strategies"]["clip_norm"]["clip_norm"] = [2.0]
    counts = dry_run(work, changed, tmp_path)
    assert (counts.get("train"), counts.get("restore")) == (len(layout.config_problems(config)), None), counts
    folder = paths.cell_dir(SWEEP, cells[0].id, work)
    aside = shutil.move(folder, tmp_path / cells[0].id)  # a rename: the files keep their times
    try:
        counts = dry_run(work, config, tmp_path)
    finally:
        shutil.move(aside, folder)
    assert (counts.get("restore"), counts.get("train")) == (1, None), counts
    counts = dry_run(work, config, tmp_path, env={**quiet_environment(), "BENCH_RETRAIN": "1"})
    assert (counts.get("train"), counts.get("restore")) == (len(cells), None), counts


def test_lint_is_clean_with_committed_results(committed: dict) -> None:
    result = snakemake(committed["work"], "--lint", "--configfile", SMOKE, env=quiet_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr
