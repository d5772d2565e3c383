"""Which figures the analysis draws for a sweep, shared by the Snakefile and the notebooks.

Kept free of heavy imports so that the Snakefile can use it at parse time. Where the files live
(results, figures, generated LaTeX) is ``bench.paths``; which questions a sweep answers, and the
figure of each, come from the questions' declarations (``analysis.questions``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

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
PANELED = {"convergence": 8, "time-to-target": 8, "sensitivity": 8, "time-to-divergence": 8, "stability": 4}
"""Overview figures drawn one axes per panel, and the most panels one figure holds (legible at print size: a
stability heatmap lists every strategy, so it holds fewer). A sweep with more panels gets the figure with the
first panels of each model family and, in the appendix, one figure per family (:func:`split_panels`)."""
PER_OPTIMIZER = ("stability",)
"""Paneled figures whose axes are per task x model x optimizer, pooled over the stress dials and precisions."""
MIN_CD_STRATEGIES = 3
MIN_CD_PROBLEMS = 2
ATTENTION = "attention-logits"
"""The kind of the attention-logit figure (``analysis.mechanisms``): one per task x model pair of
:func:`config_attention`, ``attention-logits-<task>-<model>``, drawn by the stability notebook."""
ATTENTION_STRATEGIES = ("none", "qk_norm")
"""The strategies the attention-logit figure compares: without mitigation and with qk-layernorm."""


MIN_RANKED_PROBLEMS = 2
"""The fewest problems the ranking of every strategy trained (on the problems that trained them all) needs."""


def ranked_block(trained: Mapping[str, Collection[str]],
                 min_problems: int = MIN_RANKED_PROBLEMS) -> tuple[list[str], set[str]]:
    """Which problems and strategies the ranking compares (``analysis.ranking.error_matrix``), from the strategies
    each problem trained on every one of its panels (``trained``: problem -> strategies), problems in its order.

    Every strategy, on the problems that trained them all, where there are at least ``min_problems``. A study
    that trains some strategies on some problems only (the paper's: every gradient strategy on four problems, the
    compared twelve on twelve, the transformer's mitigations on three) has no such problems: it ranks the
    largest block instead, the strategy set (a problem's own, or the strategies common to several problems')
    whose count times the count of problems that trained it all is largest, over at least ``min_problems``
    problems (ties: more problems, then more strategies, then the set whose sorted names come first). Where no set is
    trained on that many problems: the strategies every problem trained, on all of them.
    """
    problems = list(trained)
    sets = {p: frozenset(trained[p]) for p in problems}
    every = frozenset().union(*sets.values())
    full = [p for p in problems if every <= sets[p]]
    if len(full) >= min_problems:
        return full, set(every)
    candidates, grown = set(sets.values()), True
    while grown:  # every intersection of problems' sets: the strategies several problems have in common
        more = {a & b for a in candidates for b in candidates} - candidates
        candidates |= more
        grown = bool(more)
    blocks = [(s, [p for p in problems if s <= sets[p]]) for s in sorted(candidates, key=sorted) if s]
    blocks = [(s, ps) for s, ps in blocks if len(ps) >= min_problems]
    if not blocks:
        common = frozenset.intersection(*sets.values()) if sets else frozenset()
        return problems, set(common)
    # max keeps the first of equal blocks: the candidates are sorted by their names
    chosen, chosen_problems = max(blocks, key=lambda b: (len(b[0]) * len(b[1]), len(b[1]), len(b[0])))
    return chosen_problems, set(chosen)


def cd_defined(strategies: int, problems: int) -> bool:
    """Whether the Friedman test and critical-difference diagram exist: >= 3 strategies on >= 2 problems.

    Problems are task x model pairs, the ranking unit of ``analysis.ranking.error_matrix``
    (a problem's optimizers and stress-dial values are averaged into one row,
    not counted as independent problems). Otherwise no ``cd`` figure is written
    (no placeholder) and the rules do not ask for one.
    """
    return strategies >= MIN_CD_STRATEGIES and problems >= MIN_CD_PROBLEMS


def split_panels(families: Sequence[str], limit: int) -> dict[str, list[int]]:
    """Which panels each figure of a paneled kind shows: figure suffix -> indexes into ``families``.

    ``families``: the model family of each panel, in drawing order. Up to
    ``limit`` panels: one figure, suffix ``""``, with all of them. More: the
    main figure (``""``) shows the first panels of each family, as many per
    family as ``limit`` allows for all (at least one; the first ``limit``
    families), and each family gets appendix figures of at most ``limit``
    panels, ``family-<family>`` (or ``family-<family>-<k>``, k from 1, where
    it needs more than one).
    """
    indexes = list(range(len(families)))
    if len(indexes) <= limit:
        return {"": indexes}
    order = list(dict.fromkeys(families))
    own = {family: [i for i in indexes if families[i] == family] for family in order}
    per = max(1, limit // len(order))
    split = {"": sorted(i for family in order[:limit] for i in own[family][:per])}
    for family, members in own.items():
        chunks = [members[k:k + limit] for k in range(0, len(members), limit)]
        for k, chunk in enumerate(chunks, start=1):
            split[f"family-{family}" + (f"-{k}" if len(chunks) > 1 else "")] = chunk
    return split


def paneled_stems(kind: str, families: Sequence[str]) -> list[str]:
    """The stems of a paneled kind's figures for panels of ``families`` (:func:`split_panels`)."""
    return [f"{kind}-{suffix}" if suffix else kind for suffix in split_panels(families, PANELED[kind])]


def config_panel_families(config: dict, kind: str) -> list[str]:
    """The model family of each panel a sweep config trains, in config order: per task x model, optimizer and
    value of its stress dials (a list in its task or model entry); per task x model x optimizer for a kind of
    :data:`PER_OPTIMIZER`. Problems trained again in another precision than the sweep's (Q3's float64
    replicas) draw no panel: figures read the sweep's precision only (``analysis.data.load``)."""
    seen: dict[tuple, str] = {}
    for problem in config["problems"]:
        if problem.get("dtype", config.get("dtype", "float32")) != config.get("dtype", "float32"):
            continue
        task = config["tasks"][problem["task"]]
        for model in problem["models"]:
            entry = config["models"][model]
            dials = math.prod(len(v) for v in (*task.values(), *entry.values()) if isinstance(v, list))
            for optimizer in problem.get("optimizers", config["optimizers"]):
                for value in range(1 if kind in PER_OPTIMIZER else dials):
                    key = (problem["task"], model, optimizer) + (() if kind in PER_OPTIMIZER else (value,))
                    seen.setdefault(key, str(entry["family"]))
    return list(seen.values())


def problem_stem(kind: str, task: str, model: str) -> str:
    """File stem of one task x model figure, e.g. ``convergence-mnist1d-mlp``."""
    return f"{kind}-{task}-{model}"


def notebook_stems(notebook: str, problems: list[tuple[str, str]], cd: bool = False,
                   regions: list[str] | tuple[str, ...] = (), answers: list[str] | tuple[str, ...] = (),
                   families: Mapping[str, Sequence[str]] | None = None,
                   attention: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Stems of every figure one notebook writes.

    ``cd``: whether the critical-difference diagram is defined (:func:`cd_defined`);
    ``regions``: strategies with more than one value of a hyperparameter, which
    get a stable-region map ``region-<strategy>`` (stability notebook);
    ``answers``: the questions the sweep answers (:func:`config_answers`), one figure each;
    ``families``: per kind of :data:`PANELED`, the model family of each of its panels
    (:func:`config_panel_families`), which splits a figure of too many panels (:func:`paneled_stems`);
    a kind without them gets one figure; ``attention``: the task x model pairs with an attention-logit
    figure (:func:`config_attention`, stability notebook).
    """
    stems = []
    for kind in OVERVIEWS[notebook]:
        stems += paneled_stems(kind, (families or {}).get(kind, ())) if kind in PANELED else [kind]
    if notebook == "answers":
        stems += [QUESTIONS[name].figure.stem for name in answers]
    for task, model in problems:
        stems += [problem_stem(kind, task, model) for kind in PER_PROBLEM[notebook]]
    if notebook == "stability":
        stems += [f"region-{strategy}" for strategy in regions]
        stems += [problem_stem(ATTENTION, task, model) for task, model in attention]
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
    kinds = {kind for notebook in NOTEBOOKS for kind in (*OVERVIEWS[notebook], *PER_PROBLEM[notebook])}
    kinds |= {"cd", ATTENTION}
    return max((k for k in kinds if stem == k or stem.startswith(f"{k}-")), key=len)


def figure_stems(problems: list[tuple[str, str]], cd: bool = False,
                 regions: list[str] | tuple[str, ...] = (), answers: list[str] | tuple[str, ...] = (),
                 families: Mapping[str, Sequence[str]] | None = None,
                 attention: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Stems of every figure of every notebook (see :func:`notebook_stems`)."""
    return [stem for notebook in NOTEBOOKS
            for stem in notebook_stems(notebook, problems, cd, regions, answers, families, attention)]


def config_cd(config: dict) -> bool:
    """Whether the sweep of ``config`` has a critical-difference diagram (:func:`cd_defined`): over the block
    :func:`ranked_block` picks from the strategies each (task, model) pair trains under every optimizer, at the
    default precision (the figures' runs)."""
    from bench.sweep import DEFAULT_DTYPE, problem_strategies  # here: importing this module stays cheap

    trained: dict[str, set[str]] = {}
    for problem in config["problems"]:
        if problem.get("dtype", config.get("dtype", DEFAULT_DTYPE)) != DEFAULT_DTYPE:
            continue
        strategies = set(problem_strategies(config, problem))
        for model in problem["models"]:
            key = f"{problem['task']}/{model}"
            trained[key] = trained[key] & strategies if key in trained else strategies
    problems, strategies = ranked_block(trained)
    return cd_defined(len(strategies), len(problems))


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
    answers, attention = config_answers(config), config_attention(config)
    families = {kind: config_panel_families(config, kind) for kind in PANELED}
    if notebook is None:
        return figure_stems(problems, cd, regions, answers, families, attention)
    return notebook_stems(notebook, problems, cd, regions, answers, families, attention)


def config_attention(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config with an attention-logit figure, in config order: those a
    problem trains with every strategy of :data:`ATTENTION_STRATEGIES` at the sweep's precision.

    The config check admits ``qk_norm`` only on a model family with a ``qk_norm`` option, the transformer,
    whose curves log the largest attention logit of each layer (``attn_logit_max_<l>``), so such a pair
    has the curves the figure draws; the notebook finds the same pairs in the data
    (``analysis.mechanisms.attention_pairs``). A problem trained again in another precision draws no
    figure of its own, as for :func:`config_panel_families`.
    """
    from bench.sweep import problem_strategies  # here: importing this module stays cheap (tests/test_layering.py)

    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        if problem.get("dtype", config.get("dtype", "float32")) != config.get("dtype", "float32"):
            continue
        if not set(ATTENTION_STRATEGIES) <= set(problem_strategies(config, problem)):
            continue
        pairs += [(problem["task"], model) for model in problem["models"] if (problem["task"], model) not in pairs]
    return pairs


def config_answers(config: dict) -> list[str]:
    """The questions (``analysis.questions`` names) a sweep config answers: those one of its problems
    trains enough of (:func:`trains`)."""
    from bench.sweep import problem_strategies  # here: importing this module stays cheap (tests/test_layering.py)

    return [name for name, question in QUESTIONS.items()
            if any(trains(question, set(problem_strategies(config, problem)),
                          config["tasks"][problem["task"]],
                          {str(config["models"][model]["family"]) for model in problem["models"]})
                   for problem in config["problems"])]


def trains(question: Question, trained: set[str], task: dict, families: Collection[str] = ()) -> bool:
    """Whether a problem training the strategies ``trained`` on the task config ``task``, with models of the
    families ``families``, answers ``question``.

    It trains the question's baseline and reference, and every compared
    strategy (``answered_by`` ``all``) or at least one (``any``; a question
    comparing every strategy: one besides the baseline); where the question
    has a ``condition`` dial, the task lists it at 0 and at a value above 0;
    where it reads some model families only (``families``), a model of one.
    """
    fixed = {question.baseline, *([question.reference] if question.reference else [])}
    if question.answered_by == "all":
        compared = set(question.compares) <= trained
    else:
        candidates = set(question.compares) or trained - {question.baseline}
        compared = bool(candidates & trained)
    values = task.get(question.condition) if question.condition else None
    condition = not question.condition or (isinstance(values, list) and 0 in values and any(v > 0 for v in values))
    family = not question.families or bool(set(question.families) & set(families))
    return fixed <= trained and compared and condition and family


def paper_stems(config: dict) -> list[str]:
    """The figures the paper includes for a sweep config: its appendix's figures of one model family each too."""
    appendix = [stem for kind in PANELED for stem in paneled_stems(kind, config_panel_families(config, kind))
                if stem != kind]
    return [*PAPER_FIGURES, *appendix, *(["cd"] if config_cd(config) else []),
            *(QUESTIONS[name].figure.stem for name in config_answers(config))]


def config_problems(config: dict) -> list[tuple[str, str]]:
    """The (task, model) pairs of a sweep config, in config order, without repeats."""
    pairs: list[tuple[str, str]] = []
    for problem in config["problems"]:
        for model in problem["models"]:
            if (problem["task"], model) not in pairs:
                pairs.append((problem["task"], model))
    return pairs
