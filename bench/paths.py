"""Where the benchmark keeps its files: every folder and file name shared by the workflow, ``bench`` and ``analysis``.

Paths are relative to ``root``, the repository root: Snakemake's working directory, where every job
runs. The tree of one sweep::

    results/<sweep>/config.yaml                          the config its jobs train from (sweep_config)
    results/<sweep>/cells/<cell>/{runs,curves}.parquet   one cell's tables (cell_dir, tables)
    results/<sweep>/cells/<cell>/cell.json               what they are: the cell's fingerprint, trained or restored
    results/<sweep>/cells/<cell>/checkpoint.pt           its train job's checkpoint while it trains
    results/<sweep>/{runs,curves}.parquet                the sweep's tables (results_dir, tables)
    results/.cache/tasks/                                made data sets, shared by all sweeps (CACHE_DIR)
    study/<sweep>/cells/<cell>/                          its committed results, cell by cell (study_cell_dir):
                                                         runs.parquet, thinned curves.parquet, cell.json
    figures/<sweep>/<stem>.{pdf,png}                     its figures (figures_dir)
    paper/generated/<sweep>/                             the numbers and tables the paper cites (GENERATED)
    paper/build/<sweep>/main.pdf                         the paper (paper_pdf)
    logs/<sweep>/, benchmarks/<sweep>/                   its jobs' logs and Snakemake benchmarks

The Snakefile imports this module at every start: it imports the standard library only.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"
"""Folder of the sweeps' results, one folder per sweep."""
CELLS = "cells"
"""Folder of a sweep's cells, below its results folder, one folder per cell."""
STUDY = "study"
"""Folder of the committed results, one folder per sweep (``python -m bench publish``)."""
FIGURES = "figures"
PAPER = "paper"
"""The paper's sources (main.tex, refs.bib, claims.yaml), its generated numbers and its builds."""
LOGS = "logs"
BENCHMARKS = "benchmarks"
CACHE_DIR = Path(RESULTS) / ".cache" / "tasks"
"""The data cache's default folder (``bench.tasks.cache_dir``): below ``results/``, where the workflow
writes and every job runs."""

CELL_RECORD = "cell.json"
"""A cell folder's record, beside its tables (results and study alike, ``bench.record``): the fingerprint
of the cell they hold, and whether they were trained there or restored from the committed results."""
CHECKPOINT = "checkpoint.pt"
"""A train job's checkpoint, in its cell's folder while the cell trains (``python -m bench train``)."""
TABLES = ("runs", "curves")
"""The two tables of a cell, of a sweep and of a study folder, ``<kind>.parquet``."""
SWEEP_CONFIG = "config.yaml"
"""The config a sweep's jobs train from, in its results folder (written as a run starts)."""
CLAIMS_TEX = "claims.tex"
"""The claims as TeX macros (``analysis.claims``), one of :data:`GENERATED`."""
GENERATED = ("numbers.tex", "table-best.tex", "table-stability.tex", "table-problems.tex", "table-lr-range.tex",
             "table-gains.tex", "table-leaderboard.tex", "table-setup.tex", "limitations.tex", "appendix.tex",
             "headlines.tex", "replication.tex", "table-replication.tex", CLAIMS_TEX)
"""The files ``python -m analysis.numbers`` writes into :func:`generated_dir`, numbers.tex first: the
``numbers`` rule's outputs and the ``paper`` rule's inputs."""
CLAIMS_RECORD = "claims.json"
"""The evaluated claims, beside :data:`GENERATED` and not among them: Snakemake removes a rule's outputs
before rerunning it, and the previous record is what a rerun's flipped claims are judged against."""
CLAIMS = "claims.yaml"
"""The study's claims, in the paper's folder (``analysis.claims``)."""


def table(folder: Path | str, kind: str) -> Path:
    """The ``kind`` table (runs or curves) in ``folder``: ``<folder>/<kind>.parquet``."""
    if kind not in TABLES:
        raise ValueError(f"unknown table {kind!r}; allowed: {', '.join(TABLES)}")
    return Path(folder) / f"{kind}.parquet"


def tables(folder: Path | str) -> dict[str, Path]:
    """Both tables in ``folder``, kind -> path, runs first."""
    return {kind: table(folder, kind) for kind in TABLES}


def results_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's results: its config, cells and aggregated tables."""
    return Path(root) / RESULTS / sweep


def sweep_config(sweep: str, root: Path | str = ".") -> Path:
    """The config a sweep's jobs train from, ``results/<sweep>/config.yaml``."""
    return results_dir(sweep, root) / SWEEP_CONFIG


def cells_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's cells, ``results/<sweep>/cells``."""
    return results_dir(sweep, root) / CELLS


def cell_dir(sweep: str, cell: str, root: Path | str = ".") -> Path:
    """Folder of one cell's tables, ``results/<sweep>/cells/<cell>``."""
    return cells_dir(sweep, root) / cell


def cell_record(folder: Path | str) -> Path:
    """The record of the cell folder ``folder`` (of results or of the study): ``<folder>/cell.json``."""
    return Path(folder) / CELL_RECORD


def study_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's committed results, ``study/<sweep>``."""
    return Path(root) / STUDY / sweep


def study_cells_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's committed cells, ``study/<sweep>/cells``."""
    return study_dir(sweep, root) / CELLS


def study_cell_dir(sweep: str, cell: str, root: Path | str = ".") -> Path:
    """Folder of one committed cell, ``study/<sweep>/cells/<cell>``."""
    return study_cells_dir(sweep, root) / cell


def figures_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's figures, ``figures/<sweep>``."""
    return Path(root) / FIGURES / sweep


def generated_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's generated LaTeX (numbers, tables, claims), ``paper/generated/<sweep>``."""
    return Path(root) / PAPER / "generated" / sweep


def generated_files(sweep: str, root: Path | str = ".") -> list[Path]:
    """The :data:`GENERATED` files of a sweep, numbers.tex first."""
    return [generated_dir(sweep, root) / name for name in GENERATED]


def claims_file(root: Path | str = ".") -> Path:
    """The study's claims, ``paper/claims.yaml``."""
    return Path(root) / PAPER / CLAIMS


def paper_pdf(sweep: str, root: Path | str = ".") -> Path:
    """A sweep's paper, ``paper/build/<sweep>/main.pdf``."""
    return Path(root) / PAPER / "build" / sweep / "main.pdf"


def logs_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's job logs (executed notebooks included), ``logs/<sweep>``."""
    return Path(root) / LOGS / sweep


def benchmarks_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's Snakemake benchmarks (time and memory per job), ``benchmarks/<sweep>``."""
    return Path(root) / BENCHMARKS / sweep
