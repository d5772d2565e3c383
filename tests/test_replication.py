"""The replication (analysis.replication): the claims on the replication seeds in the paper and in the README's
findings table, the flipped claims flagged, and the check that the replication cells were trained after the
commit that froze paper/claims.yaml; a sweep without replication runs builds as before."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from test_questions import FIVE, limit_outcome, make_sweep

from analysis import claims, numbers, replication
from bench import paths, record
from bench.columns import DISCOVERY, REPLICATION

GIT = shutil.which("git") is not None
FROZEN = "2026-01-05T12:00:00+00:00"
"""When the claims file of the synthetic repositories is committed."""
UTC = datetime.UTC


def git(folder: Path, *args: str, date: str = FROZEN) -> str:
    """``git ARGS`` in ``folder``, its commits authored and committed at ``date``."""
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    result = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=folder,
                            capture_output=True, text=True, env=env, check=True)
    return result.stdout


def frozen_repository(folder: Path, claims_text: str = "claims: []\n") -> Path:
    """A git repository at ``folder`` whose paper/claims.yaml was committed at :data:`FROZEN` (after a first commit
    without it); returns the claims file."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q")
    (folder / "README.md").write_text("a study\n")
    git(folder, "add", "README.md")
    git(folder, "commit", "-q", "-m", "start", date="2026-01-01T00:00:00+00:00")
    claims_file = paths.claims_file(folder)
    claims_file.parent.mkdir(parents=True, exist_ok=True)
    claims_file.write_text(claims_text)
    git(folder, "add", str(claims_file.relative_to(folder)))
    git(folder, "commit", "-q", "-m", "freeze the claims")
    return claims_file


def write_record(cells_dir: Path, cell: str, started: str | None = None, trained: str = "2026-01-06") -> None:
    """A cell.json for ``cell``: trained on ``trained`` and, where given, started at ``started``."""
    stored = record.trained("synthetic", cell, "0" * 64, 1, 1, "test", started)
    record.write(cells_dir / cell, {**stored, "trained": trained})


def names(check: replication.FreezeCheck) -> list[str]:
    return [cell.cell for cell in check.early]


# -- the freeze check ----------------------------------------------------------------------------------------------
needs_git = pytest.mark.skipif(not GIT, reason="needs git")


@needs_git
def test_the_check_passes_only_where_every_replication_cell_started_after_the_freeze(tmp_path: Path) -> None:
    claims_file = frozen_repository(tmp_path / "repo")
    cells = tmp_path / "cells"
    (cells / "a-mlp-sgd-none").mkdir(parents=True)  # a discovery cell: not checked
    write_record(cells, "a-mlp-sgd-none-replication", started="2026-01-05T12:00:01+00:00")
    write_record(cells, "b-mlp-sgd-none-replication", started="2026-01-05T13:30:00+01:00")  # 12:30 UTC
    check = replication.check_freeze(cells, claims_file)
    assert check.freeze.moment == datetime.datetime(2026, 1, 5, 12, tzinfo=UTC) and not check.freeze.modified
    assert check.freeze.path == "paper/claims.yaml" and len(check.freeze.commit) == 40
    assert [cell.cell for cell in check.cells] == ["a-mlp-sgd-none-replication", "b-mlp-sgd-none-replication"]
    assert check.passed is True and check.early == []
    assert check.summary().startswith(f"holds: paper/claims.yaml last changed by commit {check.freeze.commit[:12]} "
                                      "of 2026-01-05 12:00 UTC, before every one of the 2 replication cells")
    assert check.first().cell == "a-mlp-sgd-none-replication"

    write_record(cells, "c-mlp-sgd-none-replication", started="2026-01-05T11:59:59+00:00")  # a second early
    write_record(cells, "d-mlp-sgd-none-replication", trained="2026-01-05")  # the freeze's day, no start: unknown
    write_record(cells, "e-mlp-sgd-none-replication", trained="2026-01-06")  # the next day: after
    (cells / "f-mlp-sgd-none-replication").mkdir()  # no record
    check = replication.check_freeze(cells, claims_file)
    assert check.passed is False
    assert names(check) == ["c-mlp-sgd-none-replication", "d-mlp-sgd-none-replication", "f-mlp-sgd-none-replication"]
    assert check.summary().endswith("3 of 6 replication cells not trained after it: c-mlp-sgd-none-replication "
                                    "(2026-01-05 11:59 UTC), d-mlp-sgd-none-replication (2026-01-05), "
                                    "f-mlp-sgd-none-replication (no record)")
    assert replication.main(["--sweep", "x", "--root", str(tmp_path / "repo"), "--cells", str(cells)]) == 1
    # the cells named: only those are checked
    assert replication.check_freeze(cells, claims_file, ["a-mlp-sgd-none-replication"]).passed is True


@needs_git
def test_a_claims_file_changed_after_its_commit_or_since_the_replication_fails_the_check(tmp_path: Path) -> None:
    claims_file = frozen_repository(tmp_path / "repo")
    cells = tmp_path / "cells"
    write_record(cells, "a-mlp-sgd-none-replication", started="2026-01-06T00:00:00+00:00")
    assert replication.check_freeze(cells, claims_file).passed is True
    claims_file.write_text("claims: [] # edited\n")
    check = replication.check_freeze(cells, claims_file)
    assert check.freeze.modified and check.passed is False and "changes not committed" in check.summary()
    git(claims_file.parents[1], "commit", "-q", "-am", "edit the claims", date="2026-01-07T00:00:00+00:00")
    check = replication.check_freeze(cells, claims_file)  # committed after the replication was trained
    assert check.passed is False and names(check) == ["a-mlp-sgd-none-replication"]
    assert check.freeze.date() == "2026-01-07 00:00 UTC"


@needs_git
def test_where_the_history_cannot_tell_nothing_is_checked_and_the_reason_given(tmp_path: Path, monkeypatch) -> None:
    cells = tmp_path / "cells"
    write_record(cells, "a-mlp-sgd-none-replication", started="2026-01-06T00:00:00+00:00")
    archive = tmp_path / "archive" / "paper" / "claims.yaml"  # a copy without its history
    archive.parent.mkdir(parents=True)
    archive.write_text("claims: []\n")
    check = replication.check_freeze(cells, archive)
    assert check.passed is None and "no git history" in check.freeze.unreadable
    assert replication.main(["--sweep", "x", "--root", str(tmp_path / "archive"), "--cells", str(cells)]) == 0
    # a shallow clone finds the claims file in the commit its history is cut at, whatever came before: it cannot
    # tell (depth 1: the last commit; depth 2: the freeze itself); with the commit before the freeze, it can
    source = frozen_repository(tmp_path / "repo").parents[1]
    (source / "README.md").write_text("a later commit\n")
    git(source, "commit", "-q", "-am", "later", date="2026-01-08T00:00:00+00:00")
    for depth in (1, 2, 3):
        git(tmp_path, "clone", "-q", "--depth", str(depth), f"file://{source}", f"depth{depth}")
        check = replication.check_freeze(cells, paths.claims_file(tmp_path / f"depth{depth}"))
        if depth < 3:
            assert check.passed is None and "shallow" in check.freeze.unreadable, depth
    assert check.passed is True and check.freeze.date() == "2026-01-05 12:00 UTC"
    monkeypatch.setattr(replication.shutil, "which", lambda name: None)
    check = replication.check_freeze(cells, paths.claims_file(source))
    assert check.passed is None and check.freeze.unreadable == "git is not installed"
    assert replication.check_freeze(tmp_path / "none", archive).passed is None  # no replication cell


def study_sweeps() -> list[str]:
    return sorted(p.name for p in (ROOT / "study").iterdir() if (p / "cells").is_dir())


@pytest.mark.parametrize("sweep", study_sweeps())
def test_the_committed_replication_was_trained_after_the_claims_were_frozen(sweep: str) -> None:
    """The protocol on the committed study: paper/claims.yaml, as its last commit left it, is older than the
    training of every committed replication cell (``cell.json``)."""
    check = replication.check_freeze(paths.study_cells_dir(sweep, ROOT), paths.claims_file(ROOT))
    if not check.cells:
        pytest.skip(f"study/{sweep} has no replication cells")
    if check.freeze.unreadable:
        pytest.skip(f"the freeze of paper/claims.yaml cannot be read: {check.freeze.unreadable}")
    assert check.passed, check.summary()


def test_a_train_job_records_when_it_started() -> None:
    stored = record.trained("s", "c", "0" * 64, 1, 1, "t", record.now())
    started = datetime.datetime.fromisoformat(stored["started"])
    assert started.tzinfo is not None and abs(datetime.datetime.now(UTC) - started) < datetime.timedelta(minutes=5)
    assert "started" not in record.trained("s", "c", "0" * 64, 1, 1, "t")


# -- the claims on both seed sets ------------------------------------------------------------------------------------
def claim(identifier: str) -> claims.Claim:
    return next(entry for entry in claims.load()[1] if entry.id == identifier)


def test_a_claim_stated_per_optimizer_flips_where_an_optimizers_outcome_changes() -> None:
    q1, q7 = claim("Q1-clip-norm"), claim("Q7-warmup-vs-clip-norm")
    first = [claims.Outcome(q1, "holds"), claims.Outcome(q7, "per optimizer", {"per_optimizer": {
        "sgd": "inconclusive", "adam": "censored"}})]
    again = [claims.Outcome(q1, "holds"), claims.Outcome(q7, "per optimizer", {"per_optimizer": {
        "sgd": "fails", "adam": "censored"}})]
    assert claims.outcome_text(first[1]) == "per optimizer (sgd: inconclusive; adam: censored)"
    assert [(a.claim.id, b.status) for a, b in claims.seed_set_flips(first, again)] == [
        ("Q7-warmup-vs-clip-norm", "per optimizer")]
    assert claims.seed_set_flips(first, first) == []
    text = replication.summary(first, again, "md")
    assert text == ("Of the 2 claims, 1 held on both seed sets (1 held on the discovery seeds); **1 claim flipped**: "
                    "`Q7-warmup-vs-clip-norm` (per optimizer (sgd: inconclusive; adam: censored) on the discovery "
                    "seeds, per optimizer (sgd: fails; adam: censored) on the replication seeds).")
    assert replication.summary(first, first).endswith("none flipped: every claim has the same outcome on the "
                                                      "replication seeds.")


def test_seed_lists_name_ranges() -> None:
    assert replication.seed_list(pd.DataFrame({"seed": [4, 0, 1, 2, 3, 0]})) == "0--4"
    assert replication.seed_list(pd.DataFrame({"seed": [0, 2, 3, 5, 6, 7, 9]})) == "0, 2, 3, 5--7, 9"


FLIPS = ["Q1-clip-norm", "Q1-clip-norm-cnn1d", "Q1-clip-norm-cnn2d", "Q1-clip-norm-rnn"]
"""The claims that flip in :func:`synthetic_runs`: norm clipping's gain, over all and per model family (that of
the MLPs, of two problems, is underpowered on both seed sets)."""


def synthetic_runs() -> pd.DataFrame:
    """A runs table of both seed sets: norm clipping widens the stable range on the discovery seeds and not on
    the replication seeds (as tests/test_seed_sets.py), so the claims :data:`FLIPS` flip and no other."""
    discovery = make_sweep(limit_outcome({"none": 1.0, "clip_norm": 2.0}), strategies=("none", "clip_norm"),
                           problems=FIVE)
    again = make_sweep(limit_outcome({"none": 1.0, "clip_norm": 1.0}), strategies=("none", "clip_norm"),
                       problems=FIVE, seeds=(10, 11, 12, 13, 14))
    again = again.assign(cell=again["cell"] + "-replication",
                         run_id=again["run_id"].str.replace("|", "-replication|", n=1, regex=False))
    return pd.concat([discovery.assign(seed_set=DISCOVERY), again.assign(seed_set=REPLICATION)], ignore_index=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``python -m analysis.numbers`` (the files and the findings) on a sweep of both seed sets, in a repository
    whose claims were committed before its replication cells were trained, and on its discovery runs alone."""
    root = tmp_path_factory.mktemp("both")
    if GIT:
        frozen_repository(root, claims.CLAIMS_FILE.read_text())
    else:
        paths.claims_file(root).parent.mkdir(parents=True)
        shutil.copy(claims.CLAIMS_FILE, paths.claims_file(root))
    runs = synthetic_runs()
    folder = paths.results_dir("synthetic", root)
    folder.mkdir(parents=True)
    runs.to_parquet(folder / "runs.parquet")
    for cell in sorted(set(runs.loc[runs["seed_set"] == REPLICATION, "cell"])):
        write_record(paths.cells_dir("synthetic", root), cell, started="2026-01-06T09:30:00+00:00")
    alone = tmp_path_factory.mktemp("alone")
    shutil.copytree(root / "paper", alone / "paper")
    paths.results_dir("synthetic", alone).mkdir(parents=True)
    runs[runs["seed_set"] == DISCOVERY].drop(columns="seed_set").to_parquet(
        paths.results_dir("synthetic", alone) / "runs.parquet")
    found = {}
    for name, where in (("both", root), ("alone", alone)):
        assert numbers.main(["--sweep", "synthetic", "--root", str(where)]) == 0
        found[name] = {p.name: p.read_text() for p in paths.generated_dir("synthetic", where).iterdir()}
        found[f"findings-{name}"] = numbers.findings_markdown("synthetic", where, headline_only=False,
                                                              claims_file=paths.claims_file(where))
    return found


def test_the_paper_states_each_claim_on_both_seed_sets_and_flags_the_flip(built: dict) -> None:
    table, macros = built["both"]["table-replication.tex"], built["both"]["replication.tex"]
    rows = [line for line in table.splitlines() if line.startswith(r"\texttt{Q")]
    assert len(rows) == len(claims.load()[1])  # every claim, in the order of the claims file
    flipped = [row for row in rows if row.endswith(r"\textbf{flipped} \\")]
    assert [row.split(" & ")[:2] + row.split(" & ")[3:4] for row in flipped] == [
        [rf"\texttt{{{name}}}", "holds", "fails"] for name in FLIPS]
    assert r"\texttt{Q1-clip-norm-mlp} & underpowered & " in table  # the same outcome on both: not flagged
    assert r"discovery seeds (0--4)" in table and r"replication seeds (10--14)" in table
    assert r"\benchreplicatedtrue" in macros
    expected = {"flips": "4", "flipped": ", ".join(rf"\texttt{{{name}}}" for name in FLIPS), "claims": str(len(rows)),
                "held-both": "0", "held-discovery": "4", "discovery-seeds": "5", "seeds": "5", "seed-list": "10--14",
                "freeze-date": "2026-01-05 12:00 UTC" if GIT else "n/a"}
    for key, value in expected.items():
        assert f"\\benchdef{{replication-{key}}}{{{value}}}" in macros.splitlines()
    summary = re.search(r"\\benchdef\{replication-summary\}\{(.*)\}$", macros, re.MULTILINE).group(1)
    assert summary == (f"Of the {len(rows)} claims, 0 held on both seed sets (4 held on the discovery seeds); "
                       r"\textbf{4 claims flipped}: " + "; ".join(
                           rf"\texttt{{{name}}} (holds on the discovery seeds, fails on the replication seeds)"
                           for name in FLIPS) + ".")
    freeze = re.search(r"\\benchdef\{replication-freeze\}\{(.*)\}$", macros, re.MULTILINE).group(1)
    if GIT:
        assert "was last changed by commit" in freeze and "each of the 10 replication cells was trained after it " \
               "(the first started 2026-01-06 09:30 UTC)" in freeze


def test_the_findings_table_gives_each_claim_on_the_replication_seeds_and_flags_the_flip(built: dict) -> None:
    lines = built["findings-both"].splitlines()
    assert lines[0] == "| question | answer | effect | 95% CI | figure | on the replication seeds |"
    rows = [line for line in lines if line.startswith("| Q")]
    flagged = [row for row in rows if "**flipped**" in row]
    assert len(flagged) == len(FLIPS) and all(row.endswith(" | **flipped**: fails |") for row in flagged)
    assert "Under SGD, norm clipping" in flagged[0] and rows[0] == flagged[0]
    assert sorted(row.rsplit(" | ", 1)[1] for row in rows if row not in flagged) == [
        "not measured |"] * (len(rows) - len(FLIPS) - 1) + ["underpowered |"]
    assert lines[-1].startswith("replication: Of the ") and lines[-1].endswith(
        "**4 claims flipped**: " + "; ".join(f"`{name}` (holds on the discovery seeds, fails on the replication seeds)"
                                             for name in FLIPS) + ".")
    # the other columns are those of the discovery seeds alone
    alone = built["findings-alone"].splitlines()
    assert alone[0] == "| question | answer | effect | 95% CI | figure |" and not alone[-1].startswith("replication")
    assert [row.rsplit(" | ", 1)[0] + " |" for row in rows] == [row for row in alone if row.startswith("| Q")]


def test_without_replication_runs_the_outputs_are_those_of_the_discovery_runs(built: dict) -> None:
    """The replication runs change no file but the replication's own: the numbers, tables and claims are those
    of the discovery runs alone, whose sweep leaves the replication section out."""
    both, alone = built["both"], built["alone"]
    assert sorted(both) == sorted(alone) == sorted([*paths.GENERATED, paths.CLAIMS_RECORD])
    for name in sorted(set(paths.GENERATED) - {"replication.tex", "table-replication.tex"}):
        assert both[name] == alone[name], name
    assert alone["replication.tex"].splitlines()[-1] == r"\benchreplicatedfalse"
    assert "tabular" not in alone["table-replication.tex"] and "benchdef" not in alone["replication.tex"]


def paper_section() -> str:
    """The paper's replication section: main.tex from ``\\ifbenchreplicated`` to its ``\\fi``."""
    text = (ROOT / "paper" / "main.tex").read_text()
    start = text.index("\n\\ifbenchreplicated\n") + 1
    return text[start:text.index("\n\\fi\n", start) + len("\n\\fi\n")]


@pytest.mark.tex
@pytest.mark.parametrize("sweep", ["both", "alone"])
def test_the_replication_section_typesets(built: dict, sweep: str, tmp_path: Path) -> None:
    """The section of main.tex with the generated files: every number defined where there is a replication, the
    section left out where there is none."""
    generated = tmp_path / "generated" / "s"
    generated.mkdir(parents=True)
    for name in ("replication.tex", "table-replication.tex"):
        (generated / name).write_text(built[sweep][name])
    preamble = (ROOT / "paper" / "main.tex").read_text()
    commands = preamble[preamble.index("\\makeatletter"):preamble.index("\\makeatother") + len("\\makeatother")]
    document = ("\\documentclass{article}\\usepackage{booktabs}\\usepackage{adjustbox}\\usepackage{xcolor}"
                "\\usepackage{array,longtable}\n"
                "\\def\\benchsweep{s}\n" + commands + "\n\\newif\\ifbenchreplicated\n"
                "\\input{generated/\\benchsweep/replication.tex}\n\\begin{document}\nBefore.\n"
                + paper_section().replace("\\subsection", "\\section") + "\nAfter.\n\\end{document}\n")
    (tmp_path / "main.tex").write_text(document)
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    log = (tmp_path / "main.log").read_text()
    assert "Undefined number" not in log
    assert ("tab:replication" in (tmp_path / "main.aux").read_text()) == (sweep == "both")
