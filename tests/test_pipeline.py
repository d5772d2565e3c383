"""The Snakemake pipeline end to end, on the smoke tier, in a temporary copy of the repository.

One full run (train, aggregate, notebook, numbers, paper) is shared by the tests
of this module; the others check what a second run does, what deleting a cell
does, that a bad config stops before any job with one line, and that
``snakemake --lint`` is clean.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from workflow import ROOT, SMOKE, copy_repository, job_counts, snakemake

from analysis import layout

pytestmark = pytest.mark.skipif(shutil.which("latexmk") is None, reason="the pipeline builds the paper with latexmk")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository in which the smoke tier has run once."""
    work = copy_repository(tmp_path_factory.mktemp("pipeline") / "repo")
    result = snakemake(work, "--cores", "2", "--configfile", SMOKE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


def smoke_config() -> dict:
    return yaml.safe_load((ROOT / SMOKE).read_text())


def test_full_run_writes_results_figures_and_paper(workdir: Path) -> None:
    sweep = smoke_config()["sweep"]
    for table in ("runs", "curves"):
        assert (workdir / "results" / sweep / f"{table}.parquet").stat().st_size > 0
    stems = layout.config_stems(smoke_config())  # every figure of the three notebooks, per task x model too
    assert {f"convergence-{t}-{m}" for t, m in layout.config_problems(smoke_config())} <= set(stems)
    for stem in stems:
        for fmt in layout.FIGURE_FORMATS:
            assert (workdir / "figures" / sweep / f"{stem}.{fmt}").stat().st_size > 1000, stem
    for name in ("numbers", "table-best", "table-stability", "table-problems", "table-lr-range"):
        assert (workdir / "paper" / "generated" / sweep / f"{name}.tex").is_file()
    pdf = workdir / "paper" / "build" / sweep / "main.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    log = (workdir / "logs" / sweep / "paper.log").read_text()
    assert "undefined" not in log.split("Run number")[-1].lower(), "unresolved numbers or references"
    assert (workdir / "results" / sweep / "config.yaml").is_file()
    assert list((workdir / "benchmarks" / sweep / "train").glob("*.tsv"))


def test_second_run_does_nothing(workdir: Path) -> None:
    result = snakemake(workdir, "--cores", "2", "--configfile", SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleting_a_cell_retrains_only_that_cell(workdir: Path) -> None:
    sweep = smoke_config()["sweep"]
    cells = sorted((workdir / "results" / sweep / "cells").iterdir())
    shutil.rmtree(cells[0])
    result = snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts.get("train") == 1, counts
    assert f"cell={cells[0].name}" in result.stdout + result.stderr


def test_changing_one_strategy_retrains_only_its_cells(workdir: Path, tmp_path: Path) -> None:
    config = smoke_config()
    strategy = next(name for name in config["strategies"] if name != "none")
    entry = config["strategies"][strategy]
    key = next(k for k in entry if k != "chain")
    entry[key] = [value * 2 for value in entry[key]]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", str(changed))
    assert result.returncode == 0, result.stderr[-3000:]
    problems = layout.config_problems(config)
    assert job_counts(result.stdout + result.stderr).get("train") == len(problems)


BAD_CONFIGS = {
    "unknown strategy": (lambda c: c["strategies"].update({"clip_nrom": {}}), "clip_nrom"),
    "misspelled key": (lambda c: c.update({"seed": c.pop("seeds")}), "seed"),
    "negative learning rate": (lambda c: next(iter(c["optimizers"].values())).update({"learning_rates": [-0.1]}),
                               "learning_rates"),
    "empty seeds": (lambda c: c.update({"seeds": []}), "seeds"),
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """Snakemake on each bad config and ``--lint`` on the smoke config, run side by side (each parses the
    workflow for seconds): name -> (exit status, output, working directory)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    commands = {}
    for case, (change, _) in BAD_CONFIGS.items():
        folder = tmp_path_factory.mktemp("bad")
        config = smoke_config()
        change(config)
        (folder / "bad.yaml").write_text(yaml.safe_dump(config))
        commands[case] = (folder, ["--dry-run", "--cores", "1", "--configfile", str(folder / "bad.yaml")])
    folder = tmp_path_factory.mktemp("lint")
    commands["lint"] = (folder, ["--lint", "--configfile", str(ROOT / SMOKE)])
    running = {
        name: subprocess.Popen([sys.executable, "-m", "snakemake", *args, "--directory", str(folder)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, (folder, args) in commands.items()
    }
    return {name: (process.wait(timeout=300), process.stdout.read(), commands[name][0])
            for name, process in running.items()}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_stops_with_one_line_before_any_job(case: str, checks) -> None:
    status, output, folder = checks[case]
    assert status != 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    key = BAD_CONFIGS[case][1]
    assert lines[0].startswith("error: ") and key in lines[0] and "allowed" in lines[0], lines[0]
    assert not (folder / "results").exists() and not (folder / "logs").exists()


def test_lint_is_clean(checks) -> None:
    status, output, _ = checks["lint"]
    assert status == 0, output
    assert "Congratulations" in output, output


def test_rule_environment_lists_the_project_dependencies() -> None:
    """envs/bench.yaml (the jobs' conda environment) keeps pace with pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "bench.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()

    assert {name(r) for r in project} <= {name(r) for r in pip}


def test_notebooks_run_on_their_own_in_jupyter(workdir: Path) -> None:
    """Each notebook, unedited, runs top to bottom in a Jupyter kernel from analysis/ once results exist.

    The notebooks name the default sweep; the smoke tier's tables stand in for its results here.
    """
    import nbformat
    from nbclient import NotebookClient

    sweep = smoke_config()["sweep"]
    stand_in = workdir / "results" / "default"
    shutil.copytree(workdir / "results" / sweep, stand_in, dirs_exist_ok=True)
    try:
        for path in sorted((workdir / "analysis").glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            NotebookClient(notebook, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, (path.name, errors)
        assert list((workdir / "figures" / "default").glob("*.png"))
    finally:
        shutil.rmtree(stand_in)
        shutil.rmtree(workdir / "figures" / "default", ignore_errors=True)
