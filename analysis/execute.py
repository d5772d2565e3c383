"""Run an analysis notebook top to bottom for one sweep, as the workflow's notebook rules do.

    python -m analysis.execute analysis/stability.ipynb --sweep default --out logs/default/analysis/stability.ipynb

The notebook runs in a Jupyter kernel started in the working directory (the repository root, where
Snakemake runs every job). The sweep reaches it the way papermill passes parameters: a cell
``SWEEP = "<sweep>"``, tagged ``injected-parameters``, is added right after the cell tagged
``parameters``, which names the sweep the notebook analyses when opened on its own. The executed
copy, outputs included, is written atomically to ``--out``, also when a cell fails; the command then
ends with status 1 and one line naming the error (its traceback is in the copy).

A run is quiet. The rules do not use Snakemake's ``notebook:`` directive, which before every
notebook looks for papermill in a shell (``papermill: command not found`` where it is not
installed, and papermill draws a progress bar where it is); and the kernel logs errors only, since
ipykernel 7 warns at every start that its sockets on this machine are not encrypted.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import nbformat

from bench import atomic

PARAMETERS = "parameters"
"""The tag of the cell that names the sweep a notebook analyses on its own."""
INJECTED = "injected-parameters"
KERNEL_ARGUMENTS = ("--log-level=ERROR",)
"""Appended to the kernel's command line: its own log (not the notebook's outputs) shows errors only."""


def with_sweep(notebook: nbformat.NotebookNode, sweep: str) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with a cell ``SWEEP = "<sweep>"`` right after its cell tagged ``parameters``."""
    index = next((i for i, cell in enumerate(notebook.cells) if PARAMETERS in cell.metadata.get("tags", ())), None)
    if index is None:
        raise ValueError(f"no cell tagged {PARAMETERS!r} (the cell that names the sweep)")
    executed = copy.deepcopy(notebook)
    executed.cells.insert(index + 1, nbformat.v4.new_code_cell(
        f"# The sweep to analyse (analysis.execute).\nSWEEP = {sweep!r}", id=INJECTED, metadata={"tags": [INJECTED]}))
    return executed


def execute(notebook: Path | str, sweep: str, out: Path | str, root: Path | str = ".") -> None:
    """Run ``notebook`` for ``sweep`` in a kernel started in ``root``; write the executed copy to ``out``.

    Raises ``nbclient.exceptions.CellExecutionError`` where a cell fails, once the copy is written.
    The kernel reads no IPython profile or startup file of the user's (a fresh IPYTHONDIR).
    """
    from nbclient import NotebookClient

    executed = with_sweep(nbformat.read(notebook, as_version=4), sweep)
    client = NotebookClient(executed, timeout=None, extra_arguments=list(KERNEL_ARGUMENTS),
                            resources={"metadata": {"path": str(Path(root).resolve())}})
    with tempfile.TemporaryDirectory(prefix="ipython-") as ipython_dir:
        try:
            client.execute(env={**os.environ, "IPYTHONDIR": ipython_dir})
        finally:
            atomic.write_text(out, nbformat.writes(executed))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.execute NOTEBOOK --sweep NAME --out FILE``."""
    parser = argparse.ArgumentParser(prog="python -m analysis.execute", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", help="the notebook to run, e.g. analysis/stability.ipynb")
    parser.add_argument("--sweep", required=True, help="the sweep it analyses: reads results/<sweep>/")
    parser.add_argument("--out", required=True, help="where the executed copy goes, outputs included")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    try:
        execute(args.notebook, args.sweep, args.out)
    except CellExecutionError as error:
        print(f"error: {args.notebook}: a cell failed with {error.ename}: {error.evalue} "
              f"(traceback in {args.out})", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"error: {args.notebook}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
