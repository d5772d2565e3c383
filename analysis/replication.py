"""The replication: the claims frozen by a commit, then evaluated again on seeds trained after it.

The protocol (``docs/analysis.md``, *Replication*): a study trains its config's ``seeds`` (the
*discovery* seed set) and states its findings as the claims of ``paper/claims.yaml``; that file is then
frozen by a commit; then the config gains ``replication_seeds``, whose cells (``<cell>-replication``) are
trained. Every claim is evaluated, unchanged, on both seed sets (``analysis.numbers.claim_outcomes``);
a claim whose outcome differs between them *flips* (``analysis.claims.seed_set_flips``) and is flagged
in the paper and in the README's findings table.

- :func:`claims_freeze`: the commit that last changed the claims file (git), or why it cannot be read;
- :func:`replication_cells`: when each replication cell was trained (the ``cell.json`` records,
  ``bench.record``);
- :func:`check_freeze`: whether every replication cell was trained after the freeze;
- :func:`replication_tex` and :func:`table_replication`: the paper's replication section,
  ``replication.tex`` and ``table-replication.tex`` of ``paper/generated/<sweep>/``; :func:`summary`, the
  sentence of how many claims held on both seed sets and which flipped.

``python -m analysis.replication --sweep paper`` checks the committed cells, ``study/<sweep>/cells/``.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.claims import CLAIMS_FILE, FLIPPED, Outcome, effect_and_interval, outcome_text, seed_set_flips
from analysis.latex import tex_escape
from bench import paths, record
from bench.columns import REPLICATION

SUFFIX = f"-{REPLICATION}"
"""How the id of a replication cell ends (``bench.sweep.cell_id``)."""
SHOWN = 3
"""How many cells a sentence names before it counts the rest."""


# -- the freeze -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Freeze:
    """The commit that last changed the claims file, as the repository's history tells it."""

    path: str
    """The claims file, as the repository names it (else as given)."""
    commit: str = ""
    """The full hash of the last commit that changed it; empty where none did or the history cannot say."""
    moment: datetime.datetime | None = None
    """That commit's author date (kept when the history is rebased), with its offset from UTC."""
    modified: bool = False
    """Whether the file differs from that commit (changes not committed, or never committed)."""
    unreadable: str = ""
    """Why the history cannot tell (no git, no repository, a shallow clone cut there); empty where it can."""

    def date(self) -> str:
        """The commit's date in UTC, to the minute (``2026-12-10 14:02 UTC``); ``n/a`` where there is none."""
        return "n/a" if self.moment is None else utc(self.moment)


def utc(moment: datetime.datetime) -> str:
    """A moment in UTC to the minute: ``2026-12-10 14:02 UTC``."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """``git -C folder ARGS``; None where git cannot be run."""
    try:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def claims_freeze(claims_file: Path | str = CLAIMS_FILE) -> Freeze:
    """The commit that last changed ``claims_file`` (``git log -1 -- <file>``: its hash and author date), whether
    the file has changed since, or why the history cannot tell: git absent, the file outside a repository (a
    copy without history, such as a source archive), not tracked, or the history of a shallow clone cut at
    the commit found (where the file may have changed before)."""
    path = Path(claims_file).resolve()
    if shutil.which("git") is None:
        return Freeze(str(claims_file), unreadable="git is not installed")
    if not path.is_file():
        return Freeze(str(claims_file), unreadable=f"{claims_file} does not exist")
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        said = (top.stderr.strip().splitlines() or [""])[0] if top is not None else "it does not run"
        return Freeze(str(claims_file), unreadable=(
            "this copy of the project has no git history (a source archive has none; a clone has)"
            if top is not None and "not a git repository" in said else f"git cannot read the repository ({said})"))
    root = Path(top.stdout.strip()).resolve()
    name = path.relative_to(root).as_posix()
    tracked = _git(root, "ls-files", "--error-unmatch", "--", name)
    if tracked is None or tracked.returncode != 0:
        return Freeze(name, unreadable=f"{name} is not tracked by git")
    log = _git(root, "log", "-1", "--format=%H %aI", "--", name)
    if log is None or log.returncode != 0:
        return Freeze(name, unreadable=f"git log cannot read the history of {name}")
    if not log.stdout.strip():
        return Freeze(name, modified=True)  # added, never committed
    commit, date = log.stdout.split()
    shallow = _git(root, "rev-parse", "--is-shallow-repository")
    if shallow is not None and shallow.stdout.strip() == "true":
        boundary = _git(root, "rev-parse", "--git-path", "shallow")
        cut = Path(boundary.stdout.strip()) if boundary is not None else None
        cut = cut if cut is None or cut.is_absolute() else root / cut
        if cut is None or not cut.is_file() or commit in cut.read_text().split():
            return Freeze(name, unreadable="this clone is shallow, its history cut where it last finds "
                                           f"{name} (git fetch --unshallow gives the rest)")
    status = _git(root, "status", "--porcelain", "--", name)
    modified = status is None or status.returncode != 0 or bool(status.stdout.strip())
    return Freeze(name, commit, datetime.datetime.fromisoformat(date), modified)


# -- the replication cells --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainedCell:
    """When a cell was trained, as its record says: ``started`` (to the second) or, in records written before
    that field existed, the date ``trained``; neither where it has no record."""

    cell: str
    started: datetime.datetime | None = None
    trained: datetime.date | None = None

    def after(self, moment: datetime.datetime) -> bool:
        """Whether its training provably began after ``moment``: it started later, or, known to the day only,
        on a later day than ``moment``'s own date."""
        if self.started is not None:
            return self.started > moment
        return self.trained is not None and self.trained > moment.date()

    def when(self) -> str:
        """When it was trained: ``2026-12-11 09:30 UTC`` (the start), ``2026-12-11`` or ``no record``."""
        if self.started is not None:
            return utc(self.started)
        return self.trained.isoformat() if self.trained is not None else "no record"


def _moment(text: object) -> datetime.datetime | None:
    """A record's ``started`` as a moment (a moment without offset read as UTC); None where it is none."""
    try:
        moment = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _day(text: object) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(str(text))
    except ValueError:
        return None


def replication_cells(cells_dir: Path | str, cells: Iterable[str] | None = None) -> list[TrainedCell]:
    """When each replication cell of ``cells_dir`` was trained (its ``cell.json``): the cells ``cells``, or every
    folder whose name ends in ``-replication``; a cell without a readable record has neither time."""
    folder = Path(cells_dir)
    if cells is None:
        cells = [p.name for p in folder.iterdir() if p.is_dir() and p.name.endswith(SUFFIX)] if folder.is_dir() else []
    found = []
    for cell in sorted(cells):
        stored = record.read(folder / cell) or {}
        started = _moment(stored["started"]) if "started" in stored else None
        trained = _day(stored["trained"]) if "trained" in stored else None
        found.append(TrainedCell(cell, started, trained))
    return found


# -- the check ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FreezeCheck:
    """The freeze of the claims file against the training of the replication cells."""

    freeze: Freeze
    cells: tuple[TrainedCell, ...]

    @property
    def early(self) -> list[TrainedCell]:
        """The cells not shown trained after the freeze (every cell where the freeze has no date)."""
        moment = self.freeze.moment
        return [cell for cell in self.cells if moment is None or not cell.after(moment)]

    @property
    def passed(self) -> bool | None:
        """True where the claims file is as a commit left it and every replication cell was trained after that
        commit; False where not; None where nothing can be checked (no replication cell, or a history that
        cannot tell)."""
        if not self.cells or self.freeze.unreadable:
            return None
        return bool(self.freeze.commit) and not self.freeze.modified and not self.early

    def first(self) -> TrainedCell | None:
        """The replication cell trained first (one known to the day only counts from that day's start, UTC)."""
        def start(cell: TrainedCell) -> datetime.datetime:
            if cell.started is not None:
                return cell.started
            day = cell.trained or datetime.date.max
            return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
        return min(self.cells, key=start, default=None)

    def summary(self) -> str:
        """One line: what was checked and what it found."""
        freeze, count = self.freeze, len(self.cells)
        if not self.cells:
            return "no replication cell: nothing to check"
        if freeze.unreadable:
            return f"not checked: {freeze.unreadable}"
        if not freeze.commit:
            return f"fails: {freeze.path} was never committed, so no freeze precedes the replication"
        frozen = f"{freeze.path} last changed by commit {freeze.commit[:12]} of {freeze.date()}"
        if freeze.modified:
            return f"fails: {freeze.path} has changes not committed since its last commit ({frozen})"
        if self.early:
            return (f"fails: {frozen}; {len(self.early)} of {count} replication cells not trained after it: "
                    + _cells(self.early))
        return f"holds: {frozen}, before every one of the {count} replication cells (the first: {self.first().when()})"


def _cells(cells: Sequence[TrainedCell]) -> str:
    """The first :data:`SHOWN` cells with when they were trained, and how many more."""
    named = ", ".join(f"{cell.cell} ({cell.when()})" for cell in cells[:SHOWN])
    return named + (f" and {len(cells) - SHOWN} more" if len(cells) > SHOWN else "")


def check_freeze(cells_dir: Path | str, claims_file: Path | str = CLAIMS_FILE,
                 cells: Iterable[str] | None = None) -> FreezeCheck:
    """Whether the replication came after the freeze: the commit that last changed ``claims_file``
    (:func:`claims_freeze`) against when each replication cell of ``cells_dir`` was trained
    (:func:`replication_cells`, of ``cells`` or of every ``*-replication`` folder)."""
    return FreezeCheck(claims_freeze(claims_file), tuple(replication_cells(cells_dir, cells)))


# -- the paper -----------------------------------------------------------------------------------------------------
def seed_list(runs: pd.DataFrame) -> str:
    """The seeds of ``runs``, runs of consecutive seeds as ranges: ``0--4``, ``0, 2, 5--7``."""
    seeds = sorted({int(seed) for seed in runs["seed"]})
    parts, start = [], 0
    for i in range(1, len(seeds) + 1):
        if i == len(seeds) or seeds[i] != seeds[i - 1] + 1:
            low, high = seeds[start], seeds[i - 1]
            parts.append(str(low) if low == high else f"{low}, {high}" if high == low + 1 else f"{low}--{high}")
            start = i
    return ", ".join(parts)


def _code(text: str, target: str) -> str:
    return rf"\texttt{{{tex_escape(text)}}}" if target == "tex" else f"`{text}`"


def summary(discovery: Sequence[Outcome], replication: Sequence[Outcome], target: str = "tex") -> str:
    """The sentence of the replication's outcome for ``target`` (``tex`` or ``md``): of the claims, how many held
    on both seed sets, and each claim that flipped with its two outcomes, or that none did."""
    flips = seed_set_flips(discovery, replication)
    held = sum(first.status == "holds" for first in discovery)
    both = sum(first.status == "holds" == again.status for first, again in zip(discovery, replication, strict=True))
    text = f"Of the {len(discovery)} claims, {both} held on both seed sets ({held} held on the discovery seeds); "
    if not flips:
        return text + "none flipped: every claim has the same outcome on the replication seeds."
    count = f"{len(flips)} {'claim' if len(flips) == 1 else 'claims'} {FLIPPED}"
    named = "; ".join(f"{_code(first.claim.id, target)} ({outcome_text(first)} on the discovery seeds, "
                      f"{outcome_text(again)} on the replication seeds)" for first, again in flips)
    return text + (rf"\textbf{{{count}}}" if target == "tex" else f"**{count}**") + f": {named}."


def freeze_text(check: FreezeCheck | None, sweep: str) -> str:
    """The paper's sentence on the freeze (LaTeX): the commit and date of the last change to the claims file and
    whether every replication cell was trained after it; or why this build cannot tell."""
    if check is None:
        return "The freeze of the claims file was not checked in this build."
    freeze, count = check.freeze, len(check.cells)
    path = rf"\texttt{{{tex_escape(freeze.path)}}}"
    if freeze.unreadable:
        return (f"The commit that froze the claims file cannot be read in this build: {tex_escape(freeze.unreadable)}. "
                rf"In a clone of the repository, \texttt{{python -m analysis.replication --sweep {tex_escape(sweep)}}} "
                "checks that every replication cell was trained after it.")
    if not check.cells:
        return "No record says when the replication cells were trained, so the freeze cannot be checked here."
    if not freeze.commit:
        return rf"\textbf{{The claims file {path} was never committed}}, so no freeze precedes the replication."
    frozen = (rf"commit \texttt{{{freeze.commit[:12]}}} of {freeze.date()}")
    if freeze.modified:
        return (rf"\textbf{{The claims file {path} has changes not committed}}: the claims evaluated here are not "
                f"those frozen by its last commit, {frozen}.")
    if check.early:
        return (rf"\textbf{{The replication does not follow the freeze}}: the claims file {path} was last changed "
                f"by {frozen}, and {len(check.early)} of the {count} replication cells were not trained after it: "
                f"{tex_escape(_cells(check.early))}.")
    return (f"The claims file {path} was last changed by {frozen}, the freeze; each of the {count} replication "
            f"cells was trained after it (the first started {check.first().when()}).")


def replication_tex(discovery: Sequence[Outcome], replication: Sequence[Outcome] | None,
                    runs: pd.DataFrame | None = None, replication_runs: pd.DataFrame | None = None,
                    check: FreezeCheck | None = None) -> str:
    """The text of replication.tex: ``\\benchreplicatedfalse`` where the sweep has no replication runs
    (``replication`` None: the paper leaves its replication section out); else ``\\benchreplicatedtrue`` and
    the section's macros (``\\benchdef``): ``replication-claims`` (how many claims), ``-held-both``,
    ``-held-discovery``, ``-flips`` (how many flipped) and ``-flipped`` (their ids, or none),
    ``-discovery-seeds`` and ``-seeds`` (how many seeds each set has; ``-discovery-seed-list`` and
    ``-seed-list``: which, of ``runs`` and ``replication_runs``), ``-freeze-commit`` and ``-freeze-date``
    (the commit that last changed the claims file, ``n/a`` where the build cannot read it), ``-freeze``
    (:func:`freeze_text`) and ``-summary`` (:func:`summary`)."""
    lines = ["% Generated by `python -m analysis.numbers`: the claims on the replication seeds; do not edit."]
    if replication is None:
        return "\n".join([*lines, "% The sweep trains no replication seeds.", r"\benchreplicatedfalse"]) + "\n"
    flips = seed_set_flips(discovery, replication)
    sweep = str(runs["sweep"].iloc[0]) if runs is not None and len(runs) else ""
    freeze = check.freeze if check is not None else None
    values = {
        "claims": str(len(discovery)),
        "held-both": str(sum(a.status == "holds" == b.status for a, b in zip(discovery, replication, strict=True))),
        "held-discovery": str(sum(a.status == "holds" for a in discovery)),
        "flips": str(len(flips)),
        "flipped": ", ".join(_code(first.claim.id, "tex") for first, _ in flips) or "none",
        "discovery-seeds": str(runs["seed"].nunique()) if runs is not None else "n/a",
        "discovery-seed-list": seed_list(runs) if runs is not None else "n/a",
        "seeds": str(replication_runs["seed"].nunique()) if replication_runs is not None else "n/a",
        "seed-list": seed_list(replication_runs) if replication_runs is not None else "n/a",
        "freeze-commit": rf"\texttt{{{freeze.commit[:12]}}}" if freeze is not None and freeze.commit else "n/a",
        "freeze-date": freeze.date() if freeze is not None and not freeze.unreadable else "n/a",
        "freeze": freeze_text(check, sweep),
        "summary": summary(discovery, replication, "tex"),
    }
    lines.append(r"\benchreplicatedtrue")
    lines += [f"\\benchdef{{replication-{key}}}{{{value}}}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _result(outcome: Outcome) -> tuple[str, str]:
    """A claim's outcome and its effect with its interval, for a cell of the table."""
    effect, interval = effect_and_interval(outcome, "tex")
    return tex_escape(outcome_text(outcome)), effect if interval == "--" else f"{effect} ({interval})"


REPLICATION_CAPTION = (r"Replication: each claim's outcome and effect (95\% interval) on the discovery "
                       r"seeds, on which it was stated, and on the replication seeds, trained after the claims file "
                       r"was frozen; \textbf{flipped}: the two outcomes differ.")
"""The replication table's caption (the table is a longtable, whose caption is part of it)."""


def table_replication(discovery: Sequence[Outcome], replication: Sequence[Outcome] | None,
                      runs: pd.DataFrame | None = None, replication_runs: pd.DataFrame | None = None) -> str:
    """The text of table-replication.tex: per claim (rows grouped by question), its outcome and its effect with
    its 95% interval on the discovery seeds (of ``runs``) and on the replication seeds (of ``replication_runs``),
    and ``flipped`` in bold where the two outcomes differ; a comment alone where there is no replication."""
    head = "% Generated by `python -m analysis.numbers`; do not edit."
    if replication is None:
        return head + "\n% The sweep trains no replication seeds.\n"
    flipped = {first.claim.id for first, _ in seed_set_flips(discovery, replication)}
    again = {outcome.claim.id: outcome for outcome in replication}

    def seeds(frame: pd.DataFrame | None) -> str:
        return "" if frame is None else f" ({seed_list(frame)})"

    header = [r"\toprule", rf" & \multicolumn{{2}}{{>{{\scriptsize}}c}}{{discovery seeds{seeds(runs)}}} & "
              rf"\multicolumn{{2}}{{>{{\scriptsize}}c}}{{replication seeds{seeds(replication_runs)}}} & \\",
              r"\cmidrule(lr){2-3}\cmidrule(lr){4-5}",
              r"claim & outcome & effect (95\% CI) & outcome & effect (95\% CI) & \\", r"\midrule"]
    # a longtable of small, wrapped columns, so that every claim reads over as many pages as it takes, the header
    # repeated on each; its caption is the table's own, at the caption's size
    small, wrapped = r">{\scriptsize}l", r">{\scriptsize\raggedright\arraybackslash}p"
    lines = [head, rf"\begin{{longtable}}{{@{{}}{small}{wrapped}{{1.6cm}}{wrapped}{{2.85cm}}{wrapped}{{1.6cm}}"
                   rf"{wrapped}{{2.85cm}}{small}@{{}}}}",
             rf"\caption{{{REPLICATION_CAPTION}}}\label{{tab:replication}}\\", *header, r"\endfirsthead",
             r"\multicolumn{6}{@{}l}{Table~\ref{tab:replication}, continued}\\", *header, r"\endhead",
             r"\bottomrule", r"\endlastfoot"]
    question = None
    for outcome in discovery:
        if question is not None and outcome.claim.question != question:
            lines.append(r"\midrule")
        question = outcome.claim.question
        cells = [rf"\texttt{{{tex_escape(outcome.claim.id)}}}", *_result(outcome), *_result(again[outcome.claim.id]),
                 rf"\textbf{{{FLIPPED}}}" if outcome.claim.id in flipped else ""]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\end{longtable}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.replication --sweep NAME [--root DIR] [--cells DIR]``: whether every
    replication cell of ``study/<sweep>/cells/`` (or of ``--cells``) was trained after the commit that last
    changed ``paper/claims.yaml``. Exit status 1 where it was not, 0 otherwise (also where nothing can be
    checked: it says why)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.replication", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="sweep name: checks study/<sweep>/cells/*-replication")
    parser.add_argument("--root", default=".", help="repository root (default: current folder)")
    parser.add_argument("--cells", default=None,
                        help="folder of cells to check instead (e.g. results/<sweep>/cells, cells trained here)")
    args = parser.parse_args(argv)
    cells = Path(args.cells) if args.cells else paths.study_cells_dir(args.sweep, args.root)
    check = check_freeze(cells, paths.claims_file(args.root))
    print(f"{cells}: {check.summary()}")
    return 1 if check.passed is False else 0


if __name__ == "__main__":
    sys.exit(main())
