"""The paper's generated prose: what the sweep trained, what it cannot say, and its headline answers.

Four files of ``paper/generated/<sweep>/`` (``bench.paths.GENERATED``), each computed from the sweep's
runs table, its config (``results/<sweep>/config.yaml``) and its evaluated claims, never typed by hand:

- ``table-setup.tex`` (:func:`table_setup`): per problem its task, model and size, optimizers, steps
  and evaluation interval, seeds, learning rates, strategies, stress dials and precision; below it,
  per optimizer its options and learning-rate grid;
- ``limitations.tex`` (:func:`limitations_tex`): the limitations paragraph, from the budget, the model
  sizes, the precision, the number of distinct problems, the share of censored compared stable ranges, the
  evaluation resolution, the optimizers' weight decay, the seeds and the hyperparameter grids that differ across
  problems (``grid-<strategy>`` macros, :func:`analysis.macros.grid_text`);
- ``appendix.tex`` (:func:`appendix_tex`): where a paneled figure or per-panel table shows only the first
  panels of each model family, the note saying so (``\\benchnum{panels-<kind>}``) and the appendix's
  figures and tables of one family each (``\\benchappendix``);
- ``headlines.tex`` (:func:`headlines_tex`): the headline claims (``headline: true`` in
  ``paper/claims.yaml``), as full sentences (``\\benchheadlines``) and in their short effect form
  (``\\benchheadlineeffects``), and the unit each question's intervals resample (``\\benchunits``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.claims import NOT_MEASURED, PER_OPTIMIZER, Outcome, effect_and_interval
from analysis.curves import CurveSource
from analysis.design import compared_ranges, distinct_pairs
from analysis.latex import name, number, percent, tex_escape
from analysis.macros import grid_text
from analysis.questions import QUESTIONS
from analysis.tables import panel_splits, table_best, table_lr_range
from analysis.vocabulary import dial_columns, problems, select
from bench.sweep import stress_dials

STRESS_DIALS_DEFAULTS = stress_dials()
"""Each stress dial's registered default: the setup table lists a dial only where a problem sets another value."""

MODEL_SIZE_KEYS = ("depth", "width", "channels", "kernel", "strided_layers", "hidden", "d_model", "layers", "heads",
                   "cell", "activation")
"""The keys of a model's config entry that say its size and kind, in the order the setup table lists them."""
UNNAMED_KEYS = ("cell", "activation")
"""Size keys whose value names itself (``tanh``, ``lstm``): listed without their key."""
OPTIMIZER_KEYS = ("momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay")
"""The keys of an optimizer's config entry the setup table lists (besides its kind and learning rates)."""


def _model_size(model: Mapping[str, Any], per_line: int = 0) -> str:
    """A model's size and kind (:data:`MODEL_SIZE_KEYS`); ``per_line`` > 0: a ``\\makecell`` of that many per line."""
    parts = [tex_escape(str(model[key]) if key in UNNAMED_KEYS else f"{key.replace('_', ' ')} {model[key]}")
             for key in MODEL_SIZE_KEYS if key in model]
    if not parts:
        return "n/a"
    if per_line <= 0:
        return ", ".join(parts)
    lines = [", ".join(parts[k:k + per_line]) for k in range(0, len(parts), per_line)]
    return "\\makecell[l]{" + "\\\\ ".join(lines) + "}"


def _entry(config: Mapping[str, Any] | None, task: str, model: str, optimizer: str | None = None) -> dict[str, Any]:
    """The config's settings of one task x model pair (under ``optimizer``, where the pair has one problems entry
    per optimizer): the top level overridden by its problems entry."""
    if not config:
        return {}
    entry = next((p for p in config.get("problems", ()) if p["task"] == task and model in p["models"]
                  and (optimizer is None or optimizer in p.get("optimizers", config.get("optimizers", {})))), {})
    return {**config, **entry}


def _evaluations(config: Mapping[str, Any] | None, task: str, model: str, optimizers: Sequence[str]) -> list[int]:
    """The evaluation intervals of one task x model pair under each of ``optimizers`` (one, where all agree)."""
    return sorted({int(entry["eval_every"]) for entry in (_entry(config, task, model, o) for o in optimizers)
                   if "eval_every" in entry})


def _dials(rows: pd.DataFrame) -> str:
    """The stress dials of a problem's runs that differ from their registered default, with their values."""
    texts = []
    for dial in dial_columns(rows):
        values = sorted({float(v) for v in rows[dial].dropna()})
        if values and values != [float(STRESS_DIALS_DEFAULTS[dial])]:
            texts.append(f"{tex_escape(dial)} {', '.join(number(v) for v in values)}")
    return "; ".join(texts) or "--"


def table_setup(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> str:
    """LaTeX: the problems the sweep trained (one row per task x model pair) and its optimizers.

    From the runs: optimizers, steps, seeds, learning rates per optimizer,
    strategies, stress dials and precision; from ``config`` (the sweep's config,
    ``None``: ``n/a``): the model's size and the evaluation interval. Below, per
    optimizer, its options and learning-rate grid. Needs booktabs.
    """
    models = (config or {}).get("models", {})
    lines = [r"\begin{tabular}{lllllllll}", r"\toprule",
             r"task & model & size & optimizers & steps (eval.) & seeds & LRs & strategies & "
             r"stress dials; precision \\", r"\midrule"]
    for task, model in problems(runs):
        rows = select(runs, {"task": task, "model": model})
        steps = sorted({int(s) for s in rows["steps"]})
        optimizers = list(dict.fromkeys(rows["optimizer"].astype(str)))
        evaluation = ", ".join(str(e) for e in _evaluations(config, task, model, optimizers))
        lrs = ", ".join(str(rows[rows["optimizer"] == o]["lr"].nunique()) for o in optimizers)
        dtypes = ", ".join(sorted(rows["dtype"].astype(str).unique())) if "dtype" in rows else "float32"
        cells = [name(task), name(model), _model_size(models.get(model, {}), 3) if models else "n/a",
                 ", ".join(name(o) for o in optimizers),
                 "--".join(str(s) for s in dict.fromkeys([steps[0], steps[-1]]))
                 + (f" ({evaluation})" if evaluation else ""),
                 str(rows["seed"].nunique()), lrs, str(rows["strategy"].nunique()),
                 f"{_dials(rows)}; {tex_escape(dtypes)}"]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\midrule", r"optimizer & \multicolumn{8}{l}{options; learning-rate grid} \\", r"\midrule"]
    for optimizer in dict.fromkeys(runs["optimizer"].astype(str)):
        entry = (config or {}).get("optimizers", {}).get(optimizer, {})
        options = ", ".join([tex_escape(str(entry.get("kind", optimizer)))]
                            + [f"{tex_escape(key)} {entry[key]}" for key in OPTIMIZER_KEYS if key in entry]
                            + ([] if "weight_decay" in entry or not entry else ["no weight decay"]))
        lrs = sorted(runs[runs["optimizer"] == optimizer]["lr"].unique())
        lines.append(f"{name(optimizer)} & \\multicolumn{{8}}{{l}}{{{options}; "
                     f"{', '.join(number(lr) for lr in lrs)}}} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def weight_decays(config: Mapping[str, Any] | None) -> dict[str, float]:
    """Per optimizer of ``config``, its weight decay (0 where its entry sets none)."""
    return {str(key): float(entry.get("weight_decay", 0.0) or 0.0)
            for key, entry in (config or {}).get("optimizers", {}).items()}


def _range(values: Sequence[float], unit: str = "") -> str:
    values = sorted(set(values))
    suffix = f" {unit}" if unit else ""
    return (f"{number(values[0])}{suffix}" if len(values) == 1
            else f"{number(values[0])} to {number(values[-1])}{suffix}")


def limitations_tex(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> str:
    """The limitations paragraph (LaTeX), every number computed from ``runs`` and ``config``."""
    steps = sorted({int(s) for s in runs["steps"]})
    pairs = distinct_pairs(runs)
    ranges = compared_ranges(runs)
    censored = int(ranges["reaches_top"].sum())
    sentences = [f"Each run trains for {_range(steps, 'steps')}, a short budget: a strategy whose benefit shows "
                 "only late in training, or only at scale, is not seen here."]
    models = (config or {}).get("models", {})
    used = list(dict.fromkeys(runs["model"].astype(str)))
    sizes = [f"{name(m)} ({_model_size(models[m])})" for m in used if m in models]
    if sizes:
        sentences.append(f"The models are small: {'; '.join(sizes)}.")
    dtypes = sorted(runs["dtype"].astype(str).unique()) if "dtype" in runs else ["float32"]
    device = (config or {}).get("device")
    # replicas at another precision (problems entries with a dtype) are read by the claims, not by these tables
    replicas = [entry for entry in (config or {}).get("problems", []) if entry.get("dtype", dtypes[0]) not in dtypes]
    replica_text = ""
    if replicas:
        replica_pairs = sum(len(entry.get("models", [])) for entry in replicas)
        replica_dtypes = sorted({str(entry["dtype"]) for entry in replicas})
        replica_text = (f", except the {' and '.join(tex_escape(d) for d in replica_dtypes)} replicas of "
                        f"{replica_pairs} problems that the claims on exact arithmetic read")
    sentences.append(f"Runs train in {' and '.join(tex_escape(d) for d in dtypes)}"
                     + (f" on {tex_escape(str(device)).upper()}" if device else "") + replica_text
                     + "; lower precision, where explosions are most common in practice, is not measured.")
    sentences.append(f"The study has {len(pairs)} distinct task--model pairs, the independent unit of every interval "
                     "across problems, so those intervals rest on few units and per-family ones on fewer still.")
    # each panel's evaluation interval as a share of its own budget (a pair may have one entry per optimizer)
    panels = runs[["task", "model", "optimizer", "steps"]].drop_duplicates()
    resolution = [(int(entry["eval_every"]), int(row.steps)) for row in panels.itertuples(index=False)
                  if "eval_every" in (entry := _entry(config, row.task, row.model, row.optimizer))]
    evaluations = sorted({e for e, _ in resolution})
    if evaluations:
        shares = sorted({e / s for e, s in resolution})
        sentences.append(f"Validation runs every {_range(evaluations, 'steps')} "
                         f"({_range([100 * s for s in shares])}\\% of the budget), so times to a target are "
                         "resolved no finer than that.")
    if len(ranges) and censored:
        sentences.append(f"Of the {len(ranges)} (panel, strategy) stable learning-rate ranges the questions compare, "
                         f"without bad batches, {censored} ({percent(censored / len(ranges), 0)}) reach the top of "
                         "the grid: their widths are lower bounds, and gains measured on them are bounds too.")
    elif len(ranges):
        sentences.append(f"None of the {len(ranges)} (panel, strategy) stable learning-rate ranges the questions "
                         "compare, without bad batches, reaches the top of the grid: every one is measured, not "
                         "bounded, at the grid's resolution.")
    decays = weight_decays(config)
    if decays and not any(decays.values()):
        sentences.append("No optimizer uses weight decay, under which gradient scaling and learning-rate scaling "
                         "are no longer the same.")
    sentences.append(f"Each setting has {runs['seed'].nunique()} seeds.")
    grids = grid_text(runs)
    sentences.append("Hyperparameter grids are finite and shared across problems"
                     + (", except that " + " ".join(grids.values()) if grids else ";")
                     + (" A" if grids else " a") + " strategy with a poorly placed grid is disadvantaged.")
    return " ".join(sentences) + "\n"


def headline_outcomes(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The headline claims' outcomes (``headline: true``), in question order."""
    return [o for o in outcomes if o.claim.headline]


def _strategy(outcome: Outcome) -> str:
    strategy = outcome.claim.row.get("strategy")
    return f", {name(str(strategy))}" if strategy else ""


def units_text() -> str:
    """The units the questions' intervals resample, from their declarations: ``task-model pairs (Q1--Q5, Q7);
    seeds (Q6)``."""
    by_unit: dict[str, list[str]] = {}
    for question in QUESTIONS.values():
        by_unit.setdefault(question.unit, []).append(question.id)
    return "; ".join(f"{tex_escape(unit).replace('-', '--')} ({', '.join(ids)})" for unit, ids in by_unit.items())


def headlines_tex(outcomes: Sequence[Outcome]) -> str:
    """The headline macros: ``\\benchheadlines`` (their sentences), ``\\benchheadlineeffects`` (per question its
    id, strategy, effect and interval, or ``not measured``) and ``\\benchunits`` (:func:`units_text`)."""
    chosen = headline_outcomes(outcomes)
    sentences = " ".join(o.sentence["tex"] for o in chosen)
    effects = []
    for outcome in chosen:
        label = f"{outcome.claim.question}{_strategy(outcome)}"
        if outcome.status == NOT_MEASURED:
            effects.append(f"{label}: not measured")
            continue
        effect, interval = effect_and_interval(outcome, "tex")
        status = "" if outcome.status in ("holds", "fails", PER_OPTIMIZER) else f", {outcome.status}"
        effects.append(f"{label}: {effect}" + ("" if interval == "--" else f" ({interval})") + status)
    lines = ["% Generated by `python -m analysis.numbers` from paper/claims.yaml's headline claims; do not edit.",
             f"\\def\\benchheadlines{{{sentences}}}",
             f"\\def\\benchheadlineeffects{{{'; '.join(effects)}}}",
             f"\\def\\benchunits{{{units_text()}}}"]
    return "\n".join(lines) + "\n"



FIGURE_LABELS = {"convergence": "convergence", "time-to-target": "time-to-target", "stability": "stability",
                 "sensitivity": "sensitivity", "time-to-divergence": "time-to-divergence"}
"""The paper's label (``fig:<label>``) of each paneled overview figure (``layout.PANELED``)."""
TABLES: dict[str, Callable[[pd.DataFrame, list[dict], CurveSource], str]] = {
    "best": lambda runs, panels, curves: table_best(runs, panels), "lr-range": table_lr_range}
"""The per-panel tables by the paper's label (``tab:<label>``), split like the figures (``tables.panel_splits``):
each of the runs, the panels shown and the curves (the stable ranges' learning-rate sensitivity reads them)."""


def _family(kind: str, suffix: str, runs: pd.DataFrame) -> str:
    """The model family an appendix figure or table shows, from its suffix ``family-<family>[-<k>]``."""
    family = suffix[len("family-"):]
    head, _, part = family.rpartition("-")
    if part.isdigit() and head in set(runs["family"].astype(str)):
        return f"{tex_escape(head)} (part {part})"
    return tex_escape(family)


def _more(total: int, what: str) -> str:
    return (f"This {what} shows the first panels of each model family; Appendix~\\ref{{sec:figures}} shows all "
            f"{total}, one model family per {what}.")


def appendix_tex(runs: pd.DataFrame, curves: CurveSource = None) -> str:
    """Where a paneled figure or table holds only the first panels of each model family: its note
    (``\\benchnum{panels-<kind>}``, empty otherwise), and the appendix of a figure and table per family
    (``\\benchappendix``, empty where every figure and table holds all panels). ``curves``: for the
    learning-rate sensitivity of the stable-range tables (``tables.table_lr_range``)."""
    from analysis.plots import overview_panels, paneled

    lines = ["% Generated by `python -m analysis.numbers`; do not edit."]
    floats = []
    for kind, label in FIGURE_LABELS.items():
        panels = overview_panels(runs, kind)
        split = paneled(runs, kind, panels)
        lines.append(f"\\benchdef{{panels-{kind}}}{{{'' if len(split) == 1 else _more(len(panels), 'figure')}}}")
        for stem, _ in split[1:]:
            floats.append(
                "\\begin{figure}[p]\\centering"
                f"\\includegraphics[width=\\textwidth,height=0.85\\textheight,keepaspectratio]{{\\benchfigures/{stem}}}"
                f"\\caption{{As Figure~\\ref{{fig:{label}}}, for model family "
                f"{_family(kind, stem[len(kind) + 1:], runs)}.}}\\end{{figure}}")
    splits = panel_splits(runs)
    for label, table in TABLES.items():
        total = sum(len(chosen) for suffix, chosen in splits if suffix)
        lines.append(f"\\benchdef{{panels-table-{label}}}{{{'' if len(splits) == 1 else _more(total, 'table')}}}")
        for suffix, chosen in splits[1:]:
            floats.append(
                "\\begin{table}[p]\\centering\\small"
                f"\\caption{{As Table~\\ref{{tab:{label}}}, for model family {_family(label, suffix, runs)}.}}"
                f"\\begin{{adjustbox}}{{max width=\\textwidth,max totalheight=0.85\\textheight}}"
                f"{table(runs, chosen, curves)}\\end{{adjustbox}}\\end{{table}}")
    body = ("\\clearpage\\section{Figures and tables per model family}\\label{sec:figures}"
            "Each figure and table below repeats one of the text for every panel of one model family; the text "
            "shows the first panels of each family, so that every figure stays legible at print size."
            + "".join(floats))
    lines.append(f"\\long\\def\\benchappendix{{{body if floats else ''}}}")
    return "\n".join(lines) + "\n"
