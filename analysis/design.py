"""The study's design, checked on a sweep: its distinct problems and tasks, its censored stable ranges, its seeds.

A study promises a design before it is trained (its issue, ``docs/study.md``):
so many distinct task x model pairs over so many tasks, every model family on
so many tasks, learning-rate grids that reach the divergence of every compared
strategy, so many seeds. :func:`summarise` measures what a sweep's runs table
holds, :func:`check` compares it with :class:`Requirements` (those of the second
edition: :data:`STUDY`), and :func:`macros` gives the numbers the paper's methods
state (``numbers.tex``, through ``analysis.macros``):

- *problems*: the distinct task x model pairs, identical problems merged first
  (``problems.distinct_problems``), at the default precision (the float64
  replicas of Q3 are no problems of their own); the *tasks* are the task kinds
  of the sweep's config (``digits`` at two sizes is one task, ``smnist`` and its
  permuted variant too; without a config, the task names); per model family,
  the tasks it trains on;
- *censored ranges*: of the (panel, strategy) stable learning-rate ranges the
  questions compare (:func:`compared_ranges`: per question, the strategies it
  compares, every strategy but its baseline where it names none, with its
  baseline and reference, on the clean panels of its model families; a panel
  is one optimizer), those that reach the top of their grid, whose width is
  only a lower bound (``effects.Study.widths``). Q1 compares every strategy,
  so on a sweep that asks it these are all the stable ranges of its clean panels;
- *seeds*: the seed set of every cell and the fewest seeds of any setting.

``python -m analysis.design --sweep NAME`` prints the summary and every unmet
requirement (exit status 1 where there is one); ``tests/test_design.py`` runs the
same check on the committed study (``paper``; another sweep with ``BENCH_DESIGN_SWEEP``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.effects import Study
from analysis.latex import number, percent, tex_escape
from analysis.problems import distinct_problems
from analysis.questions import QUESTIONS
from analysis.vocabulary import default_precision, groups, panel_columns, problems, setting_columns
from bench import models, paths
from bench.columns import with_run_defaults

FAMILIES = ("mlp", "cnn1d", "cnn2d", "rnn", "transformer")
"""The model families of the benchmark."""


@dataclass(frozen=True)
class Requirements:
    """What a study's design promises, checked by :func:`check`."""

    pairs: int
    """Distinct task x model pairs, at least."""
    tasks: int
    """Distinct tasks (task kinds), at least."""
    tasks_per_family: int
    """Tasks every family of ``families`` trains on, at least."""
    families: tuple[str, ...] = FAMILIES
    censored_share: float = 0.10
    """The share of compared (panel, strategy) stable ranges censored at the top of their grid, at most."""
    seeds: int = 5
    """Seeds of every setting, at least."""


STUDY = Requirements(pairs=16, tasks=7, tasks_per_family=3)
"""The design of the study's second edition: >= 16 distinct task x model pairs over >= 7 tasks, every model family
on >= 3 tasks, <= 10% of compared stable ranges censored, >= 5 seeds per setting."""


@dataclass
class Design:
    """What a sweep's runs hold of its design (:func:`summarise`)."""

    pairs: list[tuple[str, str]]
    """The distinct task x model pairs (duplicates merged), in order of first appearance."""
    tasks: list[str]
    """The distinct tasks (task kinds), in order of first appearance."""
    family_tasks: dict[str, list[str]]
    """Per model family, the tasks it trains on."""
    ranges: pd.DataFrame
    """The compared stable ranges (:func:`compared_ranges`)."""
    seed_sets: pd.DataFrame
    """Per distinct seed set, its cells (:func:`seed_sets`)."""
    fewest_seeds: int
    """The fewest seeds of any setting (panel, strategy, learning rate and hyperparameters)."""
    duplicates: list[str] = field(default_factory=list)
    """The problems merged into another, one line each (``problems.Duplicate.describe``)."""

    @property
    def censored(self) -> int:
        """Compared ranges that reach the top of their grid."""
        return int(self.ranges["reaches_top"].sum()) if len(self.ranges) else 0

    @property
    def censored_share(self) -> float:
        """The share of compared ranges that reach the top of their grid (NaN without any)."""
        return self.censored / len(self.ranges) if len(self.ranges) else float("nan")

    def lines(self) -> list[str]:
        """The summary, one line per measure."""
        families = ", ".join(f"{f} {len(t)} ({', '.join(t)})" for f, t in self.family_tasks.items())
        shares = ", ".join(f"{o} {c} of {n}" for o, (c, n) in self.censored_by("optimizer").items())
        sets = "; ".join(f"{row.seeds} ({row.cells} cells)" for row in self.seed_sets.itertuples(index=False))
        return [f"distinct task x model pairs: {len(self.pairs)} ({', '.join('/'.join(p) for p in self.pairs)})",
                f"duplicate problems merged: {'; '.join(self.duplicates) or 'none'}",
                f"tasks: {len(self.tasks)} ({', '.join(self.tasks)})",
                f"tasks per model family: {families}",
                f"compared stable ranges censored at the top of the grid: {self.censored} of {len(self.ranges)} "
                f"({100 * self.censored_share:.1f}%; per optimizer: {shares or 'none'})",
                f"seed sets: {sets or 'none'}; fewest seeds of a setting: {self.fewest_seeds}"]

    def censored_by(self, column: str) -> dict[str, tuple[int, int]]:
        """Per value of ``column`` of :attr:`ranges` (``optimizer``, ``strategy``, ``family``): censored and
        compared ranges."""
        if not len(self.ranges):
            return {}
        counted = self.ranges.groupby(column, sort=False)["reaches_top"].agg(["sum", "size"])
        return {str(k): (int(row["sum"]), int(row["size"])) for k, row in counted.iterrows()}


def task_kinds(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Per task name of ``runs``, its task: the kind of its entry in ``config`` (``tasks: {name: {kind}}``), else
    the name itself."""
    entries = (config or {}).get("tasks", {})
    return {str(t): str(entries.get(str(t), {}).get("kind", t)) for t in dict.fromkeys(runs["task"].astype(str))}


def merged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the default precision with duplicate problems merged (``problems.distinct_problems``)."""
    return distinct_problems(default_precision(runs))[0]


def distinct_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct task x model pairs of ``runs``, the unit of every count across problems: two pairs that train
    identical runs (same data, model and seeds) counted once, the float64 replicas not at all."""
    return problems(merged(runs))


def family_tasks(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Per model family of ``runs`` (in order of first appearance), the tasks (:func:`task_kinds`) of its distinct
    pairs."""
    runs = merged(runs)
    kinds = task_kinds(runs, config)
    found: dict[str, list[str]] = {}
    for task, family in runs[["task", "family"]].drop_duplicates().astype(str).itertuples(index=False):
        tasks = found.setdefault(family, [])
        if kinds[task] not in tasks:
            tasks.append(kinds[task])
    return found


def compared_ranges(runs: pd.DataFrame, study: Study | None = None) -> pd.DataFrame:
    """The (panel, strategy) stable learning-rate ranges the questions compare, one row each.

    Per question of ``analysis.questions``: the strategies it compares (every
    strategy of the sweep but its baseline where it names none), its baseline
    and its reference, on the clean panels (``effects.Study``: duplicates
    merged, default precision, no bad batches) of its model families (all
    where it names none) where it compares something (every strategy it
    compares ran there, or one where it is answered by ``any``, as
    ``layout.trains``), those of them that ran there. Columns: the panel's
    (``vocabulary.panel_columns``), ``family``, ``strategy``, ``hi`` (the top
    of the range), ``top`` (of the grid), ``reaches_top`` (the width is a
    lower bound) and ``questions`` (the ids comparing it).
    """
    study = Study(runs) if study is None else study
    compared: dict[tuple, list[str]] = {}
    for question in QUESTIONS.values():
        for panel, values in study.panel_values.items():
            family = study.family[(str(values["task"]), str(values["model"]))]
            if question.families and family not in question.families:
                continue
            ran = study.strategies(panel)
            chosen = (set(question.compares) or ran - {question.baseline}) & ran
            if not chosen or (question.answered_by == "all" and not set(question.compares) <= ran):
                continue  # the question compares nothing on this panel
            for strategy in sorted((chosen | {question.baseline, question.reference} - {""}) & ran):
                compared.setdefault((panel, strategy), []).append(question.id)
    rows = []
    for (panel, strategy), ids in compared.items():
        width = study.width(panel, strategy)
        values = study.panel_values[panel]
        rows.append({**values, "family": study.family[(str(values["task"]), str(values["model"]))],
                     "strategy": strategy, "hi": width["hi"], "top": width["top"],
                     "reaches_top": bool(width["reaches_top"]), "questions": ", ".join(ids)})
    columns = [*study.keys, "family", "strategy", "hi", "top", "reaches_top", "questions"]
    return pd.DataFrame(rows, columns=columns)


def seed_sets(runs: pd.DataFrame) -> pd.DataFrame:
    """The distinct seed sets of the cells of ``runs`` (default precision), each with how many cells train it:
    columns ``seeds`` (a text: ``0-4``, ``0-4, 10``), ``count`` (seeds) and ``cells``, most cells first."""
    runs = default_precision(runs)
    per_cell = runs.groupby("cell", sort=False)["seed"].agg(lambda s: tuple(sorted({int(v) for v in s})))
    counted = per_cell.value_counts(sort=True)
    return pd.DataFrame({"seeds": [seed_text(s) for s in counted.index], "count": [len(s) for s in counted.index],
                         "cells": counted.to_numpy(dtype=int)})


def seed_text(seeds: Sequence[int], dash: str = "-") -> str:
    """Sorted seeds as runs of consecutive values: ``0-4, 10`` (``dash`` between a run's ends)."""
    parts: list[str] = []
    ordered = sorted(seeds)
    start = previous = None
    for seed in [*ordered, None]:
        if seed is not None and previous is not None and seed == previous + 1:
            previous = seed
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}{dash}{previous}")
        start = previous = seed
    return ", ".join(parts)


def fewest_seeds(runs: pd.DataFrame) -> int:
    """The fewest seeds of any setting of ``runs`` (default precision): per panel, strategy, learning rate and
    hyperparameters, its distinct seeds; 0 without runs."""
    runs = default_precision(runs)
    if runs.empty:
        return 0
    return int(groups(runs, [*panel_columns(runs), "strategy", *setting_columns(runs)])["seed"].nunique().min())


def summarise(runs: pd.DataFrame, config: Mapping[str, Any] | None = None) -> Design:
    """What the runs table ``runs`` of a sweep (with its ``config``, for the task kinds) holds of its design."""
    study = Study(runs)
    base = merged(runs)
    kinds = task_kinds(base, config)
    return Design(pairs=problems(base), tasks=list(dict.fromkeys(kinds[t] for t in base["task"].astype(str))),
                  family_tasks=family_tasks(runs, config), ranges=compared_ranges(runs, study),
                  seed_sets=seed_sets(runs), fewest_seeds=fewest_seeds(runs),
                  duplicates=[d.describe() for d in study.duplicates])


def check(design: Design, requirements: Requirements = STUDY) -> list[str]:
    """Every requirement ``design`` does not meet, one line each (empty: it meets them all)."""
    failures = []
    if len(design.pairs) < requirements.pairs:
        failures.append(f"{len(design.pairs)} distinct task x model pairs, fewer than {requirements.pairs}")
    if len(design.tasks) < requirements.tasks:
        failures.append(f"{len(design.tasks)} tasks, fewer than {requirements.tasks}")
    for family in requirements.families:
        tasks = design.family_tasks.get(family, [])
        if len(tasks) < requirements.tasks_per_family:
            failures.append(f"model family {family} on {len(tasks)} task(s), fewer than "
                            f"{requirements.tasks_per_family}")
    if not len(design.ranges):
        failures.append("no compared stable range")
    elif design.censored_share > requirements.censored_share:
        worst = sorted(design.censored_by("strategy").items(), key=lambda item: -item[1][0])
        named = ", ".join(f"{s} {c} of {n}" for s, (c, n) in worst if c)
        failures.append(f"{design.censored} of {len(design.ranges)} compared stable ranges "
                        f"({100 * design.censored_share:.1f}%) reach the top of their grid, more than "
                        f"{100 * requirements.censored_share:g}% (per strategy: {named})")
    if design.fewest_seeds < requirements.seeds:
        failures.append(f"a setting has {design.fewest_seeds} seed(s), fewer than {requirements.seeds}")
    return failures


def macros(design: Design) -> dict[str, str]:
    """The numbers of the design the paper states, as ``numbers.tex`` macros: ``distinct-tasks``,
    ``family-tasks`` (each family with its number of tasks; ``tasks-<family>`` that number alone, for every
    registered model family: 0 where the sweep trains none),
    ``fewest-family-tasks``, ``compared-ranges``,
    ``censored-ranges``, ``censored-share`` (and ``censored-share-<optimizer>``), ``seed-sets`` (each seed set
    with its cells) and ``fewest-seeds``. The distinct pairs are ``distinct-problems`` (``analysis.macros``)."""
    values = {"distinct-tasks": number(len(design.tasks)),
              "family-tasks": ", ".join(f"{tex_escape(f)} {len(t)}" for f, t in design.family_tasks.items()),
              "fewest-family-tasks": number(min((len(t) for t in design.family_tasks.values()), default=0)),
              "compared-ranges": number(len(design.ranges)), "censored-ranges": number(design.censored),
              "censored-share": percent(design.censored_share),
              "seed-sets": "; ".join(f"{row.seeds.replace('-', '--')} ({row.cells} cells)"
                                     for row in design.seed_sets.itertuples(index=False)),
              "fewest-seeds": number(design.fewest_seeds)}
    for family in dict.fromkeys([*models.REGISTRY.known(), *design.family_tasks]):
        values[f"tasks-{family}"] = number(len(design.family_tasks.get(family, [])))
    for optimizer, (censored, compared) in design.censored_by("optimizer").items():
        values[f"censored-share-{optimizer}"] = percent(censored / compared)
    return values


def committed_runs(sweep: str, root: Path | str = ".") -> pd.DataFrame:
    """The runs of the cells committed in ``study/<sweep>/cells/`` (``bench.publish``), as one runs table."""
    folder = paths.study_cells_dir(sweep, root)
    files = sorted(path for path in (paths.table(cell, "runs") for cell in folder.glob("*")) if path.is_file())
    if not files:
        raise FileNotFoundError(f"no committed cell in {folder}")
    return pd.concat([with_run_defaults(pd.read_parquet(f)) for f in files], ignore_index=True)


def load(sweep: str, root: Path | str = ".") -> tuple[pd.DataFrame, dict | None]:
    """A sweep's runs and config: ``results/<sweep>/`` where the pipeline has aggregated it (its runs table and
    the config it trained from), else the cells committed in ``study/<sweep>/`` with ``config/<sweep>.yaml``."""
    from analysis import data

    table = paths.table(paths.results_dir(sweep, root), "runs")
    if table.is_file():
        config = paths.sweep_config(sweep, root)
        return data.load_runs(sweep, root, every_precision=True), (
            yaml.safe_load(config.read_text()) if config.is_file() else None)
    config = Path(root) / "config" / f"{sweep}.yaml"
    return committed_runs(sweep, root), yaml.safe_load(config.read_text()) if config.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.design --sweep NAME [--root DIR]``: the summary, then each unmet
    requirement of :data:`STUDY`; exit status 1 where one is unmet, 2 where the sweep cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m analysis.design", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="sweep name: results/<sweep>/ where aggregated, else the "
                                                          "cells committed in study/<sweep>/")
    parser.add_argument("--root", default=".", help="repository root (default: current folder)")
    args = parser.parse_args(argv)
    try:
        runs, config = load(args.sweep, args.root)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    design = summarise(runs, config)
    for line in design.lines():
        print(line)
    failures = check(design)
    for line in failures:
        print(f"unmet: {line}")
    print("the sweep meets the study's design" if not failures else f"{len(failures)} requirement(s) unmet")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
