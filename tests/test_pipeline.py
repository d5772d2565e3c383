"""The Snakemake pipeline end to end, on the smoke tier, in a temporary copy of the repository.

One full run is shared by the tests of this module: the smoke tier without TeX on PATH (results,
figures and numbers, no paper, and a note saying so), then, where TeX is installed, the same
command again, which builds the paper alone. The other tests check what a further run does, what
deleting a cell does, that ``snakemake paper`` without TeX and a bad config stop before any job
with one line, and that ``snakemake --lint`` is clean.
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
from workflow import ROOT, SMOKE, TEX, TEX_TOOLS, copy_repository, environment, job_counts, path_without, snakemake

from analysis import layout
from bench import paths
from bench import sweep as bench_sweep

TEX_INSTALL = "apt-get install latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended"
SKIPPED = "note: paper skipped: latexmk, pdflatex, bibtex not found on PATH"


@pytest.fixture(scope="module")
def without_tex(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """In a fresh copy, with the TeX tools taken off PATH: ``snakemake paper`` (refused), then the
    smoke tier's default target."""
    base = tmp_path_factory.mktemp("pipeline")
    work = copy_repository(base / "repo")
    env = environment(path_without(TEX_TOOLS, base / "path"))
    paper = snakemake(work, "paper", "--cores", "2", "--configfile", SMOKE, env=env)
    untouched = not (work / "results").exists() and not (work / "logs").exists()
    run = snakemake(work, "--cores", "2", "--configfile", SMOKE, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"work": work, "paper": paper, "untouched": untouched, "run": run}


@pytest.fixture(scope="module")
def workdir(without_tex: dict) -> Path:
    """A copy of the repository in which the smoke tier has run: without TeX, then (where TeX is
    installed) again with it, which builds the paper and nothing else."""
    work = without_tex["work"]
    if TEX:
        result = snakemake(work, "--cores", "2", "--configfile", SMOKE)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert job_counts(result.stdout + result.stderr) == {"paper": 1, "all": 1, "total": 2}
    return work


def smoke_config() -> dict:
    return yaml.safe_load((ROOT / SMOKE).read_text())


def test_run_without_tex_writes_results_figures_and_numbers(without_tex: dict) -> None:
    work, sweep = without_tex["work"], smoke_config()["sweep"]
    for table in ("runs", "curves"):
        assert (work / "results" / sweep / f"{table}.parquet").stat().st_size > 0
    stems = layout.config_stems(smoke_config())  # every figure of the three notebooks, per task x model too
    assert {f"convergence-{t}-{m}" for t, m in layout.config_problems(smoke_config())} <= set(stems)
    for stem in stems:
        for fmt in layout.FIGURE_FORMATS:
            assert (work / "figures" / sweep / f"{stem}.{fmt}").stat().st_size > 1000, stem
    for name in paths.GENERATED:
        assert (work / "paper" / "generated" / sweep / name).is_file()
    assert (work / "results" / sweep / "config.yaml").is_file()
    assert list((work / "benchmarks" / sweep / "train").glob("*.tsv"))
    assert not (work / "paper" / "build").exists()


def test_run_without_tex_says_so_at_start_and_end(without_tex: dict) -> None:
    """One line before the first job and one after the last: the paper is skipped, and how to install TeX."""
    lines = without_tex["run"].stderr.splitlines()
    notes = [i for i, line in enumerate(lines) if line.startswith(SKIPPED)]
    jobs = [i for i, line in enumerate(lines) if re.match(r"(local)?rule \w+:$", line)]
    assert len(notes) == 2 and notes[0] < jobs[0] and notes[1] > jobs[-1], lines
    assert all(lines[i].endswith(f"on Debian/Ubuntu: {TEX_INSTALL}") for i in notes), lines[notes[0]]


def test_a_run_prints_nothing_that_reads_like_a_fault(without_tex: dict) -> None:
    """The smoke run trained, ran the notebook rules and wrote the numbers: nothing on standard error reads
    like a failure (a shell's 'command not found', as Snakemake's notebook directive printed while probing
    for papermill; a traceback; an error; the notebook kernel's warning about its sockets)."""
    stderr = without_tex["run"].stderr
    assert all(f"rule {name}:" in stderr for name in layout.NOTEBOOKS), "every notebook rule ran"
    for alarming in ("command not found", "Traceback", "Error", "WARNING"):
        assert alarming not in stderr, [line for line in stderr.splitlines() if alarming in line]


def test_paper_without_tex_stops_before_any_job(without_tex: dict) -> None:
    paper = without_tex["paper"]
    assert paper.returncode != 0
    errors = [line for line in paper.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot build the paper: latexmk, pdflatex, bibtex not found on PATH, needed for "
                      f"paper/build/smoke/main.pdf; on Debian/Ubuntu: {TEX_INSTALL}"], paper.stderr[-3000:]
    assert without_tex["untouched"], "nothing ran: no results, no logs"


def test_tex_install_command_is_the_same_everywhere() -> None:
    """The command the pipeline prints is the README's, and .ci/run installs the same packages."""
    assert TEX_INSTALL in (ROOT / "README.md").read_text()
    ci = " ".join((ROOT / ".ci" / "run").read_text().replace("\\\n", " ").split())
    packages = TEX_INSTALL.removeprefix("apt-get install ")
    assert f"--no-install-recommends {packages} " in ci


@pytest.mark.tex
def test_run_with_tex_builds_the_paper(workdir: Path) -> None:
    sweep = smoke_config()["sweep"]
    pdf = workdir / "paper" / "build" / sweep / "main.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    log = (workdir / "logs" / sweep / "paper.log").read_text()
    assert "undefined" not in log.split("Run number")[-1].lower(), "unresolved numbers or references"


def test_second_run_does_nothing(workdir: Path) -> None:
    result = snakemake(workdir, "--cores", "2", "--configfile", SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleting_a_cell_retrains_only_that_cell(workdir: Path, tmp_path: Path) -> None:
    """A dry run without one cell's folder plans that cell; the folder is put back (the other tests share it)."""
    sweep = smoke_config()["sweep"]
    cells = sorted((workdir / "results" / sweep / "cells").iterdir())
    aside = shutil.move(cells[0], tmp_path / cells[0].name)  # a rename: the files keep their times
    try:
        result = snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", SMOKE)
    finally:
        shutil.move(aside, cells[0])
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


def test_editing_an_option_retrains_the_cells_it_decides(workdir: Path, tmp_path: Path) -> None:
    """Snakemake's param is the cells' fingerprint (bench/fingerprint.py): a model option edited retrains
    the cells of that model; an optimizer default spelled out retrains nothing."""
    config = smoke_config()
    model = config["problems"][0]["models"][0]
    config["models"][model]["activation"] = "relu" if config["models"][model]["activation"] != "relu" else "tanh"
    optimizer = next(iter(config["optimizers"]))
    config["optimizers"][optimizer]["weight_decay"] = 0.0  # the default of every optimizer kind but adamw
    assert config["optimizers"][optimizer]["kind"] != "adamw"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", str(changed))
    assert result.returncode == 0, result.stderr[-3000:]
    cells = [cell for cell in bench_sweep.cells(bench_sweep.with_defaults(config)) if cell.model_name == model]
    assert job_counts(result.stdout + result.stderr).get("train") == len(cells) > 0
    for cell in cells:
        assert f"cell={cell.id}" in result.stdout + result.stderr


def test_notebook_and_numbers_rules_rerun_by_name(workdir: Path) -> None:
    """The README's way to redraw figures and numbers from stored results, without training."""
    result = snakemake(workdir, *(["paper"] if TEX else []), "--dry-run", "--cores", "2", "--configfile", SMOKE,
                       "--forcerun", *layout.NOTEBOOKS, "numbers")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert {rule: counts.get(rule) for rule in (*layout.NOTEBOOKS, "numbers")} == dict.fromkeys(
        (*layout.NOTEBOOKS, "numbers"), 1), counts
    assert "train" not in counts and "aggregate" not in counts, counts


def test_an_edited_analysis_module_reruns_the_rules_that_run_it(workdir: Path) -> None:
    """The notebook and numbers rules list analysis/**/*.py among their inputs (their shell commands are no rerun
    trigger): an edited module reruns them, and nothing upstream. The module is put back as it was.

    An edit, not a touch: Snakemake reruns a job for an input newer than its outputs only where the input's
    checksum differs from the one it recorded."""
    module = workdir / "analysis" / "claims.py"
    text, before = module.read_bytes(), module.stat()
    module.write_bytes(text + b"\n# edited\n")
    try:
        result = snakemake(workdir, "--dry-run", "--cores", "2", "--configfile", SMOKE)
    finally:
        module.write_bytes(text)
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert {rule: counts.get(rule) for rule in (*layout.NOTEBOOKS, "numbers")} == dict.fromkeys(
        (*layout.NOTEBOOKS, "numbers"), 1), counts
    assert "train" not in counts and "aggregate" not in counts, counts


# Snakemake's own line before anything else, naming the workflow profile (profiles/default) it reads.
PROFILE_NOTICE = re.compile(r"Using .*profile.* for setting default command line arguments\.")
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
                               env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, (folder, args) in commands.items()
    }
    return {name: (process.wait(timeout=300), process.stdout.read(), commands[name][0])
            for name, process in running.items()}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_stops_with_one_line_before_any_job(case: str, checks) -> None:
    status, output, folder = checks[case]
    assert status != 0
    lines = [line for line in output.splitlines() if line.strip() and not PROFILE_NOTICE.fullmatch(line)]
    assert len(lines) == 1, lines
    key = BAD_CONFIGS[case][1]
    assert lines[0].startswith("error: ") and key in lines[0] and "allowed" in lines[0], lines[0]
    assert not (folder / "results").exists() and not (folder / "logs").exists()


def test_lint_is_clean(checks) -> None:
    status, output, folder = checks["lint"]
    assert status == 0, output
    assert "Congratulations" in output, output
    assert not (folder / "results").exists(), "parsing the workflow writes nothing"


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
