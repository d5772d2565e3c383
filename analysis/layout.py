"""Where the analysis reads and writes, shared by the Snakefile and the notebooks.

Kept free of heavy imports so that the Snakefile can use it at parse time.
"""

from __future__ import annotations

from pathlib import Path

FIGURE_FORMATS = ("pdf", "png")
NOTEBOOKS = ("convergence", "stability", "ranking")
"""The analysis notebooks, ``analysis/<name>.ipynb``, one Snakemake rule each."""
PER_PROBLEM = {"convergence": ("convergence",), "stability": ("stability", "sensitivity"), "ranking": ()}
"""Figures drawn once per task x model, as ``<kind>-<task>-<model>``."""
OVERVIEWS = {
    "convergence": ("convergence", "time-to-target"),
    "stability": ("stability", "sensitivity", "time-to-divergence", "explosions"),
    "ranking": ("profiles", "cost"),
}
"""Figures of the whole sweep, always drawn."""
PAPER_FIGURES = ("convergence", "time-to-target", "stability", "sensitivity", "time-to-divergence", "explosions",
                 "profiles", "cost")
"""Overview figures the paper includes; ``cd`` too where it is defined (:func:`cd_defined`)."""
MIN_CD_STRATEGIES = 3
MIN_CD_PROBLEMS = 2


def cd_defined(strategies: int, problems: int) -> bool:
    """Whether the Friedman test and critical-difference diagram exist: >= 3 strategies on >= 2 problems.

    Problems are task x model pairs, the ranking unit of ``analysis.stats.error_matrix``
    (a problem's optimizers and stress-dial values are averaged into one row,
    not counted as independent problems). Otherwise no ``cd`` figure is written
    (no placeholder) and the rules do not ask for one.
    """
    return strategies >= MIN_CD_STRATEGIES and problems >= MIN_CD_PROBLEMS


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


def notebook_stems(notebook: str, problems: list[tuple[str, str]], cd: bool = False,
                   regions: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Stems of every figure one notebook writes.

    ``cd``: whether the critical-difference diagram is defined (:func:`cd_defined`);
    ``regions``: strategies with more than one value of a hyperparameter, which
    get a stable-region map ``region-<strategy>`` (stability notebook).
    """
    stems = list(OVERVIEWS[notebook])
    for task, model in problems:
        stems += [problem_stem(kind, task, model) for kind in PER_PROBLEM[notebook]]
    if notebook == "stability":
        stems += [f"region-{strategy}" for strategy in regions]
    if notebook == "ranking" and cd:
        stems.append("cd")
    return stems


def stem_kind(stem: str) -> str:
    """A figure stem's kind, naming its report caption: ``convergence-a-b`` -> ``convergence``."""
    if stem.startswith("region-"):
        return "region"
    kinds = {kind for notebook in NOTEBOOKS for kind in (*OVERVIEWS[notebook], *PER_PROBLEM[notebook])} | {"cd"}
    return max((k for k in kinds if stem == k or stem.startswith(f"{k}-")), key=len)


def figure_stems(problems: list[tuple[str, str]], cd: bool = False,
                 regions: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Stems of every figure of every notebook (see :func:`notebook_stems`)."""
    return [stem for notebook in NOTEBOOKS for stem in notebook_stems(notebook, problems, cd, regions)]


def config_cd(config: dict) -> bool:
    """Whether the sweep of ``config`` has a critical-difference diagram (:func:`cd_defined`)."""
    return cd_defined(len(config["strategies"]), len(config_problems(config)))


def config_regions(config: dict) -> list[str]:
    """Strategies of ``config`` with more than one value of some numeric hyperparameter, in config order."""
    regions = []
    for strategy, grid in config["strategies"].items():
        for values in (grid or {}).values():
            if isinstance(values, list) and len(values) > 1 and all(isinstance(v, int | float) for v in values):
                regions.append(strategy)
                break
    return regions


def config_stems(config: dict, notebook: str | None = None) -> list[str]:
    """Stems of the figures a sweep config yields: of one notebook, or of all."""
    problems, cd, regions = config_problems(config), config_cd(config), config_regions(config)
    if notebook is None:
        return figure_stems(problems, cd, regions)
    return notebook_stems(notebook, problems, cd, regions)


def paper_stems(config: dict) -> list[str]:
    """The figures the paper includes for a sweep config."""
    return [*PAPER_FIGURES, *(["cd"] if config_cd(config) else [])]


def config_problems(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config, in config order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        for model in problem["models"]:
            if (problem["task"], model) not in pairs:
                pairs.append((problem["task"], model))
    return pairs
