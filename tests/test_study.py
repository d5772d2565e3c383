"""Committed results: study/<sweep>/ (``python -m bench publish``) and the workflow that builds from them.

study/smoke/ is committed, published from the smoke tier. When it goes stale (its fingerprint no longer
matches config/smoke.yaml) the first test fails; regenerate it with

    BENCH_RETRAIN=1 snakemake results --cores 2 --configfile config/smoke.yaml
    python -m bench publish --sweep smoke --config config/smoke.yaml

The smoke tier is trained once here, in a copy without study/; its tables are published into a
temporary folder, and the figures drawn from the thinned curves are compared with those drawn
from the full ones. A second copy, with study/, builds figures, numbers (and, with TeX, the paper)
from the committed results without a train job; a changed config, or BENCH_RETRAIN=1, trains.
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

from analysis import layout, plots
from bench import paths, publish, store, sweep

SWEEP = "smoke"
REGENERATE = ("regenerate it: BENCH_RETRAIN=1 snakemake results --cores 2 --configfile config/smoke.yaml && "
              "python -m bench publish --sweep smoke --config config/smoke.yaml")


def smoke_config() -> dict:
    return sweep.load(ROOT / SMOKE)


def quiet_environment() -> dict[str, str]:
    """The tests' environment without BENCH_RETRAIN, whatever the shell that runs them has set."""
    env = environment()
    env.pop("BENCH_RETRAIN", None)
    return env


def test_committed_smoke_study_matches_its_config() -> None:
    folder = ROOT / "study" / SWEEP
    matched, why = publish.matches(smoke_config(), folder, SMOKE)
    assert matched, f"{why}: study/smoke is stale; {REGENERATE}"
    stored = publish.record(folder)
    cells = sweep.cells(smoke_config())
    assert (stored["cells"], stored["runs"]) == (len(cells), sum(len(c.runs) for c in cells))
    runs = store.read(folder / "runs.parquet", "runs")
    assert sorted(runs["run_id"]) == sorted(r for c in cells for r in c.run_ids())


def test_fingerprint_sees_what_changes_results_only() -> None:
    """The published fingerprint is that of the config's cells (bench/fingerprint.py), the sweep's name and
    the thinning of the curves: nothing else."""
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    base = publish.fingerprint(config)
    assert publish.fingerprint(sweep.with_defaults(config)) == base  # a config as Snakemake fills it in
    same = {"device": "cuda", "threads": 4, "checkpoint_every": 7, "cuda_graph": True, "slurm_partition": "gpu",
            "divergence_factor": 10.0, "tasks": {**config["tasks"], "unused": {"kind": "copy"}}}
    for key, value in same.items():
        assert publish.fingerprint({**config, key: value}) == base, key
    for key, value in {"steps": 31, "seeds": [0, 2], "batch_size": 16, "sweep": "other",
                       "problems": config["problems"][::-1]}.items():
        assert publish.fingerprint({**config, key: value}) != base, key
    assert publish.fingerprint(config, every=5) != base
    for path, value in [("learning_rates", [0.02, 0.1, 10.0]), ("momentum", 0.5), ("nesterov", False)]:
        changed = yaml.safe_load((ROOT / SMOKE).read_text())
        changed["optimizers"]["sgd"][path] = value
        assert (publish.fingerprint(changed) == base) == (path == "nesterov"), path  # nesterov: its default


def test_a_record_of_the_first_format_migrates_where_it_matches(tmp_path: Path) -> None:
    """scripts/migrate_fingerprint.py rewrites a record of format 1 whose config matches, and only then."""
    folder = tmp_path / SWEEP
    shutil.copytree(ROOT / "study" / SWEEP, folder)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import migrate_fingerprint
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    stored = publish.record(folder)
    first = {key: value for key, value in stored.items() if key != "format"}
    first["fingerprint"] = migrate_fingerprint.format_1(smoke_config())
    (folder / publish.RECORD).write_text(json.dumps(first))
    matched, why = publish.matches(smoke_config(), folder)
    assert not matched and "fingerprint format 1, not 2" in why and "migrate_fingerprint.py" in why, why
    command = [sys.executable, str(ROOT / "scripts" / "migrate_fingerprint.py"), str(folder), SMOKE]
    changed = yaml.safe_load((ROOT / SMOKE).read_text())
    changed["optimizers"]["sgd"]["momentum"] = 0.5
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    refused = subprocess.run([*command[:-1], str(tmp_path / "changed.yaml")], cwd=ROOT, capture_output=True,
                             text=True, env=quiet_environment())
    assert refused.returncode == 2 and refused.stderr.startswith("error: "), refused.stderr
    assert json.loads((folder / publish.RECORD).read_text()) == first
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=quiet_environment())
    assert result.returncode == 0, result.stderr
    assert publish.record(folder) == stored
    assert publish.matches(smoke_config(), folder) == (True, "")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy without study/ in which the smoke tier has trained and aggregated (target ``results``)."""
    work = copy_repository(tmp_path_factory.mktemp("trained") / "repo")
    result = snakemake(work, "results", "--cores", "1", "--configfile", SMOKE, env=quiet_environment())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "none committed (study/smoke/fingerprint.json absent): training" in result.stderr
    assert job_counts(result.stdout + result.stderr).get("train") == len(sweep.cells(smoke_config()))
    return work


@pytest.fixture(scope="module")
def published(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained smoke tier published (the command line) and restored into results tables again."""
    out = tmp_path_factory.mktemp("study")
    command = [sys.executable, "-m", "bench", "publish", "--sweep", SWEEP, "--config", SMOKE,
               "--results", str(trained / "results"), "--out", str(out), "--every", "10"]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True, env=quiet_environment())
    assert result.returncode == 0, result.stderr
    restored = out / "restored"
    command = [sys.executable, "-m", "bench", "restore", "--study", str(out / SWEEP), "--out", str(restored),
               "--config", SMOKE]
    again = subprocess.run(command, cwd=trained, capture_output=True, text=True, env=quiet_environment())
    assert again.returncode == 0, again.stderr
    return {"folder": out / SWEEP, "restored": restored, "stdout": result.stdout, "source": trained / "results" / SWEEP}


def test_publish_keeps_the_runs_and_what_the_figures_draw(published: dict) -> None:
    folder, source, restored = published["folder"], published["source"], published["restored"]
    assert sorted(p.name for p in folder.iterdir()) == ["curves.parquet", "fingerprint.json", "runs.parquet"]
    full_runs, full = store.read(source / "runs.parquet", "runs"), store.read(source / "curves.parquet", "curves")
    runs, curves = store.read(restored / "runs.parquet", "runs"), store.read(restored / "curves.parquet", "curves")
    pd.testing.assert_frame_equal(runs, full_runs)  # the runs table in full, exactly
    # every kept row exactly as trained (float32 is exact: the engine logs in float32), fewer rows
    merged = curves.merge(full, on=["run_id", "step"], suffixes=("", "_full"), validate="one_to_one")
    assert len(merged) == len(curves) < len(full)
    for column in curves.columns.drop(["run_id", "step"]):
        assert np.array_equal(merged[column], merged[f"{column}_full"], equal_nan=column != "clipped"), column
    assert publish.differences(runs, full, curves) == []
    kept = full.merge(curves[["run_id", "step"]], how="left", indicator=True)
    evaluated = full["val_metric"].notna()
    assert (kept["_merge"][evaluated] == "both").all(), "every evaluation row is kept"
    stored = json.loads((folder / "fingerprint.json").read_text())
    assert stored["fingerprint"] == publish.fingerprint(smoke_config())
    assert (stored["runs"], stored["curve_rows"], stored["curve_rows_full"]) == (len(runs), len(curves), len(full))
    assert {"published", "torch", "cells", "every_step_runs"} <= set(stored)
    assert f"-> {folder}" in published["stdout"]


def test_figures_from_the_thinned_curves_are_those_from_the_full_curves(published: dict, tmp_path: Path) -> None:
    drawn = {}
    for name, folder in (("full", published["source"]), ("thinned", published["restored"])):
        runs, curves = store.read(folder / "runs.parquet", "runs"), store.read(folder / "curves.parquet", "curves")
        figures = plots.convergence_figures(runs, curves, tmp_path / name)
        figures += plots.stability_figures(runs, curves, tmp_path / name)
        drawn[name] = sorted(p.name for p in figures if p.suffix == ".png")
    assert drawn["full"] == drawn["thinned"]
    assert {"convergence.png", "time-to-target.png", "explosions.png"} <= set(drawn["full"])
    for name in drawn["full"]:
        assert np.array_equal(image.imread(tmp_path / "full" / name), image.imread(tmp_path / "thinned" / name)), name


def test_publish_refuses_results_of_another_config(trained: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    config["optimizers"]["sgd"]["learning_rates"] = [0.01, 0.1]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "bench", "publish", "--sweep", SWEEP, "--config", str(tmp_path / "other.yaml"),
               "--results", str(trained / "results"), "--out", str(tmp_path / "study")]
    result = subprocess.run(command, cwd=trained, capture_output=True, text=True, env=quiet_environment())
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "study").exists()


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
    assert counts.get("restore") == 1 and "train" not in counts and "aggregate" not in counts, counts
    assert counts.get("numbers") == 1 and counts.get("paper") == (1 if TEX else None), counts


def test_run_from_committed_results_builds_everything_without_training(committed: dict) -> None:
    work, run = committed["work"], committed["run"]
    counts = job_counts(run.stdout + run.stderr)
    assert "train" not in counts and "aggregate" not in counts and counts.get("restore") == 1, counts
    line = ("note: results of sweep smoke: committed in study/smoke (fingerprint matches config/smoke.yaml), "
            "nothing to train")
    assert line in run.stderr.splitlines(), run.stderr[-3000:]
    assert not (work / "results" / SWEEP / "cells").exists() and not (work / "benchmarks").exists()
    for stem in layout.config_stems(smoke_config()):
        for fmt in layout.FIGURE_FORMATS:
            assert (work / "figures" / SWEEP / f"{stem}.{fmt}").stat().st_size > 1000, stem
    for name in paths.GENERATED:
        assert (work / "paper" / "generated" / SWEEP / name).is_file()
    assert (work / "logs" / SWEEP / "restore.log").is_file()
    assert (work / "paper" / "build" / SWEEP / "main.pdf").is_file() == TEX
    runs = store.read(work / "results" / SWEEP / "runs.parquet", "runs")
    pd.testing.assert_frame_equal(runs, store.read(ROOT / "study" / SWEEP / "runs.parquet", "runs"))
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


def test_a_config_that_does_not_match_trains(tmp_path: Path) -> None:
    """A changed config trains as without committed results, and says so; so does BENCH_RETRAIN=1.

    In a copy of its own with study/: the run trains and aggregates, which would replace the restored tables
    the other tests read."""
    work = copy_repository(tmp_path / "repo", study=True)
    config = yaml.safe_load((ROOT / SMOKE).read_text())
    config["problems"] = config["problems"][:1]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    cells = len(sweep.cells(sweep.with_defaults(config)))
    dry = snakemake(work, "--dry-run", "--cores", "1", "--configfile", str(changed), env=quiet_environment())
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts.get("train") == cells and counts.get("aggregate") == 1 and "restore" not in counts, counts
    env = {**quiet_environment(), "BENCH_RETRAIN": "1"}
    forced = snakemake(work, "results", "--dry-run", "--cores", "1", "--configfile", SMOKE, env=env)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert job_counts(forced.stdout + forced.stderr).get("train") == len(sweep.cells(smoke_config()))
    run = snakemake(work, "results", "--cores", "1", "--configfile", str(changed), env=quiet_environment())
    assert run.returncode == 0, run.stderr[-3000:]
    line = f"note: results of sweep smoke: study/smoke/fingerprint.json does not match {changed}: training"
    assert line in run.stderr.splitlines(), run.stderr[-3000:]
    assert job_counts(run.stdout + run.stderr).get("train") == cells


def test_lint_is_clean_with_committed_results(committed: dict) -> None:
    result = snakemake(committed["work"], "--lint", "--configfile", SMOKE, env=quiet_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr
