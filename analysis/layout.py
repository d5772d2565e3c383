"""Where the analysis reads and writes, shared by the Snakefile and the notebooks.

Kept free of heavy imports so that the Snakefile can use it at parse time.
"""

from __future__ import annotations

from pathlib import Path

FIGURE_FORMATS = ("pdf", "png")
OVERVIEWS = ("convergence", "stability")


def find_root(start: Path | str | None = None) -> Path:
    """The repository root: the first folder upwards from ``start`` (default: cwd) holding a Snakefile."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file():
            return folder
    raise FileNotFoundError(f"no Snakefile in {here} or above; run from inside the repository")


def results_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's aggregated tables."""
    return Path(root) / "results" / sweep


def figures_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's figures."""
    return Path(root) / "figures" / sweep


def generated_dir(sweep: str, root: Path | str = ".") -> Path:
    """Folder of a sweep's generated LaTeX (numbers and tables)."""
    return Path(root) / "paper" / "generated" / sweep


def problem_stem(kind: str, task: str, model: str) -> str:
    """File stem of one task x model figure, e.g. ``convergence-mnist1d-mlp``."""
    return f"{kind}-{task}-{model}"


def figure_stems(problems: list[tuple[str, str]]) -> list[str]:
    """Stems of every figure the convergence and stability notebook writes for these (task, model) pairs."""
    stems = list(OVERVIEWS)
    for task, model in problems:
        stems += [problem_stem(kind, task, model) for kind in OVERVIEWS]
    return stems


def config_problems(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config, in config order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        for model in problem["models"]:
            if (problem["task"], model) not in pairs:
                pairs.append((problem["task"], model))
    return pairs
