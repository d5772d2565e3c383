"""Which figures the analysis draws for a sweep, shared by the Snakefile and the notebooks.

Kept free of heavy imports so that the Snakefile can use it at parse time. Where the files live
(results, figures, generated LaTeX) is ``bench.paths``; which questions a sweep answers, and the
figure of each, come from the questions' declarations (``analysis.questions``).
"""

from __future__ import annotations

from analysis.questions import QUESTIONS, Question

FIGURE_FORMATS = ("pdf", "png")
NOTEBOOKS = ("convergence", "stability", "ranking", "answers")
"""The analysis notebooks, ``analysis/<name>.ipynb``, one Snakemake rule each."""
PER_PROBLEM = {"convergence": ("convergence",), "stability": ("stability", "sensitivity"), "ranking": (),
               "answers": ()}
"""Figures drawn once per task x model, as ``<kind>-<task>-<model>``."""
OVERVIEWS = {
    "convergence": ("convergence", "time-to-target"),
    "stability": ("stability", "sensitivity", "time-to-divergence", "explosions"),
    "ranking": ("profiles", "cost"),
    "answers": (),
}
"""Figures of the whole sweep, always drawn."""
PAPER_FIGURES = ("convergence", "time-to-target", "stability", "sensitivity", "time-to-divergence", "explosions",
                 "profiles", "cost")
"""Overview figures the paper includes; ``cd`` too where it is defined (:func:`cd_defined`), and the
figure of each question the sweep answers (:func:`config_answers`)."""
MIN_CD_STRATEGIES = 3
MIN_CD_PROBLEMS = 2


def cd_defined(strategies: int, problems: int) -> bool:
    """Whether the Friedman test and critical-difference diagram exist: >= 3 strategies on >= 2 problems.

    Problems are task x model pairs, the ranking unit of ``analysis.ranking.error_matrix``
    (a problem's optimizers and stress-dial values are averaged into one row,
    not counted as independent problems). Otherwise no ``cd`` figure is written
    (no placeholder) and the rules do not ask for one.
    """
    return strategies >= MIN_CD_STRATEGIES and problems >= MIN_CD_PROBLEMS


def problem_stem(kind: str, task: str, model: str) -> str:
    """File stem of one task x model figure, e.g. ``convergence-mnist1d-mlp``."""
    return f"{kind}-{task}-{model}"


def notebook_stems(notebook: str, problems: list[tuple[str, str]], cd: bool = False,
                   regions: list[str] | tuple[str, ...] = (), answers: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Stems of every figure one notebook writes.

    ``cd``: whether the critical-difference diagram is defined (:func:`cd_defined`);
    ``regions``: strategies with more than one value of a hyperparameter, which
    get a stable-region map ``region-<strategy>`` (stability notebook);
    ``answers``: the questions the sweep answers (:func:`config_answers`), one figure each.
    """
    stems = list(OVERVIEWS[notebook])
    if notebook == "answers":
        stems += [QUESTIONS[name].figure.stem for name in answers]
    for task, model in problems:
        stems += [problem_stem(kind, task, model) for kind in PER_PROBLEM[notebook]]
    if notebook == "stability":
        stems += [f"region-{strategy}" for strategy in regions]
    if notebook == "ranking" and cd:
        stems.append("cd")
    return stems


def stem_kind(stem: str) -> str:
    """A figure stem's kind, naming its report caption: ``convergence-a-b`` -> ``convergence``; an
    answer's figure is a kind of its own."""
    if stem.startswith("region-"):
        return "region"
    if stem in {question.figure.stem for question in QUESTIONS.values()}:
        return stem
    kinds = {kind for notebook in NOTEBOOKS for kind in (*OVERVIEWS[notebook], *PER_PROBLEM[notebook])} | {"cd"}
    return max((k for k in kinds if stem == k or stem.startswith(f"{k}-")), key=len)


def figure_stems(problems: list[tuple[str, str]], cd: bool = False,
                 regions: list[str] | tuple[str, ...] = (), answers: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Stems of every figure of every notebook (see :func:`notebook_stems`)."""
    return [stem for notebook in NOTEBOOKS for stem in notebook_stems(notebook, problems, cd, regions, answers)]


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
    answers = config_answers(config)
    if notebook is None:
        return figure_stems(problems, cd, regions, answers)
    return notebook_stems(notebook, problems, cd, regions, answers)


def config_answers(config: dict) -> list[str]:
    """The questions (``analysis.questions`` names) a sweep config answers: those one of its problems
    trains enough of (:func:`trains`)."""
    return [name for name, question in QUESTIONS.items()
            if any(trains(question, set(problem.get("strategies", config["strategies"])),
                          config["tasks"][problem["task"]]) for problem in config["problems"])]


def trains(question: Question, trained: set[str], task: dict) -> bool:
    """Whether a problem training the strategies ``trained`` on the task config ``task`` answers ``question``.

    It trains the question's baseline and reference, and every compared
    strategy (``answered_by`` ``all``) or at least one (``any``; a question
    comparing every strategy: one besides the baseline); where the question
    has a ``condition`` dial, the task lists it at 0 and at a value above 0.
    """
    fixed = {question.baseline, *([question.reference] if question.reference else [])}
    if question.answered_by == "all":
        compared = set(question.compares) <= trained
    else:
        candidates = set(question.compares) or trained - {question.baseline}
        compared = bool(candidates & trained)
    values = task.get(question.condition) if question.condition else None
    condition = not question.condition or (isinstance(values, list) and 0 in values and any(v > 0 for v in values))
    return fixed <= trained and compared and condition


def paper_stems(config: dict) -> list[str]:
    """The figures the paper includes for a sweep config."""
    return [*PAPER_FIGURES, *(["cd"] if config_cd(config) else []),
            *(QUESTIONS[name].figure.stem for name in config_answers(config))]


def config_problems(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config, in config order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        for model in problem["models"]:
            if (problem["task"], model) not in pairs:
                pairs.append((problem["task"], model))
    return pairs
