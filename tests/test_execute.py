"""analysis/execute.py: a notebook runs for the sweep it is given, quietly, and a failing cell says so in one line."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import ROOT

from analysis import execute, layout


@pytest.mark.parametrize("name", layout.NOTEBOOKS)
def test_each_notebook_takes_the_sweep_after_its_parameters_cell(name: str) -> None:
    notebook = nbformat.read(ROOT / "analysis" / f"{name}.ipynb", as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if execute.PARAMETERS in cell.metadata.get("tags", ())]
    assert len(tagged) == 1 and 'SWEEP = "default"' in notebook.cells[tagged[0]].source
    given = execute.with_sweep(notebook, "smoke")
    assert given.cells[tagged[0] + 1].source.endswith("SWEEP = 'smoke'")
    assert len(given.cells) == len(notebook.cells) + 1  # the notebook itself is left as it was
    nbformat.validate(given)


def test_a_notebook_without_parameters_cell_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bare.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
    assert execute.main([str(path), "--sweep", "s", "--out", str(tmp_path / "out.ipynb")]) == 2
    assert capsys.readouterr().err == f"error: {path}: no cell tagged 'parameters' (the cell that names the sweep)\n"


def test_a_failing_cell_ends_with_one_line_and_the_executed_copy(tmp_path: Path, monkeypatch, capfd) -> None:
    """The kernel starts in the working directory with the sweep given; it logs nothing (no warning of its own)."""
    cells = [nbformat.v4.new_code_cell('SWEEP = "default"', metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell('from pathlib import Path\nPath("seen.txt").write_text(SWEEP)'),
             nbformat.v4.new_code_cell('raise RuntimeError("no results")')]
    kernel = {"name": "python3", "display_name": "Python 3"}
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel})
    nbformat.write(notebook, tmp_path / "failing.ipynb")
    monkeypatch.chdir(tmp_path)
    assert execute.main(["failing.ipynb", "--sweep", "smoke", "--out", "logs/failing.ipynb"]) == 1
    assert (tmp_path / "seen.txt").read_text() == "smoke"
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: failing.ipynb: a cell failed with RuntimeError: no results "
                            "(traceback in logs/failing.ipynb)\n")
    executed = nbformat.read(tmp_path / "logs" / "failing.ipynb", as_version=4)
    assert [o["ename"] for c in executed.cells for o in c.get("outputs", []) if o["output_type"] == "error"] == [
        "RuntimeError"]
