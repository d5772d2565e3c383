"""bench/paths.py: the one place that names the workflow's folders and files, cheap to import."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT

from bench import paths

HEAVY = ("torch", "numpy", "pandas", "scipy", "pyarrow", "matplotlib", "yaml")
# A string literal in the workflow that starts with one of the folders bench/paths.py names.
LITERAL_PATH = re.compile(r"""["'](?:results|figures|logs|benchmarks|study|paper/generated|paper/build)/""")


def test_importing_paths_loads_no_library() -> None:
    """The Snakefile imports it at every start: the standard library only."""
    code = ("import sys, bench.paths; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_workflow_takes_every_path_from_paths() -> None:
    """No rule spells out a folder of its own (comments aside)."""
    for source in (ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))):
        for number, line in enumerate(source.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not LITERAL_PATH.search(code), f"{source.name}:{number}: {line.strip()}"


def test_a_sweeps_tree() -> None:
    assert str(paths.sweep_config("s")) == "results/s/config.yaml"
    assert {k: str(v) for k, v in paths.tables(paths.cell_dir("s", "c")).items()} == {
        "runs": "results/s/cells/c/runs.parquet", "curves": "results/s/cells/c/curves.parquet"}
    assert str(paths.generated_files("s", "/r")[0]) == "/r/paper/generated/s/numbers.tex"
    assert paths.CLAIMS_TEX in paths.GENERATED and paths.CLAIMS_RECORD not in paths.GENERATED
    assert str(paths.study_dir("s")) == "study/s" and str(paths.paper_pdf("s")) == "paper/build/s/main.pdf"
    with pytest.raises(ValueError, match="runs, curves"):
        paths.table("x", "run")
