"""Every number the paper cites, as LaTeX, computed from a sweep's tables.

Writes into ``paper/generated/<sweep>/``:

- ``numbers.tex``: one ``\\benchdef{key}{value}`` line per number (``analysis.macros``); the paper
  reads them with ``\\benchnum{key}`` (``paper/main.tex`` defines both, and
  an unknown key prints a bold ``??`` and a LaTeX warning);
- ``table-best.tex``: best-tuned test metric per strategy and panel (the tables: ``analysis.tables``);
- ``table-stability.tex``: divergence rate, stable learning rates and rank per strategy;
- ``table-lr-range.tex``: the stable learning-rate range per strategy and panel, with its learning-rate sensitivity
  (``analysis.sensitivity``, in the task's loss);
- ``table-problems.tex``: the task x model pairs with metric, chance level and divergence of ``none``;
- ``table-gains.tex``: decades of stable learning rate each strategy adds over ``none``, per model family
  (question Q1, ``analysis.questions``' ``q1_stable_range``), a lower bound marked where a range is censored;
- ``table-leaderboard.tex``: every strategy's standing on each question and its performance-profile score
  (``analysis.leaderboard``), the strategies the config compares with the study (``compare``) marked;
- ``table-setup.tex``, ``limitations.tex``, ``headlines.tex``: what the sweep trained, what it cannot say
  and its headline answers, from the runs, the sweep's config and the claims (``analysis.prose``);
- ``replication.tex``, ``table-replication.tex``: where the sweep has runs of its ``replication_seeds``, every
  claim on both seed sets, the flips flagged, and the commit that froze the claims file
  (``analysis.replication``); a sweep without them: ``\\benchreplicatedfalse`` and a comment;
- ``claims.tex``: the study's claims (``paper/claims.yaml``, evaluated by ``analysis.claims``): one
  ``\\benchclaim{<id>}`` sentence per claim and its numbers as ``\\benchdef`` keys; beside it
  ``claims.json``, the same machine-readable (not in ``bench.paths.GENERATED``, the list of these files
  that the workflow reads: Snakemake removes a rule's outputs before rerunning it, and the previous
  claims.json is what a rerun's flips are judged against).

Run it as ``python -m analysis.numbers --sweep default`` from the repository root. It prints which
claims hold and a ``warning: claim <id> flipped: ...`` line for every claim whose outcome changed against
the previous ``claims.json`` at the output path (or ``--reference FILE``). ``--findings`` prints the
answers to the study's questions as a Markdown table instead (``--all-claims``: every claim; ``--seed-set
replication``: on the runs of the config's ``replication_seeds``, :func:`claim_outcomes`; on the discovery seeds of
a sweep that has replication runs, a last column with each claim's outcome on them, flips flagged, and a
line of how many held on both);
``--tier-table`` what the sweep shows per task x model (``analysis.overview``); ``--leaderboard`` the
leaderboard (``analysis.leaderboard``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis import claims, data, leaderboard, prose, questions, replication
from analysis.curves import CurveSource
from analysis.effects import Study
from analysis.latex import numbers_tex
from analysis.macros import compute
from analysis.overview import tier_markdown
from analysis.tables import table_best, table_gains, table_lr_range, table_problems, table_stability
from analysis.vocabulary import BOTH_SEED_SETS, default_precision
from bench import atomic, paths
from bench.columns import DISCOVERY, REPLICATION, SEED_SETS


def write(runs: pd.DataFrame, out: Path | str, curves: CurveSource = None,
          claims_file: Path | str = claims.CLAIMS_FILE, reference: Path | str | None = None,
          config: Mapping[str, Any] | None = None, marked: Sequence[str] = (),
          replicated: pd.DataFrame | None = None, freeze: replication.FreezeCheck | None = None) -> list[Path]:
    """Write numbers.tex, the tables, the prose and the claims (claims.tex, claims.json) into ``out``, each
    atomically; return the paths (``bench.paths.GENERATED``, then claims.json).

    ``runs``: the runs of the discovery seeds (every precision). ``config``: the
    sweep's config (``results/<sweep>/config.yaml``), which the setup table and
    the limitations read for what the runs table lacks (model sizes, evaluation
    interval, optimizer options); ``None``: those say ``n/a`` or are left out.
    The leaderboard marks the strategies ``marked``. ``replicated``: the runs of
    the replication seeds, on which the claims are evaluated again for the
    replication section (``analysis.replication``; None or empty: the sweep has
    none, and the section is left out), with ``freeze``, the check of the
    claims file's freeze against them. Prints one line per claim (holds, fails,
    not measured) and, on standard error, a warning for every claim that
    flipped against ``reference`` or the previous claims.json at ``out``
    (``analysis.claims.write``) and for every claim that flips on the
    replication seeds.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = Study(runs, curves)  # every precision: Q3 reads its float64 replicas
    print(duplicates_line(study))
    answers = questions.answer_all(study)
    written = claims.write(answers, out, str(runs["sweep"].iloc[0]), claims_file, reference)
    again = None
    if replicated is not None and len(replicated):
        again = evaluate_claims(Study(replicated, curves), claims_file)  # every precision, as above
        written.warnings += [f"warning: claim {first.claim.id} flipped on the replication seeds: "
                             f"{claims.outcome_text(first)} on the discovery seeds, {claims.outcome_text(second)} "
                             "on the replication seeds" for first, second in claims.seed_set_flips(written.outcomes,
                                                                                                   again)]
    else:
        replicated = None
    runs = default_precision(runs)  # the tables: the study's runs, not the replicas
    texts = {"numbers.tex": numbers_tex(compute(runs, config)), "table-best.tex": table_best(runs),
             "table-stability.tex": table_stability(runs), "table-problems.tex": table_problems(runs),
             "table-lr-range.tex": table_lr_range(runs, curves=curves),
             "table-gains.tex": table_gains(answers["q1_stable_range"], runs),
             "table-leaderboard.tex": leaderboard.table_leaderboard(leaderboard.leaderboard(runs, answers, marked),
                                                                    answers),
             "table-setup.tex": prose.table_setup(runs, config), "limitations.tex": prose.limitations_tex(runs, config),
             "appendix.tex": prose.appendix_tex(runs, curves),
             "headlines.tex": prose.headlines_tex(written.outcomes),
             "replication.tex": replication.replication_tex(written.outcomes, again, runs, replicated, freeze),
             "table-replication.tex": replication.table_replication(written.outcomes, again, runs, replicated)}
    written_paths = []
    for filename in paths.GENERATED:
        if filename != paths.CLAIMS_TEX:  # claims.write wrote it
            atomic.write_text(out / filename, texts[filename])
        written_paths.append(out / filename)
    for line in written.summary():
        print(line)
    for line in written.warnings:
        print(line, file=sys.stderr)
    return [*written_paths, written.json]


def read_config(sweep: str, root: Path | str = ".") -> dict | None:
    """The config a sweep's jobs trained from (``results/<sweep>/config.yaml``), or None where there is none."""
    path = paths.sweep_config(sweep, root)
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def duplicates_line(study: Study) -> str:
    """One line naming the problems merged as duplicates before anything was counted (``analysis.problems``)."""
    merged = "; ".join(d.describe() for d in study.duplicates) or "none"
    return f"duplicate problems merged: {merged}"


def evaluate_claims(study: Study, claims_file: Path | str = claims.CLAIMS_FILE) -> list[claims.Outcome]:
    """Every claim of ``claims_file`` evaluated on ``study``, answering only the questions the claims read."""
    declared, entries = claims.load(claims_file)
    needed = list(dict.fromkeys(entry.function for entry in entries))
    return claims.evaluate_claims(questions.answer_all(study, needed), entries, declared)


def claim_outcomes(sweep: str, root: Path | str = ".", seed_set: str = DISCOVERY,
                   claims_file: Path | str = claims.CLAIMS_FILE) -> tuple[list[claims.Outcome], Study]:
    """Every claim of ``claims_file`` evaluated on the runs of ``results/<sweep>/`` of the seed set ``seed_set``
    (``discovery``, the config's ``seeds``; ``replication``, its ``replication_seeds``; ``both``), every
    precision read as the paper's numbers read it; and the study it was evaluated on.

    The same claims on the two seed sets: ``claims.seed_set_flips`` of the two outcome lists names the
    claims whose outcome the replication changes.
    """
    runs = data.load_runs(sweep, root, every_precision=True, seed_set=seed_set)
    study = Study(runs, data.curve_reader(sweep, root), seed_set=seed_set)
    return evaluate_claims(study, claims_file), study


def has_replication(sweep: str, root: Path | str = ".") -> bool:
    """Whether ``results/<sweep>/runs.parquet`` holds runs of the replication seeds."""
    return len(data.load_runs(sweep, root, every_precision=True, seed_set=REPLICATION)) > 0


def findings_markdown(sweep: str, root: Path | str = ".", headline_only: bool = True,
                      claims_file: Path | str = claims.CLAIMS_FILE, seed_set: str = DISCOVERY) -> str:
    """The answers to the study's questions as a Markdown table, computed from ``results/<sweep>/`` on the seed
    set ``seed_set`` (:func:`claim_outcomes`).

    Columns: question, answer sentence, effect, 95% interval, figure stem; one
    row per question (its headline claim), or per claim with ``headline_only=False``.
    Below it the duplicate problems merged. On the discovery seeds of a sweep
    with replication runs, a last column gives each claim's outcome on the
    replication seeds, ``**flipped**`` where it differs, and a last line how
    many claims held on both seed sets and which flipped (``analysis.replication.summary``).
    """
    outcomes, study = claim_outcomes(sweep, root, seed_set, claims_file)
    declared, _ = claims.load(claims_file)
    again = claim_outcomes(sweep, root, REPLICATION, claims_file)[0] if (
        seed_set == DISCOVERY and has_replication(sweep, root)) else None
    lines = [duplicates_line(study)]
    if again is not None:
        lines.append(f"replication: {replication.summary(outcomes, again, 'md')}")
    return claims.findings_markdown(outcomes, declared, headline_only, again) + "".join(f"\n{line}\n"
                                                                                       for line in lines)


def leaderboard_markdown(sweep: str, root: Path | str = ".") -> str:
    """The leaderboard of ``results/<sweep>/`` as a Markdown table (``analysis.leaderboard``), the strategies
    its config compares with the study marked."""
    runs = data.load_runs(sweep, root)
    answers = questions.answer_all(Study(runs, data.curve_reader(sweep, root)))
    board = leaderboard.leaderboard(runs, answers, leaderboard.compared(sweep, root))
    return leaderboard.markdown(board, answers)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.numbers --sweep NAME [--root DIR] [--out DIR] [--findings]``."""
    parser = argparse.ArgumentParser(prog="python -m analysis.numbers", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="sweep name: reads results/<sweep>/runs.parquet")
    parser.add_argument("--root", default=".", help="repository root (default: current folder)")
    parser.add_argument("--out", default=None, help=f"output folder (default: {paths.generated_dir('<sweep>')})")
    parser.add_argument("--claims", default=None, help="claims file (default: paper/claims.yaml)")
    parser.add_argument("--reference", default=None,
                        help="claims.json to judge flips against (default: the previous one at the output folder)")
    parser.add_argument("--findings", action="store_true",
                        help="print the answers to the study's questions as a Markdown table; write nothing")
    parser.add_argument("--all-claims", action="store_true", help="with --findings: one row per claim")
    parser.add_argument("--seed-set", default=DISCOVERY, choices=[*SEED_SETS, BOTH_SEED_SETS],
                        help="with --findings: the runs of this seed set (default: discovery, the config's seeds; "
                             "replication: its replication_seeds)")
    parser.add_argument("--tier-table", action="store_true",
                        help="print what the sweep shows per task x model (the default-tier table of docs/tiers.md); "
                             "write nothing")
    parser.add_argument("--leaderboard", action="store_true",
                        help="print the leaderboard (each strategy's standing per question, its performance-profile "
                             "score; the strategies the config compares marked) as a Markdown table; write nothing")
    args = parser.parse_args(argv)
    claims_file = Path(args.claims) if args.claims else paths.claims_file(args.root)
    if not claims_file.is_file():
        claims_file = claims.CLAIMS_FILE
    try:
        if args.findings:
            print(findings_markdown(args.sweep, args.root, not args.all_claims, claims_file, args.seed_set), end="")
            return 0
        if args.leaderboard:
            print(leaderboard_markdown(args.sweep, args.root), end="")
            return 0
        runs = data.load_runs(args.sweep, args.root, every_precision=True)
        if args.tier_table:
            print(tier_markdown(default_precision(runs)), end="")
            return 0
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or paths.generated_dir(args.sweep, args.root)
    replication_runs = data.load_runs(args.sweep, args.root, every_precision=True, seed_set=REPLICATION)
    freeze = replication.check_freeze(paths.cells_dir(args.sweep, args.root), claims_file,
                                      sorted(set(replication_runs["cell"]))) if len(replication_runs) else None
    if freeze is not None:
        print(f"replication after the freeze of the claims: {freeze.summary()}")
    for path in write(runs, out, data.curve_reader(args.sweep, args.root), claims_file, args.reference,
                      read_config(args.sweep, args.root), leaderboard.compared(args.sweep, args.root), replication_runs,
                      freeze):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
