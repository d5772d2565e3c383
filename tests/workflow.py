"""Helpers of the tests that run the Snakemake workflow in a temporary copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "config/smoke.yaml"
# Generated or local paths that never travel into the temporary copies.
SKIP = {".git", ".venv", ".venv-ci", ".snakemake", "results", "figures", "logs", "benchmarks", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", "build", "generated"}


def copy_repository(target: Path) -> Path:
    """Copy the working tree without generated files: git's tracked and unignored files, else a filtered copytree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        for name in filter(None, listed.stdout.split("\0")):
            source = ROOT / name
            if source.is_file() and not SKIP.intersection(Path(name).parts):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:
        shutil.copytree(ROOT, target, ignore=lambda folder, names: [
            n for n in names if n in SKIP or n.endswith(".egg-info")])
    return target


def environment() -> dict[str, str]:
    """This interpreter's environment first on PATH, so that jobs run `python -m bench` with it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workdir`` with this interpreter's environment."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=environment(),
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
