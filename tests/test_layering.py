"""How the packages depend on each other: ``analysis`` reads ``bench``, never the reverse; no import cycle
inside ``analysis``; the modules that only compute load no plotting library, and the ones the Snakefile
reads at parse time (``analysis.layout`` and the question registry) no library at all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HEAVY = ("numpy", "pandas", "scipy", "matplotlib", "torch")
DRAWING = {"analysis.plots", "analysis.answers", "analysis.mechanisms", "analysis.execute"}
"""The modules that draw (matplotlib) or run notebooks (a Jupyter kernel)."""


def modules(package: str) -> list[str]:
    """Every module of ``package`` (a folder of the repository), by its dotted name."""
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def loaded_after(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that a fresh interpreter holds after importing ``names``."""
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            f"print(sorted({{m for m in sys.modules if m.split('.')[0] in {prefixes!r}}}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def module_imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that ``path`` imports at module level (not under ``if TYPE_CHECKING:``)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == package}


def test_importing_every_bench_module_imports_no_analysis_module() -> None:
    assert loaded_after(modules("bench"), ("analysis",)) == []


def test_the_analysis_modules_import_each_other_without_a_cycle() -> None:
    names = set(modules("analysis"))
    graph = {}
    for name in names:
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = {m for m in module_imports(path, "analysis") if m in names and m != name}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join([*trail[trail.index(name):], name])
        if name not in done:
            for other in sorted(graph[name]):
                visit(other, (*trail, name))
            done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_the_modules_that_compute_load_no_plotting_library() -> None:
    computing = [name for name in modules("analysis") if name not in DRAWING]
    assert "analysis.numbers" in computing and not loaded_after(computing, ("matplotlib", "seaborn"))


def test_the_registry_and_the_figure_lists_are_cheap_to_import() -> None:
    """The Snakefile imports analysis.layout, and with it the question declarations, at every start."""
    assert loaded_after(["analysis.layout", "analysis.questions"], HEAVY) == []
