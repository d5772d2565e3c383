"""The study's design check (analysis.design) on synthetic sweeps, and on the committed study.

The study (sweep ``paper``: its aggregated results, else its committed cells) is checked against the design of the
study (``analysis.design.STUDY``); ``BENCH_DESIGN_SWEEP=NAME python -m pytest tests/test_design.py`` checks another
sweep instead.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from test_questions import FIVE, TRANSFORMERS, limit_outcome, make_sweep

from analysis import design, macros, questions
from analysis.design import Requirements

CONFIG = {"tasks": {"mnist1d": {"kind": "mnist1d"}, "mnist": {"kind": "mnist"}, "adding": {"kind": "adding"},
                    "digits8": {"kind": "digits"}, "digits": {"kind": "digits"}, "chars": {"kind": "chars"},
                    "modular": {"kind": "modular"}, "copy": {"kind": "copy"}}}
"""The task entries of the synthetic sweeps' config: ``digits8`` and ``digits`` are one task at two sizes."""


def duplicated(runs: pd.DataFrame, task: str, model: str, as_task: str) -> pd.DataFrame:
    """``runs`` with the runs of ``task``/``model`` again under the task name ``as_task`` (a duplicate problem)."""
    copy = runs[(runs["task"] == task) & (runs["model"] == model)]
    copy = copy.assign(task=as_task, run_id=as_task + copy["run_id"], cell=as_task + copy["cell"])
    return pd.concat([runs, copy], ignore_index=True)


def sweep() -> pd.DataFrame:
    """Five problems, a sixth that repeats one of them under another task name, and a second size of digits; norm
    clipping never diverges, so its stable ranges reach the top of the grid."""
    runs = make_sweep(limit_outcome({"none": 1.0, "clip_value": 2.0}), problems=FIVE)
    runs = duplicated(runs, "mnist1d", "mlp", "mnist1d_again")
    digits = runs[runs["task"] == "digits8"]
    return pd.concat([runs, digits.assign(task="digits", run_id="28" + digits["run_id"], cell="28" + digits["cell"],
                                          final_train_loss=digits["final_train_loss"] + 1e-6)], ignore_index=True)


def test_distinct_pairs_tasks_and_families_count_a_duplicate_once_and_tasks_by_kind():
    runs = sweep()
    found = design.summarise(runs, CONFIG)
    assert len(found.pairs) == 6 and ("mnist1d_again", "mlp") not in found.pairs  # merged into mnist1d/mlp
    shared = int(((runs["task"] == "mnist1d") & (runs["model"] == "mlp")).sum())
    assert found.duplicates == [f"mnist1d_again/mlp = mnist1d/mlp ({shared} of {shared} shared runs identical)"]
    assert found.tasks == ["mnist1d", "mnist", "adding", "digits"]  # digits8 and digits: one task
    assert found.family_tasks == {"mlp": ["mnist1d", "mnist"], "rnn": ["adding"], "cnn2d": ["digits"],
                                  "cnn1d": ["mnist1d"]}
    assert design.summarise(runs).tasks == ["mnist1d", "mnist", "adding", "digits8", "digits"]  # no config: names


def test_censored_share_counts_the_compared_ranges_of_clean_panels():
    found = design.summarise(sweep(), CONFIG)
    ranges = found.ranges
    assert len(ranges) == 6 * 3  # Q1 compares every strategy: 3 strategies on each of 6 distinct pairs' panels
    assert ranges.loc[ranges["strategy"] == "clip_norm", "reaches_top"].all()
    assert not ranges.loc[ranges["strategy"] != "clip_norm", "reaches_top"].any()
    assert found.censored == 6 and found.censored_share == pytest.approx(1 / 3)
    assert found.censored_by("optimizer") == {"sgd": (6, 18)}
    assert set(ranges.loc[ranges["strategy"] == "clip_value", "questions"]) == {"Q1"}  # only Q1 compares it
    spiking = make_sweep(limit_outcome({"none": 1.0}), problems=FIVE[:2], spike_rates=[0.0, 0.05])
    assert len(design.compared_ranges(spiking)) == 2 * 3  # the bad-batch panels are not clean: left out


def test_a_question_of_some_families_compares_on_their_panels_only():
    runs = pd.concat([make_sweep(limit_outcome({"none": 1.0}), strategies=("none", "clip_norm"), problems=FIVE[:1],
                                 optimizers=("adam",)),
                      make_sweep(limit_outcome({"none": 1.0}), strategies=("none", "clip_norm", "qk_norm"),
                                 problems=TRANSFORMERS[:1], optimizers=("adam",))], ignore_index=True)
    ranges = design.compared_ranges(runs).set_index(["task", "strategy"])["questions"]
    assert ranges[("chars", "qk_norm")] == "Q1, Q8" and ranges[("chars", "none")] == "Q1, Q6, Q8"
    assert ranges[("mnist1d", "clip_norm")] == "Q1, Q6"  # Q4 and Q7 compare strategies this sweep lacks
    assert {q for text in ranges for q in text.split(", ")} <= set(questions.by_id())


def test_seed_sets_and_the_fewest_seeds_of_a_setting():
    runs = make_sweep(limit_outcome({"none": 1.0}), strategies=("none",), seeds=tuple(range(10)))
    runs = pd.concat([runs, make_sweep(limit_outcome({"none": 1.0}), strategies=("clip_value",), seeds=(0, 1, 2))])
    sets = design.seed_sets(runs)
    assert sets.to_dict("records") == [{"seeds": "0-9", "count": 10, "cells": 3},
                                       {"seeds": "0-2", "count": 3, "cells": 3}]
    assert design.fewest_seeds(runs) == 3
    assert design.seed_text([4, 0, 1, 2, 3, 10, 12, 13]) == "0-4, 10, 12-13"
    assert design.seed_text([7], dash="--") == "7" and design.seed_text([]) == ""


def test_check_names_every_unmet_requirement():
    found = design.summarise(sweep(), CONFIG)
    met = Requirements(pairs=6, tasks=4, tasks_per_family=1, families=("mlp", "rnn", "cnn1d", "cnn2d"),
                       censored_share=0.5, seeds=5)
    assert design.check(found, met) == []
    failures = design.check(found, design.STUDY)
    assert failures[:3] == ["6 distinct task x model pairs, fewer than 16", "4 tasks, fewer than 7",
                            "model family mlp on 2 task(s), fewer than 3"]
    assert "model family transformer on 0 task(s), fewer than 3" in failures
    assert ("6 of 18 compared stable ranges (33.3%) reach the top of their grid, more than 10% "
            "(per strategy: clip_norm 6 of 6)") in failures
    assert not any("seed" in line for line in failures)  # 5 seeds per setting
    assert design.check(found, Requirements(pairs=1, tasks=1, tasks_per_family=0, censored_share=1.0, seeds=6)) == [
        "a setting has 5 seed(s), fewer than 6"]


def test_the_paper_states_the_design_as_macros():
    runs = sweep()
    values = macros.compute(runs, CONFIG)
    assert values["distinct-problems"] == "6" and values["problems"] == "7"
    assert values["rate-clusters"] == "6"  # the cluster bootstrap resamples the distinct pairs
    assert values["distinct-tasks"] == "4" and values["questions"] == str(len(questions.QUESTIONS))
    assert values["family-tasks"] == "mlp 2, rnn 1, cnn2d 1, cnn1d 1" and values["fewest-family-tasks"] == "1"
    assert values["tasks-mlp"] == "2" and values["tasks-rnn"] == "1"
    assert values["tasks-transformer"] == "0"  # every family has its macro, for paper text that names it
    assert values["compared-ranges"] == "18" and values["censored-ranges"] == "6"
    assert values["censored-share"] == r"33.3\%" and values["censored-share-sgd"] == r"33.3\%"
    assert values["seed-sets"] == "0--4 (21 cells)" and values["fewest-seeds"] == "5"


def test_cli_reads_results_or_committed_cells_and_fails_on_an_unmet_requirement(tmp_path, capsys):
    folder = tmp_path / "results" / "synthetic"
    folder.mkdir(parents=True)
    sweep().to_parquet(folder / "runs.parquet")
    assert design.main(["--sweep", "synthetic", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("distinct task x model pairs: 6 (")
    assert "unmet: 6 distinct task x model pairs, fewer than 16" in out and out[-1].endswith("requirement(s) unmet")
    assert design.main(["--sweep", "absent", "--root", str(tmp_path)]) == 2
    committed = design.committed_runs("smoke", ROOT)
    assert len(committed) and committed["dtype"].notna().all()  # cells written before the column: filled in


SWEEP = os.environ.get("BENCH_DESIGN_SWEEP", "paper")


def test_the_study_meets_its_design():
    """The study, or the sweep of BENCH_DESIGN_SWEEP (results/<sweep>/, else study/<sweep>/ with
    config/<sweep>.yaml), meets ``design.STUDY``: every unmet requirement is named in the failure."""
    runs, config = design.load(SWEEP, ROOT)
    found = design.summarise(runs, config)
    failures = design.check(found)
    assert not failures, "\n".join([*found.lines(), *failures])
    assert np.isfinite(found.censored_share)
