"""Which figures the analysis draws for a sweep, shared by the Snakefile and the notebooks.

Kept free of heavy imports so that the Snakefile can use it at parse time. Where the files live
(results, figures, generated LaTeX) is ``bench.paths``.
"""

from __future__ import annotations

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
ANSWER_STEMS = {"q1_stable_range": "q1-stable-range", "q2_adaptive_clippers": "q2-adaptive-clippers",
                "q3_grad_scale": "q3-gradient-decay", "q4_update_clip": "q4-update-clipping",
                "q5_seed_recipe": "q5-seed-recipe", "q6_spikes": "q6-bad-batches", "q7_warmup": "q7-warm-up"}
"""The answers notebook's figure of each question (analysis.questions' function name -> stem)."""
ANSWER_NEEDS = {"q1_stable_range": ("none",), "q2_adaptive_clippers": ("clip_norm",),
                "q3_grad_scale": ("grad_scale", "none"), "q4_update_clip": ("update_clip", "clip_norm", "none"),
                "q5_seed_recipe": ("value_then_decay", "clip_norm"), "q6_spikes": ("none", "clip_norm"),
                "q7_warmup": ("warmup", "clip_norm", "clip_norm_warmup", "none")}
"""The strategies a question compares, all trained on one problem of a sweep for its figure to exist
(Q1 also another strategy, Q2 an adaptive clipper, Q6 a task with ``spike_rate`` 0 and above 0)."""
ADAPTIVE = ("agc", "autoclip", "zclip", "adagc")
PAPER_FIGURES = ("convergence", "time-to-target", "stability", "sensitivity", "time-to-divergence", "explosions",
                 "profiles", "cost")
"""Overview figures the paper includes; ``cd`` too where it is defined (:func:`cd_defined`), and the
figure of each question the sweep answers (:func:`config_answers`)."""
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
        stems += [ANSWER_STEMS[name] for name in answers]
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
    if stem in ANSWER_STEMS.values():
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
    """The questions (analysis.questions' function names) a sweep config answers: those whose compared
    strategies (:data:`ANSWER_NEEDS`) one of its problems trains all of."""
    answered = []
    for name, needed in ANSWER_NEEDS.items():
        for problem in config["problems"]:
            trained = set(problem.get("strategies", config["strategies"]))
            task = config["tasks"][problem["task"]]
            extra = {"q1_stable_range": len(trained) >= 2, "q2_adaptive_clippers": bool(trained & set(ADAPTIVE)),
                     "q6_spikes": isinstance(task.get("spike_rate"), list) and 0 in task["spike_rate"]
                     and any(rate > 0 for rate in task["spike_rate"])}.get(name, True)
            if set(needed) <= trained and extra:
                answered.append(name)
                break
    return answered


def paper_stems(config: dict) -> list[str]:
    """The figures the paper includes for a sweep config."""
    return [*PAPER_FIGURES, *(["cd"] if config_cd(config) else []),
            *(ANSWER_STEMS[name] for name in config_answers(config))]


def config_problems(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config, in config order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        for model in problem["models"]:
            if (problem["task"], model) not in pairs:
                pairs.append((problem["task"], model))
    return pairs
