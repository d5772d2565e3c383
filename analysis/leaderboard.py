"""The leaderboard: every strategy's standing on each question it takes part in, and an overall score.

The overall score is the area under the strategy's performance profile, as AlgoPerf scores its
submissions: on the problems (task x model pairs) that train every strategy (``ranking.error_matrix``:
the mean over a problem's panels of the best-tuned mean test error), the ratio of a strategy's error to
the best strategy's on the problem, and the share of problems within a factor tau of the best,
integrated from tau = 1 to :data:`TAU_MAX` and divided by ``TAU_MAX - 1``: 1 is best on every problem,
0 more than ``TAU_MAX`` times the best error everywhere. A strategy the comparison adds (the config's
``compare`` key, docs/compare.md) trains on the problems that train every strategy entry, so it is
scored on the same problems as the rest; the number of problems is stated. Beside it, the mean rank on
the same problems (``ranking.rank_matrix``).

A strategy's standing on a question is its row in the question's table (``analysis.questions``), the
one the claims read: the first of its rows pooled over family, task, model and gamma (``all``), per
optimizer where the question states it per optimizer (its table's ``optimizer`` values; ``all`` where it
pools them), at the pre-stated setting where the table states one, with its estimate and 95% interval.
A strategy the question does not measure has no entry, nor has any strategy on a question without such
rows (Q3, whose table names no strategy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis import questions
from analysis.latex import name, number, signed, tex_escape
from analysis.ranking import rank_matrix, ranking_errors
from analysis.vocabulary import strategy_order
from bench import paths

TAU_MAX = 4.0
"""The ratio to the best error up to which the performance profile is integrated (AlgoPerf's choice)."""
POOLED = ("family", "optimizer", "task", "model", "gamma")
"""Key columns of a question's table whose value ``all`` marks a row pooled over them."""
MARK = "*"
"""How the Markdown leaderboard marks the strategies the comparison adds."""
SEPARATOR = "__"
"""Between a question's name and an optimizer in a column key (an identifier, as ``itertuples`` needs)."""


def compared(sweep: str, root: Path | str = ".") -> list[str]:
    """The strategies the sweep's config names under ``compare`` (the config the workflow trained from,
    ``results/<sweep>/config.yaml``); none where it names none or is absent."""
    path = paths.sweep_config(sweep, root)
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    return list(config.get("compare") or []) if isinstance(config, dict) else []


def profile_score(errors: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """Per strategy (column of an error matrix, problems x strategies), the normalised area under its
    performance profile from tau = 1 to ``tau_max``: the mean over problems of
    ``max(0, tau_max - ratio) / (tau_max - 1)``, the ratio being error / best error of the problem (0/0
    counts as 1, x/0 as infinite), which is the integral of ``ranking.performance_profile`` exactly."""
    values = errors.to_numpy(dtype=float)
    best = values.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(values == best, 1.0, values / best)
    area = np.clip(tau_max - ratios, 0.0, tau_max - 1.0) / (tau_max - 1.0)
    return pd.Series(np.nan_to_num(area, nan=0.0).mean(axis=0), index=errors.columns)


def standing(table: pd.DataFrame, strategy: str, optimizer: str = "all") -> pd.Series | None:
    """The row of a question's table that places ``strategy`` under ``optimizer`` (``all``: pooled over the
    optimizers, where the question pools them; see the module docstring); None if none. Where the table
    states its settings (Q1's ``stated``), the row at the pre-stated setting."""
    if table.empty or "strategy" not in table.columns:
        return None
    rows = table[table["strategy"] == strategy]
    for column in POOLED:
        if column in rows.columns:
            wanted = optimizer if column == "optimizer" else "all"
            rows = rows[rows[column].astype(str) == wanted]
    if "stated" in rows.columns and rows["stated"].astype(bool).any():
        rows = rows[rows["stated"].astype(bool)]
    rows = rows[np.isfinite(pd.to_numeric(rows["estimate"], errors="coerce"))]
    return None if rows.empty else rows.iloc[0]


def standings(answers: Mapping[str, pd.DataFrame]) -> list[tuple[str, str, str]]:
    """The leaderboard's question columns: (key, question name, optimizer), one per question and optimizer
    its table states (``all`` where it pools them; a question never pools optimizers of opposite signs)."""
    found = []
    for question_name, table in answers.items():
        optimizers = (list(dict.fromkeys(table["optimizer"].astype(str))) if "optimizer" in table.columns
                      else ["all"])
        for optimizer in sorted(optimizers, key=lambda value: value != "all"):
            found.append((question_name if optimizer == "all" else f"{question_name}{SEPARATOR}{optimizer}",
                          question_name, optimizer))
    return found


def column_label(key: str) -> str:
    """A question column's header: the question's id, and the optimizer where it is stated per optimizer."""
    question_name, _, optimizer = key.partition(SEPARATOR)
    return questions.QUESTIONS[question_name].id + (f" {optimizer}" if optimizer else "")


def leaderboard(runs: pd.DataFrame, answers: Mapping[str, pd.DataFrame], marked: Sequence[str] = (),
                tau_max: float = TAU_MAX) -> pd.DataFrame:
    """One row per strategy of the sweep, best score first: ``strategy``, ``new`` (among ``marked``),
    ``score`` (:func:`profile_score`, NaN where the strategy is not on the ranked problems), ``mean_rank``,
    ``problems``, and per question name of ``answers`` its :func:`standing`: ``<name>`` (estimate),
    ``<name>_low``, ``<name>_high``, ``<name>_measure`` (the row's measure, where the table names one)."""
    errors = ranking_errors(runs)
    ranked = errors.size > 0  # no problem trains a full set of strategies: no score
    scores = profile_score(errors, tau_max) if ranked else pd.Series(dtype=float)
    ranks = rank_matrix(errors).mean(axis=0) if ranked else pd.Series(dtype=float)
    rows = []
    for strategy in strategy_order(runs):
        row = {"strategy": strategy, "new": strategy in marked, "score": float(scores.get(strategy, np.nan)),
               "mean_rank": float(ranks.get(strategy, np.nan)),
               "problems": len(errors) if strategy in errors.columns else 0}
        for key, question_name, optimizer in standings(answers):
            found = standing(answers[question_name], strategy, optimizer)
            row[key] = np.nan if found is None else float(found["estimate"])
            row[f"{key}_low"] = np.nan if found is None else float(found["low"])
            row[f"{key}_high"] = np.nan if found is None else float(found["high"])
            row[f"{key}_measure"] = "" if found is None else str(found.get("measure", ""))
        rows.append(row)
    board = pd.DataFrame(rows)
    return board.sort_values(["score", "mean_rank"], ascending=[False, True], na_position="last",
                             kind="stable").reset_index(drop=True)


def _answered(board: pd.DataFrame, answers: Mapping[str, pd.DataFrame]) -> list[str]:
    """The question columns (:func:`standings`) that place at least one strategy of ``board``."""
    return [key for key, _, _ in standings(answers) if key in board.columns and board[key].notna().any()]


def _interval(low: float, high: float, latex: bool) -> str:
    """``[low, high]`` (LaTeX minus signs where ``latex``); empty where a bound is undefined."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f"[{signed(low, 2)}, {signed(high, 2)}]" if latex else f"[{low:.3g}, {high:.3g}]"


def markdown(board: pd.DataFrame, answers: Mapping[str, pd.DataFrame], tau_max: float = TAU_MAX) -> str:
    """The leaderboard as a Markdown table; the strategies the comparison adds marked :data:`MARK`."""
    asked = _answered(board, answers)
    header = ["rank", "strategy", f"score (profile area, tau <= {tau_max:g})", "mean rank", "problems",
              *(column_label(q) for q in asked)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for place, row in enumerate(board.itertuples(index=False), start=1):
        row = row._asdict()
        cells = [str(place), row["strategy"] + (f" {MARK}" if row["new"] else ""),
                 "--" if not np.isfinite(row["score"]) else f"{row['score']:.3f}",
                 "--" if not np.isfinite(row["mean_rank"]) else f"{row['mean_rank']:.2f}", str(row["problems"])]
        for q in asked:
            if not np.isfinite(row[q]):
                cells.append("")
                continue
            measure = f"{row[f'{q}_measure']} " if row[f"{q}_measure"] else ""
            cells.append(f"{measure}{row[q]:.3g} {_interval(row[f'{q}_low'], row[f'{q}_high'], False)}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nscore: area under the performance profile (best-tuned test error over the best strategy's, per "
            f"problem) from tau = 1 to {tau_max:g}, normalised to [0, 1], over the problems that train every "
            f"strategy; {MARK}: added by the comparison (`compare`). Question columns: the strategy's estimate "
            "[95% interval] in the question's table, per optimizer where the question states it per optimizer "
            "(at the pre-stated setting where it states one).\n")
    return "\n".join(lines) + "\n" + note


def table_leaderboard(board: pd.DataFrame, answers: Mapping[str, pd.DataFrame]) -> str:
    """The leaderboard as a LaTeX tabular: rank, strategy (the added ones in bold with a dagger), score, mean
    rank, and each question's estimate above its 95% interval."""
    asked = _answered(board, answers)
    lines = [f"\\begin{{tabular}}{{rlccc{'c' * len(asked)}}}", r"\toprule",
             " & ".join(["", "strategy", "score", "mean rank", "problems",
                         *(tex_escape(column_label(q)) for q in asked)]) + r" \\", r"\midrule"]
    for place, row in enumerate(board.itertuples(index=False), start=1):
        row = row._asdict()
        label = f"\\textbf{{{name(row['strategy'])}}}$^\\dagger$" if row["new"] else name(row["strategy"])
        cells = [str(place), label, "--" if not np.isfinite(row["score"]) else number(row["score"]),
                 "--" if not np.isfinite(row["mean_rank"]) else f"{row['mean_rank']:.2f}", str(row["problems"])]
        for q in asked:
            if not np.isfinite(row[q]):
                cells.append("--")
                continue
            interval = _interval(row[f"{q}_low"], row[f"{q}_high"], True)
            cells.append(f"\\makecell{{{signed(row[q])}\\\\ \\scriptsize {interval}}}" if interval
                         else signed(row[q]))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
