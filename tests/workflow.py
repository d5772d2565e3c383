"""Helpers of the tests that run the Snakemake workflow in a temporary copy of the repository.

Run as a program, ``python tests/workflow.py path-without FOLDER PROGRAM...`` prints :func:`path_without`:
.ci/run hides the TeX tools with it, so that the suite runs as on a machine without TeX.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "config/smoke.yaml"
# Generated or local paths that never travel into the temporary copies.
SKIP = {".git", ".venv", ".venv-ci", ".snakemake", "results", "figures", "logs", "benchmarks", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "build", "generated"}
TEX_TOOLS = ("latexmk", "pdflatex", "bibtex")
"""What the paper build runs (rules/paper.smk); tests marked ``tex`` are skipped where one is missing."""
TEX = all(shutil.which(tool) for tool in TEX_TOOLS)
STUDY = "study"
"""The committed results (bench/publish.py): a copy holds them only when asked, else the smoke tier would not train."""


def copy_repository(target: Path, study: bool = False) -> Path:
    """Copy the working tree without generated files: git's tracked and unignored files, else a filtered copytree.

    Without ``study`` the copy leaves out the committed results in study/, so that the workflow trains.
    """
    skip = SKIP if study else SKIP | {STUDY}
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        for name in filter(None, listed.stdout.split("\0")):
            source = ROOT / name
            if source.is_file() and not skip.intersection(Path(name).parts):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:
        shutil.copytree(ROOT, target, ignore=lambda folder, names: [
            n for n in names if n in skip or n.endswith(".egg-info")])
    return target


def environment(path: str | None = None) -> dict[str, str]:
    """This interpreter's environment first on PATH (or on ``path``), so that jobs run `python -m bench` with it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '') if path is None else path}"
    return env


def path_without(programs: Iterable[str], folder: Path) -> str:
    """This process's PATH with ``programs`` taken out: each folder that holds one of them is replaced by
    ``folder``/<n>, a folder of links to the rest of its programs."""
    programs, folders = set(programs), []
    for n, directory in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        names = set(os.listdir(directory)) if os.path.isdir(directory) else set()
        if not programs & names:
            folders.append(directory)
            continue
        links = folder / str(n)
        links.mkdir(parents=True)
        for name in sorted(names - programs):
            (links / name).symlink_to(Path(directory, name))
        folders.append(str(links))
    return os.pathsep.join(folders)


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workdir`` with this interpreter's environment (or ``env``)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env or environment(),
                          capture_output=True, text=True, timeout=600)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run or dry run: rule -> number of jobs."""
    counts = {}
    table = output.split("Job stats:", 1)[-1] if "Job stats:" in output else ""
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "path-without":
        sys.exit("usage: python tests/workflow.py path-without FOLDER PROGRAM...")
    print(path_without(sys.argv[3:], Path(sys.argv[2])))
